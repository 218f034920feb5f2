"""A fuzz of messy CSV exports (delimiters, quoting, decimal commas, junk and blank lines, BOM,
CRLF, ragged rows, sentinels): through the real CLI (in-process), the exit is always 0, 2 or 3,
and every line written as data ends in series.parquet or in rejects.parquet."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.ingest_helpers import read_series
from tsfm_cli.cli import app

CELLS = st.one_of(
    st.floats(-1e4, 1e4, allow_nan=False).map(lambda x: round(x, 3)),
    st.integers(-1000, 1000),
    st.sampled_from(["", "N/A", "-999", "abc", "1.2.3", "#VALUE!", " 7 ", "inf"]),
)
JUNK = st.sampled_from(
    ["", "   ", "# a comment", "garbage line without delimiters", "Total;;;", '"unterminated']
)


@st.composite
def messy_csv(draw) -> tuple[bytes, set[int]]:
    """(file bytes, 1-based numbers of the lines written as data rows, ragged ones included)."""
    delim = draw(st.sampled_from([",", ";", "\t", "|"]))
    decimal_comma = draw(st.booleans())
    quote_all = draw(st.booleans())
    n_sensors = draw(st.integers(1, 3))
    n_rows = draw(st.integers(3, 25))
    t0 = dt.datetime(2024, 3, 1, 8, 0)

    def cell(value) -> str:
        text = str(value)
        if decimal_comma and isinstance(value, float):
            text = text.replace(".", ",")
        if quote_all or delim in text:
            text = f'"{text}"'
        return text

    lines: list[str] = []
    lines += draw(st.lists(st.sampled_from(["Export v2", "Plant: A", ""]), max_size=2))
    lines.append(delim.join(["timestamp", *[f"sensor{i}" for i in range(n_sensors)]]))
    data: set[int] = set()
    for r in range(n_rows):
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(JUNK))
        stamp = (t0 + dt.timedelta(minutes=r)).strftime("%Y-%m-%d %H:%M:%S")
        values = [cell(draw(CELLS)) for _ in range(n_sensors)]
        width = draw(st.sampled_from([n_sensors] * 6 + [n_sensors - 1, n_sensors + 2]))
        values = (values + ["9"] * 3)[: max(width, 0)]
        lines.append(delim.join([stamp, *values]))
        data.add(len(lines))
    newline = "\r\n" if draw(st.booleans()) else "\n"
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    raw = text.encode("utf-8")
    if draw(st.booleans()):
        raw = b"\xef\xbb\xbf" + raw
    return raw, data


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(messy_csv())
def test_messy_csv_every_data_line_in_series_or_rejects(case):
    raw, data_lines = case
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        (src / "export.csv").write_bytes(raw)
        out = Path(tmp) / "clean"
        result = CliRunner().invoke(app, ["ingest", str(src), "-o", str(out), "--json"])
        assert result.exit_code in (0, 2, 3), result.output
        event(f"exit {result.exit_code}")
        assert "internal error" not in result.output
        if result.exit_code == 2:  # the file as a whole is refused, one line, nothing written
            assert not out.exists()
            return
        manifest = json.loads((out / "manifest.json").read_text())
        assert all("internal error" not in f["reason"] for f in manifest["summary"]["failed_files"])
        if manifest["summary"]["failed_files"]:
            return  # exit 3: the file is named in failed_files and in rejects (no line lost)
        series = read_series(out)
        rejects = pl.read_parquet(out / "rejects.parquet")
        used = set(series.filter(pl.col("raw_line").is_not_null())["raw_line"].to_list())
        rejected = set(rejects.filter(pl.col("line").is_not_null())["line"].to_list())
        meta = next(iter(manifest["files"].values()))
        header = meta.get("header_line")
        lines = raw.decode("utf-8-sig").replace("\r\n", "\n").split("\n")
        for number in data_lines:
            if number == header or not lines[number - 1].strip():
                continue
            assert number in used or number in rejected, (number, lines[number - 1], meta)
        summary = manifest["summary"]
        assert summary["lines_unaccounted"] == 0
        assert summary["lines_used"] + summary["lines_rejected"] == summary["lines_data"]
