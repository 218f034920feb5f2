"""What the `series/` dataset's many files cost against one file, and reading it back.

    python benchmarks/series_dataset.py [--series 2000] [--points 1500] [--step-s 3600]
                                        [--granularities month week day]

Builds a series table (`--series` × `--points` rows at `--step-s`, the ingest columns) in memory
and times, each once: writing it as one parquet file (ingest's layout before the dataset),
writing it as the dataset at each granularity (`write_partitions`, then sha256 of every file as
the manifest needs), and scanning the dataset back in table order (`scan_series`). Prints files,
seconds, milliseconds per file and MiB on disk.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tsfm_cli.series_dataset import ordered, scan_series, write_partitions  # noqa: E402
from tsfm_cli.stagedir import sha256_file  # noqa: E402


def table(n_series: int, points: int, step_s: int) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    start_us = 1_704_067_200_000_000  # 2024-01-01 UTC
    sid = np.repeat(np.arange(n_series), points)
    names = pl.Series([f"line{i % 7}/m{i % 13:02d}/sensor_{i:05d}" for i in range(n_series)])
    frame = pl.DataFrame(
        {
            "series_id": names.gather(sid),
            "source": pl.repeat("plant.csv", len(sid), eager=True),
            "sensor": names.str.split("/").list.last().gather(sid),
            "timestamp": start_us + np.tile(np.arange(points) * step_s * 1_000_000, n_series),
            "value": rng.normal(50, 5, len(sid)).astype(np.float32),
            "observed": rng.random(len(sid)) > 0.02,
            "flags": np.zeros(len(sid), np.uint16),
            "freq_s": np.full(len(sid), step_s, np.int64),
            "raw_line": np.tile(np.arange(points, dtype=np.int32) + 2, n_series),
        }
    ).with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))
    return frame.sort("series_id", "timestamp")  # the table's order


def mib(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--points", type=int, default=1500)
    parser.add_argument("--step-s", type=int, default=3600)
    parser.add_argument(
        "--granularities",
        nargs="*",
        default=["month", "week"],
        choices=["day", "week", "month"],
        help="hourly data by day is 126,000 files: minutes, and as long to delete",
    )
    args = parser.parse_args()
    frame = table(args.series, args.points, args.step_s)
    print(f"{frame.height:,} rows: {args.series} series × {args.points} points of {args.step_s} s")
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "series.parquet"
        started = time.perf_counter()
        frame.write_parquet(one, compression="zstd", compression_level=2)
        sha256_file(one)
        seconds = time.perf_counter() - started
        print(f"one file            {seconds:6.2f} s  write+sha256, {mib([one]):6.1f} MiB")
        for granularity in args.granularities:
            root = Path(tmp) / granularity
            started = time.perf_counter()
            written = write_partitions(frame, root, granularity)
            for name, _ in written:
                sha256_file(root / name)
            seconds = time.perf_counter() - started
            files = [root / n for n in ordered(name for name, _ in written)]
            started = time.perf_counter()
            back = scan_series(files).collect()
            read_s = time.perf_counter() - started
            assert back.equals(frame), granularity
            print(
                f"dataset by {granularity:5s}  {seconds:6.2f} s  write+sha256, "
                f"{len(files):6,} files ({1000 * seconds / len(files):.2f} ms each), "
                f"{mib(files):6.1f} MiB; "
                f"read back {read_s:.2f} s"
            )


if __name__ == "__main__":
    main()
