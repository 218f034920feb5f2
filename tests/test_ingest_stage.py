"""The ingest stage as a whole: sample_data, incremental reruns, lock, CLI contract, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest

from tests.conftest import REPO_ROOT, run_tsfm
from tests.ingest_helpers import dataset_files, minutes, read_series, wide_csv, write_files
from tsfm_cli.ingest import IngestConfig, run_ingest
from tsfm_cli.ingest.config import validate
from tsfm_cli.recipe import build_config, load_section
from tsfm_cli.schema import Flag

SAMPLE = REPO_ROOT / "sample_data"
RECIPE = REPO_ROOT / "recipes" / "ingest_sample.yaml"


@pytest.fixture(scope="module")
def sample_clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "clean"
    values, source = load_section(RECIPE, "ingest")
    config = build_config(IngestConfig, values, source)
    validate(config, source.where)
    summary = run_ingest([SAMPLE], out, config, command=["test"])
    return out, summary


def test_sample_data_ingests_with_every_quirk_handled(sample_clean):
    out, summary = sample_clean
    assert summary["failed_files"] == [] and summary["files"] == 7
    assert summary["lines_unaccounted"] == 0
    assert summary["lines_data"] == summary["lines_used"] + summary["lines_rejected"]
    series = read_series(out)
    assert series.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert series.schema["value"] == pl.Float32 and series.schema["flags"] == pl.UInt16
    assert {"line", "machine"} <= set(series.columns)
    assert series.select(pl.col("line").n_unique()).item() == 3
    assert series["series_id"].n_unique() == 35
    # a regular grid per series, sorted, one row per grid point
    steps = series.group_by("series_id").agg(
        ok=(
            pl.col("timestamp").diff().drop_nulls().dt.total_seconds() == pl.col("freq_s").first()
        ).all()
    )
    assert steps["ok"].all()
    assert series.select(pl.struct("series_id", "timestamp").is_duplicated().any()).item() is False
    assert series.equals(series.sort("series_id", "timestamp"))
    # every flag the sample is built to show
    for flag, count in summary["flags"].items():
        if flag != "filled":
            assert count > 0, flag
    report = pl.read_parquet(out / "report.parquet")
    assert report.height == 35 and report["missing_frac"].max() < 0.1
    manifest = json.loads((out / "manifest.json").read_text())
    rows = [m["rows"] for n, m in manifest["outputs"].items() if n.startswith("series/")]
    assert len(rows) == summary["partitions"] and sum(rows) == series.height
    assert (out / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    per_file = manifest["files"]
    assert sum(f["lines_data"] for f in per_file.values()) == summary["lines_data"]
    for meta in per_file.values():
        assert meta["lines_data"] == meta["lines_used"] + meta["lines_rejected"]


def test_sample_broken_thermocouple_and_truncated_gzip(sample_clean):
    out, _ = sample_clean
    series = read_series(out)
    temp = series.filter(pl.col("series_id") == "line1/machine2/temperatur")
    hot = temp.filter((pl.col("flags") & int(Flag.OUT_OF_RANGE)) != 0)
    assert hot.height == 30 and not hot["observed"].any()
    rejects = pl.read_parquet(out / "rejects.parquet")
    trunc = rejects.filter(pl.col("reason").str.starts_with("truncated"))
    assert trunc["file"].to_list() == [str(SAMPLE / "line2/machine2_2024-10.csv.gz")]


def _config(**kw):
    return IngestConfig(**kw)


def test_incremental_rerun_adds_only_new_and_changed_files(tmp_path):
    src = write_files(
        tmp_path / "src",
        {
            "line1/machine1.csv": wide_csv([1, 2, 3]),
            "line1/machine2.csv": wide_csv([4, 5, 6]),
        },
    )
    out = tmp_path / "clean"
    first = run_ingest([src], out, _config(), command=["t"])
    assert (first["files_parsed"], first["files_reused"]) == (2, 0)
    again = run_ingest([src], out, _config(), command=["t"])
    assert again["skipped"] is True and again["files_parsed"] == 0
    # a new export for machine1 (later times) and a new machine
    write_files(
        src, {"line1/machine1_02.csv": wide_csv([7, 8], times=minutes(2, "2024-05-06 08:03"))}
    )
    write_files(src, {"line1/machine3.csv": wide_csv([9, 9, 9])})
    third = run_ingest([src], out, _config(), command=["t"])
    assert (third["files_parsed"], third["files_reused"]) == (2, 2)
    series = read_series(out)
    m1 = series.filter(pl.col("series_id") == "line1/machine1/temp").sort("timestamp")
    assert m1["value"].to_list() == [1, 2, 3, 7, 8]
    assert series.select(pl.struct("series_id", "timestamp").is_duplicated().any()).item() is False
    # a changed file is parsed again; its old rows disappear
    write_files(src, {"line1/machine2.csv": wide_csv([40, 50, 60])})
    fourth = run_ingest([src], out, _config(), command=["t"])
    assert (fourth["files_parsed"], fourth["files_reused"]) == (1, 3)
    m2 = read_series(out).filter(pl.col("series_id") == "line1/machine2/temp")
    assert m2["value"].to_list() == [40, 50, 60]
    parts = sorted(p.name for p in (out / "parts").iterdir())
    # 4 files × (readings, rejects, index) and the state of the next run; the old part is gone
    assert len(parts) == 4 * 3 + 4
    state = {"chunks.parquet", "duplicates.parquet", "series.parquet", "plot.parquet"}
    assert state <= set(parts)


def test_changed_setting_redoes_the_work(tmp_path):
    src = write_files(tmp_path / "src", {"m.csv": wide_csv([1, 2, 3])})
    out = tmp_path / "clean"
    run_ingest([src], out, _config(), command=["t"])
    rerun = run_ingest([src], out, _config(timezone="Europe/Berlin"), command=["t"])
    assert rerun["skipped"] is False and rerun["files_parsed"] == 1
    ts = read_series(out)["timestamp"][0]
    assert ts.hour == 6  # 08:00 in Berlin summer time


def test_plot_error_fails_the_stage_and_keeps_the_old_output(tmp_path, monkeypatch):
    """quality.png is drawn in a thread: its error is the stage's, and nothing is committed."""
    import tsfm_cli.ingest.assemble as stage

    src = write_files(tmp_path / "src", {"m.csv": wide_csv([1, 2, 3])})
    out = tmp_path / "clean"
    run_ingest([src], out, _config(), command=["t"])
    before = (out / "manifest.json").read_bytes()

    def broken_plot(grid, report, path):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(stage, "quality_plot", broken_plot)
    with pytest.raises(RuntimeError, match="no fonts"):
        run_ingest([src], out, _config(timezone="Europe/Berlin"), command=["t"])
    assert (out / "manifest.json").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]


