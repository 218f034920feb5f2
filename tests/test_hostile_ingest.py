"""Hostile input files for ingest (all generated here): bounded lines and columns, nothing
dropped silently, unreadable and dangling files reported, exit codes for cron."""

from __future__ import annotations

import gzip

import polars as pl
import pytest
from ingest_helpers import dataset_files, ingest, minutes, one, wide_csv, write_files

from tests.conftest import run_tsfm
from tsfm_cli.errors import BadInputError, QualityGateError
from tsfm_cli.ingest import IngestConfig, run_ingest


def test_a_line_over_max_line_bytes_is_refused_naming_file_and_line(tmp_path):
    src = write_files(
        tmp_path / "src",
        {"huge.csv": "timestamp,temp\n2024-01-01 00:00:00,1\n2024-01-01 00:01:00," + "7" * 5000},
    )
    with pytest.raises(BadInputError, match=r"huge.csv:3: line longer than 4,096 bytes"):
        run_ingest([src], tmp_path / "out", IngestConfig(max_line_bytes=4096))
    assert not (tmp_path / "out").exists()


def test_a_gzip_bomb_line_stops_while_decompressing(tmp_path):
    from tsfm_cli.ingest.sniff import CHUNK, gunzip_bounded

    raw = gzip.compress(b"timestamp,temp\n" + b"0" * (20 * CHUNK))
    with pytest.raises(BadInputError, match=r"bomb.csv.gz:2: line longer than"):
        gunzip_bounded(tmp_path / "bomb.csv.gz", raw, CHUNK)


def test_gzip_bounded_reads_concatenated_members_like_gzip(tmp_path):
    from tsfm_cli.ingest.sniff import gunzip_bounded

    raw = gzip.compress(b"a,b\n1,2\n") + gzip.compress(b"3,4\n")
    assert gunzip_bounded(tmp_path / "x.gz", raw, 100) == b"a,b\n1,2\n3,4\n"
    with pytest.raises(BadInputError, match="corrupt gzip"):
        gunzip_bounded(tmp_path / "x.gz", raw[:-12], 100)


def test_a_table_wider_than_max_columns_is_refused_before_parsing(tmp_path):
    header = "timestamp," + ",".join(f"s{i}" for i in range(60))
    row = "2024-01-01 00:00:00," + ",".join("1.5" for _ in range(60))
    src = write_files(tmp_path / "src", {"wide.csv": f"{header}\n{row}\n"})
    with pytest.raises(BadInputError, match=r"wide.csv:1: 61 columns \(limit max_columns 50\)"):
        run_ingest([src], tmp_path / "out", IngestConfig(max_columns=50))
    summary, series, _, _ = ingest(tmp_path / "ok", {"wide.csv": f"{header}\n{row}\n"})
    assert summary["series"] == 60  # within the default limit it is read


