"""`train:` recipe keys (the fields of ``TrainConfig``) and one run of the sweep (``RunSpec``)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from tsfm_cli.models.config import ModelConfig
from tsfm_cli.stagedir import parse_shard  # noqa: F401 - part of train's API (--shard)

CLEAN = "clean"
SCHEDULES = ("epochs", "steps", "isoflop")


@dataclass
class TrainConfig:
    # the grid: arch × size × data budget × seed × training-data quality
    archs: list[str] = field(default_factory=lambda: ["encoder", "decoder"])
    sizes: list[str | dict[str, int]] = field(default_factory=lambda: ["1K", "10K", "100K"])
    # D per run: a fraction of the training time points (≤ 1.0) or a count (> 1); nested subsets
    data_budgets: list[int | float] = field(default_factory=lambda: [1.0])
    seeds: list[int] = field(default_factory=lambda: [0])
    # "clean" or "<drift family>:<severity>" applied to train.parquet (e.g. "missing_bursts:3")
    train_quality: list[str] = field(default_factory=lambda: [CLEAN])
    # model
    embedding: str = "patch"
    normalisation: str = "std"
    patch_size: int = 32
    components: int = 4
    # how long a run trains (README "Schedule"): "epochs" (default: steps follow the run's data,
    # ceil(epochs × D / window / batch), so 4× D trains 4× the tokens), "steps" (the paper's: every
    # run `steps` long whatever its D) or "isoflop" (compute_budgets × sizes: tokens = C / 6N, and
    # D = the points those tokens cover in `epochs` passes; Chinchilla approach 2)
    schedule: str = "epochs"
    epochs: float = 1.0
    compute_budgets: list[float] = field(default_factory=list)  # FLOPs (6·N·tokens), isoflop
    # training (the paper's: AdamW lr 1e-3, wd 0.1, betas (0.9, 0.98), warm-up + cosine, clip 1)
    steps: int = 1000  # schedule "steps" only
    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-4
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    warmup_steps: int = 100
    grad_clip: float = 1.0
    context_length: int | None = None  # None → eval.parquet's context length
    train_horizon: int | None = None  # None → the longest horizon in eval.parquet
    # evaluation at log-spaced checkpoints on every scenario × horizon of eval.parquet
    checkpoints: int = 4
    eval_windows: int = 64  # at most this many windows per scenario × horizon
    eval_samples: int = 64
    select_metric: str = "crps"  # each run's `selected` checkpoint: lowest on validation windows
    eval_batch_size: int = 256
    # scored on the same windows with the same metrics (tsfm_cli/baselines.py); [] = none
    baselines: list[str] = field(default_factory=lambda: ["seasonal_naive", "naive", "auto_ets"])
    checkpoint_every_s: float = 600.0  # also save a resumable checkpoint this often
    # engineering (Lightning)
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str | None = None  # None → bf16-mixed on GPU, 32-true on CPU
    compile: bool = False
    cpu_threads: int | None = None  # torch intra-op threads on CPU; 1 is fastest for tiny models
    shard: str = "0/1"  # run the i-th of n shares of the grid
    seed: int = 0  # data seed: nested data subsets and the evaluation windows


@dataclass(frozen=True)
class RunSpec:
    """One training run. ``steps`` None → the config's schedule decides (README "Schedule");
    ``compute_budget`` (FLOPs) set → an IsoFLOP run whose D follows from it. Everything else
    comes from the config."""

    arch: str
    size: str | tuple[tuple[str, int], ...]  # preset name, or sorted (key, value) pairs
    data_budget: int | float
    seed: int
    train_quality: str = CLEAN
    embedding: str = "patch"
    normalisation: str = "std"
    steps: int | None = None
    compute_budget: float | None = None

    @classmethod
    def make(cls, *, size: str | dict[str, int] | ModelConfig, **kwargs: Any) -> RunSpec:
        if isinstance(size, ModelConfig):
            size = (
                size.name
                if size.name != "custom"
                else {"d_model": size.d_model, "layers": size.layers, "heads": size.heads}
            )
        if isinstance(size, dict):
            size = tuple(sorted(size.items()))
        return cls(size=size, **kwargs)

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.parse(self.size if isinstance(self.size, str) else dict(self.size))

    def label(self) -> str:
        parts = [
            self.arch,
            self.model_config.label,
            f"C{self.compute_budget:.0e}"
            if self.compute_budget is not None
            else f"D{_budget_label(self.data_budget)}",
            f"s{self.seed}",
        ]
        if self.train_quality != CLEAN:
            parts.append(self.train_quality)
        if self.embedding != "patch":
            parts.append(self.embedding)
        if self.normalisation != "std":
            parts.append(self.normalisation)
        if self.steps is not None:
            parts.append(f"t{self.steps}")
        return re.sub(r"[^A-Za-z0-9_.=+-]", "_", "-".join(parts))

    def run_id(self, settings: dict[str, Any]) -> str:
        """Readable label + hash of everything that determines the run's results."""
        blob = json.dumps({"spec": asdict(self), "settings": settings}, sort_keys=True, default=str)
        return f"{self.label()}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def _budget_label(budget: int | float) -> str:
    if isinstance(budget, float) and budget <= 1.0:
        return f"{budget:g}x"
    return str(int(budget))


