"""A rerun of ingest after files were added, removed or changed cleans only the time chunks their
readings reach, keeps everything else from the last run, and leaves exactly the outputs that
ingesting the same files into a fresh folder gives: every file's bytes, the summary and the line
accounting (increment.py)."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil

import numpy as np
import polars as pl
import pytest
from rich.console import Console

from tsfm_cli.ingest import IngestConfig, run_ingest
from tsfm_cli.ui import Reporter

DAY0 = dt.datetime(2024, 3, 4)
SENSORS = ("temp", "pressure", "flow")


def _day_file(
    folder, day: int, *, seed=None, sensors=SENSORS, overlap_min=0, shift=0.0, minutes=1440
):
    """One machine's export for a day: 1-min readings with jitter, spikes, a stuck run, gaps,
    a sentinel, junk text, a row repeated; `overlap_min` minutes of the next day too (readings
    that another file also holds), values shifted by `shift` (a file rewritten)."""
    rng = np.random.default_rng(day + 100 if seed is None else seed)
    n = minutes + overlap_min
    start = DAY0 + dt.timedelta(days=day)
    seconds = np.arange(n) * 60 + rng.integers(-4, 5, n)
    seconds[0] = abs(seconds[0])
    times = [(start + dt.timedelta(seconds=int(s))).strftime("%Y-%m-%d %H:%M:%S") for s in seconds]
    columns = {"timestamp": times}
    for k, sensor in enumerate(sensors):
        value = 20 + 10 * k + np.cumsum(rng.normal(0, 0.3, n)) + shift
        value[rng.choice(n, 4, replace=False)] += rng.choice([-40, 40], 4)  # spikes
        at = int(rng.integers(50, n - 200))
        value[at : at + 40] = value[at]  # stuck
        text = np.char.mod("%.3f", value).astype(object)
        gap = int(rng.integers(10, n - 100))
        text[gap : gap + int(rng.integers(2, 6))] = ""  # a short gap, filled
        text[int(rng.integers(0, n))] = "-9999"
        text[int(rng.integers(0, n))] = "n/a"
        columns[sensor] = text
    frame = pl.DataFrame(columns)
    frame = pl.concat([frame, frame.slice(int(rng.integers(0, n)), 1)])  # a repeated row
    path = folder / "line1" / f"machine1_{start:%Y-%m-%d}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(path)
    return path


def _config(**settings) -> IngestConfig:
    base = {
        "ranges": {"*": [-100, 200]},
        "fill": "linear",
        "max_gap": 5,
        "stuck_points": 20,
        "spike_window": 31,
        "partition": "day",
    }
    return IngestConfig(**{**base, **settings})


def _same_outputs(a, b) -> None:
    """Two ingest folders hold the same outputs, byte for byte, and the same line accounting."""
    ma = json.loads((a / "manifest.json").read_text())
    mb = json.loads((b / "manifest.json").read_text())
    files_a = {k: v["sha256"] for k, v in ma["outputs"].items()}
    files_b = {k: v["sha256"] for k, v in mb["outputs"].items()}
    assert sorted(files_a) == sorted(files_b)
    differ = [k for k in files_a if files_a[k] != files_b[k]]
    assert not differ, differ
    ignore = ("files_parsed", "files_reused", "increment")
    assert {k: v for k, v in ma["summary"].items() if k not in ignore} == {
        k: v for k, v in mb["summary"].items() if k not in ignore
    }
    lines = ("lines_data", "lines_used", "lines_rejected", "unaccounted")
    assert {f: [m[k] for k in lines] for f, m in ma["files"].items()} == {
        f: [m[k] for k in lines] for f, m in mb["files"].items()
    }


def _history(src, days: int) -> None:
    for day in range(days):
        _day_file(src, day)


def _history_without_day_2(src, days: int) -> None:
    for day in range(days):
        if day != 2:
            _day_file(src, day)


def _ingested(tmp_path, days: int, config: IngestConfig):
    """(sources, output) after a first ingest of `days` daily files."""
    src, out = tmp_path / "src", tmp_path / "clean"
    _history(src, days)
    run_ingest([src], out, config, command=["t"])
    return src, out


def _as_fresh(tmp_path, src, out, config: IngestConfig) -> None:
    """`out` holds what ingesting `src` into an empty folder gives."""
    run_ingest([src], tmp_path / "fresh", config, command=["t"])
    _same_outputs(out, tmp_path / "fresh")


def _rerun_matches_fresh(tmp_path, config, change, days=5):
    """Ingest `days` daily files (or the history `change` writes first), apply the change,
    ingest again into the same folder and into a fresh one: the two must agree. The rerun's
    and the fresh run's summaries."""
    src = tmp_path / "src"
    history, change = change if isinstance(change, tuple) else (_history, change)
    history(src, days)
    out = tmp_path / "clean"
    first = run_ingest([src], out, config, command=["t"])
    assert first["increment"]["mode"] == "full"
    change(src)
    rerun = run_ingest([src], out, config, command=["t"])
    fresh = run_ingest([src], tmp_path / "fresh", config, command=["t"])
    _same_outputs(out, tmp_path / "fresh")
    return rerun, fresh