def test_limits_are_bounded_settings(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("max_columns: 100000000\n")
    from tsfm_cli.recipe import build_config, load_section

    values, source = load_section(recipe, "ingest")
    with pytest.raises(BadInputError, match="max_columns.*out of range"):
        build_config(IngestConfig, values, source)


def _decimal_comma_csv(n: int = 40) -> str:
    rows = ["timestamp,flow,temp,note"]
    for i, t in enumerate(minutes(n)):
        rows.append(f'{t},{1.5 + i / 10:.1f},"{20 + i % 7},{i % 10}",RUN')
    return "\n".join(rows) + "\n"


def test_quoted_decimal_comma_column_next_to_point_decimals_is_parsed(tmp_path):
    summary, series, rejects, _ = ingest(tmp_path, {"dc.csv": _decimal_comma_csv()})
    temp = one(series, "temp")
    assert temp["observed"].all() and temp["value"].to_list()[:3] == pytest.approx(
        [20.0, 21.1, 22.2]
    )
    assert one(series, "flow")["value"].to_list()[:2] == pytest.approx([1.5, 1.6])
    # the label column is not a sensor, and says so in rejects (not dropped unseen)
    note = rejects.filter(pl.col("column") == "note")
    assert note.height == 1 and "none of its 40 non-empty cells is a number" in note["reason"][0]
    assert summary["lines_used"] == summary["lines_data"] == 40


def test_inverted_range_is_a_config_error_naming_the_key(tmp_path):
    from tsfm_cli.ingest.config import validate
    from tsfm_cli.recipe import build_config, load_section

    recipe = tmp_path / "r.yaml"
    recipe.write_text("ingest:\n  ranges:\n    temp: [50, 10]\n")
    values, source = load_section(recipe, "ingest")
    config = build_config(IngestConfig, values, source)
    with pytest.raises(BadInputError, match=rf"{recipe}:3: key 'ingest.ranges.temp'.*inverted"):
        validate(config, source.where)


def test_dangling_symlink_goes_to_failed_files_the_rest_is_ingested(tmp_path):
    src = write_files(tmp_path / "src", {"good.csv": wide_csv([1, 2, 3])})
    (src / "gone.csv").symlink_to(tmp_path / "nowhere.csv")
    out = tmp_path / "out"
    with pytest.raises(QualityGateError, match="1 of 2 files not ingested") as err:
        run_ingest([src], out, IngestConfig())
    summary = err.value.summary
    assert summary["failed_files"] == [
        {"file": str(src / "gone.csv"), "reason": f"{src / 'gone.csv'}: cannot read "
         "(dangling symbolic link)"}
    ]  # fmt: skip
    assert summary["series"] == 1 and dataset_files(out)
    rejects = pl.read_parquet(out / "rejects.parquet")
    assert (
        rejects.filter(pl.col("file") == str(src / "gone.csv"))["reason"]
        .str.contains("dangling")
        .all()
    )


def _deny(monkeypatch, victim):
    """`open` raises PermissionError for `victim`, as chmod 000 does for a non-root user (the
    tests may run as root, whom chmod does not stop)."""
    import builtins
    import io

    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if str(file) == str(victim):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setattr(io, "open", guarded)


def test_unreadable_file_goes_to_failed_files_the_rest_is_ingested(tmp_path, monkeypatch):
    src = write_files(
        tmp_path / "src", {"a.csv": wide_csv([1, 2, 3]), "locked.csv": wide_csv([4, 5, 6])}
    )
    _deny(monkeypatch, src / "locked.csv")
    with pytest.raises(QualityGateError) as err:
        run_ingest([src], tmp_path / "out", IngestConfig())
    (failed,) = err.value.summary["failed_files"]
    assert failed["file"] == str(src / "locked.csv") and "Permission denied" in failed["reason"]
    assert err.value.summary["series"] == 1
    # the file readable again is a change: it is ingested on the next run
    monkeypatch.undo()
    summary = run_ingest([src], tmp_path / "out", IngestConfig())
    assert summary["failed_files"] == [] and summary["series"] == 2


def test_only_unreadable_files_is_exit_2(tmp_path, monkeypatch):
    src = write_files(tmp_path / "src", {"locked.csv": wide_csv([4, 5, 6])})
    _deny(monkeypatch, src / "locked.csv")
    with pytest.raises(BadInputError, match="locked.csv: cannot read"):
        run_ingest([src], tmp_path / "out", IngestConfig())


def test_file_growing_while_read_is_not_parsed_at_another_length(tmp_path, monkeypatch):
    import tsfm_cli.ingest.stage as stage

    src = write_files(
        tmp_path / "src", {"a.csv": wide_csv([1, 2, 3]), "live.csv": wide_csv([4, 5, 6])}
    )
    real = stage.describe_file

    def describe_then_grow(path):
        described = real(path)
        if path.name == "live.csv":  # the export appends a line after it was hashed
            with open(path, "a") as handle:
                handle.write("2024-05-06 08:03:00,7\n")
        return described

    monkeypatch.setattr(stage, "describe_file", describe_then_grow)
    with pytest.raises(QualityGateError) as err:
        run_ingest([src], tmp_path / "out", IngestConfig())
    (failed,) = err.value.summary["failed_files"]
    assert "changed while being read" in failed["reason"] and "live.csv" in failed["reason"]
    monkeypatch.undo()  # complete now: the next run reads it, all four lines
    summary = run_ingest([src], tmp_path / "out", IngestConfig())
    assert summary["failed_files"] == [] and summary["lines_used"] == 3 + 4


def test_quiet_cron_with_a_broken_file_exits_3_with_one_line(tmp_path):
    src = write_files(
        tmp_path / "src",
        {"good.csv": wide_csv([1, 2, 3]), "broken.csv": b"\x00\x01binary\x00" * 20},
    )
    res = run_tsfm("ingest", src, "-o", tmp_path / "out", "--quiet")
    assert res.returncode == 3 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "1 of 2 files not ingested" in lines[0] and "broken.csv" in lines[0]
    again = run_tsfm("ingest", src, "-o", tmp_path / "out", "--quiet")  # reused: still says so
    assert again.returncode == 3 and len(again.stderr.strip().splitlines()) == 1


def test_tsfm_run_propagates_the_failed_file_exit_3(tmp_path):
    src = write_files(
        tmp_path / "src",
        {"good.csv": wide_csv([1, 2, 3]), "broken.csv": b"\x00\x01binary\x00" * 20},
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"run:\n  sources: [{src}]\n  workdir: {tmp_path / 'work'}\n  stages: [ingest, ood-split]\n"
    )
    res = run_tsfm("run", recipe, "--quiet")
    assert res.returncode == 3, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "not ingested" in res.stderr
    assert not (tmp_path / "work" / "ood-split").exists()  # the chain stops at the gate


def _valve_and_flow(n: int = 80):
    """A valve that stays shut (constant: after its 5 absent readings, a run of 65 is 'stuck'
    by the default check), and a flow with one absent reading."""
    rows = ["timestamp,valve,flow"]
    for i, t in enumerate(minutes(n)):
        valve = "" if 10 <= i < 15 else "0"
        flow = "" if i == 40 else f"{10 + (i * 7) % 5 + i / 100:.2f}"
        rows.append(f"{t},{valve},{flow}")
    return "\n".join(rows) + "\n"


def test_report_tells_absent_from_faults(tmp_path):
    _, _, _, report = ingest(tmp_path, {"plant.csv": _valve_and_flow()})
    valve = report.filter(pl.col("sensor") == "valve").row(0, named=True)
    assert valve["absent_frac"] == pytest.approx(5 / 80)
    assert valve["fault_frac"] == pytest.approx(65 / 80)  # its 65-reading run flagged stuck
    assert valve["missing_frac"] == pytest.approx(70 / 80)  # kept for compatibility
    flow = report.filter(pl.col("sensor") == "flow").row(0, named=True)
    assert flow["absent_frac"] == pytest.approx(1 / 80) and flow["fault_frac"] == 0


@pytest.mark.parametrize(
    "gate_on, exit_code",
    [("absent", None), ("faults", "81.2% flagged as faults"), ("both", "87.5% missing")],
)
def test_gate_on_chooses_what_the_gate_counts(tmp_path, gate_on, exit_code):
    src = write_files(tmp_path / "src", {"plant.csv": _valve_and_flow()})
    config = IngestConfig(max_missing=0.2, gate_on=gate_on)
    if exit_code is None:  # 6% absent at worst: passes
        assert run_ingest([src], tmp_path / "out", config)["quality_gate"] == "passed"
    else:
        with pytest.raises(QualityGateError, match=f"plant/valve is {exit_code}"):
            run_ingest([src], tmp_path / "out", config)


def test_fault_checks_per_series_glob(tmp_path):
    summary, series, _, report = ingest(
        tmp_path, {"plant.csv": _valve_and_flow()}, series={"plant/valve*": {"stuck": False}}
    )
    valve = report.filter(pl.col("sensor") == "valve").row(0, named=True)
    assert valve["fault_frac"] == 0 and valve["missing_frac"] == pytest.approx(5 / 80)
    assert one(series, "valve")["observed"].sum() == 75


def test_per_series_mask_flags_but_keeps_observed(tmp_path):
    _, series, _, report = ingest(
        tmp_path, {"plant.csv": _valve_and_flow()}, series={"valve": {"mask_faults": []}}
    )
    valve = report.filter(pl.col("sensor") == "valve").row(0, named=True)
    assert valve["fault_frac"] == pytest.approx(65 / 80)  # still flagged
    assert valve["missing_frac"] == pytest.approx(5 / 80)  # but not hidden


def test_per_series_settings_are_checked_with_their_key(tmp_path):
    from tsfm_cli.ingest.config import validate

    recipe = tmp_path / "r.yaml"
    recipe.write_text('series:\n  "plant/valve*":\n    stuck: maybe\n')
    from tsfm_cli.recipe import build_config, load_section

    values, source = load_section(recipe, "ingest")
    config = build_config(IngestConfig, values, source)
    with pytest.raises(BadInputError, match=r"r.yaml:3: key 'series.\"plant/valve\*\".stuck'"):
        validate(config, source.where)


def test_reading_stops_at_the_first_line_over_the_limit(tmp_path, monkeypatch):
    """A file that is one long line is not read whole: the read stops in the chunk where the
    line passes max_line_bytes (so memory stays bounded for a 10 GB one-line file)."""
    import tsfm_cli.ingest.stage as stage
    from tsfm_cli.ingest.sniff import CHUNK
    from tsfm_cli.stagedir import describe_file

    path = tmp_path / "one_line.csv"
    path.write_bytes(b"timestamp,temp\n2024-01-01 00:00:00," + b"1" * (40 * CHUNK) + b"\n")
    read = []

    class Counting:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def read(self, n):
            chunk = self.handle.read(n)
            read.append(len(chunk))
            return chunk

        def seek(self, offset):
            read.clear()  # the two bytes that tell a .gz are looked at again
            return self.handle.seek(offset)

    monkeypatch.setattr(stage, "open", lambda p, mode: Counting(open(p, mode)), raising=False)  # noqa: SIM115 (closed by Counting)
    with pytest.raises(BadInputError, match=r"one_line.csv:2: line longer than 1,048,576 bytes"):
        stage._read_as_hashed(path, describe_file(path), CHUNK)
    assert sum(read) <= 2 * CHUNK < path.stat().st_size


def test_long_layout_value_column_with_quoted_decimal_commas(tmp_path):
    rows = ["timestamp,tag,value,quality"]  # the point decimals of `quality` make "." the mark
    for i, t in enumerate(minutes(20)):
        rows.append(f'{t},temp,"{20 + i % 7},5",0.{90 + i % 9}')
    summary, series, rejects, _ = ingest(tmp_path, {"long.csv": "\n".join(rows) + "\n"})
    temp = one(series, "temp")
    assert temp["observed"].all() and temp["value"][0] == pytest.approx(20.5)
    assert rejects.height == 0


def test_a_fifo_named_csv_is_reported_not_opened(tmp_path):
    import os

    src = write_files(tmp_path / "src", {"good.csv": wide_csv([1, 2, 3])})
    os.mkfifo(src / "pipe.csv")  # opening it to read would block until a writer comes
    with pytest.raises(QualityGateError) as err:
        run_ingest([src], tmp_path / "out", IngestConfig())
    (failed,) = err.value.summary["failed_files"]
    assert failed["file"] == str(src / "pipe.csv") and "not a regular file" in failed["reason"]
