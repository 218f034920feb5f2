"""Benchmark: 4 laws × 100 groups × 1000 bootstrap resamples (goal: under 30 s on 2 cores).

    python benchmarks/fit.py [--groups 100 --boot 1000 --end-to-end]

Generates a results table from known laws (2 architectures × groups/2 scenarios; 6 sizes ×
4 data amounts × 3 checkpoints per run), then fits, per group, the four laws L(N) pure power law,
L(N) with E, L(C) with E on the compute frontier, and the joint L(N, D) — each with its full-data
fit, 1000 bootstrap resamples over runs and the extrapolation check — and prints the wall time.
`--end-to-end` also times `run_fit` (every law, comparisons, tables, report, plots).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tsfm_cli.fit import FitConfig, run_fit  # noqa: E402
from tsfm_cli.fit.fitting import GroupTask, fit_many, run_counts  # noqa: E402
from tsfm_cli.fit.load import normalise  # noqa: E402
from tsfm_cli.fit.select import select_points  # noqa: E402
from tsfm_cli.fit.synth import synth_results  # noqa: E402

FOUR_LAWS = [("N", "power"), ("N", "power_e"), ("C", "power_e"), ("N,D", "joint")]


def make_results(groups: int):
    scenarios = max(1, groups // 2)
    # drift lowers the size exponent (0.35 → 0.15) and raises the floor, evenly over scenarios
    laws = {
        ("id" if i == 0 else f"level_shift:{i}"): (
            0.1 + 0.2 * i / scenarios,
            200.0,
            0.35 - 0.2 * i / scenarios,
            300.0,
            0.3,
        )
        for i in range(scenarios)
    }
    frame = synth_results(
        laws,
        archs=("encoder", "decoder"),
        arch_scale={"decoder": 1.2},
        data=(1e5, 1e6, 3e6, 1e7),
        noise=0.02,
    )
    return normalise(frame, ["crps"], "synthetic")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=0, help="0: auto (2 on 2 cores)")
    parser.add_argument("--end-to-end", action="store_true")
    args = parser.parse_args()
    frame = make_results(args.groups)
    parts = frame.partition_by(["arch", "scenario"], as_dict=True)
    load = os.getloadavg()[0]
    t0, cpu0 = time.perf_counter(), time.process_time()
    tasks = []
    for part in parts.values():
        uniq, counts = run_counts(part["run_id"].to_numpy(), args.boot, 0)
        specs = [(select_points(part, "crps", x), x, law) for x, law in FOUR_LAWS]
        tasks.append(GroupTask(specs, uniq, counts))
    results = [f for group in fit_many(tasks, args.workers) for f in group]
    fits = len(results)
    not_conv = sum(not f.converged for f in results)
    boot_ok = [f.boot_ok for f in results]
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(
        f"fit: {fits} laws ({len(FOUR_LAWS)} laws × {len(parts)} groups) × {args.boot} bootstrap "
        f"resamples in {elapsed:.1f} s wall with {args.workers or 'auto'} worker(s) "
        f"(CPU of this process {cpu:.1f} s; goal < 30 s); "
        f"{not_conv} full fits not converged; "
        f"usable resamples {min(boot_ok):.0%}–{max(boot_ok):.0%}; "
        f"load average {load:.2f} at start on {os.cpu_count()} CPUs"
    )
    if args.end_to_end:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "results.parquet"
            frame.write_parquet(src)
            t0 = time.perf_counter()
            summary = run_fit([src], Path(tmp) / "laws", FitConfig(n_boot=args.boot))
            print(
                f"run_fit end to end: {summary['laws_fitted']} laws, tables, report and "
                f"plots in {time.perf_counter() - t0:.1f} s"
            )


if __name__ == "__main__":
    main()
