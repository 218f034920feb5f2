"""Readings of all files → one row per grid point of each series.

- `series_id` = group keys + sensor ("line1/machine2/temperature");
- the grid step is `freq` from the recipe or the median spacing of the series (whole seconds);
- readings snap to the nearest grid point (sampling jitter), rows out of order are sorted;
- several readings for one grid point: identical ones are one reading (the rest → rejects,
  "duplicate"); different ones follow `duplicates` (first / last in file order, or mean), the
  point is flagged DUPLICATE_CONFLICT and the others go to rejects;
- grid points without a reading get `flags` MISSING and a null value.
"""

from __future__ import annotations

import polars as pl

from tsfm_cli.errors import BadInputError
from tsfm_cli.ingest.config import IngestConfig, format_duration, parse_duration
from tsfm_cli.schema import Flag

NOT_A_READING = int(Flag.SENTINEL | Flag.UNPARSEABLE | Flag.MISSING)
MAX_GRID_FACTOR = 50  # grid points allowed per reading before the spacing is called nonsense
MAX_GRID_SLACK = 100_000


def add_series_id(readings: pl.LazyFrame, key_cols: list[str]) -> pl.LazyFrame:
    parts = [pl.col(k) for k in key_cols] + [pl.col("sensor")]
    return readings.with_columns(series_id=pl.concat_str(parts, separator="/", ignore_nulls=True))


def _steps(df: pl.DataFrame, config: IngestConfig) -> pl.DataFrame:
    """series_id → step_us (Int64) and origin."""
    if config.freq:
        fixed = parse_duration(config.freq, "freq") * 1_000_000
        step = pl.lit(fixed, pl.Int64)
    else:
        diffs = pl.col("timestamp").diff().dt.total_microseconds()
        med = diffs.filter(diffs > 0).median()
        step = (med / 1_000_000).round().clip(lower_bound=1).fill_null(1).cast(pl.Int64) * 1_000_000
    steps = df.group_by("series_id").agg(
        step_us=step, origin=pl.col("timestamp").min(), readings=pl.len()
    )
    # the grid starts at the first reading rounded to a whole step (jittered clocks)
    first = pl.col("origin").dt.epoch("us")
    aligned = ((first / pl.col("step_us")).round() * pl.col("step_us")).cast(pl.Int64)
    return steps.with_columns(origin=aligned.cast(pl.Datetime("us", "UTC")))


def build_grid(
    readings: pl.DataFrame, key_cols: list[str], config: IngestConfig
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(grid frame sorted by series_id, timestamp; rejects for duplicate readings)."""
    df = readings.sort(["series_id", "timestamp", "_file", "raw_line"])
    steps = _steps(df, config)
    df = df.join(steps.select("series_id", "step_us", "origin"), on="series_id", how="left")
    offset = (pl.col("timestamp") - pl.col("origin")).dt.total_microseconds()
    k = (offset / pl.col("step_us")).round().cast(pl.Int64).clip(lower_bound=0)
    df = df.with_columns(k=k).drop("timestamp", "origin", "step_us")
    df, dup_rejects = _duplicates(df, config)

    series = steps.join(df.group_by("series_id").agg(n=pl.col("k").max() + 1), on="series_id")
    too_big = series.filter(pl.col("n") > pl.col("readings") * MAX_GRID_FACTOR + MAX_GRID_SLACK)
    if too_big.height:
        row = too_big.row(0, named=True)
        raise BadInputError(
            f"series {row['series_id']}: its timestamps span {row['n']:,} grid points of "
            f"{format_duration(row['step_us'] // 1_000_000)} for {row['readings']:,} readings; "
            "check the timestamps or set `freq`"
        )
    total = int(series["n"].sum())
    constant = [c for c in ("sensor", *key_cols) if c in df.columns]
    if total == df.height:
        grid = df.join(series.select("series_id", "origin", "step_us"), on="series_id")
    else:
        firsts = df.group_by("series_id").agg(pl.col(constant).first())
        frame = series.select(
            "series_id", "origin", "step_us", k=pl.int_ranges(0, pl.col("n"), dtype=pl.Int64)
        ).explode("k")
        frame = frame.join(firsts, on="series_id", how="left")
        grid = frame.join(df.drop(constant), on=["series_id", "k"], how="left")
    grid = grid.sort(["series_id", "k"])
    flags = pl.col("flags").fill_null(int(Flag.MISSING)).cast(pl.UInt16)
    grid = grid.with_columns(
        timestamp=pl.col("origin") + pl.duration(microseconds=pl.col("k") * pl.col("step_us")),
        freq_s=(pl.col("step_us") // 1_000_000).cast(pl.Int64),
        flags=flags,
        observed=pl.col("value").is_not_null() & ((flags & NOT_A_READING) == 0),
        source=pl.col("source").forward_fill().backward_fill().over("series_id"),
    ).drop("origin", "step_us", "k", "_file")
    return grid, dup_rejects


def _duplicates(df: pl.DataFrame, config: IngestConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    same = (pl.col("series_id") == pl.col("series_id").shift(1)) & (
        pl.col("k") == pl.col("k").shift(1)
    )
    df = df.with_columns(_dup=same.fill_null(False))
    df = df.with_columns(_dup=pl.col("_dup") | pl.col("_dup").shift(-1).fill_null(False))
    if not df["_dup"].any():
        return df.drop("_dup"), _empty_rejects()
    rest = df.filter(~pl.col("_dup")).drop("_dup")
    sub = df.filter(pl.col("_dup")).drop("_dup")
    late = config.duplicates == "last"
    sub = sub.sort(
        ["series_id", "k", pl.col("value").is_null(), "_file", "raw_line"],
        descending=[False, False, False, late, late],
    )
    group = ["series_id", "k"]
    sub = sub.with_columns(
        _rank=pl.int_range(pl.len()).over(group),
        _conflict=(pl.col("value").drop_nulls().n_unique().over(group) > 1),
        _mean=pl.col("value").mean().over(group),
    )
    kept = sub.filter(pl.col("_rank") == 0).with_columns(
        value=pl.when(pl.col("_conflict") & pl.lit(config.duplicates == "mean"))
        .then(pl.col("_mean"))
        .otherwise(pl.col("value")),
        flags=pl.when(pl.col("_conflict"))
        .then(pl.col("flags") | int(Flag.DUPLICATE_CONFLICT))
        .otherwise(pl.col("flags"))
        .cast(pl.UInt16),
    )
    dropped = sub.filter(pl.col("_rank") > 0)
    rejects = dropped.select(
        pl.col("source").alias("file"),
        pl.col("raw_line").cast(pl.Int64).alias("line"),
        pl.col("sensor").alias("column"),
        pl.col("value").cast(pl.String).alias("raw"),
        pl.when(pl.col("_conflict"))
        .then(pl.lit(f"duplicate_conflict (kept {config.duplicates})"))
        .otherwise(pl.lit("duplicate timestamp"))
        .alias("reason"),
    )
    kept = kept.drop("_rank", "_conflict", "_mean")
    return pl.concat([rest, kept]).sort(["series_id", "k"]), rejects


def _empty_rejects() -> pl.DataFrame:
    from tsfm_cli.ingest.table import REJECT_SCHEMA

    return pl.DataFrame(schema=REJECT_SCHEMA)
