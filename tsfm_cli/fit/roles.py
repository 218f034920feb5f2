"""Which result rows play which role: laws (model test rows), selection (validation rows) and
the baselines the headline compares against.

Train's results carry ``split`` ("val" / "test") and baseline rows (``arch == "baseline"``,
``model`` the baseline's name). Older tables have neither: then every row feeds the laws and
selection falls back to them, with a warning in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from tsfm_cli.schema import BASELINE_ARCH, VAL_SCENARIO

VAL_SPLIT = VAL_SCENARIO  # the validation rows' split


@dataclass
class Roles:
    models: pl.DataFrame  # rows the laws are fitted on (test rows of trained models)
    val: pl.DataFrame | None  # validation rows of trained models (selection), None: none
    baselines: pl.DataFrame  # baseline rows (all splits)
    warnings: list[str] = field(default_factory=list)


def split_roles(frame: pl.DataFrame) -> Roles:
    is_base = pl.col("arch") == BASELINE_ARCH
    baselines = frame.filter(is_base)
    models = frame.filter(~is_base)
    if "model" not in baselines.columns and baselines.height:
        baselines = baselines.with_columns(
            pl.col("run_id").str.replace(r"^baseline-", "").alias("model")
        )
    warnings = []
    val = None
    if "split" in models.columns:
        split = pl.col("split").cast(pl.String)
        val = models.filter(split == VAL_SPLIT)
        models = models.filter((split != VAL_SPLIT) | split.is_null())
        if val.is_empty():
            val = None
    if val is None:
        warnings.append(
            'no validation rows (split == "val"): checkpoints and the compute frontier were '
            "chosen on the same rows the laws report, which flatters them; rerun train with "
            "validation windows"
        )
    return Roles(models, val, baselines, warnings)
