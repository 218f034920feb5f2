"""Checkpoint selection on validation windows only (README "tsfm train", column ``selected``).

Each run's selected checkpoint is the step with the lowest mean ``metric`` over its ``split ==
"val"`` rows over all windows (every validation scenario × horizon, equally weighted, per-line
rows left out; ties → the earlier step).
Test rows are never read: they are reported at the step chosen here. A run without validation
rows (an ood-split from before the validation split) keeps its final checkpoint — chosen by the
schedule, not by any metric.
"""

from __future__ import annotations

import polars as pl

from tsfm_cli.groupkeys import all_window_rows


def select_checkpoints(rows: pl.DataFrame, metric: str = "crps") -> pl.DataFrame:
    """results rows → the same rows with ``selected`` (bool: the run's validation-chosen step)."""
    if rows.is_empty():
        return rows.with_columns(selected=pl.lit(None, dtype=pl.Boolean))
    val = all_window_rows(rows).filter((pl.col("split") == "val") & (pl.col("status") == "ok"))
    chosen = (
        val.group_by("run_id", "step")
        .agg(pl.col(metric).mean().alias("_score"))
        .filter(pl.col("_score").is_not_null())
        .sort("run_id", "_score", "step")
        .group_by("run_id", maintain_order=True)
        .agg(pl.col("step").first().alias("_chosen"))
    )
    final = (
        rows.filter(pl.col("final").fill_null(False))
        .group_by("run_id")
        .agg(pl.col("step").max().alias("_final"))
    )
    return (
        rows.join(chosen, on="run_id", how="left")
        .join(final, on="run_id", how="left")
        .with_columns(
            selected=(pl.col("step") == pl.coalesce("_chosen", "_final")).fill_null(False)
        )
        .drop("_chosen", "_final")
    )
