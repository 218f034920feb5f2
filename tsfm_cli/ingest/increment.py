"""What a rerun of ingest cleans again, and what it keeps from the last run.

Cleaning is local (clean.py): a grid point depends only on the readings within `margin_points`
of it and on its own time chunk (the spike scale, the file it is attributed to). So a rerun
needs, per series, only the chunks that changed readings reach:

- *changed* grid time: where readings of files added, removed or changed since the last run
  land (each file's readings per series and day are in its index, `parts/<key>.index.parquet`),
  where the series' grid starts or ends differently, and the whole series when it is new or its
  step moved;
- the *core*: the chunks within one margin of changed time (their points see other readings,
  their spike scale may move);
- the *ring*: the chunks within one margin of a core chunk (their gaps are filled from the
  core's points, whose flags may have moved with the core's spike scale).

The ring is cleaned only where it must be: once the core is cleaned, a ring chunk whose
neighbouring core points (within its margin) came out as they were is kept.

Every other chunk is kept as it is: its partition file (a hard link, sha256 verified), its
report counts (`parts/chunks.parquet`), its duplicate rejects (`parts/duplicates.parquet`) and
the runs of its quality.png states (`parts/plot.parquet`, for the series the plot shows);
`parts/series.parquet` keeps each series' grid (step, first and last point) and the time of its
STEP_READINGS-th reading, before which a new reading could move the step.
"""

from __future__ import annotations

import polars as pl

from tsfm_cli.ingest.grid import STEP_READINGS, grid_step, on_lattice

INDEX_EVERY = "1d"  # a file's index counts its readings per series and day
UTC = pl.Datetime("us", "UTC")
CHUNKS = "parts/chunks.parquet"
DUPLICATES = "parts/duplicates.parquet"
SERIES = "parts/series.parquet"
PLOT = "parts/plot.parquet"
STATE_FILES = (CHUNKS, DUPLICATES, SERIES, PLOT)


def index_name(part_key: str) -> str:
    return f"parts/{part_key}.index.parquet"


def file_index(tagged: pl.LazyFrame, local: pl.DataFrame) -> pl.DataFrame:
    """A file's readings (`_lid`: the file's own series number, `timestamp`) per series and day:
    its series' columns (`local`: `_lid` and the key columns, strings), `_day`, `readings`,
    `first`, `last` (µs). What a later run needs to know about the file without reading it."""
    t = pl.col("timestamp").dt.epoch("us")
    per_day = (
        tagged.group_by("_lid", _day=pl.col("timestamp").dt.truncate(INDEX_EVERY).dt.epoch("us"))
        .agg(readings=pl.len().cast(pl.Int64), first=t.min(), last=t.max())
        .collect()
    )
    return (
        per_day.join(local, on="_lid", how="left")
        .drop("_lid")
        .sort([*local.drop("_lid").columns, "_day"], nulls_last=True)
    )


def lowest_times(tagged: pl.LazyFrame) -> pl.DataFrame:
    """Per `_lid`: its earliest STEP_READINGS reading times (µs, sorted), the step's evidence."""
    t = pl.col("timestamp").dt.epoch("us")
    return tagged.group_by("_lid").agg(_low=t.bottom_k(STEP_READINGS).sort()).collect()


def steps_from_lowest(lows: pl.DataFrame, config) -> pl.DataFrame:
    """Per `_sid` (lows: `_sid`, `_low` lists from any number of files): step_us and
    step_until, the time of its STEP_READINGS-th reading (null with fewer readings): a reading
    after it cannot move the step."""
    earliest = pl.col("_low").list.explode().sort()
    return lows.group_by("_sid").agg(
        step_us=grid_step(earliest, config),
        step_until=pl.when(earliest.len() >= STEP_READINGS).then(
            earliest.head(STEP_READINGS).last()
        ),
    )


