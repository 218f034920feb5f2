import datetime as dt
import json

import polars as pl

from tsfm_cli.series_dataset import write_dataset
from tsfm_cli.stagedir import StageWriter


def _stage_dir(tmp_path):
    out = tmp_path / "clean"
    frame = pl.DataFrame(
        {
            "series_id": ["b", "a", "a"],
            "timestamp": [dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)] * 3,
            "value": [3.5, 1.0, None],
        }
    )
    with StageWriter(out, "ingest", config={"freq": "1min"}, inputs=[], command=["tsfm"]) as w:
        write_dataset(w, frame)  # two files: series a and series b
        (w.dir / "note.txt").write_text("hello")
        w.register("note.txt")
        w.commit(summary={"series": 2})
    return out


def test_inspect_json_reports_manifest_rows_schema_and_preview(tmp_path, tsfm):
    out = _stage_dir(tmp_path)
    result = tsfm("inspect", out, "--json", "--rows", "2")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["stage"] == "ingest"
    assert info["summary"] == {"series": 2}
    # the dataset is one entry, its files read as one table in series order, no hive columns
    assert [n for n in info["files"] if n.startswith("series")] == ["series/"]
    series = info["files"]["series/"]
    assert series["rows"] == 3 and series["files"] == 2 and "problem" not in series
    assert series["schema"] == {
        "series_id": "String",
        "timestamp": "Datetime(time_unit='us', time_zone='UTC')",
        "value": "Float64",
    }
    assert [(r["series_id"], r["value"]) for r in series["preview"]] == [("a", 1.0), ("a", None)]
    assert info["files"]["note.txt"]["present"] is True


def test_inspect_flags_missing_file_and_renders_table(tmp_path, tsfm):
    out = _stage_dir(tmp_path)
    (out / "note.txt").unlink()
    info = json.loads(tsfm("inspect", out, "--json").stdout)
    assert info["files"]["note.txt"]["problem"] == "missing"
    human = tsfm("inspect", out)
    assert human.returncode == 0
    assert "series/" in human.stderr and "missing" in human.stderr
    only = json.loads(tsfm("inspect", out, "--json", "--file", "series").stdout)
    assert list(only["files"]) == ["series/"]


def test_inspect_rejects_non_stage_directory(tmp_path, tsfm):
    result = tsfm("inspect", tmp_path)
    assert result.returncode == 2
    assert "not a tsfm stage directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_wide_file_is_previewed_one_line_per_column(tmp_path, tsfm, monkeypatch):
    """results.parquet has 33 columns: side by side in 80 characters each was one letter wide
    (names folded to nothing). Then the preview turns: one line per column, names whole."""
    out = tmp_path / "results"
    frame = pl.DataFrame({f"measure_{i:02d}": [float(i), 2.0 * i] for i in range(30)})
    with StageWriter(out, "train", config={}, inputs=[], command=["tsfm"]) as w:
        w.write_parquet("results.parquet", frame)
        w.commit(summary={})
    monkeypatch.setenv("COLUMNS", "80")
    human = tsfm("inspect", out)
    assert human.returncode == 0, human.stderr
    lines = human.stderr.splitlines()
    for i in (0, 17, 29):
        (line,) = [ln for ln in lines if f"measure_{i:02d}" in ln]
        assert "Float64" in line and f"{2.0 * i}" in line
