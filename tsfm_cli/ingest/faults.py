"""Fault detection on the grid: physical range, spikes (Hampel / MAD), stuck sensors.

All per series with window expressions over a frame sorted by series_id, timestamp. Faults named
in `mask_faults` make the point unobserved (value null); the others are only flagged.
"""

from __future__ import annotations

import fnmatch
import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from tsfm_cli.ingest.config import IngestConfig, series_settings
from tsfm_cli.ingest.grid import run_bounds
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


def run_lengths(run_id: pl.Series) -> pl.Series:
    """Length of the run each row is in, for a sorted run id 1, 1, 2, 3, 3, 3, … (no hashing)."""
    lengths = run_id.rle().struct.field("len")
    return lengths.gather(run_id - run_id[0]) if len(run_id) else run_id


def _rolling_median(grid: pl.DataFrame, window: int) -> pl.Series:
    """Centred rolling median of the observed values of each series (null near series ends).

    One median filter over the whole column is several times faster than a rolling median per
    group; windows that would cross into the next series are nulled. Unobserved points take
    the last observed value of their series at most `window // 2` points back, else the next one
    at most as far ahead: the window of an observed point is then filled from no further than
    `window - 1` points away, whatever the history before (what lets a chunk be cleaned alone).
    """
    half = window // 2
    sid = grid["_sid"].to_numpy()
    med = _median_filter(_filled_near(grid, sid, half), window)
    edge = np.zeros(len(sid), dtype=bool)
    if len(sid):
        starts, ends = run_bounds(sid)
        for offset in range(half):  # the first and last `half` points of each series
            edge[np.minimum(starts + offset, ends - 1)] = True
            edge[np.maximum(ends - 1 - offset, starts)] = True
    return pl.Series("_med", med).set(pl.Series(edge), None)


# up to this window a selection network in numpy beats scipy's median filter, whose import
# alone (~0.4 s) costs more than the network takes on millions of points
NETWORK_MAX_WINDOW = 21
NETWORK_BLOCK = 1 << 15  # points per pass: the network's rows stay in the CPU's cache


def _median_filter(x: np.ndarray, window: int) -> np.ndarray:
    """scipy.ndimage.median_filter(x, size=window) for NaN-free `x`: element i is the value of
    rank window // 2 among x[i - window // 2 : i - window // 2 + window] (the upper middle one
    for an even window). The first window // 2 and last (window - 1) // 2 elements, whose
    windows leave `x`, are x's own: they are near a series end, which the caller nulls."""
    if window > NETWORK_MAX_WINDOW:
        from scipy.ndimage import median_filter

        return median_filter(x, size=window, mode="nearest")
    out = x.copy()
    rank = window // 2
    network = _selection_network(window, rank)
    width = len(x) - window + 1
    rows = np.empty((window + 2, min(NETWORK_BLOCK, max(width, 0))), dtype=x.dtype)
    for a in range(0, width, NETWORK_BLOCK):
        b = min(a + NETWORK_BLOCK, width)
        wires = [x[a + lag : b + lag] for lag in range(window)]  # wire k: the k-th of a window
        owned = [False] * window  # wire holds a buffer of `rows` (not a view of x)
        free = [row[: b - a] for row in rows]
        for i, j, need_min, need_max in network:
            lo, hi = wires[i], wires[j]
            if need_min:
                smaller = free.pop()
                np.minimum(lo, hi, out=smaller)
            if need_max:
                larger = hi if owned[j] else free.pop()
                np.maximum(lo, hi, out=larger)
                wires[j], owned[j] = larger, True
            elif owned[j]:  # wire j is not read again
                free.append(hi)
                owned[j] = False
            if owned[i]:
                free.append(lo)
            if need_min:
                wires[i], owned[i] = smaller, True
            else:
                owned[i] = False
        out[a + rank : b + rank] = wires[rank]
    return out


