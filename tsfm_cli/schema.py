"""Column names, dtypes and flag bits that stages exchange (DESIGN §1).

Stages agree through these names only; the README's artifact reference documents the same.
Importing this module is cheap (no polars, no torch).
"""

from __future__ import annotations

from enum import IntFlag


class Flag(IntFlag):
    """Why a grid point is not observed or is suspicious (series table column `flags`)."""

    MISSING = 1  # no reading at that grid point
    SENTINEL = 2  # a sentinel such as -999 or "N/A"
    UNPARSEABLE = 4  # text that is not a number
    OUT_OF_RANGE = 8  # outside the physical range from the recipe
    SPIKE = 16  # robust outlier (Hampel / MAD)
    STUCK = 32  # the same value for too long
    DUPLICATE_CONFLICT = 64  # several different readings for one timestamp
    TIME_AMBIGUOUS = 128  # local time in a DST fall-back hour or spring-forward gap
    FILLED = 256  # value filled by gap filling; `observed` stays False


# ingest: the series table, `series/` (one row per grid point of one sensor)
SERIES_COLUMNS = ("series_id", "source", "sensor", "timestamp", "value", "observed", "flags")
TIMESTAMP_UNIT = "us"
TIMEZONE = "UTC"
# ingest: rejects.parquet (one row per raw cell or line not used)
REJECT_COLUMNS = ("file", "line", "column", "raw", "reason")

# ood-split: eval.parquet (one row per evaluation window)
EVAL_COLUMNS = (
    "scenario",
    "family",
    "severity",
    "series_id",
    "window_id",
    "target_start",
    "context",
    "context_observed",
    "target",
    "target_observed",
)
SCENARIO_COLUMNS = ("scenario", "family", "kind", "severity", "params", "n_windows")
ID_SCENARIO = "id"
# validation windows from the end of the training period: their scenario, family, kind and split
VAL_SCENARIO = "val"
SPLITS = (VAL_SCENARIO, "test")  # eval.parquet / results.parquet column `split`
BASELINE_ARCH = "baseline"  # results rows of a classical baseline (params 0, no law)
SCENARIO_KINDS = ("id", "natural", "synthetic")

# train: results.parquet (one row per run × checkpoint × scenario)
RESULT_COLUMNS = (
    "run_id",
    "arch",
    "embedding",
    "params",
    "params_total",
    "data_points",
    "tokens",
    "flops",
    "step",
    "scenario",
    "nll",
    "crps",
    "mse",
    "mae",
    "mase",
    "seed",
    "status",
    # the experiment's columns (issue 12): validation split, D as a token budget
    "split",
    "model",
    "epochs",
    "unique_points",
    "flops_attn",
)
# train: window_metrics.parquet (one row per run × checkpoint × split × scenario × horizon × window)
WINDOW_METRIC_COLUMNS = (
    "run_id", "seed", "step", "split", "scenario", "horizon", "series_id", "window_id",
    "nll", "crps", "mse", "mae", "mase",
)  # fmt: skip
METRICS = ("nll", "crps", "mse", "mae", "mase")

# embed-bench: bench.parquet (one row per strategy × seed × scenario)
BENCH_COLUMNS = ("strategy", "seed", "params", "split", "chosen", "scenario", *METRICS)

# fit: laws.parquet (one row per group × law × coefficient)
LAW_COLUMNS = ("arch", "scenario", "metric", "x", "law", "coef", "value", "ci_low", "ci_high")
