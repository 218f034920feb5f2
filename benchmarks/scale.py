"""Peak memory and time of `tsfm ingest` as the history grows (README "Scale").

    python benchmarks/scale.py [--values 5e6 20e6 80e6] [--nightly-days 16] [--skip-nightly]

Generates 1-s dirty daily exports (10 sensors, the generator of benchmarks/ingest.py: sentinels,
junk text, duplicates, rows out of order, spikes, a stuck stretch, a ten-minute gap and a
truncated last line per file), one file per day of one machine (`line1/machine1_<date>.csv`: the
days are one history of ten series), and prints for each size the wall time and peak RSS
(ru_maxrss of the ingest child process alone, via wait4) of ingesting all of them at once.

Then the nightly increment: `--nightly-days` daily files ingested, a next day's file added and
ingest run again into the same folder, against ingesting that day alone into a fresh folder.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SENSORS = 10
DAY_ROWS = 86_400 - 600  # the generator's ten-minute gap then ends the file at midnight

INGEST = """
import json, sys
from tsfm_cli.errors import QualityGateError
from tsfm_cli.ingest import IngestConfig, run_ingest
cfg = IngestConfig(ranges={"sensor_*": [-100, 1000]}, freq="1s")
try:
    summary = run_ingest([sys.argv[1]], sys.argv[2], cfg, command=["bench"])
except QualityGateError as exc:
    summary = exc.summary
print(json.dumps(summary.get("increment")))
"""


def day_file(folder: Path, day: int) -> Path:
    """One machine's export of a day: its name's `line1`/`machine1` make every day's file part
    of the same ten series (README "Group keys"), as a plant's nightly export is."""
    start = datetime.date(2024, 1, 1) + datetime.timedelta(days=day)
    return folder / "line1" / f"machine1_{start}.csv"


def make_days(folder: Path, first: int, count: int) -> None:
    (folder / "line1").mkdir(parents=True, exist_ok=True)
    for day in range(first, first + count):
        path = day_file(folder, day)
        generate(path, DAY_ROWS, SENSORS, seed=day, start=path.stem.split("_")[1] + "T00:00:00")


def ingest(src: Path, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of one ingest in its own process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", INGEST, str(src), str(out)], env=env)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak
    code = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if code not in (0, 3):  # 3: the quality gate (failed lines are expected in dirty data)
        raise SystemExit(f"ingest of {src} exited {code}")
    return seconds, usage.ru_maxrss / 1024


def _files(out: Path) -> str:
    """How the series dataset came out: its files and their size."""
    files = list((out / "series").rglob("*.parquet"))
    return f"series/ {len(files)} files, {sum(f.stat().st_size for f in files) / 2**20:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--values", type=float, nargs="*", default=[5e6, 20e6, 80e6])
    parser.add_argument("--nightly-days", type=int, default=16)
    parser.add_argument("--skip-nightly", action="store_true")
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = []
        for values in args.values:
            days = math.ceil(values / (DAY_ROWS * SENSORS))
            src = tmp / f"src{days}"
            make_days(src, 0, days)
            mb = sum(p.stat().st_size for p in src.rglob("*.csv")) / 1e6
            seconds, peak = ingest(src, tmp / f"out{days}")
            rows.append((days * DAY_ROWS * SENSORS, days, mb, seconds, peak))
            print(
                f"{days * DAY_ROWS * SENSORS / 1e6:6.1f} M values ({days} days, {mb:6.0f} MB CSV): "
                f"{seconds:7.1f} s, peak RSS {peak:7.0f} MiB, {_files(tmp / f'out{days}')}",
                flush=True,
            )
            shutil.rmtree(src)
        if len(rows) > 1:
            a, b = rows[0], rows[-1]
            ratio = f"peak RSS {b[4] / a[4]:.2f}x, time {b[3] / a[3]:.2f}x"
            print(f"{b[0] / a[0]:.1f}x the input: {ratio}")
        if args.skip_nightly:
            return
        n = args.nightly_days
        history = tmp / "history"
        make_days(history, 0, n)
        out = tmp / "nightly"
        full, full_peak = ingest(history, out)
        make_days(history, n, 1)
        rerun, rerun_peak = ingest(history, out)
        alone_src = tmp / "alone"
        (alone_src / "line1").mkdir(parents=True)
        os.link(day_file(history, n), day_file(alone_src, n))
        alone, alone_peak = ingest(alone_src, tmp / "alone_out")
        print(f"nightly: {n} days ingested in {full:.1f} s (peak {full_peak:.0f} MiB)")
        print(
            f"nightly: day {n + 1} added, rerun {rerun:.1f} s (peak {rerun_peak:.0f} MiB); "
            f"that day alone {alone:.1f} s (peak {alone_peak:.0f} MiB); "
            f"rerun / alone = {rerun / alone:.2f}x (goal ≤ 2x)"
        )


if __name__ == "__main__":
    main()
