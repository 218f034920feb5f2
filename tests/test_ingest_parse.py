"""The parse side's shortcuts give what the plain way gives: times read without `%.f` first,
cells counted and read by the fast reader."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal, assert_series_equal

from tests.ingest_helpers import ingest, one
from tsfm_cli.errors import BadInputError
from tsfm_cli.ingest import table
from tsfm_cli.ingest.config import IngestConfig
from tsfm_cli.ingest.sniff import LineLimit, _detect_numbers, count_byte, read_text, sniff
from tsfm_cli.ingest.table import _line_ends, _padded, raw_name, read_fast, split_table
from tsfm_cli.ingest.timestamps import parse_times
from tsfm_cli.ingest.values import clean_column, clean_columns

UTC = dt.timezone.utc
FRACTION = "%Y-%m-%d %H:%M:%S%.f"


def _times(n: int) -> list[str]:
    start = dt.datetime(2024, 3, 1, 12)
    return [(start + dt.timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(n)]


def test_times_with_a_fraction_after_the_sample_read_as_with_fmt():
    # the sample (first 500) has whole seconds only; later cells have fractions, junk, blanks
    values = _times(600)
    values[550] += ".25"
    values[551] += ".123456789"
    values[552] = "2024-03-01 12:09:12."
    values[553] = "2024-02-30 00:00:00"
    values[554] = ""
    values[555] = None
    values[556] = " 2024-03-01 12:09:16 "
    values[557] = "2024-3-1 12:9:17"
    cells = pl.DataFrame({raw_name("t"): values})
    parsed, aware = parse_times(cells, ["t"], "text", IngestConfig())
    plain = cells.select(
        pl.col(raw_name("t")).str.strip_chars().str.to_datetime(FRACTION, strict=False)
    ).to_series()
    assert not aware
    assert isinstance(parsed, pl.Series)  # the whole-second shortcut was taken
    assert_series_equal(parsed, plain, check_names=False)
    assert parsed[550] == dt.datetime(2024, 3, 1, 12, 9, 10, 250000)
    assert parsed[551] == dt.datetime(2024, 3, 1, 12, 9, 11, 123456)
    assert parsed.null_count() == 4  # "…12.", 30 February, "", None


def test_utc_times_with_a_late_fraction_read_as_with_fmt():
    values = [t.replace(" ", "T") + "Z" for t in _times(600)]
    values[580] = "2024-03-01T12:09:40.75Z"
    values[581] = "2024-03-01T12:09:41+02:00"
    cells = pl.DataFrame({raw_name("t"): values})
    parsed, aware = parse_times(cells, ["t"], "text", IngestConfig())
    plain = cells.select(
        pl.col(raw_name("t"))
        .str.replace("Z$", "+00:00")
        .str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_zone="UTC")
    ).to_series()
    assert aware and isinstance(parsed, pl.Series)
    assert_series_equal(parsed, plain, check_names=False)
    assert parsed[580] == dt.datetime(2024, 3, 1, 12, 9, 40, 750000, tzinfo=UTC)
    assert parsed[581] == dt.datetime(2024, 3, 1, 10, 9, 41, tzinfo=UTC)


def test_times_with_fractions_everywhere_are_read_with_fmt_at_once():
    values = [t + ".5" for t in _times(20)]
    cells = pl.DataFrame({raw_name("t"): values})
    parsed, _ = parse_times(cells, ["t"], "text", IngestConfig())
    assert isinstance(parsed, pl.Expr)  # no shortcut: the sample needs the fraction
    got = cells.select(parsed).to_series()
    assert got[0] == dt.datetime(2024, 3, 1, 12, 0, 0, 500000)
    assert got.null_count() == 0


def test_a_fraction_late_in_a_file_reaches_the_series(tmp_path):
    times = _times(700)
    times[650] = times[650] + ".0"
    times[651] = "not a time"
    text = "timestamp,temp\n" + "".join(f"{t},{i}\n" for i, t in enumerate(times))
    _, series, rejects, _ = ingest(tmp_path, {"m.csv": text}, freq="1s")
    temp = one(series, "temp")
    at = temp.filter(pl.col("timestamp") == dt.datetime(2024, 3, 1, 12, 10, 50, tzinfo=UTC))
    assert at["value"].to_list() == [650.0]
    assert rejects.filter(pl.col("reason") == "unparseable timestamp")["line"].to_list() == [653]


@pytest.mark.parametrize("content", [b"", b"  \n\t\r\n", b"\n" * 5])
def test_a_file_of_blanks_is_empty(tmp_path, content):
    path = tmp_path / "e.csv"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match="empty file"):
        read_text(path, IngestConfig())


def test_an_ascii_file_is_read_from_its_bytes_and_other_utf8_is_decoded(tmp_path):
    rows = "".join(f"2024-03-01 12:00:0{i};{i},5\r\n" for i in range(4))
    ascii_path, utf8_path = tmp_path / "a.csv", tmp_path / "u.csv"
    ascii_path.write_bytes(("time;temp\r\n" + rows).encode())
    utf8_path.write_bytes(("time;temp °C\r\n" + rows).encode())
    ascii_sn, utf8_sn = sniff(ascii_path, IngestConfig()), sniff(utf8_path, IngestConfig())
    assert ascii_sn.text is None and utf8_sn.text is not None
    for sn in (ascii_sn, utf8_sn):
        assert (sn.total_lines, sn.delimiter, sn.decimal, sn.encoding) == (5, ";", ",", "utf-8")
        assert sn.lines().to_list()[1:] == rows.split("\r\n")[:-1]
        assert sn.body() == rows.encode()


@pytest.mark.parametrize(
    "body, delim, padded",
    [
        (b"2024-01-01 00:00,1,2\n", ",", False),  # a blank inside a cell
        (b" 2024-01-01,1,2\n", ",", True),  # first byte
        (b"2024-01-01,1,2 ", ",", True),  # last byte
        (b"2024-01-01,1 ,2\n", ",", True),
        (b"2024-01-01, 1,2\n", ",", True),
        (b"2024-01-01,1,2 \r\n", ",", True),
        (b"2024-01-01,1,2\n 2024-01-02,1,2\n", ",", True),
        (b"2024-01-01,1,2\r\n\t2024-01-02,1,2\n", ",", True),
        (b"2024-01-01\t1\t2\n", "\t", False),  # the delimiter is no blank
        (b"2024-01-01 00:00\t1 \t2\n", "\t", True),
        (b"a b,c d\ne f,g h", ",", False),
    ],
)
@pytest.mark.parametrize("scan", [1, 2, 3, 1 << 20])
def test_padded_finds_a_blank_next_to_a_delimiter_or_line_end(
    body, delim, padded, scan, monkeypatch
):
    monkeypatch.setattr(table, "SCAN", scan)  # blanks and their neighbours in other chunks
    assert _padded(np.frombuffer(body, dtype=np.uint8), delim) is padded


@pytest.mark.parametrize("cut", ["none", "last", "last two", "middle"])
def test_dropped_lines_at_the_end_or_inside_give_the_cells_of_the_line_splitter(tmp_path, cut):
    lines = [f"2024-03-01 12:00:{i:02d},{i},{i * 2}" for i in range(30)]
    if cut in ("middle", "last two"):
        lines[28 if cut == "last two" else 12] = "2024-03-01 12:00:12,only"
    text = "time,a,b\n" + "\n".join(lines) + ("\n" if cut == "none" else "")
    if cut != "none":
        text = text[:-3]  # the last line cut off
    path = tmp_path / "m.csv"
    path.write_text(text)
    sn = sniff(path, IngestConfig())
    fast, slow = read_fast(sn, ["#"]), split_table(sn, ["#"])
    assert fast is not None
    assert_frame_equal(fast[0], slow[0])
    assert_frame_equal(fast[1], slow[1])
    assert fast[2] == slow[2]
    assert fast[0].height == 30 - (cut != "none") - (cut in ("middle", "last two"))


def _first_long_line(data: bytes, limit: int) -> int | None:
    """The plain definition: the first line (1-based) longer than `limit` bytes."""
    return next((i + 1 for i, line in enumerate(data.split(b"\n")) if len(line) > limit), None)


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=30),
    limit=st.integers(1, 40),
    chunk=st.integers(1, 40),
    newline_at_end=st.booleans(),
)
def test_line_limit_names_the_first_line_over_the_limit(lengths, limit, chunk, newline_at_end):
    data = b"\n".join(b"x" * n for n in lengths) + (b"\n" if newline_at_end else b"")
    lines = LineLimit(Path("f.csv"), limit)
    expected = _first_long_line(data, limit)
    try:
        for start in range(0, len(data), chunk):
            lines.feed(memoryview(data)[start : start + chunk])
    except BadInputError as exc:
        if chunk <= limit:  # a chunk no longer than the limit: exactly the first such line
            assert f"f.csv:{expected}:" in str(exc)
        assert expected is not None
        return
    assert expected is None
    assert lines.line == data.count(b"\n") + 1
    assert lines.current == len(data.rsplit(b"\n", 1)[-1])


CELL_TEXTS = ["1.5", "-0", "-0.0", "0", "", "N/A", "na", "-999", "-999.0", "9999", "inf",
              "-inf", "NaN", "nan", "x", "1e3", " 2", "1,5", "1.234,5", "+7", ".5", "1.", "--",
              None]  # fmt: skip


@pytest.mark.parametrize(
    "decimal, thousands, numbers",
    [(".", None, [-999.0, 9999.0]), (".", None, [0.0]), (",", ".", [-999.0]), (".", None, [])],
)
def test_clean_columns_give_what_the_plain_expression_gives(decimal, thousands, numbers):
    rng = np.random.default_rng(1)
    frame = pl.DataFrame(
        {f"c{i}": [CELL_TEXTS[k] for k in rng.integers(0, len(CELL_TEXTS), 300)] for i in range(3)},
        schema={f"c{i}": pl.String for i in range(3)},
    )
    text = ["n/a", "na", "nan", "--"]
    got = clean_columns(frame, frame.columns, decimal, thousands, text, numbers)
    for name, (value, flags) in zip(frame.columns, got, strict=True):
        plain_value, plain_flags = clean_column(name, decimal, thousands, text, numbers)
        plain = frame.select(v=plain_value, f=plain_flags)
        assert_series_equal(value, plain["v"], check_names=False)
        assert_series_equal(flags, plain["f"], check_names=False)


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet=",;\n\rab ", max_size=60),
    scan=st.integers(1, 8),
    delim=st.sampled_from([",", ";"]),
)
def test_line_ends_and_delimiters_before_them_chunk_by_chunk(text, scan, delim):
    data = text.encode()
    lines = data.split(b"\n")
    if lines[-1] == b"":  # the file ends with a newline: no last line after it
        lines = lines[:-1]
    expected_ends = np.cumsum([len(line) + 1 for line in lines]) - 1
    if data and not data.endswith(b"\n"):
        expected_ends[-1] = len(data)
    expected_before = np.cumsum([line.count(delim.encode()) for line in lines])
    table.SCAN, old = scan, table.SCAN
    try:
        ends, before = _line_ends(np.frombuffer(data, dtype=np.uint8), ord(delim))
    finally:
        table.SCAN = old
    assert ends.tolist() == expected_ends.tolist()
    assert before.tolist() == expected_before.tolist()
    assert count_byte(data, ord("\n")) == data.count(b"\n")


@pytest.mark.parametrize(
    "cells, expected",
    [
        (["1.5", "2.25", "x"], (".", None)),
        (["1,5", "2,25", "3.5"], (",", None)),
        (["1.234,5", "12,5"], (",", ".")),
        (["1,234.5", "1.5"], (".", ",")),
        (["1 234,5", "2,5"], (",", " ")),
        (["1 234.5"], (".", " ")),
        (["2024-01-01 00:00", "N/A", ""], (".", None)),
    ],
)
def test_decimal_and_thousands_marks_of_a_sample(cells, expected):
    assert _detect_numbers(cells) == expected
