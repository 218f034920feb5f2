"""Cleaning a stretch of the grid: grid, faults and gap filling, for whole series or for some of
their time chunks.

Every check looks at no more than `margin_points` grid points on either side of a point (the
rolling median, stuck runs, the length of a gap to fill) and, for the spike scale and the file a
point came from, at its own time chunk only. So the chunks that new readings touch can be cleaned
again with their margins, without the rest of the history, and give exactly the rows that
cleaning everything gives (tests/test_ingest_chunks.py): what lets a nightly run follow the new
data and lets memory follow a chunk, not a series' history.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tsfm_cli.ingest.config import IngestConfig, series_settings
from tsfm_cli.ingest.faults import detect_faults
from tsfm_cli.ingest.fill import fill_gaps
from tsfm_cli.ingest.grid import build_grid


def margin_points(config: IngestConfig, names: pl.DataFrame) -> int:
    """Grid points on either side of a stretch that its cleaning looks at: the rolling median's
    window and the values that fill its gaps (2 × half the window), the longest stuck run that
    is flagged, one past the longest filled gap."""
    sensors = names["sensor"].cast(pl.String).to_list()
    own = series_settings(config, names["series_id"].to_list(), sensors)
    stuck = max(own["stuck_points"], default=0)
    return max(2 * (config.spike_window // 2), stuck, config.max_gap + 1)


def clean(
    readings: pl.DataFrame,
    names: pl.DataFrame,
    config: IngestConfig,
    *,
    chunk_every: str | None = None,
    span: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """readings → (clean grid, duplicate rejects), for whole series (`span` None) or for one
    stretch of each series: `span` (`_sid, step_us, first_us, last_us, lo_us, hi_us`) names the
    series' whole grid (its first and last point, its step) and the stretch [lo, hi) wanted;
    the stretch is cleaned with `margin_points` on either side and returned alone, with the
    rejects of its own points. `readings` must hold every reading of the stretch and margins."""
    built = None if span is None else _with_margins(span, names, config)
    grid, rejects = build_grid(readings, names, config, chunk_every=chunk_every, span=built)
    grid = fill_gaps(detect_faults(grid, names, config), config)
    if span is None:
        return grid, rejects
    return _inside(grid, span), _inside(rejects, span)


def margin_us(points: int) -> pl.Expr:
    """`points` grid points of each series in µs (`step_us`, `first_us`, `last_us`), at most its
    whole grid: a margin longer than the series (say `stuck_points` 10⁹, "never") does not
    overflow."""
    length = (pl.col("last_us") - pl.col("first_us")) // pl.col("step_us") + 1
    return pl.min_horizontal(pl.lit(points, pl.Int64), length) * pl.col("step_us")


def _with_margins(span: pl.DataFrame, names: pl.DataFrame, config: IngestConfig) -> pl.DataFrame:
    """The grid to build for `span`: the stretch's points and `margin_points` more on either
    side, inside the series' own first and last point (`_sid, step_us, origin_us, n`)."""
    step, first = pl.col("step_us"), pl.col("first_us")
    margin = margin_us(margin_points(config, names))
    # the series' own lattice (first + i × step): lo rounded up onto it, hi - 1 rounded down
    up = first + ((pl.col("lo_us") - first).clip(0) + step - 1) // step * step
    down = first + (pl.col("hi_us") - 1 - first) // step * step
    origin = pl.max_horizontal(first, up - margin)
    end = pl.min_horizontal(pl.col("last_us"), down + margin)
    return span.select(
        pl.col("_sid").cast(pl.UInt32),
        "step_us",
        origin_us=origin,
        n=((end - origin) // step + 1).clip(0).cast(pl.Int64),
    )


def _inside(frame: pl.DataFrame, span: pl.DataFrame) -> pl.DataFrame:
    """The rows of `frame` (with `_sid`, `timestamp`) inside their series' stretch [lo, hi)."""
    if frame.height == 0:
        return frame
    ids = pl.DataFrame({"_sid": np.arange(int(frame["_sid"].max()) + 1, dtype=np.uint32)})
    table = ids.join(span.with_columns(pl.col("_sid").cast(pl.UInt32)), on="_sid", how="left")
    lo = pl.lit(table["lo_us"]).gather(pl.col("_sid"))
    hi = pl.lit(table["hi_us"]).gather(pl.col("_sid"))
    at = pl.col("timestamp").dt.epoch("us")
    return frame.filter((at >= lo) & (at < hi))
