"""The training series store: memory-mapped, keyed by train.parquet's content, and the batches
it gives are those of the in-memory series (the pre-store sampler, kept here as reference)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.splits_fixture import make_splits
from tsfm_cli.errors import BadInputError
from tsfm_cli.stagedir import sha256_file
from tsfm_cli.train.data import BatchSampler, DataBudget, TrainSeries, load_train


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    return make_splits(tmp_path_factory.mktemp("store"))


def _reference_series(path: Path) -> TrainSeries:
    """train.parquet read whole, as the sweep read it before the store."""
    frame = pl.read_parquet(path).sort("series_id", "timestamp")
    grouped = (
        frame.with_columns(pl.when(pl.col("observed")).then(pl.col("value")).alias("value"))
        .group_by("series_id", maintain_order=True)
        .agg(
            pl.col("value"),
            pl.col("observed"),
            pl.col("timestamp").first().dt.epoch("s").alias("start_s"),
            pl.col("freq_s").first(),
        )
    )
    values = [
        np.asarray(v.to_numpy(), dtype=np.float32)
        for v in grouped["value"].list.eval(pl.element().fill_null(float("nan")))
    ]
    observed = [
        np.asarray(o.to_numpy(), dtype=bool) & np.isfinite(v)
        for o, v in zip(grouped["observed"], values, strict=True)
    ]
    return TrainSeries.from_lists(
        grouped["series_id"].to_list(), values, observed, grouped["start_s"], grouped["freq_s"]
    )


def _reference_batch(series: TrainSeries, segments, window, batch_size, seed, step):
    """The pre-store BatchSampler: every chosen segment copied into flat arrays first."""
    values, observed, times, offsets, starts, at = [], [], [], [], [], 0
    for seg in segments:
        s = slice(seg.start, seg.start + seg.length)
        values.append(np.nan_to_num(series.values[seg.series][s], nan=0.0))
        observed.append(series.observed[seg.series][s])
        freq = series.freq_s[seg.series]
        t0 = series.start_s[seg.series] + seg.start * freq
        times.append(t0 + np.arange(seg.length) * freq)
        offsets.append(at)
        starts.append(seg.length - window + 1)
        at += seg.length
    flat_v, flat_o = np.concatenate(values).astype(np.float32), np.concatenate(observed)
    flat_t = np.concatenate(times).astype(np.float64)
    offsets, starts = np.asarray(offsets), np.asarray(starts)
    rng = np.random.default_rng([seed, step])
    seg = rng.choice(len(offsets), size=batch_size, p=starts / starts.sum())
    start = (rng.random(batch_size) * starts[seg]).astype(np.int64)
    idx = (offsets[seg] + start)[:, None] + np.arange(window)[None, :]
    return {"values": flat_v[idx], "observed": flat_o[idx], "times": flat_t[idx]}


def test_store_batches_equal_the_in_memory_sampler(splits, tmp_path):
    path = splits / "train.parquet"
    stored = load_train(path, tmp_path / "runs")
    assert isinstance(stored.flat_values, np.memmap)
    reference = _reference_series(path)
    assert stored.series_ids == reference.series_ids
    assert np.array_equal(stored.start_s, reference.start_s)
    assert np.array_equal(stored.flat_values, reference.flat_values, equal_nan=True)
    assert np.array_equal(stored.flat_observed, reference.flat_observed)
    budget = DataBudget.build(stored, window=96, seed=0)
    for d in (300, 1.0):
        segments = budget.take(d)
        sampler = BatchSampler(stored, segments, 96, batch_size=8, seed=5)
        for step in (0, 1, 17):
            got = sampler.batch(step)
            want = _reference_batch(reference, segments, 96, 8, 5, step)
            for key in ("values", "observed", "times"):
                assert got[key].dtype == want[key].dtype, key
                assert np.array_equal(got[key], want[key]), (d, step, key)


def test_store_is_built_once_keyed_by_content_and_rebuilt_when_damaged(splits, tmp_path):
    path = splits / "train.parquet"
    root = tmp_path / "runs"
    load_train(path, root)
    (folder,) = root.glob("train-store-*")
    assert folder.name == f"train-store-{sha256_file(path)[:16]}"
    record = json.loads((folder / "store.json").read_text())
    built = (folder / "values.npy").stat().st_mtime_ns
    load_train(path, root)
    assert (folder / "values.npy").stat().st_mtime_ns == built  # reused
    values = np.load(folder / "values.npy", mmap_mode="r+")
    values[0] = 12345.0  # damaged bytes: the recorded sha256 no longer matches
    values.flush()
    del values
    again = load_train(path, root)
    assert json.loads((folder / "store.json").read_text()) == record
    assert again.flat_values[0] != 12345.0
    assert [p.name for p in root.iterdir()] == [folder.name]  # no leftover build folder


def test_rows_of_a_series_apart_are_bad_input(splits, tmp_path):
    frame = pl.read_parquet(splits / "train.parquet")
    broken = pl.concat([frame.slice(1), frame.head(1)])  # its first row moved to the end
    broken.write_parquet(tmp_path / "train.parquet")
    with pytest.raises(BadInputError, match="not together"):
        load_train(tmp_path / "train.parquet", tmp_path / "runs")