def test_write_error_waits_for_the_plot_before_discarding(tmp_path, monkeypatch):
    """An error while the plot is being drawn: the drawing ends before the new directory is
    removed, so no file is written into it afterwards and no directory is left behind."""
    import time

    import tsfm_cli.ingest.assemble as stage

    drawn = []

    def slow_plot(grid, report, path):
        time.sleep(0.3)
        path.write_bytes(b"png")
        drawn.append(path)

    def broken_write(*args):
        raise OSError("disk full")

    monkeypatch.setattr(stage, "quality_plot", slow_plot)
    monkeypatch.setattr(stage, "_write_state", broken_write)
    src = write_files(tmp_path / "src", {"m.csv": wide_csv([1, 2, 3])})
    with pytest.raises(OSError, match="disk full"):
        run_ingest([src], tmp_path / "clean", _config(), command=["t"])
    assert drawn and not drawn[0].exists()
    assert not (tmp_path / "clean").exists()
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]


# --- CLI -----------------------------------------------------------------------------------


def test_cli_json_quiet_and_rerun(tmp_path):
    src = write_files(tmp_path / "src", {"line1/machine1.csv": wide_csv([1, 2, 3])})
    out = tmp_path / "clean"
    res = run_tsfm("ingest", src, "-o", out, "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["series"] == 1 and summary["out_dir"] == str(out)
    quiet = run_tsfm("ingest", src, "-o", out, "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_cli_max_missing_exits_3_after_writing(tmp_path):
    src = write_files(tmp_path / "src", {"m.csv": wide_csv([1, "", "", "", 5])})
    out = tmp_path / "clean"
    res = run_tsfm("ingest", src, "-o", out, "--max-missing", "0.5", "--json")
    assert res.returncode == 3
    assert "60.0% missing" in res.stderr
    assert json.loads(res.stdout)["quality_gate"] == "failed"
    assert dataset_files(out)


def test_cli_bad_file_among_good_ones(tmp_path):
    src = write_files(
        tmp_path / "src",
        {"good.csv": wide_csv([1, 2, 3]), "bad.csv": b"\x00\x01\x02binary\x00" * 20},
    )
    out = tmp_path / "clean"
    res = run_tsfm("ingest", src, "-o", out, "--json")
    assert res.returncode == 3, res.stderr  # written, but a file was not ingested
    summary = json.loads(res.stdout)
    assert [f["file"] for f in summary["failed_files"]] == [str(src / "bad.csv")]
    rejects = pl.read_parquet(out / "rejects.parquet")
    assert (
        rejects.filter(pl.col("file") == str(src / "bad.csv"))["reason"]
        .str.contains("binary")
        .all()
    )
    human = run_tsfm("ingest", src, "-o", tmp_path / "other")
    assert "not ingested" in human.stderr and "bad.csv" in human.stderr
    strict = run_tsfm("ingest", src, "-o", tmp_path / "strict", "--strict")
    assert strict.returncode == 2 and not (tmp_path / "strict").exists()


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "no such file or directory"),
        ("empty", "empty file"),
        ("binary", "binary file"),
        ("no_time", "no timestamp column"),
        ("recipe", "unknown key"),
        ("all_excluded", "no sensor readings left in any file after exclude_sensors"),
    ],
)
def test_cli_bad_input_exit_2_one_line_output_untouched(tmp_path, case, expected):
    out = tmp_path / "clean"
    good = write_files(tmp_path / "good", {"m.csv": wide_csv([1, 2, 3])})
    run_ingest([good], out, IngestConfig(), command=["t"])
    before = (out / "manifest.json").read_bytes()
    bad = tmp_path / "bad"
    args: list = []
    if case == "missing":
        args = [bad / "nope.csv"]
    elif case == "empty":
        args = [write_files(bad, {"e.csv": ""}) / "e.csv"]
    elif case == "binary":
        args = [write_files(bad, {"b.csv": bytes(range(256)) * 8}) / "b.csv"]
    elif case == "no_time":
        args = [write_files(bad, {"n.csv": "a,b\n1,2\n3,4\n"}) / "n.csv"]
    elif case == "all_excluded":
        recipe = tmp_path / "r.yaml"
        recipe.write_text("ingest:\n  exclude_sensors: ['temp*']\n")
        args = [good, "--config", recipe]
    else:
        recipe = tmp_path / "r.yaml"
        recipe.write_text("ingest:\n  timezone: UTC\n  tiemzone: x\n")
        args = [good, "--config", recipe]
    res = run_tsfm("ingest", *args, "-o", out)
    assert res.returncode == 2
    message = " ".join(res.stderr.split())  # Rich wraps one long line at the terminal width
    assert res.stderr.count("error:") == 1 and expected in message, res.stderr
    assert "Traceback" not in res.stderr
    if case == "recipe":
        assert "r.yaml:3" in message and "tiemzone" in message
    elif case != "missing":
        assert str(args[0].name) in message
    assert (out / "manifest.json").read_bytes() == before


