"""A synthetic ingest directory that follows the series table contract exactly.

Used by the ood-split tests and benchmarks/ood_split.py (so not a test module itself).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from tsfm_cli.schema import Flag
from tsfm_cli.series_dataset import write_dataset
from tsfm_cli.stagedir import StageWriter

START = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)


def plant_frame(
    lines: int = 2,
    machines: int = 3,
    sensors: tuple[str, ...] = ("pressure", "temperature"),
    points: int = 14 * 288,
    freq_s: int = 300,
    missing: float = 0.05,
    seed: int = 0,
    short: int | None = 300,
) -> pl.DataFrame:
    """Rows sorted by series_id, timestamp; one optional short series (`line9/m1/flow`)."""
    rng = np.random.default_rng(seed)
    meta = [
        (f"line{a}/m{b}/{s}", f"line{a}", f"m{b}", s, points)
        for a in range(1, lines + 1)
        for b in range(1, machines + 1)
        for s in sensors
    ]
    if short:
        meta.append(("line9/m1/flow", "line9", "m1", "flow", short))
    meta.sort()
    lengths = np.array([m[4] for m in meta])
    owner = np.repeat(np.arange(len(meta)), lengths)
    step = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    level = rng.uniform(10, 100, len(meta))[owner]
    amp = rng.uniform(1, 10, len(meta))[owner]
    day = 86400 / freq_s
    value = (
        level + amp * np.sin(2 * np.pi * step / day) + 0.2 * amp * rng.standard_normal(len(step))
    )
    observed = rng.random(len(step)) >= missing
    # one dropout of a few hours per series, somewhere in the middle
    gap_at = (lengths // 2)[owner]
    observed &= ~((step >= gap_at) & (step < gap_at + 24))
    value = np.where(observed, value, np.nan).astype(np.float32)
    table = pl.DataFrame(
        {
            "series_id": [m[0] for m in meta],
            "line": [m[1] for m in meta],
            "machine": [m[2] for m in meta],
            "sensor": [m[3] for m in meta],
        }
    ).with_row_index("owner")
    start_us = int(START.timestamp() * 1_000_000)
    frame = pl.DataFrame(
        {
            "owner": owner.astype(np.uint32),
            "timestamp": start_us + step.astype(np.int64) * freq_s * 1_000_000,
            "value": pl.Series(value, nan_to_null=True),
            "observed": observed,
        }
    )
    return (
        frame.join(table, on="owner", how="left")
        .select(
            "series_id",
            pl.lit("synthetic.csv").alias("source"),
            "sensor",
            pl.col("timestamp").cast(pl.Datetime("us", "UTC")),
            pl.col("value").cast(pl.Float32),
            "observed",
            pl.when(pl.col("observed"))
            .then(0)
            .otherwise(int(Flag.MISSING))
            .cast(pl.UInt16)
            .alias("flags"),
            pl.lit(freq_s, dtype=pl.Int64).alias("freq_s"),
            "line",
            "machine",
        )
        .sort("series_id", "timestamp")
    )


def write_ingest_dir(out: Path, frame: pl.DataFrame, config: dict | None = None) -> Path:
    """An ingest directory at `out` whose series table is `frame` (as given, even broken),
    written as ingest writes it: a partition file per series and month."""
    with StageWriter(Path(out), "ingest", config=config or {}, inputs=[]) as writer:
        partitions = write_dataset(writer, frame)
        summary = {"series": frame["series_id"].n_unique(), "partitions": partitions}
        writer.commit(summary=summary)
    return Path(out)


def write_ingest_files(out: Path, files: dict[str, pl.DataFrame]) -> Path:
    """An ingest directory whose series files are exactly `files` (name → rows): for files
    that break the contract in ways the partitioning of `write_ingest_dir` would repair."""
    with StageWriter(Path(out), "ingest", config={}, inputs=[]) as writer:
        for name, frame in files.items():
            writer.write_parquet(name, frame)
        writer.commit(summary={})
    return Path(out)


def make_ingest_dir(out: Path, **kwargs) -> Path:
    return write_ingest_dir(out, plant_frame(**kwargs), {"generated": kwargs})
