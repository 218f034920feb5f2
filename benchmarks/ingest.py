"""Benchmark `tsfm ingest` against the polars floor and an idiomatic pandas cleaning.

    python benchmarks/ingest.py [--rows 500000] [--sensors 10]

Generates a wide CSV (rows × sensors ≥ 5 million values) with realistic dirt — sentinels, junk
text, empty cells, duplicate and out-of-order rows, spikes, a stuck stretch, a gap and a
truncated last line — then runs three variants, each in its own subprocess so that peak memory
(ru_maxrss of that process) is measured separately:

1. `tsfm ingest` (run_ingest: every output incl. rejects, report, quality.png and the per-file
   cache used by incremental reruns);
2. the floor: polars `read_csv` + `write_parquet` of the same file, no cleaning at all;
   for context also a "contract floor": the same read, unpivoted to the long one-row-per-reading
   layout of the series table with its columns (series_id, source, sensor, …) and written as
   ingest writes it (the `series/` dataset, a file per series and day), still no cleaning, no
   grid, no rejects, no report or plot;
3. pandas: the same cleaning written the idiomatic pandas way (read_csv with na_values,
   to_datetime, melt, drop_duplicates, per-series reindex to the grid, range, Hampel with rolling
   medians, stuck runs, parquet).

Each variant runs `--repeat` times (default 5); the run with the median time is shown, and the
ratios of every run's time (sorted) too. With `--interleave` the variants take turns (round i runs
each once), so that a change of load on a shared machine falls on all of them. Prints the
figures and the ratios. Goal (issue 15): ingest within 2.5× the time of the *contract floor*
(the old "≤ 3× the read+write floor" was below the cost of writing the long layout itself) and
≥ 5× faster than pandas, in every run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def generate(
    path: Path, rows: int, sensors: int, seed: int = 0, start: str = "2024-01-01T00:00:00"
) -> None:
    rng = np.random.default_rng(seed)
    t0 = np.datetime64(start)
    seconds = np.arange(rows, dtype=np.int64)
    seconds[rows // 2 :] += 600  # a ten-minute gap
    times = (t0 + seconds.astype("timedelta64[s]")).astype(str)
    times = np.char.replace(times, "T", " ")
    day = np.sin(seconds / 86400 * 2 * np.pi)
    cols = []
    for s in range(sensors):
        values = 50 + 10 * s + 5 * day + rng.normal(0, 0.5, rows)
        values[rng.integers(0, rows, rows // 5000)] += 200  # spikes
        start = rows // 3 + s * 1000
        values[start : start + 120] = values[start]  # stuck
        text = np.char.mod("%.3f", values).astype(object)
        dirt = rng.random(rows)
        text[dirt < 0.002] = "-999"
        text[(dirt >= 0.002) & (dirt < 0.003)] = "N/A"
        text[(dirt >= 0.003) & (dirt < 0.0035)] = "ERR"
        text[(dirt >= 0.0035) & (dirt < 0.005)] = ""
        cols.append(text)
    header = "timestamp," + ",".join(f"sensor_{s}" for s in range(sensors))
    lines = np.array([",".join(parts) for parts in zip(times, *cols, strict=True)], dtype=object)
    order = np.arange(rows)
    swap = rng.integers(1, rows - 1, rows // 1000)
    order[swap], order[swap + 1] = order[swap + 1], order[swap]  # rows out of order
    lines = lines[order]
    dup = rng.integers(0, rows, rows // 2000)
    lines = np.insert(lines, dup, lines[dup])  # duplicated rows
    with open(path, "w") as handle:
        handle.write(header + "\n")
        handle.write("\n".join(lines))
        handle.write("\n" + lines[-1][: len(lines[-1]) // 2])  # still being written


TSFM = """
from tsfm_cli.ingest import IngestConfig, run_ingest
cfg = IngestConfig(ranges={"sensor_*": [-100, 1000]}, freq="1s")
summary = run_ingest([SRC], OUT, cfg, command=["bench"])
rows = summary["points"]
"""

FLOOR = """
import polars as pl
frame = pl.read_csv(SRC, null_values=["-999", "N/A", "ERR"], ignore_errors=True,
                    truncate_ragged_lines=True)
frame.write_parquet(OUT + ".parquet", compression="zstd")
rows = frame.height
"""

CONTRACT_FLOOR = """
from pathlib import Path
import polars as pl
from tsfm_cli.series_dataset import write_partitions
frame = pl.read_csv(SRC, null_values=["-999", "N/A", "ERR"], ignore_errors=True,
                    truncate_ragged_lines=True)