CHANGES = {
    "a new day": lambda src: _day_file(src, 5),
    "a new day after a gap of two days": lambda src: _day_file(src, 7),
    "a day before the first": lambda src: _day_file(src, -1),
    "a missing day filled in": (_history_without_day_2, lambda src: _day_file(src, 2)),
    "a file rewritten": lambda src: _day_file(src, 2, shift=0.5),
    "a file removed": lambda src: (src / "line1" / "machine1_2024-03-06.csv").unlink(),
    "the last file removed": lambda src: (src / "line1" / "machine1_2024-03-08.csv").unlink(),
    "a new sensor": lambda src: _day_file(src, 5, sensors=(*SENSORS, "speed")),
    "a new machine": lambda src: shutil.copy(
        _day_file(src, 5), src / "line1" / "machine2_2024-03-09.csv"
    ),
    "a new day, the last one rewritten to overlap it (duplicates)": lambda src: (
        _day_file(src, 5),
        _day_file(src, 4, overlap_min=90),
    ),
}


@pytest.mark.parametrize("freq", ["1min", None], ids=["freq set", "step from the data"])
@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_a_rerun_gives_the_bytes_of_a_fresh_ingest(tmp_path, change, freq):
    rerun, fresh = _rerun_matches_fresh(tmp_path, _config(freq=freq), CHANGES[change])
    assert rerun["increment"]["mode"] == "incremental", rerun["increment"]
    total = fresh["increment"]["chunks_cleaned"]
    assert rerun["increment"]["chunks_cleaned"] + rerun["increment"]["chunks_kept"] >= total


def test_a_new_day_cleans_the_chunks_its_margins_reach_and_reads_few_files(tmp_path):
    """One new day on five: its own chunk and the day before (the margins reach back over
    midnight) are cleaned, from the files of those days and the margin before them. The day
    before that (whose gaps are filled from the next day's first points) is kept, as those
    points came out as they were; so are the older days, whose files are not read."""
    rerun, fresh = _rerun_matches_fresh(tmp_path, _config(freq="1min"), CHANGES["a new day"])
    assert rerun["files_parsed"] == 1 and rerun["files_reused"] == 5
    assert rerun["increment"]["why"] == "files new or changed: 1, gone or replaced: 0"
    assert rerun["increment"]["chunks_cleaned"] == 2 * len(SENSORS)
    assert rerun["increment"]["chunks_kept"] == 4 * len(SENSORS)
    assert rerun["increment"]["files_read"] == 3
    assert fresh["increment"]["files_read"] == 6


def test_a_ring_chunk_is_cleaned_again_when_the_core_points_it_reads_moved(tmp_path):
    """The day before the core is kept only if the core's first points (its gaps are filled
    from them) are as they were. The last run's copy of a core chunk that cannot be trusted (its
    bytes differ from the manifest) counts as moved: that series' ring chunk is cleaned again,
    from its files, and the outputs are still those of a fresh run."""
    src, out = _ingested(tmp_path, 5, _config())
    core = next((out / "series").rglob("series=line1%2Fmachine1%2Ftemp/chunk=2024-03-08/*"))
    core.chmod(0o644)
    core.write_bytes(core.read_bytes()[:-30] + b"\0" * 30)
    _day_file(src, 5)
    rerun = run_ingest([src], out, _config(), command=["t"])
    assert rerun["increment"]["chunks_cleaned"] == 2 * len(SENSORS) + 1
    assert rerun["increment"]["files_read"] == 3 + 3  # the ring's day and its margins
    _as_fresh(tmp_path, src, out, _config())


def test_nothing_changed_reads_nothing(tmp_path):
    src, out = _ingested(tmp_path, 3, _config())
    again = run_ingest([src], out, _config(), command=["t"])
    assert again["skipped"] is True


def test_changed_settings_clean_everything_again(tmp_path):
    src, out = _ingested(tmp_path, 3, _config())
    _day_file(src, 3)
    again = run_ingest([src], out, _config(max_gap=2), command=["t"])
    assert again["increment"]["mode"] == "full"
    assert again["increment"]["why"] == "the settings changed"
    _as_fresh(tmp_path, src, out, _config(max_gap=2))


