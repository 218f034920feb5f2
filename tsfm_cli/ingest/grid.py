"""Readings of all files → one row per grid point of each series.

- `series_id` = group keys + sensor ("line1/machine2/temperature"); inside the stage a series is
  the integer `_sid` (its rank in lexical order), so sorting and windows never hash strings;
- the grid step is `freq` from the recipe or the median spacing of the series' first
  `STEP_READINGS` readings (whole seconds): later data never moves it, so a nightly run can clean
  the new time chunks alone (see clean.py);
- grid points lie on the step's lattice from the epoch (the first reading rounded to a step);
- readings snap to the nearest grid point (sampling jitter); rows out of order need no sorting,
  as each reading is scattered to its computed grid position;
- several readings for one grid point: identical ones are one reading (the rest → rejects,
  "duplicate timestamp"); different ones follow `duplicates` (first / last in file order, or
  mean), the point is flagged DUPLICATE_CONFLICT and the others go to rejects;
- grid points without a reading get `flags` MISSING and a null value. The grid is built by
  scattering readings into preallocated columns (no join, no sort of the readings).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tsfm_cli.errors import BadInputError
from tsfm_cli.ingest.config import IngestConfig, format_duration, parse_duration
from tsfm_cli.schema import Flag

NOT_A_READING = int(Flag.SENTINEL | Flag.UNPARSEABLE | Flag.MISSING)
MAX_GRID_FACTOR = 50  # grid points allowed per reading before the spacing is called nonsense
MAX_GRID_SLACK = 100_000
STEP_READINGS = 10_000  # the median spacing of a series' first readings is its grid step


def series_table(readings: pl.LazyFrame, key_cols: list[str]) -> pl.DataFrame:
    """One row per series: its keys, sensor, `series_id` and `_sid` (lexical rank)."""
    combos = readings.select(*key_cols, "sensor").unique().collect()
    parts = [pl.col(k).cast(pl.String) for k in key_cols] + [pl.col("sensor").cast(pl.String)]
    table = combos.with_columns(
        series_id=pl.concat_str(parts, separator="/", ignore_nulls=True)
    ).sort("series_id")
    return table.with_row_index("_sid").with_columns(pl.col("_sid").cast(pl.UInt32))


def _steps(df: pl.DataFrame, n_series: int, config: IngestConfig) -> pl.DataFrame:
    """Per `_sid` (0..n-1, every one present): step_us, origin_us (grid start), last (the
    latest reading's time), readings, and the lowest and highest file of its readings."""
    per_series = dict(
        first=pl.col("_t").min(),
        last=pl.col("_t").max(),
        readings=pl.len(),
        file_lo=pl.col("_file").min(),
        file_hi=pl.col("_file").max(),
    )
    step = grid_step(pl.col("_t"), config)
    steps = _run_steps(df, n_series, config) if config.freq else None
    if steps is None and config.freq:
        steps = df.group_by("_sid").agg(step_us=step, **per_series)
    elif steps is None:  # the median spacing needs each series in time order: sort three columns
        steps = (
            df.select("_sid", "_t", "_file")
            .sort(["_sid", "_t"])
            .group_by("_sid")
            .agg(step_us=step, **per_series)
        )
    steps = pl.DataFrame({"_sid": np.arange(n_series, dtype=np.uint32)}).join(
        steps, on="_sid", how="left"
    )
    # the grid starts at the first reading rounded to a whole step (jittered clocks)
    return steps.with_columns(origin_us=on_lattice("first")).drop("first")


def _run_steps(df: pl.DataFrame, n_series: int, config: IngestConfig) -> pl.DataFrame | None:
    """`_steps`' aggregation with `freq` set, run by run of one series in the readings (a wide
    file's column, a long file sorted by tag): a few passes over slices in numpy instead of a
    hashed group_by. None for readings too interleaved (or with null times or files)."""
    sid = df["_sid"].to_numpy()
    starts, ends = run_bounds(sid)
    if not len(sid) or len(starts) > MAX_BLOCKS or df["_t"].has_nulls() or df["_file"].has_nulls():
        return None
    t, files = df["_t"].to_numpy(), df["_file"].to_numpy()
    first = np.full(n_series, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n_series, np.iinfo(np.int64).min, dtype=np.int64)
    readings = np.zeros(n_series, dtype=np.int64)
    file_lo = np.full(n_series, np.iinfo(np.int32).max, dtype=np.int32)
    file_hi = np.full(n_series, np.iinfo(np.int32).min, dtype=np.int32)
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        series = sid[a]
        first[series] = min(first[series], t[a:b].min())
        last[series] = max(last[series], t[a:b].max())
        readings[series] += b - a
        file_lo[series] = min(file_lo[series], files[a:b].min())
        file_hi[series] = max(file_hi[series], files[a:b].max())
    present = np.flatnonzero(readings)
    return pl.DataFrame(
        {
            "_sid": pl.Series(present, dtype=pl.UInt32),
            "step_us": pl.Series(np.full(len(present), parse_step(config)), dtype=pl.Int64),
            "first": pl.Series(first[present], dtype=pl.Int64),
            "last": pl.Series(last[present], dtype=pl.Int64),
            "readings": pl.Series(readings[present], dtype=pl.UInt32),
            "file_lo": pl.Series(file_lo[present], dtype=pl.Int32),
            "file_hi": pl.Series(file_hi[present], dtype=pl.Int32),
        }
    )


def parse_step(config: IngestConfig) -> int:
    """The grid step `freq` sets, in µs."""
    return parse_duration(config.freq, "freq") * 1_000_000


def grid_step(times: pl.Expr, config: IngestConfig) -> pl.Expr:
    """A series' grid step in µs, as an aggregation over its reading `times` (µs, in time
    order): `freq`, else the median spacing of its first STEP_READINGS readings in whole
    seconds (at least 1)."""
    if config.freq:
        return pl.lit(parse_step(config), pl.Int64)
    diffs = times.head(STEP_READINGS).diff()
    med = diffs.filter(diffs > 0).median()
    return (med / 1_000_000).round().clip(lower_bound=1).fill_null(1).cast(pl.Int64) * 1_000_000


def on_lattice(column: str) -> pl.Expr:
    """Times (µs) of `column` rounded to the nearest multiple of `step_us` (half to even, as
    `_lattice_index` rounds): where a reading lands on its series' grid."""
    return (pl.col(column) / pl.col("step_us")).round().cast(pl.Int64) * pl.col("step_us")


def _lattice_index(t: np.ndarray, origin: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Nearest grid index (int64) of times `t` (µs) on grids `origin + i × step`, where origin is
    a whole multiple of step. Rounded on the epoch's lattice (half to even, polars' default
    `round`), so a reading half a step off lands on the same point whatever the grid's start:
    a stretch of a series cleaned alone puts every reading where the whole series does."""
    k = t / step  # float64, exact for whole µs below 2**53
    np.rint(k, out=k)
    k -= origin // step
    return k.astype(np.int64)


def _grid_index(t: np.ndarray, origin: np.ndarray, step: np.ndarray) -> np.ndarray:
    """`_lattice_index`, at least 0. Rounding is monotonic, so the index of a series' latest
    reading is its largest index."""
    k = _lattice_index(t, origin, step)
    return np.maximum(k, 0, out=k)


MAX_BLOCKS = 10_000  # runs of one series in the readings handled one by one
NUMPY_TYPES = {pl.Float32: np.float32, pl.UInt16: np.uint16, pl.Int32: np.int32}


def run_bounds(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs of equal consecutive ids, e.g. the series of a sorted grid."""
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, int)
    return starts, np.r_[starts[1:], len(ids)].astype(int)