def test_cli_lock_then_wait(tmp_path):
    src = write_files(tmp_path / "src", {"m.csv": wide_csv([1, 2, 3])})
    out = tmp_path / "clean"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from tsfm_cli.stagedir import output_lock\n"
         f"with output_lock({str(out)!r}):\n    print('locked', flush=True); time.sleep(3)"],
        stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = run_tsfm("ingest", src, "-o", out)
        assert busy.returncode == 1 and "another tsfm run" in busy.stderr
        waited = run_tsfm("ingest", src, "-o", out, "--wait", "20", "--quiet")
        assert waited.returncode == 0 and dataset_files(out)
    finally:
        holder.kill()
        holder.wait()


def test_default_output_next_to_sources(tmp_path):
    src = write_files(tmp_path / "plant", {"m.csv": wide_csv([1, 2])})
    res = run_tsfm("ingest", src, "--quiet")
    assert res.returncode == 0, res.stderr
    assert dataset_files(tmp_path / "clean")


def test_help_lists_options_and_does_not_import_torch():
    res = run_tsfm("ingest", "--help")
    assert res.returncode == 0
    for option in ("--timezone", "--freq", "--fill", "--max-missing", "--strict", "--wait"):
        assert option in res.stdout
    probe = subprocess.run(
        [sys.executable, "-c",
         "import sys; from tsfm_cli.ingest import run_ingest; print('torch' in sys.modules)"],
        capture_output=True, text=True, cwd=REPO_ROOT,
    )  # fmt: skip
    assert probe.stdout.strip() == "False"