long = frame.with_row_index("raw_line", offset=2).unpivot(
    index=["raw_line", "timestamp"], variable_name="sensor", value_name="value"
)
table = long.select(
    pl.concat_str(pl.lit("plant_wide/"), "sensor").alias("series_id"),
    pl.lit(SRC).alias("source"),
    "sensor",
    pl.col("timestamp").str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False, time_zone="UTC"),
    pl.col("value").cast(pl.Float32),
    pl.col("value").is_not_null().alias("observed"),
    pl.lit(0, pl.UInt16).alias("flags"),
    pl.lit(1, pl.Int64).alias("freq_s"),
    pl.col("raw_line").cast(pl.Int32),
    pl.lit("plant_wide").alias("file"),
).filter(pl.col("timestamp").is_not_null())  # a time that does not parse has no chunk
# 1-s data: a file per sensor and day, as `partition: auto` gives for it
rows = sum(n for _, n in write_partitions(table, Path(OUT), "day"))
"""

PANDAS = """
import numpy as np
import pandas as pd
SENTINELS = ["-999", "-9999", "9999", "NaN", "N/A", "#N/A", "null", "-", "--", "ERR", "#VALUE!"]
raw = pd.read_csv(SRC, dtype=str, keep_default_na=False, on_bad_lines="skip")
raw["timestamp"] = pd.to_datetime(raw["timestamp"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
raw = raw.dropna(subset=["timestamp"])
raw["timestamp"] = raw["timestamp"].dt.tz_localize("UTC")
long = raw.melt(id_vars="timestamp", var_name="sensor", value_name="raw")
long["sentinel"] = long["raw"].isin(SENTINELS)
long["value"] = pd.to_numeric(long["raw"].where(~long["sentinel"]), errors="coerce")
long["unparseable"] = long["value"].isna() & ~long["sentinel"] & (long["raw"] != "")
long = long.sort_values(["sensor", "timestamp"], kind="stable")
long = long.drop_duplicates(subset=["sensor", "timestamp"], keep="first")
out = []
for sensor, g in long.groupby("sensor", sort=True):
    g = g.set_index("timestamp")
    grid = pd.date_range(g.index.min(), g.index.max(), freq="1s")
    g = g.reindex(grid)
    g["sensor"] = sensor
    g["missing"] = g["raw"].isna()
    v = g["value"]
    g["out_of_range"] = (v < -100) | (v > 1000)
    v = v.where(~g["out_of_range"])
    med = v.rolling(11, center=True, min_periods=6).median()
    dev = (v - med).abs()
    mad = dev.rolling(11, center=True, min_periods=6).median()
    whole = (v - v.median()).abs().median()
    scale = np.maximum(np.maximum(1.4826 * mad, 0.5 * 1.4826 * whole), 1e-9)
    g["spike"] = dev > 6 * scale
    run = (v != v.shift()).cumsum()
    g["stuck"] = v.notna() & (v.groupby(run).transform("size") >= 30)
    g["observed"] = v.notna() & ~g["spike"] & ~g["stuck"]
    g["value"] = v.where(g["observed"]).astype("float32")
    out.append(g.rename_axis("timestamp").reset_index())
series = pd.concat(out, ignore_index=True)
series["series_id"] = "bench/" + series["sensor"]
series = series[["series_id", "sensor", "timestamp", "value", "observed", "missing",
                 "sentinel", "unparseable", "out_of_range", "spike", "stuck"]]
# pandas needs pyarrow for parquet, which tsfm does not depend on: hand the columns to polars
import polars as pl
flags = ["observed", "missing", "sentinel", "unparseable", "out_of_range", "spike", "stuck"]
series[flags] = series[flags].fillna(False).astype(bool)
columns = {c: series[c].to_numpy() for c in series.columns if c not in ("series_id", "sensor")}
columns["timestamp"] = series["timestamp"].dt.tz_localize(None).to_numpy()
columns["value"] = series["value"].to_numpy(dtype="float32", na_value=np.nan)
columns["series_id"] = series["series_id"].astype(str).tolist()
columns["sensor"] = series["sensor"].astype(str).tolist()
pl.DataFrame(columns).write_parquet(
    OUT + ".parquet", compression="zstd"
)
rows = len(series)
"""

RUNNER = """
import json, resource, sys, time
SRC, OUT = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
{body}
elapsed = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"seconds": elapsed, "peak_bytes": peak, "rows": rows}}))
"""


def run_median(name: str, body: str, src: Path, out: Path, repeat: int) -> dict:
    """The run with the median time of `repeat` runs (the machine's load varies run to run),
    with every run's time in `all`."""
    runs = [run_variant(name, body, src, out.with_name(f"{out.name}_{i}")) for i in range(repeat)]
    return median_of(runs)


def median_of(runs: list[dict]) -> dict:
    runs = sorted(runs, key=lambda r: r["seconds"])
    return {**runs[len(runs) // 2], "all": [r["seconds"] for r in runs]}


def run_interleaved(variants: dict[str, tuple], src: Path, tmp: Path, repeat: int) -> dict:
    """`run_median` of every variant, the variants taking turns (round i runs each once): on a
    shared machine a change of load then falls on all of them, not on whichever ran then."""
    runs: dict[str, list[dict]] = {label: [] for label in variants}
    for i in range(repeat):
        for label, (name, body, out) in variants.items():
            runs[label].append(run_variant(name, body, src, tmp / f"{out}_{i}"))
    return {label: median_of(r) for label, r in runs.items()}


def run_variant(name: str, body: str, src: Path, out: Path) -> dict:
    code = RUNNER.format(body=textwrap.dedent(body))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "POLARS_MAX_THREADS": ""}
    env = {k: v for k, v in env.items() if v}
    import os

    env = {**os.environ, **env}
    res = subprocess.run(
        [sys.executable, "-c", code, str(src), str(out)], capture_output=True, text=True, env=env
    )
    if res.returncode != 0:
        raise SystemExit(f"{name} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--sensors", type=int, default=10)
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--repeat", type=int, default=5, help="runs per variant; medians shown")
    parser.add_argument(
        "--interleave", action="store_true", help="variants take turns (for a shared machine)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "plant_wide.csv"
        generate(src, args.rows, args.sensors)
        size = src.stat().st_size
        values = args.rows * args.sensors
        print(f"input: {src.name}, {values:,} values, {size / 1e6:.1f} MB")
        if args.interleave:
            variants = {
                "tsfm ingest": ("tsfm", TSFM, "clean"),
                "floor (polars read_csv + write_parquet)": ("floor", FLOOR, "floor"),
                "contract floor (same + long series dataset)": (
                    "contract floor",
                    CONTRACT_FLOOR,
                    "contract",
                ),
            }
            if not args.skip_pandas:
                variants["pandas (same cleaning)"] = ("pandas", PANDAS, "pandas")
            results = run_interleaved(variants, src, Path(tmp), args.repeat)
        else:
            results = {
                "tsfm ingest": run_median("tsfm", TSFM, src, Path(tmp) / "clean", args.repeat),
                "floor (polars read_csv + write_parquet)": run_median(
                    "floor", FLOOR, src, Path(tmp) / "floor", args.repeat
                ),
            }
            results["contract floor (same + long series dataset)"] = run_median(
                "contract floor", CONTRACT_FLOOR, src, Path(tmp) / "contract", args.repeat
            )
            if not args.skip_pandas:
                results["pandas (same cleaning)"] = run_median(
                    "pandas", PANDAS, src, Path(tmp) / "pandas", args.repeat
                )
    for name, r in results.items():
        print(f"{name:42s} {r['seconds']:8.2f} s  peak {r['peak_bytes'] / 2**20:8.0f} MiB")
    tsfm = results["tsfm ingest"]
    floor = results["floor (polars read_csv + write_parquet)"]
    for name, r in results.items():
        print(f"{name:42s} runs: " + ", ".join(f"{s:.2f}" for s in r["all"]) + " s")
    print(f"tsfm / floor time:   {tsfm['seconds'] / floor['seconds']:.2f}x")
    print(f"tsfm / floor memory: {tsfm['peak_bytes'] / floor['peak_bytes']:.2f}x")
    contract = results["contract floor (same + long series dataset)"]
    print(
        f"contract floor / floor time: {contract['seconds'] / floor['seconds']:.2f}x  "
        "(no cleaning at all, only the output shape the series dataset has)"
    )
    # the i-th fastest run of one against the i-th fastest of the other: "in every run"
    pairs = list(zip(tsfm["all"], contract["all"], strict=True))
    worst = max(t / c for t, c in pairs)
    print(
        f"tsfm / contract floor time: {tsfm['seconds'] / contract['seconds']:.2f}x median, "
        f"{worst:.2f}x worst (goal ≤ 2.5x)"
    )
    if "pandas (same cleaning)" in results:
        pandas = results["pandas (same cleaning)"]
        worst = min(p / t for p, t in zip(pandas["all"], tsfm["all"], strict=True))
        print(
            f"pandas / tsfm time:  {pandas['seconds'] / tsfm['seconds']:.1f}x median, "
            f"{worst:.1f}x worst (goal ≥ 5x)"
        )


if __name__ == "__main__":
    main()
