"""The two ways of splitting data lines into cells (polars' CSV reader, the line splitter) agree,
and what only the CSV reader can do: quoted cells that hold the delimiter."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from tests.ingest_helpers import ingest, minutes, one, read_series
from tsfm_cli.errors import BadInputError
from tsfm_cli.ingest import run_ingest
from tsfm_cli.ingest.config import IngestConfig
from tsfm_cli.ingest.sniff import sniff
from tsfm_cli.ingest.table import read_fast, split_table

CELLS = ["1.5", "", "N/A", "-999", "x", " 2 ", '"3"', "7", "12.25"]


@st.composite
def messy_csv(draw) -> str:
    """A small wide export with blank, comment, short, long, padded and trailing-delimiter
    lines, CRLF or LF, maybe cut off in the middle of a line."""
    sep = draw(st.sampled_from([",", ";", "\t", "|"]))
    width = draw(st.integers(2, 5))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    lines = ["time" + sep + sep.join(f"s{i}" for i in range(1, width))]
    for row, time in enumerate(minutes(draw(st.integers(1, 25)))):
        cells = [time] + [draw(st.sampled_from(CELLS)) for _ in range(width - 1)]
        kind = draw(st.sampled_from(["ok"] * 6 + ["blank", "comment", "short", "long", "trail"]))
        line = {
            "blank": draw(st.sampled_from(["", "   "])),
            "comment": draw(st.sampled_from(["# note", "// x" + sep + "y", "  # indented"])),
            "short": sep.join(cells[: max(1, row % width)]),
            "long": sep.join([*cells, "9"]),
            "trail": sep.join(cells) + sep * draw(st.integers(1, 3)),
        }.get(kind, sep.join(cells))
        lines.append(line)
    text = eol.join(lines) + draw(st.sampled_from([eol, ""]))
    cut = draw(st.integers(len(text) // 2, len(text)))
    return text[:cut]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=messy_csv())
def test_csv_reader_and_line_splitter_agree(tmp_path_factory, text):
    path = Path(tmp_path_factory.mktemp("t")) / "m.csv"
    path.write_bytes(text.encode())
    config = IngestConfig()
    try:
        sniffed = sniff(path, config)
    except BadInputError:
        return  # cut so early that no table is left: both readers are never reached
    fast = read_fast(sniffed, config.comment_prefixes)
    slow = split_table(sniffed, config.comment_prefixes)
    if fast is None:  # a case the fast reader hands over: the splitter's answer is the answer
        return
    assert_frame_equal(fast[0], slow[0])  # cells and their line numbers
    assert_frame_equal(fast[1], slow[1])  # rejected lines, raw text and reason
    assert fast[2] == slow[2]  # line counts


def test_the_fast_reader_takes_an_ordinary_export(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(
        "time,a,b\n" + "".join(f"{t},1,2\n" for t in minutes(5)) + "2024-05-06 08:05:00,1"
    )
    sniffed = sniff(path, IngestConfig())
    cells, bad, counts = read_fast(sniffed, ["#"])
    assert cells["line"].to_list() == [2, 3, 4, 5, 6]
    assert bad["line"].to_list() == [7]
    assert bad["reason"].item().startswith("truncated last line (2 of 3 fields")
    assert counts["lines_data"] == 6


def test_quoted_cells_may_hold_the_delimiter(tmp_path):
    times = minutes(3)
    text = '"time","temp [°C]","note, free text","pressure"\n' + "".join(
        f'"{t}","{20 + i},5","pump A, left side",{1000 + i}\n' for i, t in enumerate(times)
    )
    summary, series, rejects, report = ingest(tmp_path, {"m1.csv": text})
    assert one(series, "temp")["value"].to_list() == [20.5, 21.5, 22.5]
    assert one(series, "pressure")["value"].to_list() == [1000, 1001, 1002]
    assert set(series["sensor"]) == {"temp", "pressure"}  # the text column is not a sensor
    assert report.filter(pl.col("sensor") == "temp")["unit"].item() == "°C"
    assert summary["lines_unaccounted"] == 0
    # the text column is named in rejects once (not dropped unseen), nothing else is rejected
    assert rejects["column"].to_list() == ["note, free text"]
    assert rejects["reason"][0].startswith("column not used")


def test_a_line_break_inside_quotes_falls_back_and_still_adds_up(tmp_path):
    times = minutes(4)
    text = (
        "time,temp,note\n"
        f'{times[0]},20.5,"ok"\n'
        f'{times[1]},21.5,"two\nlines"\n'
        f"{times[2]},22.5,x\n"
        f"{times[3]},23.5,y\n"
    )
    path = tmp_path / "src" / "m1.csv"
    path.parent.mkdir()
    path.write_text(text)
    assert read_fast(sniff(path, IngestConfig()), ["#"]) is None
    summary, series, rejects, _ = ingest(tmp_path / "run", {"m1.csv": text})
    assert summary["lines_data"] == summary["lines_used"] + summary["lines_rejected"]
    assert one(series, "temp")["value"].drop_nulls().to_list() == [20.5, 21.5, 22.5, 23.5]
    assert rejects.filter(pl.col("line") == 4)["reason"].to_list() == [
        "wrong number of fields (1 of 3)"
    ]


def test_a_transposed_file_becomes_one_series_per_line(tmp_path):
    lines = ["  1.0e+00   2.0e+00   3.0e+00   4.0e+00", "  5.0  6.0  7.0  8.0", " 9 10 11 12"]
    summary, series, rejects, _ = ingest(
        tmp_path,
        {"d00.dat": "\n".join(lines) + "\n"},
        transposed=True,
        headerless=True,
        start="2000-01-01T00:00:00Z",
        interval="3m",
    )
    col2 = one(series, "col2")
    assert col2["value"].to_list() == [5.0, 6.0, 7.0, 8.0]
    assert col2["raw_line"].unique().to_list() == [2]
    assert col2["timestamp"].dt.strftime("%H:%M").to_list() == ["00:00", "00:03", "00:06", "00:09"]
    assert sorted(set(series["sensor"])) == ["col1", "col2", "col3"]
    assert summary["lines_data"] == summary["lines_used"] == 3 and rejects.height == 0


def test_a_transposed_file_takes_names_from_the_first_field(tmp_path):
    text = "temp,20.5,21.5,N/A\npressure,1.0,1.5,2.5\n"
    _, series, rejects, _ = ingest(
        tmp_path, {"m.csv": text}, transposed=True, start="2024-01-01 00:00", interval="1m"
    )
    assert one(series, "temp")["value"].to_list() == [20.5, 21.5, None]
    assert one(series, "pressure")["value"].to_list() == [1.0, 1.5, 2.5]
    assert rejects.select("line", "column", "raw", "reason").rows() == [
        (1, "temp", "N/A", "sentinel")
    ]


def test_a_transposed_file_needs_start_and_interval(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "d00.dat").write_text("1 2 3\n4 5 6\n")
    with pytest.raises(BadInputError, match=r"d00\.dat: a transposed file has no times"):
        run_ingest([src / "d00.dat"], tmp_path / "out", IngestConfig(transposed=True))
    assert not (tmp_path / "out").exists()


def test_group_columns_split_a_wide_file_into_series_also_from_the_cache(tmp_path):
    times = minutes(3)
    rows = [f"{t},{unit},{10 * unit + i},{i}" for i, t in enumerate(times) for unit in (1, 2)]
    text = "time,engine,temp,speed\n" + "\n".join(rows) + "\n"
    src = tmp_path / "src"
    src.mkdir()
    (src / "fleet.csv").write_text(text)
    out = tmp_path / "clean"
    config = IngestConfig(group_columns=["engine"])
    first = run_ingest([src], out, config, command=["t"])
    (src / "later.csv").write_text(text.replace("2024-05-06", "2024-05-07"))
    again = run_ingest([src], out, config, command=["t"])  # fleet.csv comes from its cache
    assert (first["files_parsed"], again["files_parsed"], again["files_reused"]) == (1, 1, 1)
    series = read_series(out)
    engine2 = series.filter(pl.col("series_id") == "fleet/2/temp").sort("timestamp")
    assert engine2["engine"].unique().to_list() == ["2"]
    assert engine2["value"].to_list() == [20, 21, 22]
    assert engine2["raw_line"].to_list() == [3, 5, 7]
    assert sorted(set(series["series_id"])) == [
        f"{file}/{engine}/{sensor}"
        for file in ("fleet", "later")
        for engine in (1, 2)
        for sensor in ("speed", "temp")
    ]