def test_a_damaged_kept_file_is_named_and_cleaned_again(tmp_path):
    """A partition of the last run whose bytes differ from its manifest is not carried over:
    its chunk is cleaned again, and the result is still that of a fresh run."""
    src, out = _ingested(tmp_path, 5, _config())
    victim = next((out / "series").rglob("chunk=2024-03-04/part-0.parquet"))
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.chmod(0o644)
    victim.write_bytes(bytes(data))
    _day_file(src, 5)
    console = Console(file=io.StringIO(), width=400)
    rerun = run_ingest([src], out, _config(), command=["t"], reporter=Reporter(False, console))
    assert rerun["increment"]["mode"] == "incremental"
    assert f"{victim}: damaged (sha256 differs)" in console.file.getvalue()
    assert rerun["increment"]["chunks_cleaned"] == 2 * len(SENSORS) + 1
    _as_fresh(tmp_path, src, out, _config())


def test_a_damaged_state_file_cleans_everything_again(tmp_path):
    src, out = _ingested(tmp_path, 3, _config())
    state = out / "parts" / "chunks.parquet"
    state.chmod(0o644)
    state.write_bytes(state.read_bytes()[:-20] + b"\0" * 20)
    _day_file(src, 3)
    rerun = run_ingest([src], out, _config(), command=["t"])
    assert rerun["increment"]["mode"] == "full"
    assert "damaged" in rerun["increment"]["why"]
    _as_fresh(tmp_path, src, out, _config())


def test_the_previous_folder_is_untouched_when_a_rerun_fails(tmp_path, monkeypatch):
    """Kept files are hard links to the last run's: a rerun that fails halfway leaves the last
    run's folder and its bytes as they were."""
    from tsfm_cli.ingest import assemble

    src, out = _ingested(tmp_path, 4, _config())
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(assemble, "_write_state", broken)
    _day_file(src, 4)
    with pytest.raises(OSError):
        run_ingest([src], out, _config(), command=["t"])
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_a_series_the_plot_shows_for_the_first_time_is_drawn_from_its_kept_files(
    tmp_path, monkeypatch
):
    """quality.png shows the first series; the last run kept the plot of those it showed. When
    a series comes into view (here: the one before it went away with its file), its kept
    chunks are read for the picture, which is the picture of a fresh run."""
    from tsfm_cli.ingest import assemble, report

    monkeypatch.setattr(report, "PLOT_MAX_SERIES", 2)
    monkeypatch.setattr(assemble, "PLOT_MAX_SERIES", 2)

    def history(src, days):  # day 0 has one more sensor, the first series by name
        _history(src, days)
        _day_file(src, 0, sensors=("a_extra", *SENSORS))

    def change(src):
        (src / "line1" / "machine1_2024-03-04.csv").unlink()

    rerun, _ = _rerun_matches_fresh(tmp_path, _config(), (history, change), days=6)
    assert rerun["increment"]["chunks_kept"] > 0


def test_runs_of_states_add_up_as_the_points_do():
    """A kept chunk's plot is stored as runs of one state: added to the time bins, they count
    what its points count, for any bins and runs."""
    from tsfm_cli.ingest.report import StateBins

    rng = np.random.default_rng(3)
    for length in (1, 7, 399, 400, 401, 5_000):
        states = rng.choice([0, 0, 0, 1, 2, 3], length).astype(np.int8)
        states[rng.integers(0, length) :] = rng.integers(0, 4)  # one long run
        by_point, by_run = StateBins(length, 400), StateBins(length, 400)
        by_point.add(states, 0)
        starts = np.flatnonzero(np.r_[True, states[1:] != states[:-1]])
        lengths = np.diff(np.r_[starts, length])
        by_run.add_runs(starts, lengths, states[starts])
        assert (by_run.counts == by_point.counts).all()
        assert np.array_equal(by_run.colours(), by_point.colours(), equal_nan=True)


def test_a_file_parsed_again_for_a_damaged_cache_keeps_its_line_accounting(tmp_path):
    """A cached part that fails its sha256 is parsed again: that file's lines are counted again
    (its readings sit in kept chunks too), and the outputs are those of a fresh run."""
    src, out = _ingested(tmp_path, 5, _config())
    manifest = json.loads((out / "manifest.json").read_text())
    part = next(m["part"] for f, m in manifest["files"].items() if f.endswith("03-04.csv"))
    cached = out / "parts" / f"{part}.parquet"
    cached.chmod(0o644)
    cached.write_bytes(cached.read_bytes()[:-40] + b"\0" * 40)
    _day_file(src, 5)
    rerun = run_ingest([src], out, _config(), command=["t"])
    assert rerun["files_parsed"] == 2 and rerun["increment"]["mode"] == "incremental"
    _as_fresh(tmp_path, src, out, _config())
