"""Benchmark: `ood-split` with every scenario on a plant of 100 series × 100k points.

    python benchmarks/ood_split.py [--lines 5 --machines 10 --sensors 2 --points 100000]

Generates a synthetic ingest directory (5-min grid, 5 % missing) in a temporary folder, then runs
`run_ood_split` with the default settings plus one held-out machine and one custom split in a
fresh subprocess, and reports its wall time and peak resident memory (the child's VmHWM; the
plant is generated in another subprocess so that nothing inflates the measured peak).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys
from pathlib import Path
from tsfm_cli.ood import OodConfig, run_ood_split
cfg = OodConfig(heldout=["machine=m1"], custom={"late": "hour(timestamp) >= 12"})
summary = run_ood_split(Path(sys.argv[1]), Path(sys.argv[2]), cfg)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(summary["eval_windows"], summary["train_rows"], len(summary["scenarios"]), int(hwm) // 1024)
"""

GENERATE = """
import sys
from pathlib import Path
from ood_plant import make_ingest_dir
lines, machines, sensors, points = map(int, sys.argv[2:])
make_ingest_dir(
    Path(sys.argv[1]), lines=lines, machines=machines,
    sensors=tuple(f"s{k}" for k in range(sensors)), points=points, short=None,
)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=5)
    parser.add_argument("--machines", type=int, default=10)
    parser.add_argument("--sensors", type=int, default=2)
    parser.add_argument("--points", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "clean"
        env = {
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
            "PATH": "/usr/bin:/bin",
        }
        started = time.perf_counter()
        sizes_args = [args.lines, args.machines, args.sensors, args.points]
        subprocess.run(
            [sys.executable, "-c", GENERATE, str(clean), *map(str, sizes_args)], env=env, check=True
        )
        generated = time.perf_counter() - started
        n_series = args.lines * args.machines * args.sensors
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", CHILD, str(clean), str(Path(tmp) / "splits")],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        wall = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(result.stderr)
        windows, train_rows, scenarios, peak_mib = map(int, result.stdout.split())
        sizes = {p.name: p.stat().st_size for p in (Path(tmp) / "splits").iterdir()}
        report = {
            "series": n_series,
            "points_per_series": args.points,
            "rows": n_series * args.points,
            "generate_s": round(generated, 1),
            "ood_split_s": round(wall, 1),
            "peak_rss_mib": round(peak_mib),
            "eval_windows": windows,
            "train_rows": train_rows,
            "scenarios": scenarios,
            "eval_parquet_mib": round(sizes["eval.parquet"] / 2**20, 1),
            "train_parquet_mib": round(sizes["train.parquet"] / 2**20, 1),
        }
        print(json.dumps(report))


if __name__ == "__main__":
    main()
