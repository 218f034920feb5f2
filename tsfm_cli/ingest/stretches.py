"""Which stretches of which series are cleaned together, so that memory follows a budget of
readings, not the longest series: short series are cleaned whole, several at once; a series with
more readings than the budget is cleaned a run of its time chunks at a time (clean.py: a stretch
cleaned alone gives the rows of the whole).

The plan needs, per series, its grid (step, first and last point) and its readings per time
chunk; `series_spans` gets both in one pass over each file's readings, never holding more than
one file's.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import polars as pl

from tsfm_cli.ingest.config import IngestConfig
from tsfm_cli.ingest.grid import STEP_READINGS, grid_step, on_lattice

OPEN = 2**62  # µs: a stretch bound beyond any timestamp


@dataclass(frozen=True)
class Stretch:
    """Series `lo` … `hi - 1`, whole (`t_lo`, `t_hi` None), or one series' time chunks in
    [t_lo, t_hi) (µs since 1970, UTC)."""

    lo: int
    hi: int
    t_lo: int | None = None
    t_hi: int | None = None

    @property
    def whole(self) -> bool:
        return self.t_lo is None


def series_spans(
    frames: list[pl.LazyFrame], n_series: int, config: IngestConfig, chunk_every: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per `_sid` 0..n-1: step_us, first_us, last_us (its grid's first and last point),
    readings, points (of its grid); per `_sid` and `_chunk` (µs): readings) from the readings
    of every file (`_sid`, `timestamp`). The step is the grid's (grid.py `grid_step`), from
    each file's first STEP_READINGS readings of the series."""
    t = pl.col("timestamp").dt.epoch("us").alias("_t")
    wanted = {"first": pl.col("_t").min(), "last": pl.col("_t").max(), "readings": pl.len()}
    if not config.freq:
        wanted["_low"] = pl.col("_t").bottom_k(STEP_READINGS).sort()
    per_file, per_chunk = [], []
    for frame in frames:
        timed = frame.select("_sid", t)
        spans = timed.group_by("_sid").agg(**wanted)
        chunks = timed.group_by(
            "_sid", _chunk=pl.col("_t").cast(pl.Datetime("us", "UTC")).dt.truncate(chunk_every)
        ).agg(readings=pl.len())
        spans, chunks = pl.collect_all([spans, chunks])
        per_file.append(spans)
        per_chunk.append(chunks)
    combined = {
        "first": pl.col("first").min(),
        "last": pl.col("last").max(),
        "readings": pl.col("readings").sum(),
    }
    # the series' first readings over all files: the bottom of each file's bottoms
    earliest = pl.col("_low").list.explode().sort() if not config.freq else None
    step = grid_step(earliest, config)
    spans = pl.concat(per_file).group_by("_sid").agg(step_us=step, **combined)
    spans = pl.DataFrame({"_sid": np.arange(n_series, dtype=np.uint32)}).join(
        spans, on="_sid", how="left"
    )
    # the grid's first and last point: readings rounded onto the step's lattice (grid.py)
    spans = spans.select(
        "_sid",
        "step_us",
        first_us=on_lattice("first"),
        last_us=on_lattice("last"),
        readings=pl.col("readings"),
    ).with_columns(points=(pl.col("last_us") - pl.col("first_us")) // pl.col("step_us") + 1)
    chunks = (
        pl.concat(per_chunk)
        .group_by("_sid", "_chunk")
        .agg(pl.col("readings").sum())
        .sort("_sid", "_chunk")
        .with_columns(pl.col("_chunk").dt.epoch("us"))
    )
    return spans, chunks


def plan(spans: pl.DataFrame, chunks: pl.DataFrame, budget: int) -> list[Stretch]:
    """Stretches in series order: runs of whole series holding at most `budget` readings
    together, and for each series above the budget, runs of its time chunks holding at most
    `budget` (a chunk above it alone)."""
    readings = spans["readings"].fill_null(0).to_numpy()
    by_series = chunks.partition_by("_sid", as_dict=True)
    stretches: list[Stretch] = []
    lo, held = 0, 0
    for sid, count in enumerate(readings.tolist()):
        if count <= budget:
            if sid > lo and held + count > budget:
                stretches.append(Stretch(lo, sid))
                lo, held = sid, 0
            held += count
            continue
        if sid > lo:
            stretches.append(Stretch(lo, sid))
        lo, held = sid + 1, 0
        own = by_series[(sid,)]
        starts = own["_chunk"].to_list()
        counts = own["readings"].to_list()
        # the first and the last stretch are open: a reading rounded onto the grid may land
        # on a point just outside its own chunk
        cuts, total = [], 0
        for i, n in enumerate(counts):
            if i > 0 and total + n > budget:
                cuts.append(starts[i])
                total = 0
            total += n
        bounds = [-OPEN, *cuts, OPEN]
        stretches += [Stretch(sid, sid + 1, a, b) for a, b in pairwise(bounds)]
    if lo < len(readings):
        stretches.append(Stretch(lo, len(readings)))
    return stretches
