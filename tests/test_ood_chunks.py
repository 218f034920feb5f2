"""ood-split a chunk of series at a time: the same rows whatever the chunk size."""

from __future__ import annotations

import polars as pl
import pytest
from ingest_helpers import read_series
from ood_plant import START, make_ingest_dir, plant_frame, write_ingest_dir, write_ingest_files

from tsfm_cli.errors import BadInputError
from tsfm_cli.ood import OodConfig, run_ood_split
from tsfm_cli.ood.data import chunks, load_meta
from tsfm_cli.series_dataset import open_series, partition_name
from tsfm_cli.stagedir import open_stage

OUTPUTS = ("train.parquet", "eval.parquet", "scenarios.parquet")


def _config() -> OodConfig:
    return OodConfig(
        heldout=["machine=m2"],
        custom={"late": "hour(timestamp) >= 12"},
        horizons=[32, 64],
        families=["level_shift", "missing_bursts"],
    )


def _series(clean):
    return open_series(open_stage(clean, "ingest"))


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    return make_ingest_dir(tmp_path_factory.mktemp("chunks") / "clean", points=6 * 288)


def test_metadata_read_in_slices_equals_one_pass(plant):
    whole = load_meta(_series(plant), ["machine"], ["line"], chunk_rows=10**9)
    # slices that cut series in the middle: the per-slice aggregates must combine exactly
    sliced = load_meta(_series(plant), ["machine"], ["line"], chunk_rows=1000)
    assert sliced.series_ids == whole.series_ids and sliced.sensors == whole.sensors
    for name in ("freq_s", "first_row", "lengths", "first_us", "last_us"):
        assert (getattr(sliced, name) == getattr(whole, name)).all(), name
    assert all((sliced.groups[k] == whole.groups[k]).all() for k in ("machine", "line"))
    frame = read_series(plant)
    assert int(whole.lengths.sum()) == frame.height
    assert whole.series_ids == frame["series_id"].unique(maintain_order=True).to_list()


def test_chunks_cover_every_series_once_within_the_row_bound(plant):
    meta = load_meta(_series(plant), [], [])
    parts = chunks(meta, chunk_rows=3 * 6 * 288)
    assert [i for part in parts for i in part] == list(range(meta.n_series))
    assert len(parts) > 2
    for part in parts:
        rows = int(meta.lengths[part].sum())
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
    """A partition file holding a row of another series (the first series' last row, in the
    last series' file): that series' rows are not contiguous in the table."""
    frame = plant_frame(points=400, short=None)
    first, last = frame["series_id"][0], frame["series_id"][-1]
    rows = frame.with_row_index("r")
    last_of_first = rows.filter(pl.col("series_id") == first)["r"].max()
    moved = rows.filter(pl.col("r") == last_of_first).drop("r")
    own = frame.filter(pl.col("series_id") == first).head(-1)
    others = frame.filter((pl.col("series_id") != first) & (pl.col("series_id") != last))
    files = {
        partition_name(str(sid), START.date()): part
        for (sid,), part in others.partition_by("series_id", as_dict=True).items()
    }
    files[partition_name(first, START.date())] = own
    files[partition_name(last, START.date())] = pl.concat(
        [frame.filter(pl.col("series_id") == last), moved]
    )
    broken = write_ingest_files(tmp_path / "in", files)
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


def test_shards_then_merge_give_the_rows_of_one_unsharded_run(plant, tmp_path):
    whole = run_ood_split(plant, tmp_path / "whole", _config())
    for i in range(3):
        summary = run_ood_split(plant, tmp_path / "out", _config(), shard=f"{i}/3")
        assert summary["out_dir"] == str(tmp_path / f"out-shard-{i}-of-3")
        assert (tmp_path / f"out-shard-{i}-of-3" / "windows.parquet").is_file()
    assert not (tmp_path / "out").exists()
    merged = run_ood_split(plant, tmp_path / "out", _config())
    for name in OUTPUTS:
        assert pl.read_parquet(tmp_path / "whole" / name).equals(
            pl.read_parquet(tmp_path / "out" / name)
        ), name
    assert merged["eval_windows"] == whole["eval_windows"]


def test_merge_refuses_missing_or_foreign_shards(plant, tmp_path):
    run_ood_split(plant, tmp_path / "out", _config(), shard="0/2")
    with pytest.raises(BadInputError, match="shards 1 of 2 have not run"):
        run_ood_split(plant, tmp_path / "out", _config())
    other = OodConfig(horizons=[32], families=["ramp"])
    run_ood_split(plant, tmp_path / "out", other, shard="1/2")
    with pytest.raises(BadInputError, match="a shard of other settings"):
        run_ood_split(plant, tmp_path / "out", _config())
    assert not (tmp_path / "out").exists()


def test_shard_through_the_cli(plant, tmp_path):
    from typer.testing import CliRunner

    from tsfm_cli.cli import app

    out = tmp_path / "splits"
    runner = CliRunner()
    for shard in ("0/2", "1/2"):
        done = runner.invoke(app, ["ood-split", str(plant), "-o", str(out), "--shard", shard])
        assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["ood-split", str(plant), "-o", str(out), "--json"])
    assert done.exit_code == 0, done.output
    assert (out / "eval.parquet").is_file() and (out / "train.parquet").is_file()
    bad = runner.invoke(app, ["ood-split", str(plant), "-o", str(out), "--shard", "2/2"])
    assert bad.exit_code == 2 and "bad shard '2/2'" in bad.output
