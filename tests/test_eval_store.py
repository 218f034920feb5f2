"""The evaluation-window store: the selected windows memory-mapped, keyed by eval.parquet's
content and the selection settings; models and baselines read it a batch at a time and get the
figures of the whole-frame path (the pre-store reader is kept here as the reference)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from tests.splits_fixture import make_splits
from tsfm_cli.baselines import score_baselines, score_windows
from tsfm_cli.errors import BadInputError
from tsfm_cli.models.config import ModelConfig
from tsfm_cli.models.forecaster import Forecaster
from tsfm_cli.stagedir import sha256_file
from tsfm_cli.train import eval_store
from tsfm_cli.train.data import load_eval, select_windows
from tsfm_cli.train.eval_store import store_key
from tsfm_cli.train.sweep import evaluate

torch.set_num_threads(1)
MAX_WINDOWS = 4  # fewer than the fixture's 6 per scenario × horizon: the seed chooses


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    return make_splits(tmp_path_factory.mktemp("evalstore"), n_series=3, windows=6)


def _rows_to_array(column: pl.Series, dtype) -> np.ndarray:
    """A list column → array through Python lists (None → NaN / False): no shared code."""
    fill = False if dtype is bool else np.nan
    return np.array([[fill if v is None else v for v in row] for row in column.to_list()], dtype)


def _reference_groups(path: Path, max_windows: int = MAX_WINDOWS) -> list[dict]:
    """The pre-store load_eval: every selected window read at once, grouped by split ×
    scenario × horizon in the selection's order."""
    chosen = select_windows(pl.read_parquet(path), max_windows, seed=0)
    groups = []
    for (split, scenario, horizon), part in chosen.group_by(
        ["split", "scenario", "horizon"], maintain_order=True
    ):
        context = _rows_to_array(part["context"], np.float32)
        target = _rows_to_array(part["target"], np.float32)
        t0 = part["target_start"].dt.epoch("s").to_numpy().astype(np.float64)
        freq = part["freq_s"].to_numpy().astype(np.float64)
        n_ctx = context.shape[1]
        steps = np.arange(n_ctx + target.shape[1]) - n_ctx
        groups.append(
            {
                "key": (split, scenario, int(horizon)),
                "series_id": part["series_id"].to_list(),
                "context": np.nan_to_num(context, nan=0.0),
                "context_observed": _rows_to_array(part["context_observed"], bool)
                & np.isfinite(context),
                "target": np.nan_to_num(target, nan=0.0),
                "target_observed": _rows_to_array(part["target_observed"], bool)
                & np.isfinite(target),
                "times": t0[:, None] + steps[None, :] * freq[:, None],
            }
        )
    return groups


def _load(splits: Path, root: Path | None, max_windows: int = MAX_WINDOWS):
    return load_eval(
        splits / "eval.parquet", splits / "scenarios.parquet", max_windows, 0, store_root=root
    )


def _assert_equal_to_reference(groups, reference) -> None:
    assert [(g.split, g.scenario, g.horizon) for g in groups] == [r["key"] for r in reference]
    for group, want in zip(groups, reference, strict=True):
        assert group.windows["series_id"].to_list() == want["series_id"]
        parts = [group.batch(lo, lo + 3) for lo in range(0, group.n_windows, 3)]
        for key in ("context", "context_observed", "target", "target_observed", "times"):
            got = np.concatenate([p[key] for p in parts])
            assert got.dtype == want[key].dtype, key
            assert np.array_equal(got, want[key]), (group.scenario, key)


@pytest.mark.parametrize("rows_at_once", [1, 7, eval_store.BATCH_ROWS])
def test_store_batches_equal_the_whole_frame_reader(splits, tmp_path, monkeypatch, rows_at_once):
    monkeypatch.setattr(eval_store, "BATCH_ROWS", rows_at_once)  # eval.parquet rows per read
    _, arrays, groups = _load(splits, tmp_path)
    assert arrays.memory is None and arrays.folder.parent == tmp_path  # read from the files
    _assert_equal_to_reference(groups, _reference_groups(splits / "eval.parquet"))


def test_a_first_read_without_a_selected_window(splits, tmp_path, monkeypatch):
    """The arrays are sized by the first selected window, wherever it lies in eval.parquet."""
    monkeypatch.setattr(eval_store, "BATCH_ROWS", 1)
    path = splits / "eval.parquet"
    chosen = eval_store.choose(path, 1, 0)
    assert chosen["__row"].min() > 0  # the first read holds no selected window
    _, _, groups = _load(splits, tmp_path, max_windows=1)
    _assert_equal_to_reference(groups, _reference_groups(path, max_windows=1))


