"""Optional gap filling: `ffill` or `linear` over gaps of at most `max_gap` grid points.

Filled points get a value and the FILLED flag; `observed` stays False, so models still know.
"""

from __future__ import annotations

import polars as pl

from tsfm_cli.ingest.config import IngestConfig
from tsfm_cli.schema import Flag


def fill_gaps(grid: pl.DataFrame, config: IngestConfig) -> pl.DataFrame:
    if config.fill == "none" or config.max_gap <= 0:
        return grid
    sid = "series_id"
    obs = pl.col("observed")
    v = pl.when(obs).then(pl.col("value"))
    change = (obs != obs.shift(1)).fill_null(True) | (
        pl.col(sid) != pl.col(sid).shift(1)
    ).fill_null(True)
    grid = grid.with_columns(_gap=change.cum_sum())
    gap_len = pl.len().over("_gap")
    filled = v.forward_fill() if config.fill == "ffill" else v.interpolate()
    filled = filled.over(sid)
    grid = grid.with_columns(_fill=filled, _len=gap_len)
    use = ~obs & (pl.col("_len") <= config.max_gap) & pl.col("_fill").is_not_null()
    return grid.with_columns(
        value=pl.when(use).then(pl.col("_fill").cast(pl.Float32)).otherwise(pl.col("value")),
        flags=pl.when(use)
        .then(pl.col("flags") | int(Flag.FILLED))
        .otherwise(pl.col("flags"))
        .cast(pl.UInt16),
    ).drop("_gap", "_fill", "_len")