def _positions(
    t: np.ndarray, sid: np.ndarray, origin: np.ndarray, step: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """Grid position of every reading: its series' offset + its nearest grid index.

    Readings come in long runs of one series (a wide file's column, a long file sorted by tag):
    run by run the series' origin and step are scalars, where one pass over all readings would
    gather three full-length arrays first."""
    starts, ends = run_bounds(sid)
    if len(starts) > MAX_BLOCKS:  # interleaved series: one vectorised pass
        pos = _grid_index(t, origin[sid], step[sid])
        pos += offsets[sid]
        return pos
    pos = np.empty(len(t), dtype=np.int64)
    for a, b in zip(starts, ends, strict=True):
        series = sid[a]
        pos[a:b] = _grid_index(t[a:b], origin[series], step[series])
        pos[a:b] += offsets[series]
    return pos


def _grid_times(
    origin: np.ndarray, step: np.ndarray, n: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """The time (µs) of every grid point: origin + i × step, i < n, series after series at
    `offsets`. Series by series (one pass each) when they are few, else in one vectorised
    pass over all points (four)."""
    total = int(n.sum())
    if len(n) > MAX_BLOCKS:  # numpy in place, one temporary at a time
        stamps = np.arange(total, dtype=np.int64)
        stamps -= np.repeat(offsets, n)
        stamps *= np.repeat(step, n)
        stamps += np.repeat(origin, n)
        return stamps
    stamps = np.empty(total, dtype=np.int64)
    for at, first, every, count in zip(offsets, origin, step, n, strict=True):
        first, every = int(first), int(every)
        stamps[at : at + count] = np.arange(first, first + int(count) * every, every)
    return stamps


def build_grid(
    readings: pl.DataFrame,
    names: pl.DataFrame,
    config: IngestConfig,
    *,
    chunk_every: str | None = None,
    span: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """readings (_sid, _file, raw_line, timestamp, value, flags) → (grid, duplicate rejects).

    The grid has _sid, timestamp, value, flags, observed, freq_s, raw_line, _file; one row per
    grid point, sorted by _sid then time. Readings are not sorted: each one's grid position is
    computed and the readings are scattered there; only positions hit more than once (rows out
    of order are not a problem, duplicates are) are resolved separately.

    `chunk_every` ("1d", "1w", "1mo"): the grid gets `_chunk`, the UTC start of each point's time
    chunk, and a point's file is looked for in its own chunk only (null in a chunk without any
    reading), so that a chunk can be cleaned without the rest of its series.
    `span` (`_sid, step_us, origin_us, n`): build the grid points origin + i × step, i < n, instead
    of those from each series' first to its last reading; readings outside are left out.
    """
    n_series = names.height
    df = readings.with_columns(_t=pl.col("timestamp").dt.epoch("us")).drop("timestamp")
    if span is None:
        steps = _steps(df, n_series, config)
        step_of = steps["step_us"].fill_null(1_000_000).to_numpy()
        origin_of = steps["origin_us"].fill_null(0).to_numpy()
        readings_per = steps["readings"].fill_null(0).to_numpy()
        last = steps["last"].fill_null(0).to_numpy()
        n = np.where(readings_per > 0, _grid_index(last, origin_of, step_of) + 1, 0)
        bad = np.nonzero(n > readings_per * MAX_GRID_FACTOR + MAX_GRID_SLACK)[0]
        if len(bad):
            i = int(bad[0])
            raise BadInputError(
                f"series {names['series_id'][i]}: its timestamps span {n[i]:,} grid points of "
                f"{format_duration(int(step_of[i]) // 1_000_000)} for {readings_per[i]:,} "
                "readings; check the timestamps or set `freq`"
            )
        single = steps["file_lo"].fill_null(-1).to_numpy()
        if not (single == steps["file_hi"].fill_null(-1).to_numpy()).all():
            single = None
    else:
        table = pl.DataFrame({"_sid": np.arange(n_series, dtype=np.uint32)}).join(
            span, on="_sid", how="left"
        )
        step_of = table["step_us"].fill_null(1_000_000).to_numpy().astype(np.int64)
        origin_of = table["origin_us"].fill_null(0).to_numpy().astype(np.int64)
        n = table["n"].fill_null(0).to_numpy().astype(np.int64)
        sid = df["_sid"].to_numpy()
        k = _lattice_index(df["_t"].to_numpy(), origin_of[sid], step_of[sid])
        df = df.filter(pl.Series((k >= 0) & (k < n[sid])))
        single = None
    offsets = np.concatenate([[0], np.cumsum(n)[:-1]])
    total = int(n.sum())
    pos = _positions(df["_t"].to_numpy(), df["_sid"].to_numpy(), origin_of, step_of, offsets)
    df = df.drop("_t").with_columns(_pos=pl.Series(pos))
    kept, dup_rejects = _duplicates(df, pos, names, config, total)
    stamps = _grid_times(origin_of, step_of, n, offsets)
    # each rejected reading's grid point, so that a stretch of the grid keeps its own rejects
    dup_rejects = dup_rejects.with_columns(
        timestamp=pl.Series(stamps, dtype=pl.Int64)
        .gather(dup_rejects["_pos"])
        .cast(pl.Datetime("us", "UTC"))
    ).drop("_pos")
    chunks, starts = None, offsets[n > 0]  # the blocks a point's file is looked for in
    if chunk_every:
        chunks = pl.Series("_chunk", stamps).cast(pl.Datetime("us", "UTC"))
        chunks = chunks.dt.truncate(chunk_every)
        epoch = chunks.dt.epoch("us").to_numpy()
        starts = np.union1d(np.flatnonzero(np.r_[True, epoch[1:] != epoch[:-1]]), starts)

    writes = [pos] if kept is None else [pos, kept["_pos"].to_numpy()]

    def scatter(name: str, dtype, fill=None) -> pl.Series:
        # numpy's fancy assignment (about twice as fast as polars' scatter), nulls as a mask.
        # A point hit more than once holds an arbitrary one of its readings: the kept one wins
        out = np.full(total, fill or 0, dtype=NUMPY_TYPES[dtype])
        valid = None if fill is not None else np.zeros(total, dtype=bool)
        for at, values in zip(writes, (df, kept), strict=False):
            values = values[name].cast(dtype)
            nulls = values.has_nulls()  # without, no copies: the values are the numpy array
            out[at] = values.fill_null(0).to_numpy() if nulls else values.to_numpy()
            if valid is None and nulls:
                valid = np.ones(total, dtype=bool)
            if valid is not None:
                valid[at] = values.is_not_null().to_numpy() if nulls else True
        series = pl.Series(name, out, dtype=dtype)
        return series if valid is None else series.set(pl.Series(~valid), None)

    files = _point_files(df, kept, pos, n, starts, single)
    del pos
    grid = pl.DataFrame(
        {
            "_sid": np.repeat(np.arange(n_series, dtype=np.uint32), n),
            "timestamp": stamps,
            "freq_s": np.repeat(step_of // 1_000_000, n),
        }
    ).with_columns(
        pl.col("timestamp").cast(pl.Datetime("us", "UTC")),
        scatter("value", pl.Float32),
        scatter("flags", pl.UInt16, int(Flag.MISSING)),
        scatter("raw_line", pl.Int32),
        # a point of a chunk without any reading has no file
        _file=pl.Series(files, dtype=pl.Int32).set(pl.Series(files < 0), None),
    )
    if chunks is not None:
        grid = grid.with_columns(chunks)
    del stamps, files
    grid = grid.with_columns(
        observed=pl.col("value").is_not_null() & ((pl.col("flags") & NOT_A_READING) == 0),
    )
    return grid, dup_rejects


def _point_files(
    df: pl.DataFrame,
    kept: pl.DataFrame | None,
    pos: np.ndarray,
    n: np.ndarray,
    starts: np.ndarray,
    single: np.ndarray | None,
) -> np.ndarray:
    """The file of each grid point: that of the reading at or before it in its block (a series,
    or a series' time chunk, starting at `starts`), else the block's first reading; -1 in a block
    without readings. `single`: each series' only file, when every series has one."""
    total = int(n.sum())
    if single is not None:  # each series read from one file: no fill
        files = np.repeat(single.astype(np.int32), n)
        if len(starts) > int((n > 0).sum()):  # time chunks too: those without a reading get -1
            hit = np.zeros(total, dtype=bool)
            hit[pos] = True
            empty = ~np.logical_or.reduceat(hit, starts) if total else np.zeros(0, dtype=bool)
            files[np.repeat(empty, np.diff(np.r_[starts, total]))] = -1
        return files
    files = np.full(total, -1, dtype=np.int32)
    files[pos] = df["_file"].to_numpy()
    if kept is not None:
        files[kept["_pos"].to_numpy()] = kept["_file"].to_numpy()
    if not total:
        return files
    first = np.where(files >= 0, np.arange(total), total)
    first = np.minimum.reduceat(first, starts)
    has = first < total
    files[starts[has]] = files[first[has]]
    carry = np.where(files >= 0, np.arange(total), 0)
    carry[starts] = starts  # a block never takes a file from the block before it
    np.maximum.accumulate(carry, out=carry)
    return files[carry]


def _duplicates(
    df: pl.DataFrame, pos: np.ndarray, names: pl.DataFrame, config: IngestConfig, total: int
):
    """Readings that share a grid point (`_pos`, also given as `pos`), touching only those rows:
    (the reading kept for each such point or None, rejects for the others)."""
    hits = np.bincount(pos, minlength=total) if total else np.zeros(0)
    if not len(hits) or hits.max() <= 1:
        return None, _empty_rejects()
    dup = pl.Series((hits > 1)[pos])
    late = config.duplicates == "last"
    sub = df.filter(dup).sort(
        ["_pos", pl.col("value").is_null(), "_file", "raw_line"],
        descending=[False, False, late, late],
    )
    group = ["_pos"]
    sub = sub.with_columns(
        _rank=pl.int_range(pl.len()).over(group),
        _conflict=(pl.col("value").drop_nulls().n_unique().over(group) > 1),
        _mean=pl.col("value").mean().over(group),
    )
    kept = sub.filter(pl.col("_rank") == 0).with_columns(
        value=pl.when(pl.col("_conflict") & pl.lit(config.duplicates == "mean"))
        .then(pl.col("_mean"))
        .otherwise(pl.col("value"))
        .cast(pl.Float32),
        flags=pl.when(pl.col("_conflict"))
        .then(pl.col("flags") | int(Flag.DUPLICATE_CONFLICT))
        .otherwise(pl.col("flags"))
        .cast(pl.UInt16),
    )
    kept = kept.select(df.columns)
    dropped = sub.filter(pl.col("_rank") > 0).join(
        names.select("_sid", "sensor"), on="_sid", how="left", maintain_order="left"
    )
    rejects = dropped.select(
        pl.col("_sid"),
        pl.col("_pos"),
        pl.col("_file"),
        pl.col("raw_line").cast(pl.Int64).alias("line"),
        pl.col("sensor").cast(pl.String).alias("column"),
        pl.col("value").cast(pl.String).alias("raw"),
        pl.when(pl.col("_conflict"))
        .then(pl.lit(f"duplicate_conflict (kept {config.duplicates})"))
        .otherwise(pl.lit("duplicate timestamp"))
        .alias("reason"),
    )
    return kept, rejects


def _empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "_sid": pl.UInt32,
            "_pos": pl.Int64,
            "_file": pl.Int32,
            "line": pl.Int64,
            "column": pl.String,
            "raw": pl.String,
            "reason": pl.String,
        }
    )
