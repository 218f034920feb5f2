"""Which stretches of which series are cleaned together, so that memory follows a budget of
readings, not the longest series: short series are cleaned whole, several at once; a series with
more readings than the budget is cleaned a run of its time chunks at a time (clean.py: a stretch
cleaned alone gives the rows of the whole).

A rerun cleans only the chunks new data reaches (increment.py): `plan_chunks` packs those.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import polars as pl

from tsfm_cli.ingest.increment import chunk_end

OPEN = 2**62  # µs: a stretch bound beyond any timestamp


@dataclass(frozen=True)
class Stretch:
    """Series `sids` (ascending), whole (`bounds` None) or each in its own time range
    [t_lo, t_hi) (µs since 1970, UTC), `bounds[i]` for `sids[i]`."""

    sids: tuple[int, ...]
    bounds: tuple[tuple[int, int], ...] | None = None

    @property
    def whole(self) -> bool:
        return self.bounds is None


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
                stretches.append(Stretch(tuple(range(lo, sid))))
                lo, held = sid, 0
            held += count
            continue
        if sid > lo:
            stretches.append(Stretch(tuple(range(lo, sid))))
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
        stretches += [Stretch((sid,), ((a, b),)) for a, b in pairwise(bounds)]
    if lo < len(readings):
        stretches.append(Stretch(tuple(range(lo, len(readings)))))
    return stretches


def plan_chunks(
    dirty: pl.DataFrame, chunks: pl.DataFrame, every: str, budget: int
) -> list[Stretch]:
    """Stretches that clean exactly the chunks `dirty` (`_sid`, `_chunk` µs) names: each run of
    adjacent chunks of a series is one range, cut where it holds more than `budget` readings
    (`chunks`: readings per `_sid` and `_chunk`); ranges of several series share a stretch up to
    the budget, one range per series."""
    if dirty.height == 0:
        return []
    counted = (
        dirty.join(chunks, on=["_sid", "_chunk"], how="left")
        .with_columns(pl.col("readings").fill_null(0), _end=chunk_end("_chunk", every))
        .sort("_sid", "_chunk")
    )
    ranges: list[tuple[int, int, int, int]] = []  # (sid, lo, hi, readings)
    for sid, lo, hi, n in counted.select("_sid", "_chunk", "_end", "readings").iter_rows():
        if ranges and ranges[-1][0] == sid and ranges[-1][2] == lo and ranges[-1][3] + n <= budget:
            last = ranges[-1]
            ranges[-1] = (sid, last[1], hi, last[3] + n)
        else:
            ranges.append((sid, lo, hi, n))
    stretches: list[Stretch] = []
    sids: list[int] = []
    bounds: list[tuple[int, int]] = []
    held = 0
    for sid, lo, hi, n in ranges:
        if sids and (sids[-1] == sid or held + n > budget):
            stretches.append(Stretch(tuple(sids), tuple(bounds)))
            sids, bounds, held = [], [], 0
        sids.append(sid)
        bounds.append((lo, hi))
        held += n
    stretches.append(Stretch(tuple(sids), tuple(bounds)))
    return stretches
