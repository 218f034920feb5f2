"""Settings of `tsfm fit` (the recipe's `fit:` section; CLI options override them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tsfm_cli.errors import BadInputError

ALL_XS = ("N", "D", "C")
ALL_LAWS = ("power", "power_e", "joint")
AUTO_GROUPS = (
    "arch",
    "scenario",
    "horizon",
    "train_quality",
    "embedding",
    "normalisation",
    "strategy",
)
VARYING_GROUPS = ("embedding", "normalisation", "strategy")  # grouped by only when they vary


@dataclass
class FitConfig:
    # metric column(s) to fit; crps is positive, so the paper's pure power law applies to it
    metrics: list[str] = field(default_factory=lambda: ["crps"])
    # grouping columns; None: arch, scenario, horizon and train_quality when present, and
    # embedding / normalisation / strategy (embed-bench) when they vary
    group_by: list[str] | None = None
    xs: list[str] = field(default_factory=lambda: list(ALL_XS))  # inputs of the 1-D laws
    laws: list[str] = field(default_factory=lambda: list(ALL_LAWS))  # power, power_e, joint
    n_rows: str = "max_d"  # L(N) from runs at the largest D ("all": every run)
    d_rows: str = "max_n"  # L(D) from runs of the largest N ("all": every run)
    c_rows: str = "frontier"  # L(C) from the compute frontier ("best": each run's best)
    checkpoint: str = "best"  # which checkpoint stands for a run: best or last
    n_boot: int = 1000  # bootstrap resamples over runs
    level: float = 0.95  # interval coverage
    seed: int = 0
    target_factor: float = 10.0  # predicted loss at this multiple of the largest X observed
    budget_flops: float | None = None  # plan: compute-optimal N, D at this budget
    target_loss: float | None = None  # plan: compute needed for this ID loss
    # plans further than this factor beyond the largest run (compute, model size) are refused
    max_extrapolation: float = 10.0
    # data points that exist for training (a plan needing more is refused); None: the largest
    # `unique_points` of the results when the column is there, else unchecked
    data_available: float | None = None
    headline_law: str = "power"  # law shown in the exponent plots and the report's headline
    extrapolation: bool = True  # fit without the largest X and predict it
    workers: int = 0  # processes for large fits (0: one per CPU, at most 2; 1: none)
    plots: bool = True

    def check(self) -> None:
        choices = {
            "n_rows": ("max_d", "all"),
            "d_rows": ("max_n", "all"),
            "c_rows": ("frontier", "best"),
            "checkpoint": ("best", "last"),
            "headline_law": ("power", "power_e"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise BadInputError(
                    f"fit.{key}: {getattr(self, key)!r} is not one of {', '.join(allowed)}"
                )
        for key, allowed in (("xs", ALL_XS), ("laws", ALL_LAWS)):
            bad = [v for v in getattr(self, key) if v not in allowed]
            if bad:
                raise BadInputError(f"fit.{key}: {bad[0]!r} is not one of {', '.join(allowed)}")
        if not self.metrics:
            raise BadInputError("fit.metrics: give at least one metric column")
        if self.n_boot < 0 or not 0 < self.level < 1:
            raise BadInputError("fit.n_boot must be ≥ 0 and fit.level in (0, 1)")
        if self.workers < 0:
            raise BadInputError(f"fit.workers: must be ≥ 0, got {self.workers}")
        if not self.max_extrapolation >= 1:
            raise BadInputError(f"fit.max_extrapolation: must be ≥ 1, got {self.max_extrapolation}")
        if self.data_available is not None and not self.data_available > 0:
            raise BadInputError(f"fit.data_available: must be positive, got {self.data_available}")
        if self.budget_flops is not None and not self.budget_flops > 0:
            raise BadInputError(f"fit.budget_flops: must be positive, got {self.budget_flops}")


def check_settings(config: FitConfig, source=None) -> None:
    """The settings' own check (`FitConfig.check`), by the name every stage's check has."""
    config.check()