def grid(config: TrainConfig) -> list[RunSpec]:
    """The sweep's runs in a fixed order (arch × size × D × seed × quality); with schedule
    ``isoflop`` the compute budgets take the place of the data budgets (D follows from C)."""
    isoflop = config.schedule == "isoflop"
    budgets = config.compute_budgets if isoflop else config.data_budgets
    return [
        RunSpec.make(
            arch=arch,
            size=size,
            data_budget=1.0 if isoflop else budget,
            compute_budget=float(budget) if isoflop else None,
            seed=seed,
            train_quality=quality,
            embedding=config.embedding,
            normalisation=config.normalisation,
        )
        for arch in config.archs
        for size in config.sizes
        for budget in budgets
        for seed in config.seeds
        for quality in config.train_quality
    ]


def shard(specs: list[RunSpec], index: int, count: int) -> list[RunSpec]:
    """The index-th of count shares (round robin, so every shard gets a mix of sizes).
    The shares of 0..count-1 cover ``specs`` exactly once."""
    return specs[index::count]


def is_global_zero(config: TrainConfig | None = None) -> bool:
    """False in the extra processes of a multi-GPU (DDP) run: only rank 0 writes and prints.

    torchrun and Lightning's own launcher set RANK / LOCAL_RANK; under SLURM, SLURM_PROCID counts
    only when ``config`` asks for several devices or nodes (an array of shards is not DDP).
    """
    names = ["RANK", "LOCAL_RANK"]
    if config is not None and (config.num_nodes > 1 or str(config.devices) not in ("1", "auto")):
        names.append("SLURM_PROCID")
    for name in names:
        value = os.environ.get(name)
        if value and value.isdigit() and int(value) != 0:
            return False
    return True


def check_settings(config: TrainConfig, source=None) -> None:
    """`check_config` as a BadInputError."""
    from tsfm_cli.errors import BadInputError

    problem = check_config(config)
    if problem:
        raise BadInputError(problem)


def check_config(config: TrainConfig) -> str | None:
    """Why the settings cannot work (naming the key), or None."""
    positive = (
        "steps", "batch_size", "patch_size", "components", "checkpoints", "eval_windows",
        "eval_batch_size", "num_nodes",
    )  # fmt: skip
    for key in positive:
        if getattr(config, key) < 1:
            return f"train.{key} must be at least 1, got {getattr(config, key)}"
    from tsfm_cli.schema import METRICS

    if config.select_metric not in METRICS:
        return (
            f"train.select_metric must be one of {', '.join(METRICS)}, got {config.select_metric}"
        )
    if config.eval_samples < 2:
        return f"train.eval_samples must be at least 2, got {config.eval_samples}"
    if not (0 < config.min_lr <= config.lr):
        return f"train.min_lr must be in (0, lr={config.lr}], got {config.min_lr}"
    if len(config.betas) != 2 or not all(0 <= b < 1 for b in config.betas):
        return f"train.betas must be two numbers in [0, 1), got {config.betas}"
    if config.schedule not in SCHEDULES:
        return f"train.schedule must be one of {', '.join(SCHEDULES)}, got '{config.schedule}'"
    if not config.epochs > 0:
        return f"train.epochs must be positive, got {config.epochs}"
    if config.schedule == "isoflop" and not config.compute_budgets:
        return "train.compute_budgets is empty: schedule isoflop needs at least one budget (FLOPs)"
    if config.compute_budgets and config.schedule != "isoflop":
        return "train.compute_budgets needs schedule: isoflop"
    if any(not c > 0 for c in config.compute_budgets):
        return f"train.compute_budgets must be positive, got {config.compute_budgets}"
    if any(b <= 0 for b in config.data_budgets):
        return f"train.data_budgets must be positive, got {config.data_budgets}"
    for key in ("archs", "sizes", "data_budgets", "seeds", "train_quality"):
        if not getattr(config, key):
            return f"train.{key} is empty: the grid has no runs"
    known = ("seasonal_naive", "naive", "auto_ets")  # tsfm_cli/baselines.py BASELINES
    unknown = [b for b in config.baselines if b not in known]
    if unknown:
        return f"train.baselines: unknown baseline '{unknown[0]}' (known: {', '.join(known)})"
    return None
