"""Hostile input files for ingest (all generated here): bounded lines and columns, nothing
dropped silently, unreadable and dangling files reported, exit codes for cron."""

from __future__ import annotations

import gzip

import pytest
from ingest_helpers import ingest, write_files

from tsfm_cli.errors import BadInputError
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
