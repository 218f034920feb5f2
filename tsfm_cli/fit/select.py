"""Which result rows feed which law (configurable, stated in the report and the README).

Defaults:
- L(N): the best checkpoint of each run trained on the largest D (``n_rows: max_d``; ``all``
  takes every run's best checkpoint);
- L(D): the best checkpoint of each run of the largest N (``d_rows: max_n``, or ``all``);
- L(C): the compute-efficient frontier, the lower envelope of loss over the end-of-schedule
  checkpoint of every run (``final``; every checkpoint for tables without it) (``c_rows:
  frontier``; ``best`` takes each run's best checkpoint instead);
- L(N, D): the best checkpoint of every run.
"best" is the lowest metric over a run's checkpoints; ``checkpoint: last`` takes the last step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from tsfm_cli.fit.load import X_COLUMNS


@dataclass
class Points:
    """The points one law is fitted on."""

    X: np.ndarray  # [m, n] raw inputs (m = 1, or 2 for the joint law: N then D)
    y: np.ndarray  # [n] metric
    runs: np.ndarray  # [n] run_id of each point (the bootstrap resamples runs)
    rule: str  # which rows, in words
    se: np.ndarray | None = None  # [n] standard error of each point from its windows, or None


def per_run(frame: pl.DataFrame, metric: str, checkpoint: str) -> pl.DataFrame:
    """One row per run: its best (lowest metric) or last checkpoint."""
    finite = frame.filter(pl.col(metric).is_finite())
    order = [metric, "step"] if checkpoint == "best" else ["step"]
    desc = [False, False] if checkpoint == "best" else [True]
    return finite.sort(order, descending=desc).unique("run_id", keep="first").sort("run_id")


def frontier(frame: pl.DataFrame, metric: str, x_col: str = "flops") -> pl.DataFrame:
    """Lower envelope: the rows whose loss is below every row with less or equal compute."""
    rows = frame.filter(pl.col(metric).is_finite() & pl.col(x_col).is_finite()).sort(
        [x_col, metric]
    )
    prev_min = pl.col(metric).cum_min().shift(1, fill_value=float("inf"))
    return rows.filter(pl.col(metric) < prev_min)


def end_of_schedule(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows at the end of each run's own schedule (``final``), when the table says which.

    A mid-run checkpoint of a run whose learning rate decays to a later end is not a point of
    L(C): its loss is that of a run not yet cooled down (the Kaplan-vs-Chinchilla pitfall).
    Tables without ``final`` (older results, embed-bench) are returned unchanged."""
    if "final" not in frame.columns or not frame["final"].fill_null(False).any():
        return frame
    return frame.filter(pl.col("final").fill_null(False))


def select_points(
    frame: pl.DataFrame,
    metric: str,
    x: str,
    *,
    n_rows: str = "max_d",
    d_rows: str = "max_n",
    c_rows: str = "frontier",
    checkpoint: str = "best",
    select_on: pl.DataFrame | None = None,
) -> Points:
    """The points of one group that feed the law in `x` ("N", "D", "C" or "N,D").

    With `select_on` (the validation rows of the same runs), the best checkpoints and the
    compute frontier are chosen there and the group's own (test) rows at those run × step are
    fitted: selection never looks at the numbers it reports.
    """
    cols = frame.columns
    chooser = frame if select_on is None else select_on
    where = "" if select_on is None else " (chosen on validation rows)"
    if x == "C" and c_rows == "frontier":
        ends = end_of_schedule(chooser)
        over = "end-of-schedule checkpoints" if ends is not chooser else "all checkpoints"
        rows, rule = frontier(ends, metric), f"compute frontier over {over}" + where
    else:
        rows = per_run(chooser, metric, checkpoint)
        rule = f"{checkpoint} checkpoint of each run{where}"
    if select_on is not None:
        rows = frame.join(rows.select("run_id", "step"), on=["run_id", "step"], how="semi")
        rows = rows.filter(pl.col(metric).is_finite()).sort("run_id", "step")
    if not (x == "C" and c_rows == "frontier"):
        if x == "N" and n_rows == "max_d" and "data_points" in cols and rows.height:
            top = rows["data_points"].max()
            rows = rows.filter(pl.col("data_points") == top)
            rule += f" at the largest D ({top:.3g})"
        if x == "D" and d_rows == "max_n" and "params" in cols and rows.height:
            top = rows["params"].max()
            rows = rows.filter(pl.col("params") == top)
            rule += f" at the largest N ({top:.3g})"
    names = ["params", "data_points"] if x == "N,D" else [X_COLUMNS[x]]
    rows = rows.filter(pl.all_horizontal([pl.col(c).is_finite() & (pl.col(c) > 0) for c in names]))
    X = np.stack([rows[c].to_numpy().astype(float) for c in names])  # [m, 0] when no rows
    se_col = f"{metric}_se"
    se = rows[se_col].cast(pl.Float64).to_numpy() if se_col in rows.columns else None
    return Points(X, rows[metric].to_numpy().astype(float), rows["run_id"].to_numpy(), rule, se)
