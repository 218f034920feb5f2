"""Benchmark: peak memory and time of ood-split and train on a large generated plant.

    python benchmarks/scale_downstream.py --values 20M                    # 200 series × 100k
    python benchmarks/scale_downstream.py --values 200M --points 1000000  # 200 series × 1 M
    python benchmarks/scale_downstream.py --values 20M --eval-windows 400 --eval-samples 8 \
        --baselines naive,seasonal_naive   # evaluation's memory: 28,000 windows scored

Generates an ingest directory (tests/ood_plant.py's 5-min plant, 5 % missing) one machine
(4 sensors) at a time, written as ingest writes it (the series dataset, a file per series and
month), so the generator's own memory stays at one machine whatever the size. `--values`
over `--points` sets the number of lines (10 machines each): a longer history (`--points`)
keeps the number of windows; more lines add series and so windows. Then runs, each in a fresh
process whose peak resident memory (ru_maxrss of that child alone) and wall time are printed:

- `tsfm ood-split` with every natural scenario (one held-out machine, one custom split);
- `tsfm train` on that split: tiny model (1K, encoder), a few steps, so the figure is data
  loading + evaluation windows + a few optimiser steps, not training throughput. `--eval-windows`
  (default 16 per scenario × horizon), `--eval-samples` and `--baselines` (default none) set how
  much evaluation there is.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SENSORS = 4
MACHINES = 10

GENERATE = """
import sys
from pathlib import Path
import polars as pl
from ood_plant import plant_frame
from tsfm_cli.series_dataset import auto_granularity, write_dataset
from tsfm_cli.stagedir import StageWriter
out = Path(sys.argv[1])
lines, points, machines, sensors = map(int, sys.argv[2:])
n_series = lines * machines * sensors
partitions = 0
with StageWriter(out, "ingest", config={"generated": sys.argv[2:]}, inputs=[]) as writer:
    for line in range(lines):
        for machine in range(1, machines + 1):  # one machine's series in memory at a time
            name = f"line{line:04d}"
            frame = plant_frame(
                lines=1, machines=1, sensors=tuple(f"s{k}" for k in range(sensors)),
                points=points, seed=line * 1000 + machine, short=None,
            ).with_columns(
                pl.col("series_id").str.replace("^line1/m1/", f"{name}/m{machine:02d}/"),
                line=pl.lit(name),
                machine=pl.lit(f"m{machine}"),
            )
            # the plant's 5-min step: what ingest's `partition: auto` picks for it
            partitions += write_dataset(writer, frame, auto_granularity(300))
            del frame
    writer.commit(summary={"series": n_series, "partitions": partitions})
"""

# runs one command and reports the peak RSS of that command alone (its own ru_maxrss)
MEASURE = """
import resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - started
if done.returncode:
    sys.exit(done.stdout[-3000:] + done.stderr[-3000:])
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
"""

RECIPE = """\
ood-split:
  heldout: ["machine=m1"]
  custom: {late: "hour(timestamp) >= 12"}
train:
  baselines: {baselines}
  checkpoints: 1
  eval_windows: {eval_windows}
  eval_samples: {eval_samples}
"""


def parse_count(text: str) -> int:
    scale = {"K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1].upper(), 1)
    return int(float(text.rstrip("KMGkmg")) * scale)


def measure(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, env=env
    )
    if done.returncode:
        sys.exit(done.stderr)
    wall, peak = done.stdout.split()
    return float(wall), int(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", default="20M", help="total grid points (default 20M)")
    parser.add_argument("--points", type=int, default=100_000, help="points per series")
    parser.add_argument("--steps", type=int, default=5, help="training steps")
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    parser.add_argument(
        "--eval-windows",
        type=int,
        default=16,
        help="train's eval_windows (per scenario × horizon; more: evaluation's memory shows)",
    )
    parser.add_argument("--eval-samples", type=int, default=64, help="train's eval_samples")
    parser.add_argument(
        "--baselines",
        default="",
        help="comma-separated baselines scored too (default none: they cost time, not memory)",
    )
    args = parser.parse_args()
    per_line = MACHINES * SENSORS * args.points
    lines = max(2, round(parse_count(args.values) / per_line))
    env = {
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "POLARS_MAX_THREADS": os.environ.get("POLARS_MAX_THREADS", "2"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        ingest, splits, results = base / "ingest", base / "splits", base / "results"
        recipe = base / "recipe.yaml"
        baselines = [b for b in args.baselines.split(",") if b]
        settings = {
            "{baselines}": json.dumps(baselines),
            "{eval_windows}": str(args.eval_windows),
            "{eval_samples}": str(args.eval_samples),
        }
        text = RECIPE
        for name, value in settings.items():
            text = text.replace(name, value)
        recipe.write_text(text)
        n_series = lines * MACHINES * SENSORS
        report: dict[str, object] = {
            "values": lines * per_line,
            "series": n_series,
            "eval_windows": args.eval_windows,
            "baselines": baselines,
        }
        if not (ingest / "manifest.json").is_file():  # --keep: generate once
            gen_s, gen_mib = measure(
                [
                    sys.executable,
                    "-c",
                    GENERATE,
                    str(ingest),
                    str(lines),
                    str(args.points),
                    str(MACHINES),
                    str(SENSORS),
                ],
                env,
            )
            report.update(generate_s=round(gen_s, 1), generate_peak_mib=gen_mib)
        files = list((ingest / "series").rglob("*.parquet"))
        report["series_files"] = len(files)
        report["series_dataset_mib"] = round(sum(f.stat().st_size for f in files) / 2**20)
        tsfm = [sys.executable, "-m", "tsfm_cli"]
        wall, peak = measure(
            [*tsfm, "ood-split", str(ingest), "-o", str(splits), "-c", str(recipe), "-q"], env
        )
        report.update(ood_split_s=round(wall, 1), ood_split_peak_mib=peak)
        wall, peak = measure(
            [
                *tsfm,
                "train",
                str(splits),
                "-o",
                str(results),
                "--archs",
                "encoder",
                "--sizes",
                "1K",
                "--schedule",
                "steps",
                "--steps",
                str(args.steps),
                "--batch-size",
                "16",
                "-c",
                str(recipe),
                "-q",
            ],
            env,
        )
        report.update(train_s=round(wall, 1), train_peak_mib=peak)
        print(json.dumps(report))


if __name__ == "__main__":
    main()
