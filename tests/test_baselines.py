"""Baselines: the forecasts, their Gaussian scores, and the rows they add to results."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
import scoringrules
from scipy import stats

from tests.splits_fixture import make_splits
from tsfm_cli import metrics
from tsfm_cli.baselines import (
    BASELINES,
    forward_fill,
    naive_forecast,
    score_baselines,
    seasonal_naive_forecast,
)

START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def _frame(series: np.ndarray, context: int, horizon: int, freq_s: int = 3600, **extra):
    """eval.parquet rows: one window per series row of `series` [W, context + horizon]."""
    W = len(series)
    observed = np.isfinite(series)
    return pl.DataFrame(
        {
            "scenario": ["id"] * W,
            "family": ["id"] * W,
            "severity": [0.0] * W,
            "horizon": [horizon] * W,
            "series_id": [f"s{i}" for i in range(W)],
            "freq_s": [freq_s] * W,
            "window_id": list(range(W)),
            "target_start": [START] * W,
            "context": [[None if np.isnan(v) else float(v) for v in r[:context]] for r in series],
            "context_observed": observed[:, :context].tolist(),
            "target": [[None if np.isnan(v) else float(v) for v in r[context:]] for r in series],
            "target_observed": observed[:, context:].tolist(),
            **extra,
        },
        schema_overrides={
            "context": pl.List(pl.Float32),
            "target": pl.List(pl.Float32),
            "horizon": pl.Int32,
        },
    )


def _by_model(results: pl.DataFrame) -> dict[str, dict]:
    return {r["model"]: r for r in results.iter_rows(named=True)}


def test_exactly_periodic_series_seasonal_naive_is_perfect_and_beats_naive():
    t = np.arange(256 + 48)
    shifts = np.arange(6)[:, None]
    series = 50 + 10 * np.sin(2 * np.pi * (t[None, :] + 3 * shifts) / 24)  # hourly, daily cycle
    frame = _frame(series, 256, 48)
    results, _ = score_baselines(frame, None, models=["seasonal_naive", "naive"])
    rows = _by_model(results)
    assert rows["seasonal_naive"]["mase"] < 1e-4
    assert rows["seasonal_naive"]["mae"] < 1e-4 < 0.1 < rows["naive"]["mae"]
    assert rows["naive"]["mase"] > 10 * rows["seasonal_naive"]["mase"] + 0.5
    assert rows["seasonal_naive"]["crps"] < rows["naive"]["crps"]
    assert rows["seasonal_naive"]["nll"] < rows["naive"]["nll"]


def test_constant_plus_noise_naive_is_near_the_noise_and_ets_smooths_it():
    rng = np.random.default_rng(0)
    series = 20 + rng.normal(0, 1, (40, 256 + 32))
    results, _ = score_baselines(_frame(series, 256, 32), None, models=["naive", "auto_ets"])
    rows = _by_model(results)
    # scaled noise has std 1: the naive error e_{T+h} − e_T has E|·| = 2/√π ≈ 1.13
    assert 0.9 < rows["naive"]["mae"] < 1.4
    # ETS (simple exponential smoothing) averages the noise away: E|e| ≈ 0.8
    assert rows["auto_ets"]["mae"] < 0.95 < rows["naive"]["mae"]
    assert rows["auto_ets"]["crps"] < rows["naive"]["crps"]
    for row in rows.values():
        assert all(np.isfinite(row[m]) for m in ("nll", "crps", "mse", "mae", "mase"))


def test_gaussian_scores_match_scoringrules_and_scipy():
    rng = np.random.default_rng(1)
    mean, sigma = rng.normal(0, 1, (5, 7)), rng.uniform(0.1, 3, (5, 7))
    target = rng.normal(0, 2, (5, 7))
    observed = rng.random((5, 7)) > 0.2
    crps = metrics.crps_gaussian(mean, sigma, target, observed)
    expected = scoringrules.crps_normal(target, mean, sigma)
    np.testing.assert_allclose(crps, metrics.masked_mean(expected, observed), rtol=1e-9)
    nll = metrics.gaussian_nll(mean, sigma, target, observed)
    logpdf = stats.norm.logpdf(target, mean, sigma)
    np.testing.assert_allclose(nll, metrics.masked_mean(-logpdf, observed), rtol=1e-9)


def test_forward_fill_and_naive_use_the_last_observed_value():
    values = np.array([[np.nan, 2.0, np.nan, 4.0, np.nan], [np.nan] * 5])
    observed = np.isfinite(values)
    filled = forward_fill(np.nan_to_num(values), observed)
    np.testing.assert_array_equal(filled, [[2, 2, 2, 4, 4], [0, 0, 0, 0, 0]])
    mean, sigma = naive_forecast(np.nan_to_num(values[:1]), observed[:1], 3)
    np.testing.assert_array_equal(mean, [[4, 4, 4]])
    np.testing.assert_allclose(sigma[0] / sigma[0, 0], np.sqrt([1, 2, 3]))
    # seasonal naive repeats the last season; its σ grows per whole season
    ctx = np.arange(8, dtype=float)[None]
    mean, sigma = seasonal_naive_forecast(ctx, np.ones_like(ctx, bool), 5, 3)
    np.testing.assert_array_equal(mean, [[5, 6, 7, 5, 6]])
    np.testing.assert_allclose(sigma[0] / sigma[0, 0], np.sqrt([1, 1, 1, 2, 2]))


def test_missing_context_points_are_forward_filled_not_zero():
    t = np.arange(256 + 24)
    series = np.tile(10 + np.sin(2 * np.pi * t / 24), (3, 1))
    series[:, 250:256] = np.nan  # the last context points are missing
    results, windows = score_baselines(_frame(series, 256, 24), None, models=["naive"])
    # naive = value at index 249 (the last observed), not 0 nor the context mean
    last = series[0, 249]
    target = series[0, 256:]
    ctx = series[0, :256][np.isfinite(series[0, :256])]
    expected_mae = np.abs(target - last).mean() / ctx.std()
    np.testing.assert_allclose(windows["mae"].to_numpy(), expected_mae, rtol=1e-5)


@pytest.fixture(scope="module")
def fixture_eval(tmp_path_factory):
    root = make_splits(tmp_path_factory.mktemp("bl") / "splits", n_series=4, windows=3)
    return pl.read_parquet(root / "eval.parquet"), pl.read_parquet(root / "scenarios.parquet")


def test_rows_cover_every_scenario_horizon_split_in_the_results_layout(fixture_eval):
    evals, scenarios = fixture_eval
    results, windows = score_baselines(evals, None, scenarios=scenarios)
    every = results.filter(pl.col("group_key").is_null())
    assert every.height == len(BASELINES) * 3 * 2  # models × (id, level_shift:2, val) × horizons
    assert set(every["run_id"]) == {f"baseline-{m}" for m in BASELINES}
    assert set(every["arch"]) == {"baseline"} and set(every["status"]) == {"ok"}
    assert (every["params"] == 0).all() and set(every["model"]) == set(BASELINES)
    splits = dict(zip(every["scenario"], every["split"], strict=False))
    assert splits == {"id": "test", "level_shift:2": "test", "val": "val"}
    assert every.filter(pl.col("scenario") == "val")["kind"].unique().to_list() == ["val"]
    # n_windows is every window of the scenario × horizon; windows add up per model
    assert every["n_windows"].sum() == len(BASELINES) * evals.height == windows.height
    assert {"series_id", "window_id", "split", "line", "machine", "crps"} <= set(windows.columns)
    # per-line rows come from the same window metrics
    lines = results.filter(pl.col("group_key") == "line")
    assert set(lines["line"]) == {"line1", "line2"}
    naive_id = windows.filter(
        (pl.col("model") == "naive") & (pl.col("scenario") == "id") & (pl.col("horizon") == 16)
    )
    line1 = lines.filter(
        (pl.col("model") == "naive")
        & (pl.col("scenario") == "id")
        & (pl.col("horizon") == 16)
        & (pl.col("line") == "line1")
    )
    expected = naive_id.filter(pl.col("line") == "line1")["crps"].mean()
    assert line1["crps"].item() == pytest.approx(expected)
    for metric in ("nll", "crps", "mse", "mae", "mase"):
        assert every[metric].is_finite().all(), metric


def test_scores_are_deterministic_and_bad_model_is_refused(fixture_eval):
    evals, _ = fixture_eval
    first, _ = score_baselines(evals, None, models=["naive", "seasonal_naive"])
    again, _ = score_baselines(evals, None, models=["naive", "seasonal_naive"])
    assert first.equals(again)
    with pytest.raises(ValueError, match="unknown baseline 'arima'"):
        score_baselines(evals, None, models=["arima"])
