"""Property tests: junk never crashes ingest, and every raw data line is accounted for."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ingest_helpers import minutes, read_series, write_files
from tsfm_cli.errors import BadInputError
from tsfm_cli.ingest import IngestConfig, run_ingest

SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(lambda x: f"{x:g}"),
    st.integers(-10_000, 10_000).map(str),
    st.sampled_from(["", "-999", "N/A", "#VALUE!", "ERR", "null", "--", "1.234,5", "1,234.5",
                     "12,5", "  7 ", '"3.5"', "°C", "offline", "-", "9999", "0x1F", "1e400"]),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\n\r"),
            max_size=8),
)  # fmt: skip


def _run(files: dict[str, bytes | str], **settings_):
    with tempfile.TemporaryDirectory() as tmp:
        src = write_files(Path(tmp) / "src", files)
        out = Path(tmp) / "clean"
        try:
            summary = run_ingest([src], out, IngestConfig(**settings_), command=["prop"])
        except BadInputError as exc:
            assert "internal error" not in str(exc), str(exc)
            assert "\n" not in str(exc)
            return None
        series = read_series(out)
        rejects = pl.read_parquet(out / "rejects.parquet")
        manifest = json.loads((out / "manifest.json").read_text())
        return summary, series, rejects, manifest


@SETTINGS
@given(st.binary(min_size=1, max_size=400))
def test_random_bytes_never_crash(data):
    result = _run({"junk.csv": data})
    if result is not None:
        summary = result[0]
        assert summary["lines_unaccounted"] == 0


@SETTINGS
@given(
    st.lists(st.lists(CELLS, min_size=3, max_size=3), min_size=1, max_size=25),
    st.sampled_from([",", ";", "\t", "|"]),
    st.lists(st.integers(0, 24), max_size=4),
    st.booleans(),
)
def test_cell_garbage_never_crashes_and_every_line_is_accounted(rows, sep, broken, cut_last):
    times = minutes(len(rows))
    lines = ["timestamp" + sep + sep.join(["a", "b", "c"])]
    for i, (t, cells) in enumerate(zip(times, rows, strict=True)):
        cells = [c.replace(sep, " ") for c in cells]
        if i in broken:
            t = "garbage-time"
        lines.append(sep.join([t, *cells]))
    text = "\n".join(lines)
    if cut_last and len(lines) > 2:
        text = text[: len(text) - len(lines[-1]) // 2]
    else:
        text += "\n"
    result = _run({"m.csv": text})
    if result is None:
        return
    summary, series, rejects, manifest = result
    data_lines = sum(1 for line in text.split("\n")[1:] if line.strip())
    assert summary["lines_data"] == data_lines
    assert summary["lines_used"] + summary["lines_rejected"] == data_lines
    assert summary["lines_unaccounted"] == 0
    used = set(series["raw_line"].drop_nulls().to_list())
    rejected = set(rejects["line"].drop_nulls().to_list())
    assert used | rejected == set(range(2, 2 + data_lines))
    rows = [m["rows"] for n, m in manifest["outputs"].items() if n.startswith("series/")]
    assert len(rows) == summary["partitions"] and sum(rows) == series.height == summary["points"]
    assert manifest["outputs"]["rejects.parquet"]["rows"] == rejects.height == summary["rejects"]
    assert series.filter(pl.col("observed"))["value"].null_count() == 0
    assert series.filter(~pl.col("observed") & (pl.col("flags") == 0)).height == 0
