"""Peak memory of `tsfm ingest` on hostile files (README "Ingest limits").

    python benchmarks/hostile_memory.py [--line-mb 100]

Generates, in a temporary folder: one file that is a single line of `--line-mb` MB, one with
10,000 columns, a .gz bomb (a 2 GiB line of zeros, 2 MB compressed) and, for comparison, wide
files just under the column limit. Runs `tsfm ingest` on each in its own process and prints the
exit code, the first line of stderr and the peak RSS (ru_maxrss of the child).
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wide(path: Path, columns: int, rows: int) -> None:
    with open(path, "w") as f:
        f.write("timestamp," + ",".join(f"s{i}" for i in range(columns)) + "\n")
        for r in range(rows):
            stamp = f"2024-01-01 {r // 3600:02d}:{r // 60 % 60:02d}:{r % 60:02d}"
            f.write(stamp + "," + ",".join(str((r * 7 + i) % 13 * 0.5) for i in range(columns)))
            f.write("\n")


def one_line(path: Path, megabytes: int) -> None:
    with open(path, "w") as f:
        f.write("timestamp,temp\n2024-01-01 00:00:00,")
        for _ in range(megabytes):
            f.write("1" * 2**20)
        f.write("\n")


def gz_bomb(path: Path) -> None:
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(b"timestamp,temp\n")
        for _ in range(2048):
            f.write(b"0" * 2**20)


def run(path: Path, out: Path) -> tuple[int, str, float, float]:
    """(exit code, first stderr line, peak RSS MiB of that one child, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tsfm_cli", "ingest", str(path), "-o", str(out), "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the largest so far
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        first = (err.read().strip().splitlines() or [""])[0]
    return proc.returncode, first, usage.ru_maxrss / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--line-mb", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = []
        for columns, rows in ((500, 2000), (999, 1000)):
            wide(tmp / f"wide{columns}.csv", columns, rows)
            cases.append((f"{columns} columns × {rows} rows", tmp / f"wide{columns}.csv"))
        wide(tmp / "wide10000.csv", 10_000, 140)
        cases.append(("10,000 columns × 140 rows", tmp / "wide10000.csv"))
        gz_bomb(tmp / "bomb.csv.gz")
        cases.append(("gzip: a 2 GiB line", tmp / "bomb.csv.gz"))
        one_line(tmp / "oneline.csv", args.line_mb)
        cases.append((f"one line of {args.line_mb} MB", tmp / "oneline.csv"))
        print(f"{'case':<28} {'MB on disk':>10} {'exit':>4} {'peak RSS MB':>11} {'s':>5}  stderr")
        for name, path in cases:
            code, first, peak, seconds = run(path, tmp / f"out-{path.stem}")
            size = path.stat().st_size / 2**20
            print(f"{name:<28} {size:>10.1f} {code:>4} {peak:>11.0f} {seconds:>5.1f}  {first[:90]}")


if __name__ == "__main__":
    main()