@functools.cache
def _selection_network(n: int, rank: int) -> list[tuple[int, int, bool, bool]]:
    """The comparators (i, j, min needed, max needed) of Batcher's odd-even merge sort of `n`
    wires that output `rank` depends on, in order: min/max are exact on floats, so the output
    is exactly the value of that rank."""

    def merge(lo: int, size: int, r: int):
        step = r * 2
        if step < size:
            yield from merge(lo, size, step)
            yield from merge(lo + r, size, step)
            for i in range(lo + r, lo + size - r, step):
                yield i, i + r
        else:
            yield lo, lo + r

    def sort(lo: int, size: int):
        if size > 1:
            yield from sort(lo, size // 2)
            yield from sort(lo + size // 2, size // 2)
            yield from merge(lo, size, 1)

    size = 1 << max(n - 1, 1).bit_length()
    # padding wires (≥ n) would hold +inf, which no comparator moves: theirs can go
    comparators = [(i, j) for i, j in sort(0, size) if j < n]
    needed, network = {rank}, []
    for i, j in reversed(comparators):
        if i in needed or j in needed:
            network.append((i, j, i in needed, j in needed))
            needed |= {i, j}
    return network[::-1]


FILL_BLOCK_POINTS = 1 << 20  # points filled at a time: index arrays of ~1 M points at most


def _filled_near(grid: pl.DataFrame, sid: np.ndarray, reach: int) -> np.ndarray:
    """The observed values (float32), each unobserved point given the last observed value of
    its series at most `reach` points back, else the next one at most as far ahead, else 0.
    Only the unobserved points are looked at, one distance at a time (nearest first): most
    points are observed, so this touches far less than a fill over every point."""
    value = grid["value"].cast(pl.Float32).to_numpy()
    seen = grid["observed"].to_numpy() & ~np.isnan(value)
    filled = np.where(seen, value, np.float32(0))
    n = len(value)
    for lo in range(0, n, FILL_BLOCK_POINTS):
        todo = np.flatnonzero(~seen[lo : lo + FILL_BLOCK_POINTS]) + lo
        for direction in (-1, 1):  # back first: the last observed value wins
            for distance in range(1, reach + 1):
                if not len(todo):
                    break
                near = todo + direction * distance
                # an index clipped to an end is a point tried at a shorter distance already
                np.clip(near, 0, n - 1, out=near)
                hit = seen[near] & (sid[near] == sid[todo])
                filled[todo[hit]] = value[near[hit]]
                todo = todo[~hit]
    return filled


def _median_f32(x: np.ndarray) -> float:
    """The median of the non-NaN values as np.median gives it in float64, rounded to float32
    (NaN for none). Only the middle one or two values are selected, in place in the copy that
    drops NaNs: no float64 copy and no second partition copy, as np.median would make."""
    x = x[~np.isnan(x)]
    if not len(x):
        return np.nan
    half = len(x) // 2
    if len(x) % 2:
        x.partition(half)
        middle = np.float64(x[half])
    else:
        x.partition((half - 1, half))
        middle = (np.float64(x[half - 1]) + np.float64(x[half])) / 2
    return float(np.float32(middle))


NUMPY_SCALES_MAX_SERIES = 1000  # beyond this many series, one polars group_by beats a loop
SCALES_THREADS_MIN_POINTS = 1_000_000  # below this, threads cost more than they save


def _series_scales(
    grid: pl.DataFrame, v: pl.Expr, n_series: int, *, sid: str = "_sid", use_numpy=None
):
    """Per block `sid` (a series, or a series' time chunk): `resid` (median of `_dev`), `whole`
    (MAD of the observed values) and `jump` (median non-zero step between consecutive points of
    the block), Float32, null for no data.

    The grid is sorted by block, so with few (long) blocks each one is a slice and numpy's
    selection-based medians are cheaper than a hashed group_by; both give the same numbers
    (medians in float64, rounded to float32)."""
    if use_numpy is None:
        use_numpy = n_series <= NUMPY_SCALES_MAX_SERIES
    if not use_numpy:
        step = (v - v.shift(1)).abs()
        return (
            grid.with_columns(_step=pl.when(pl.col(sid) == pl.col(sid).shift(1)).then(step))
            .group_by(sid)
            .agg(
                resid=pl.col("_dev").median(),
                whole=(v - v.median()).abs().median(),
                # typical size of a change: quantised signals (pressure in a few levels) move
                # in whole steps, which must not count as spikes
                jump=pl.col("_step").filter(pl.col("_step") > 0).median(),
            )
        )
    cols = grid.select(
        sid, _v=v.cast(pl.Float32).fill_null(np.nan), _d=pl.col("_dev").fill_null(np.nan)
    )
    ids, values, devs = (cols[c].to_numpy() for c in (sid, "_v", "_d"))
    starts, ends = run_bounds(ids)

    def scales(a: int, b: int) -> tuple:
        x = values[a:b]
        centre = _median_f32(x)
        steps = np.abs(np.diff(x))
        return (
            ids[a],
            _median_f32(devs[a:b]),
            _median_f32(np.abs(x - np.float32(centre))),
            _median_f32(steps[steps > 0]),
        )

    # numpy's selection releases the GIL: long series are worth a thread each
    if len(ids) >= SCALES_THREADS_MIN_POINTS:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            rows = list(pool.map(scales, starts, ends))
    else:
        rows = [scales(a, b) for a, b in zip(starts, ends, strict=True)]
    table = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return pl.DataFrame(
        {
            sid: table[:, 0].astype(np.uint32),
            "resid": table[:, 1].astype(np.float32),
            "whole": table[:, 2].astype(np.float32),
            "jump": table[:, 3].astype(np.float32),
        }
    ).with_columns(pl.col("resid", "whole", "jump").fill_nan(None))


def _stuck_runs(grid: pl.DataFrame) -> np.ndarray:
    """The length of the run of equal observed values each point of the grid is in: a new run
    at each series' start, at each change of value, at and after each unobserved point. In
    numpy, from the pairs of equal neighbours only (few, but for flat or stuck stretches): several
    times faster than a cum_sum and run lengths over every point in polars. Equal as polars'
    `!=` has it: NaN equals NaN, -0.0 equals 0.0."""
    value = grid["value"]
    x = value.fill_null(0).to_numpy()
    valid = grid["observed"].fill_null(False).to_numpy() & value.is_not_null().to_numpy()
    ids = grid["_sid"].to_numpy()
    same = x[1:] == x[:-1]
    same |= np.isnan(x[1:]) & np.isnan(x[:-1])
    same &= valid[1:] & valid[:-1] & (ids[1:] == ids[:-1])
    runs = np.ones(len(x), dtype=np.int64)
    pairs = np.flatnonzero(same)  # point i equals point i + 1
    if len(pairs):
        # a run of k consecutive pairs is a run of k + 1 points
        cut = np.flatnonzero(np.diff(pairs) != 1) + 1
        first = pairs[np.r_[0, cut]]
        size = np.diff(np.r_[0, cut, len(pairs)]) + 1
        at = np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size)
        at += np.repeat(first, size)
        runs[at] = np.repeat(size, size)
    return runs


def _blocks(ids: pl.Series, chunks: pl.Series) -> pl.Series:
    """0, 1, 2, … numbering the runs of one series and time chunk in a grid sorted by series
    and time; a null chunk is a block of its own. In numpy: a third of the time of polars'
    shifts and cum_sum."""
    if not len(ids):
        return pl.Series(dtype=pl.UInt32)
    a = ids.to_numpy()
    c = chunks.to_physical().fill_null(0).to_numpy()
    gap = chunks.is_null().to_numpy()
    new = np.empty(len(a), dtype=bool)
    new[0] = True
    np.not_equal(a[1:], a[:-1], out=new[1:])
    new[1:] |= (c[1:] != c[:-1]) | gap[1:] | gap[:-1]
    numbers = np.cumsum(new, dtype=np.uint32)
    numbers -= 1
    return pl.Series(numbers)


def detect_faults(grid: pl.DataFrame, names: pl.DataFrame, config: IngestConfig) -> pl.DataFrame:
    sid = "_sid"
    v = pl.when(pl.col("observed")).then(pl.col("value"))
    found: dict[str, pl.Expr] = {}

    def per_series(values: pl.Series) -> pl.Expr:  # one value per `_sid` → one per point
        return pl.lit(values).gather(pl.col(sid))

    ids = names["series_id"].to_list()
    sensors = names["sensor"].cast(pl.String).to_list()
    # per-series settings (`series:` globs), one value per series gathered to its points
    own = series_settings(config, ids, sensors)
    threshold = pl.Series(own["spike_threshold"], dtype=pl.Float64)
    stuck_points = pl.Series(own["stuck_points"], dtype=pl.Int64)
    if config.ranges:
        low, high = range_bounds(ids, sensors, config.ranges)
        on = own["out_of_range"]
        lo = per_series(pl.Series([low.get(i) if on[n] else None for n, i in enumerate(ids)]))
        hi = per_series(pl.Series([high.get(i) if on[n] else None for n, i in enumerate(ids)]))
        lo, hi = lo.cast(pl.Float64), hi.cast(pl.Float64)
        found["out_of_range"] = (v < lo).fill_null(False) | (v > hi).fill_null(False)
    if (threshold > 0).any():
        grid = grid.with_columns(_med=_rolling_median(grid, config.spike_window))
        grid = grid.with_columns(_dev=(v - pl.col("_med")).abs())
        # Hampel with one scale per series (per time chunk of a series when the grid has
        # `_chunk`: a chunk is then cleaned without the rest of its history): the MAD of the
        # residuals from the rolling median, floored at half the block's own MAD and at its
        # typical step between readings, so that flat or quantised signals are not spikes
        block, blocks = sid, names.height
        if "_chunk" in grid.columns:
            block = "_block"
            grid = grid.with_columns(_block=_blocks(grid[sid], grid["_chunk"]))
            blocks = int(grid[block].max()) + 1 if grid.height else 0
        per = _series_scales(grid, v, blocks, sid=block)
        table = pl.DataFrame({block: np.arange(blocks, dtype=np.uint32)}).join(
            per, on=block, how="left"
        )

        def per_block(values: pl.Series) -> pl.Expr:
            return pl.lit(values).gather(pl.col(block))

        resid = per_block(table["resid"])
        whole = per_block(table["whole"])
        jump = per_block(table["jump"]).fill_null(0.0)
        scale = pl.max_horizontal(
            MAD_TO_SIGMA * resid, 0.5 * MAD_TO_SIGMA * whole, jump, pl.lit(1e-9)
        )
        limit = per_series(threshold)
        found["spike"] = ((pl.col("_dev") > limit * scale) & (limit > 0)).fill_null(False)
    # the rest in one lazy plan: polars runs the passes over the grid without materialising
    # every intermediate frame
    lazy = grid.lazy()
    if (stuck_points > 0).any():
        lazy = lazy.with_columns(_runlen=pl.Series(_stuck_runs(grid)))
        points = per_series(stuck_points)
        found["stuck"] = pl.col("observed") & (points > 0) & (pl.col("_runlen") >= points)
    bits = {"out_of_range": Flag.OUT_OF_RANGE, "spike": Flag.SPIKE, "stuck": Flag.STUCK}
    lazy = lazy.with_columns(**{f"_{name}": expr for name, expr in found.items()})
    flag = pl.lit(0, pl.UInt16)
    mask = pl.lit(False)
    for name in found:
        hit = pl.col(f"_{name}")
        flag = flag | pl.when(hit).then(pl.lit(int(bits[name]), pl.UInt16)).otherwise(0)
        masked = own["mask"][name]
        if all(masked):
            mask = mask | hit
        elif any(masked):
            mask = mask | (hit & per_series(pl.Series(masked, dtype=pl.Boolean)))
    lazy = lazy.with_columns(flags=(pl.col("flags") | flag).cast(pl.UInt16), _mask=mask)
    lazy = lazy.with_columns(
        observed=pl.col("observed") & ~pl.col("_mask"),
        value=pl.when(pl.col("_mask")).then(None).otherwise(pl.col("value")),
    )
    temp = ["_block", "_med", "_dev", "_runlen", "_mask", *[f"_{name}" for name in found]]
    return lazy.drop(temp, strict=False).collect()
