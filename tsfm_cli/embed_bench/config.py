"""`embed-bench:` recipe keys (the fields of ``EmbedBenchConfig``) and their checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tsfm_cli.errors import BadInputError
from tsfm_cli.recipe import RecipeSource
from tsfm_cli.schema import METRICS

DEFAULT_STRATEGIES = [
    "patch",  # the reference: parameters are matched to it
    "pointwise",
    "multi_patch",
    "quantised",
    "lag_features",
    "mask_input",
    "missing_token",
    "time_features",
]


@dataclass
class EmbedBenchConfig:
    # the two axes: embeddings × normalisations (the first of each is the default of the other)
    strategies: list[str] = field(default_factory=lambda: list(DEFAULT_STRATEGIES))
    normalisations: list[str] = field(default_factory=lambda: ["std", "meanabs", "none"])
    cross: bool = False  # True: every embedding with every normalisation
    # the protocol: same backbone, same data, same steps; seeds seed … seed + n_seeds − 1
    n_seeds: int = 3
    seed: int = 0
    metric: str = "crps"  # for ranks in the table, the heatmap and the best-per-scenario table
    arch: str = "encoder"
    size: str | dict[str, int] = field(default_factory=lambda: {"d_model": 32, "layers": 2})
    patch_size: int = 32
    data_budget: int | float = 1.0  # training points (fraction ≤ 1 of train.parquet, or a count)
    context_length: int | None = 128  # the last points of each window's context; None: all
    steps: int = 120
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 20
    eval_windows: int = 8  # per scenario × horizon
    eval_samples: int = 32
    scale: float = 1.0  # multiplies steps and eval_windows: the one key that scales the bench up
    embedding_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    param_tolerance: float = 0.05  # strategies further than this from patch get resized
    max_param_spread: float = 0.10  # refuse to run if totals still differ by more
    accelerator: str = "auto"
    devices: int | str = 1
    precision: str | None = None
    cpu_threads: int | None = 1  # torch threads on CPU (1 is fastest for these small models)

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.n_seeds))

    @property
    def scaled_steps(self) -> int:
        return max(1, round(self.steps * self.scale))

    @property
    def scaled_eval_windows(self) -> int:
        return max(1, round(self.eval_windows * self.scale))


def check_config(cfg: EmbedBenchConfig, source: RecipeSource | None = None) -> None:
    """Unknown names and impossible values → BadInputError naming the key and the known names."""
    from tsfm_cli.models.embeddings import EMBEDDINGS
    from tsfm_cli.models.scaling import SCALERS

    source = source or RecipeSource()

    def fail(key: str, message: str) -> None:
        raise BadInputError(f"{source.where(key)}: {message}")

    known = sorted(name for name in EMBEDDINGS if "[" not in name)
    if not cfg.strategies:
        fail("strategies", f"needs at least one strategy (known: {', '.join(known)})")
    for name in cfg.strategies:
        if name not in known:
            fail("strategies", f"unknown strategy '{name}' (known: {', '.join(known)})")
    if len(set(cfg.strategies)) != len(cfg.strategies):
        fail("strategies", "lists a strategy twice")
    for name, options in cfg.embedding_options.items():
        if name not in cfg.strategies:
            fail("embedding_options", f"'{name}' is not one of the strategies")
        _check_options(name, options, source)
    if not cfg.normalisations:
        fail("normalisations", f"needs at least one (known: {', '.join(sorted(SCALERS))})")
    for name in cfg.normalisations:
        if name not in SCALERS:
            fail(
                "normalisations",
                f"unknown normalisation '{name}' (known: {', '.join(sorted(SCALERS))})",
            )
    if cfg.metric not in METRICS:
        fail("metric", f"unknown metric '{cfg.metric}' (known: {', '.join(METRICS)})")
    if cfg.n_seeds < 2:
        fail(
            "n_seeds",
            f"needs at least 2 seeds for an interval (3 or more advised), got {cfg.n_seeds}",
        )
    for key in ("steps", "batch_size", "eval_windows", "eval_samples", "patch_size"):
        if getattr(cfg, key) < 1:
            fail(key, f"must be at least 1, got {getattr(cfg, key)}")
    if cfg.scale <= 0:
        fail("scale", f"must be positive, got {cfg.scale}")
    if cfg.context_length is not None and cfg.context_length < 2:
        fail("context_length", f"must be at least 2, got {cfg.context_length}")
    if cfg.data_budget <= 0:
        fail("data_budget", f"must be positive, got {cfg.data_budget}")


OPTION_WIDTHS = ("hidden", "bins", "step_dim")  # layer widths: whole numbers, bounded
MAX_OPTION_WIDTH = 100_000
MAX_OPTION_NUMBER = 1_000_000


def _check_options(name: str, options: dict[str, Any], source: RecipeSource) -> None:
    """An embedding's options: keys its constructor takes, numbers in range (before any stage
    runs, so a typo fails in a second, not after ingest and ood-split)."""
    import inspect
    import math

    from tsfm_cli.bounds import numbers_in
    from tsfm_cli.models.embeddings import embedding_class

    params = inspect.signature(embedding_class(name).__init__).parameters
    known = [p for p in params if p not in ("self", "d_model", "patch_size", "freq_s")]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in options.items():
        where = source.where("embedding_options", name, str(key))
        if key not in known and not takes_any:
            raise BadInputError(
                f"{where}: unknown option of '{name}' (known: {', '.join(known) or 'none'})"
            )
        if key in OPTION_WIDTHS and not (
            isinstance(value, int) and not isinstance(value, bool)
            and 1 <= value <= MAX_OPTION_WIDTH
        ):  # fmt: skip
            raise BadInputError(f"{where}: needs a whole number 1 … {MAX_OPTION_WIDTH:,}")
        for number in numbers_in(value):
            if not (math.isfinite(number) and abs(number) <= MAX_OPTION_NUMBER):
                raise BadInputError(
                    f"{where}: {number!r} is out of range (within ±{MAX_OPTION_NUMBER:,})"
                )
