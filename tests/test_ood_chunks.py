"""ood-split a chunk of series at a time: the same rows whatever the chunk size."""

from __future__ import annotations

import polars as pl
import pytest
from ood_plant import make_ingest_dir, plant_frame, write_ingest_dir

from tsfm_cli.errors import BadInputError
from tsfm_cli.ood import OodConfig, run_ood_split
from tsfm_cli.ood.data import chunks, load_meta

OUTPUTS = ("train.parquet", "eval.parquet", "scenarios.parquet")


def _config() -> OodConfig:
    return OodConfig(
        heldout=["machine=m2"],
        custom={"late": "hour(timestamp) >= 12"},
        horizons=[32, 64],
        families=["level_shift", "missing_bursts"],
    )


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    return make_ingest_dir(tmp_path_factory.mktemp("chunks") / "clean", points=6 * 288)


def test_chunks_cover_every_series_once_within_the_row_bound(plant):
    meta = load_meta(plant / "series.parquet", [], [])
    parts = chunks(meta, chunk_rows=3 * 6 * 288)
    assert [i for part in parts for i in part] == list(range(meta.n_series))
    assert len(parts) > 2
    for part in parts:
        rows = int(meta.lengths[part.start : part.stop].sum())
        assert rows <= 3 * 6 * 288 or len(part) == 1


@pytest.mark.parametrize("chunk_rows", [1, 2 * 6 * 288 + 300])
def test_chunked_split_gives_the_rows_of_the_whole_plant_at_once(plant, tmp_path, chunk_rows):
    whole = run_ood_split(plant, tmp_path / "whole", _config(), chunk_rows=10**9)
    chunked = run_ood_split(plant, tmp_path / "chunked", _config(), chunk_rows=chunk_rows)
    assert whole["val_windows"] > 0 and whole["eval_windows"] > whole["val_windows"]
    for name in OUTPUTS:
        a = pl.read_parquet(tmp_path / "whole" / name)
        b = pl.read_parquet(tmp_path / "chunked" / name)
        assert a.height > 0, name
        assert a.equals(b), name
    summary_keys = ("series", "train_rows", "eval_windows", "val_windows", "scenarios")
    assert {k: whole[k] for k in summary_keys} == {k: chunked[k] for k in summary_keys}


def test_a_series_split_in_two_runs_is_bad_input(tmp_path):
    frame = plant_frame(points=400, short=None)
    # the first series' last row moved to the end of the file: not contiguous
    first = frame["series_id"][0]
    rows = frame.with_row_index("r")
    last_of_first = rows.filter(pl.col("series_id") == first)["r"].max()
    moved = pl.concat(
        [rows.filter(pl.col("r") != last_of_first), rows.filter(pl.col("r") == last_of_first)]
    ).drop("r")
    broken = write_ingest_dir(tmp_path / "in", moved)
    with pytest.raises(BadInputError, match="not sorted"):
        run_ood_split(broken, tmp_path / "out", OodConfig(families=["ramp"], horizons=[32]))
    assert not (tmp_path / "out").exists()


def test_time_going_back_inside_a_series_is_bad_input_in_any_chunk(tmp_path):
    frame = plant_frame(points=400, short=None)
    last = frame["series_id"][-1]
    swapped = frame.with_columns(
        pl.when(pl.col("series_id") == last)
        .then(pl.col("timestamp").reverse().over("series_id"))
        .otherwise(pl.col("timestamp"))
    )
    broken = write_ingest_dir(tmp_path / "in", swapped)
    with pytest.raises(BadInputError, match="not sorted"):
        run_ood_split(
            broken, tmp_path / "out", OodConfig(families=["ramp"], horizons=[32]), chunk_rows=400
        )
