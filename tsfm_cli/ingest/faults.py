"""Fault detection on the grid: physical range, spikes (Hampel / MAD), stuck sensors.

All per series with window expressions over a frame sorted by series_id, timestamp. Faults named
in `mask_faults` make the point unobserved (value null); the others are only flagged.
"""

from __future__ import annotations

import fnmatch

import polars as pl

from tsfm_cli.ingest.config import IngestConfig
from tsfm_cli.schema import Flag

MAD_TO_SIGMA = 1.4826


def range_bounds(series_ids: list[str], sensors: list[str], ranges: dict) -> tuple[dict, dict]:
    """series_id → (low, high) from `ranges` patterns (glob on sensor or series_id; first wins)."""
    low, high = {}, {}
    for sid, sensor in zip(series_ids, sensors, strict=True):
        for pattern, (lo, hi) in ranges.items():
            if fnmatch.fnmatchcase(sensor, pattern) or fnmatch.fnmatchcase(sid, pattern):
                low[sid], high[sid] = lo, hi
                break
    return low, high


def detect_faults(grid: pl.DataFrame, config: IngestConfig) -> pl.DataFrame:
    sid = "series_id"
    v = pl.when(pl.col("observed")).then(pl.col("value"))
    found: dict[str, pl.Expr] = {}
    if config.ranges:
        pairs = grid.select(sid, "sensor").unique()
        low, high = range_bounds(pairs[sid].to_list(), pairs["sensor"].to_list(), config.ranges)
        lo = pl.col(sid).replace_strict(low, default=None, return_dtype=pl.Float64)
        hi = pl.col(sid).replace_strict(high, default=None, return_dtype=pl.Float64)
        found["out_of_range"] = (v < lo).fill_null(False) | (v > hi).fill_null(False)
    if config.spike_threshold > 0:
        # Hampel: distance from the rolling median in units of the rolling MAD, with a floor
        # of half the series' own MAD so that flat or quantised signals are not all spikes
        w = config.spike_window
        grid = grid.with_columns(
            _med=v.rolling_median(w, center=True, min_samples=w // 2 + 1).over(sid)
        )
        grid = grid.with_columns(_dev=(v - pl.col("_med")).abs())
        local = pl.col("_dev").rolling_median(w, center=True, min_samples=w // 2 + 1).over(sid)
        whole = (v - v.median()).abs().median().over(sid)
        scale = pl.max_horizontal(MAD_TO_SIGMA * local, 0.5 * MAD_TO_SIGMA * whole, pl.lit(1e-9))
        found["spike"] = (pl.col("_dev") > config.spike_threshold * scale).fill_null(False)
    if config.stuck_points > 0:
        new_sid = (pl.col(sid) != pl.col(sid).shift(1)).fill_null(True)
        change = (v != v.shift(1)).fill_null(True) | new_sid
        grid = grid.with_columns(_run=change.cum_sum())
        found["stuck"] = pl.col("observed") & (pl.len().over("_run") >= config.stuck_points)
    bits = {"out_of_range": Flag.OUT_OF_RANGE, "spike": Flag.SPIKE, "stuck": Flag.STUCK}
    grid = grid.with_columns(**{f"_{name}": expr for name, expr in found.items()})
    flag = pl.lit(0, pl.UInt16)
    mask = pl.lit(False)
    for name in found:
        hit = pl.col(f"_{name}")
        flag = flag | pl.when(hit).then(pl.lit(int(bits[name]), pl.UInt16)).otherwise(0)
        if name in config.mask_faults:
            mask = mask | hit
    grid = grid.with_columns(flags=(pl.col("flags") | flag).cast(pl.UInt16), _mask=mask)
    grid = grid.with_columns(
        observed=pl.col("observed") & ~pl.col("_mask"),
        value=pl.when(pl.col("_mask")).then(None).otherwise(pl.col("value")),
    )
    temp = ["_med", "_dev", "_run", "_mask", *[f"_{name}" for name in found]]
    return grid.drop([c for c in temp if c in grid.columns])
