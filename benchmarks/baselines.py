"""Benchmark: scoring the baselines on a quickstart-sized evaluation set.

    python benchmarks/baselines.py [--eval-windows 32]

Generates the synthetic plant of the ood-split tests (13 series, 5-minute grid), splits it with
the quickstart's ood-split settings (context 256, horizons 32/64/128, five drift families at two
severities), selects the windows `tsfm train` scores (``eval_windows`` per scenario × horizon)
and times each baseline, plus the one-off import of statsforecast, in this process.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from ood_plant import make_ingest_dir  # noqa: E402

from tsfm_cli.baselines import BASELINES, score_baselines  # noqa: E402
from tsfm_cli.ood import OodConfig, run_ood_split  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-windows", type=int, default=32)
    args = parser.parse_args()
    import polars as pl

    from tsfm_cli.train.data import select_windows

    with tempfile.TemporaryDirectory() as tmp:
        clean = make_ingest_dir(Path(tmp) / "clean")
        cfg = OodConfig(
            context_length=256,
            horizons=[32, 64, 128],
            heldout=["line=line2"],
            families=["level_shift", "ramp", "noise_increase", "missing_bursts", "time_warp"],
            severities=[1.0, 3.0],
            max_windows=16,
            synthetic_windows=4,
        )
        run_ood_split(clean, Path(tmp) / "splits", cfg)
        frame = pl.read_parquet(Path(tmp) / "splits" / "eval.parquet")
    windows = select_windows(frame, args.eval_windows, 0)
    print(f"{windows.height} windows ({frame.height} in eval.parquet)")
    started = time.perf_counter()
    import statsforecast  # noqa: F401

    print(f"import statsforecast: {time.perf_counter() - started:.2f} s")
    for model in BASELINES:  # wall and CPU time: on a shared box the CPU time is the stable one
        started, cpu = time.perf_counter(), time.process_time()
        score_baselines(windows, None, models=[model])
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        per = 1000 * cpu / windows.height
        print(f"{model:15s} wall {seconds:6.2f} s  cpu {cpu:6.2f} s  {per:6.2f} ms/window (cpu)")


if __name__ == "__main__":
    main()
