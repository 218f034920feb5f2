"""Ingest cleans stretches within a budget of readings (bounded memory: short series whole, a
long one a run of time chunks at a time): the outputs are those of cleaning all series at once,
row for row."""

from __future__ import annotations

import polars as pl
import pytest

from tests.conftest import REPO_ROOT
from tests.ingest_helpers import read_series
from tsfm_cli.errors import BadInputError
from tsfm_cli.ingest import IngestConfig, run_ingest
from tsfm_cli.ingest import stage as ingest_stage
from tsfm_cli.ingest.config import validate
from tsfm_cli.recipe import build_config, load_section

SAMPLE = REPO_ROOT / "sample_data"
RECIPE = REPO_ROOT / "recipes" / "ingest_sample.yaml"


def _sample(out, monkeypatch, budget=None):
    if budget is not None:
        monkeypatch.setattr(ingest_stage, "BATCH_READINGS", budget)
    values, source = load_section(RECIPE, "ingest")
    config = build_config(IngestConfig, values, source)
    validate(config, source.where)
    return run_ingest([SAMPLE], out, config, command=["test"])


def test_batched_ingest_gives_the_rows_of_one_batch(tmp_path, monkeypatch):
    whole = _sample(tmp_path / "whole", monkeypatch)
    # a budget below every series: one batch per series, readings spilled and scanned back
    batched = _sample(tmp_path / "batched", monkeypatch, budget=10)
    assert whole["series"] > 3
    assert read_series(tmp_path / "whole").equals(read_series(tmp_path / "batched"))
    for name in ("report.parquet", "rejects.parquet"):
        a = pl.read_parquet(tmp_path / "whole" / name)
        b = pl.read_parquet(tmp_path / "batched" / name)
        assert a.height > 0 and a.equals(b), name
    assert (tmp_path / "batched" / "quality.png").read_bytes() == (
        tmp_path / "whole" / "quality.png"
    ).read_bytes()
    drop = ("out_dir",)
    assert {k: v for k, v in whole.items() if k not in drop} == {
        k: v for k, v in batched.items() if k not in drop
    }
    assert batched["lines_unaccounted"] == 0
    assert not (tmp_path / "batched" / "_work").exists()


def test_a_rerun_reads_cached_parts_in_batches(tmp_path, monkeypatch):
    """Parts not held in memory (over the budget) are read back from the cache."""
    out = tmp_path / "clean"
    first = _sample(out, monkeypatch, budget=10)
    series = read_series(out)
    values, source = load_section(RECIPE, "ingest")
    config = build_config(IngestConfig, {**values, "max_gap": 7}, source)
    again = run_ingest([SAMPLE], out, config, command=["test"])
    assert again["files_reused"] == first["files"] and again["files_parsed"] == 0
    assert read_series(out).height == series.height
    assert again["lines_unaccounted"] == 0


def test_shards_parse_their_files_and_a_run_without_shard_merges_them(tmp_path, monkeypatch):
    """`--shard i/n` parses only its share of the files into OUT-shard-i-of-n/parts; the run
    without a shard reuses every part (nothing parsed again) and gives the rows of one run."""
    whole = _sample(tmp_path / "whole", monkeypatch)
    values, source = load_section(RECIPE, "ingest")
    config = build_config(IngestConfig, values, source)
    out = tmp_path / "clean"
    shards = [run_ingest([SAMPLE], out, config, command=["t"], shard=f"{i}/3") for i in range(3)]
    assert sum(s["files_parsed"] for s in shards) == whole["files"]
    assert all(s["files_parsed"] < whole["files"] for s in shards)
    assert (tmp_path / "clean-shard-1-of-3" / "parts").is_dir()
    assert not (tmp_path / "clean-shard-1-of-3" / "series").exists()
    merged = run_ingest([SAMPLE], out, config, command=["t"])
    assert merged["files_parsed"] == 0 and merged["files_reused"] == whole["files"]
    assert read_series(out).equals(read_series(tmp_path / "whole"))
    for name in ("report.parquet", "rejects.parquet"):
        assert pl.read_parquet(out / name).equals(pl.read_parquet(tmp_path / "whole" / name))
    assert merged["lines_unaccounted"] == 0


def test_a_damaged_shard_part_is_parsed_again(tmp_path):
    values, source = load_section(RECIPE, "ingest")
    config = build_config(IngestConfig, values, source)
    out = tmp_path / "clean"
    for i in range(2):
        run_ingest([SAMPLE], out, config, command=["t"], shard=f"{i}/2")
    part = next((tmp_path / "clean-shard-0-of-2" / "parts").glob("*.rejects.parquet"))
    part.write_bytes(part.read_bytes() + b"x")
    merged = run_ingest([SAMPLE], out, config, command=["t"])
    assert merged["files_parsed"] == 1 and merged["lines_unaccounted"] == 0
    with pytest.raises(BadInputError, match="--shard"):
        run_ingest([SAMPLE], out, config, command=["t"], shard="2/2")


def test_the_plot_shows_the_same_series_when_they_span_batches(tmp_path, monkeypatch):
    """quality.png shows the first PLOT_MAX_SERIES series: drawn once the batches holding
    them are cleaned, it is the picture of cleaning all series at once."""
    from tsfm_cli.ingest import assemble, report

    monkeypatch.setattr(report, "PLOT_MAX_SERIES", 3)
    monkeypatch.setattr(assemble, "PLOT_MAX_SERIES", 3)
    _sample(tmp_path / "whole", monkeypatch)
    _sample(tmp_path / "batched", monkeypatch, budget=10)
    assert (tmp_path / "batched" / "quality.png").read_bytes() == (
        tmp_path / "whole" / "quality.png"
    ).read_bytes()