def test_model_metrics_from_the_store_equal_the_in_memory_path(splits, tmp_path):
    torch.manual_seed(0)
    model = Forecaster("encoder", ModelConfig(d_model=16, layers=1), patch_size=16)
    _, _, stored = _load(splits, tmp_path)
    _, memory, in_memory = _load(splits, None)
    assert memory.memory is not None and memory.folder is None
    rows_a, windows_a = evaluate(model, stored, 8, batch_size=3, seed=1, with_windows=True)
    rows_b, windows_b = evaluate(model, in_memory, 8, batch_size=3, seed=1, with_windows=True)
    assert rows_a == rows_b
    assert windows_a.equals(windows_b)
    assert len(rows_a) > len(stored)  # per-line rows too


def test_baselines_read_in_batches_equal_the_whole_frame(splits, tmp_path):
    """Train's baselines (store, ``eval_batch_size`` windows at a time) give the bits of the
    whole-frame scoring of the same selected windows."""
    meta, arrays, _ = _load(splits, tmp_path)
    models = ["seasonal_naive", "naive", "auto_ets"]
    got, got_windows = score_windows(meta, arrays, models=models, batch_size=2)
    chosen = select_windows(pl.read_parquet(splits / "eval.parquet"), MAX_WINDOWS, seed=0)
    want, want_windows = score_baselines(chosen, None, models=models)
    order = ["run_id", "split", "scenario", "horizon", "group_key", "line"]
    assert got.sort(order).equals(want.sort(order))
    order = ["run_id", "split", "scenario", "horizon", "series_id", "window_id"]
    assert got_windows.sort(order).equals(want_windows.sort(order))


def test_store_is_keyed_by_content_and_selection_and_rebuilt_when_damaged(splits, tmp_path):
    path = splits / "eval.parquet"
    _load(splits, tmp_path)
    (folder,) = tmp_path.glob("eval-store-*")
    assert folder.name == f"eval-store-{store_key(sha256_file(path), MAX_WINDOWS, 0)[:16]}"
    record = json.loads((folder / "store.json").read_text())
    assert record["eval_windows"] == MAX_WINDOWS and record["seed"] == 0
    built = (folder / "context.npy").stat().st_mtime_ns
    _load(splits, tmp_path)
    assert (folder / "context.npy").stat().st_mtime_ns == built  # reused
    context = np.load(folder / "context.npy", mmap_mode="r+")
    context[0, 0] = 12345.0  # damaged bytes: the recorded sha256 no longer matches
    context.flush()
    del context
    _, arrays, _ = _load(splits, tmp_path)
    assert json.loads((folder / "store.json").read_text()) == record
    assert arrays.arrays()[0][0, 0] != 12345.0
    load_eval(path, None, MAX_WINDOWS + 1, 0, store_root=tmp_path)  # another selection
    assert len(list(tmp_path.glob("eval-store-*"))) == 2
    assert not list(tmp_path.glob(".building-*"))  # no leftover build folder


def test_rows_of_different_context_lengths_are_bad_input_and_leave_no_store(splits, tmp_path):
    frame = pl.read_parquet(splits / "eval.parquet")
    short = pl.col("context").list.slice(1)
    frame.with_columns(
        context=pl.when(pl.col("window_id") == 0).then(short).otherwise(pl.col("context")),
        context_observed=pl.when(pl.col("window_id") == 0)
        .then(pl.col("context_observed").list.slice(1))
        .otherwise(pl.col("context_observed")),
    ).write_parquet(tmp_path / "eval.parquet")
    bad = frame.with_row_index().filter(pl.col("window_id") == 0)["index"][0]
    with pytest.raises(BadInputError, match=f"eval.parquet: row {bad}: context length 63"):
        load_eval(tmp_path / "eval.parquet", None, 100, 0, store_root=tmp_path / "root")
    assert list((tmp_path / "root").iterdir()) == []


def test_cropped_context_is_the_tail_of_the_full_one(splits, tmp_path):
    """embed-bench's shorter context: the last points of each window, read per batch."""
    from dataclasses import replace

    _, _, groups = _load(splits, tmp_path)
    group = groups[0]
    cropped = replace(group, crop=24)
    assert cropped.context_length == group.context_length - 24
    full, cut = group.batch(0, 5), cropped.batch(0, 5)
    for key in ("context", "context_observed", "times"):
        assert np.array_equal(cut[key], full[key][:, 24:]), key
    for key in ("target", "target_observed"):
        assert np.array_equal(cut[key], full[key]), key
