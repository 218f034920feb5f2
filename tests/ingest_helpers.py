"""Helpers for the ingest tests: write small fixture files and run the stage in-process."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl

from tsfm_cli.ingest import IngestConfig, run_ingest
from tsfm_cli.schema import Flag
from tsfm_cli.series_dataset import dataset_files, read_series

__all__ = ["dataset_files", "read_series"]  # for the tests: the series table of an output


def write_files(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode("utf-8") if isinstance(content, str) else content
        if name.endswith(".gz"):
            data = gzip.compress(data, mtime=0)
        path.write_bytes(data)
    return root


def ingest(tmp_path: Path, sources: dict[str, str | bytes], /, **settings):
    """(summary, series, rejects, report) for `sources` written under tmp_path/src."""
    src = write_files(tmp_path / "src", sources)
    out = tmp_path / "clean"
    summary = run_ingest([src], out, IngestConfig(**settings), command=["test"])
    return (
        summary,
        read_series(out),
        pl.read_parquet(out / "rejects.parquet"),
        pl.read_parquet(out / "report.parquet"),
    )


def one(series: pl.DataFrame, sensor: str) -> pl.DataFrame:
    return series.filter(pl.col("sensor") == sensor).sort("timestamp")


def has(flags, flag: Flag) -> list[bool]:
    return [(int(f) & int(flag)) != 0 for f in flags]


def minutes(n: int, start: str = "2024-05-06 08:00") -> list[str]:
    import datetime as dt

    t0 = dt.datetime.fromisoformat(start)
    return [(t0 + dt.timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(n)]


def wide_csv(values: list, sep: str = ",", header: str = "timestamp,temp", times=None) -> str:
    times = times or minutes(len(values))
    rows = [header.replace(",", sep)]
    rows += [f"{t}{sep}{v}" for t, v in zip(times, values, strict=True)]
    return "\n".join(rows) + "\n"