def spans_from_index(index: pl.DataFrame, steps: pl.DataFrame, n_series: int) -> pl.DataFrame:
    """Per `_sid` 0..n-1 (index rows with `_sid`; steps: `_sid`, `step_us`): step_us, first_us
    and last_us (its grid's first and last point), readings, points."""
    import numpy as np

    per = index.group_by("_sid").agg(
        first=pl.col("first").min(), last=pl.col("last").max(), readings=pl.col("readings").sum()
    )
    return (
        pl.DataFrame({"_sid": np.arange(n_series, dtype=np.uint32)})
        .join(steps.select("_sid", "step_us"), on="_sid", how="left")
        .join(per, on="_sid", how="left")
        .select(
            "_sid",
            "step_us",
            first_us=on_lattice("first"),
            last_us=on_lattice("last"),
            readings="readings",
        )
        .with_columns(points=(pl.col("last_us") - pl.col("first_us")) // pl.col("step_us") + 1)
    )


def chunk_readings(index: pl.DataFrame, every: str) -> pl.DataFrame:
    """Readings per `_sid` and `_chunk` (µs), from the index's readings per day."""
    return (
        index.group_by("_sid", _chunk=pl.col("_day").cast(UTC).dt.truncate(every).dt.epoch("us"))
        .agg(pl.col("readings").sum())
        .sort("_sid", "_chunk")
    )


def cover(intervals: pl.DataFrame, every: str) -> pl.DataFrame:
    """The chunks (`_sid`, `_chunk` µs) that intervals (`_sid`, `lo`, `hi` µs, inclusive)
    overlap."""
    if intervals.height == 0:
        return pl.DataFrame(schema={"_sid": pl.UInt32, "_chunk": pl.Int64})
    lo = pl.col("lo").cast(UTC).dt.truncate(every)
    return (
        intervals.filter(pl.col("lo") <= pl.col("hi"))
        .select(
            "_sid",
            _chunk=pl.datetime_ranges(lo, pl.col("hi").cast(UTC), every, closed="both"),
        )
        .explode("_chunk")
        .select(pl.col("_sid").cast(pl.UInt32), pl.col("_chunk").dt.epoch("us"))
        .unique()
    )


def dirty_chunks(
    changed: pl.DataFrame, grids: pl.DataFrame, margin: int, every: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(core, ring): the chunks (`_sid`, `_chunk` µs, sorted) around the changed grid time
    (`_sid`, `lo`, `hi` µs, inclusive) that may change. `grids` (`_sid`, `step_us`, `lo_us`,
    `hi_us`): each series' step and the time its old and new grid span together, which bounds
    the chunks (a margin of 10⁹ points reaches no further than the series)."""
    reach = (pl.lit(margin, pl.Int64) + 1) * pl.col("step_us")

    def widen(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.join(grids, on="_sid", how="inner").select(
            "_sid",
            lo=pl.max_horizontal(pl.col("lo") - reach, pl.col("lo_us")),
            hi=pl.min_horizontal(pl.col("hi") + reach, pl.col("hi_us")),
        )

    core = cover(widen(changed), every)
    ends = core.select(
        "_sid",
        lo="_chunk",
        hi=chunk_end("_chunk", every) - 1,
    )
    ring = cover(widen(ends), every).join(core, on=["_sid", "_chunk"], how="anti")
    return core.sort("_sid", "_chunk"), ring.sort("_sid", "_chunk")


def facing_zones(ring: pl.DataFrame, core: pl.DataFrame, reach: pl.DataFrame, every: str):
    """What a ring chunk's cleaning reads from the core (`reach`: `_sid`, `reach_us`, its margin
    and a step): the points of an adjacent core chunk within reach of it, as (`_sid`, `_ring`,
    `_core`, `lo`, `hi` µs, inclusive). Its own readings are unchanged, so where these points
    are as they were, so is the ring chunk."""
    before = ring.select(
        "_sid",
        _ring="_chunk",
        _core=(pl.col("_chunk") - 1).cast(UTC).dt.truncate(every).dt.epoch("us"),
    )
    after = ring.select("_sid", _ring="_chunk", _core=chunk_end("_chunk", every))
    near = pl.col("reach_us")
    return pl.concat(
        [
            before.join(reach, on="_sid").select(
                "_sid", "_ring", "_core", lo=pl.col("_ring") - near, hi=pl.col("_ring") - 1
            ),
            after.join(reach, on="_sid").select(
                "_sid", "_ring", "_core", lo="_core", hi=pl.col("_core") + near - 1
            ),
        ]
    ).join(core.rename({"_chunk": "_core"}), on=["_sid", "_core"], how="semi")


def chunk_end(column: str, every: str) -> pl.Expr:
    """The start of the chunk after each chunk start in `column` (µs)."""
    return pl.col(column).cast(UTC).dt.offset_by(every).dt.epoch("us")