def test_spike_scales_numpy_and_polars_paths_agree():
    """The per-series spike scales take a numpy path for few series and a polars group_by for
    many: both must give the same numbers (nulls, quantised values, one-point series)."""
    import numpy as np

    from tsfm_cli.ingest.faults import _rolling_median, _series_scales

    rng = np.random.default_rng(3)
    v = pl.when(pl.col("observed")).then(pl.col("value"))
    for _ in range(60):
        n_series = int(rng.integers(1, 6))
        sid = np.repeat(np.arange(n_series, dtype=np.uint32), rng.integers(1, 40, n_series))
        values = rng.normal(size=len(sid)) * rng.choice([0.01, 1, 100])
        values = np.round(values, int(rng.integers(0, 3))).astype(np.float32)
        observed = rng.random(len(sid)) > rng.choice([0, 0.3, 0.9, 1.0])
        grid = pl.DataFrame({"_sid": sid, "value": values, "observed": observed})
        grid = grid.with_columns(_med=_rolling_median(grid, 5))
        grid = grid.with_columns(_dev=(v - pl.col("_med")).abs())
        by_polars = _series_scales(grid, v, n_series, use_numpy=False).sort("_sid")
        by_numpy = _series_scales(grid, v, n_series, use_numpy=True).sort("_sid")
        assert by_numpy.schema == by_polars.schema
        assert by_numpy.equals(by_polars)


def test_spike_scales_in_threads_match_the_polars_path(monkeypatch):
    """Long grids compute the per-series scales in threads: same numbers as one at a time."""
    import numpy as np

    from tsfm_cli.ingest import faults
    from tsfm_cli.ingest.faults import _rolling_median, _series_scales

    monkeypatch.setattr(faults, "SCALES_THREADS_MIN_POINTS", 0)
    rng = np.random.default_rng(4)
    v = pl.when(pl.col("observed")).then(pl.col("value"))
    for _ in range(20):
        n_series = int(rng.integers(1, 8))
        sid = np.repeat(np.arange(n_series, dtype=np.uint32), rng.integers(1, 400, n_series))
        values = np.round(rng.normal(size=len(sid)), int(rng.integers(0, 3))).astype(np.float32)
        observed = rng.random(len(sid)) > rng.choice([0, 0.3, 1.0])
        grid = pl.DataFrame({"_sid": sid, "value": values, "observed": observed})
        grid = grid.with_columns(_med=_rolling_median(grid, 5))
        grid = grid.with_columns(_dev=(v - pl.col("_med")).abs())
        by_polars = _series_scales(grid, v, n_series, use_numpy=False).sort("_sid")
        in_threads = _series_scales(grid, v, n_series, use_numpy=True).sort("_sid")
        assert in_threads.equals(by_polars)


def test_grid_positions_run_by_run_and_in_one_pass_agree(monkeypatch):
    import numpy as np

    from tsfm_cli.ingest import grid

    rng = np.random.default_rng(3)
    sid = np.repeat(np.array([2, 0, 1, 2], dtype=np.uint32), [500, 300, 1, 200])
    t = rng.integers(0, 10**10, len(sid))
    origin = np.array([5, 7_000_000, -3], dtype=np.int64)
    step = np.array([1_000_000, 60_000_000, 3], dtype=np.int64)
    offsets = np.array([0, 10**6, 3 * 10**6], dtype=np.int64)
    by_runs = grid._positions(t, sid, origin, step, offsets)
    monkeypatch.setattr(grid, "MAX_BLOCKS", 0)
    one_pass = grid._positions(t, sid, origin, step, offsets)
    assert np.array_equal(by_runs, one_pass)
    expected = offsets[sid] + np.maximum(np.rint((t - origin[sid]) / step[sid]), 0).astype(int)
    assert np.array_equal(by_runs, expected)
