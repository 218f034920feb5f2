"""Baselines scored on the models' own evaluation windows with the models' own metrics.

- ``seasonal_naive``: the value one season earlier (season from the sampling frequency, as MASE
  takes it: ``metrics.season_length``; 1 = naive when two seasons do not fit the context);
- ``naive``: the last observed value of the context;
- ``auto_ets``: statsforecast's ``AutoETS`` (Hyndman's automatic ETS, model chosen by AICc),
  fitted per window on its context, seasonal only for seasons 2–24 (as ``forecast::ets``).

Every window is instance-scaled like the models' metrics (mean / std of the observed context,
scale ≥ 1e-5). Missing context points are forward-filled (leading ones take the first observed
value) before forecasting; metrics use observed target points only (``tsfm_cli.metrics``).

Predictive distributions, so that CRPS and NLL exist for every baseline: a Gaussian around the
point forecast. For ``auto_ets`` its σ comes from the model's own 80% interval,
σ_h = (hi_h − lo_h) / (2·1.2816). For ``naive`` and ``seasonal_naive`` σ is the root mean square
of the method's in-context residuals (x_t − x_{t−1}, resp. x_t − x_{t−m}, over observed pairs),
grown with the horizon as for a random walk: σ_h = σ·√h (naive), σ·√(⌊(h−1)/m⌋ + 1) (seasonal;
Hyndman & Athanasopoulos, FPP3 §5.5). CRPS is the Gaussian's closed form, NLL its density.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import polars as pl

from tsfm_cli import metrics
from tsfm_cli.groupkeys import breakdown, eval_group_keys, finite_mean
from tsfm_cli.models.scaling import MIN_SCALE  # as the models' instance scaling
from tsfm_cli.schema import BASELINE_ARCH, VAL_SCENARIO
from tsfm_cli.windows import LIST_COLUMNS, WindowArrays, runs

BASELINES = ("seasonal_naive", "naive", "auto_ets")
METRIC_NAMES = ("nll", "crps", "mse", "mae", "mase")
ETS_MAX_SEASON = 24  # seasonal ETS only up to this period (forecast::ets, statsforecast)
Z80 = 1.2815515655446004  # standard normal quantile 0.9: half-width of an 80% interval in σ


def forward_fill(values: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """[W, T] values with unobserved points replaced by the last observed one (leading ones by
    the first observed; a window with no observed point becomes 0)."""
    W, T = values.shape
    index = np.where(observed, np.arange(T)[None, :], -1)
    last = np.maximum.accumulate(index, axis=1)
    first = np.argmax(observed, axis=1)
    last = np.where(last < 0, first[:, None], last)
    filled = np.take_along_axis(values, last, axis=1)
    return np.where(observed.any(axis=1, keepdims=True), filled, 0.0)


def instance_scale(context: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(loc, scale) [W, 1]: mean and std of the observed context (the models' `std` scaler)."""
    count = np.maximum(observed.sum(axis=1, keepdims=True), 1)
    loc = np.where(observed, context, 0.0).sum(axis=1, keepdims=True) / count
    var = (np.where(observed, context - loc, 0.0) ** 2).sum(axis=1, keepdims=True) / count
    return loc, np.maximum(np.sqrt(var), MIN_SCALE)


def _residual_sigma(context: np.ndarray, observed: np.ndarray, lag: int) -> np.ndarray:
    """[W] RMS of x_t − x_{t−lag} over pairs observed at both ends (1 when there is none)."""
    pairs = observed[:, lag:] & observed[:, :-lag]
    diff = np.where(pairs, context[:, lag:] - context[:, :-lag], 0.0)
    count = pairs.sum(axis=1)
    rms = np.sqrt((diff**2).sum(axis=1) / np.maximum(count, 1))
    return np.where(count > 0, np.maximum(rms, MIN_SCALE), 1.0)


def seasonal_naive_forecast(
    context: np.ndarray, observed: np.ndarray, horizon: int, season: int
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sigma) [W, H] of the seasonal-naive forecast of forward-filled contexts."""
    filled = forward_fill(context, observed)
    T = context.shape[1]
    steps = np.arange(horizon)
    mean = filled[:, T - season + (steps % season)]
    sigma = _residual_sigma(context, observed, season)[:, None] * np.sqrt(steps // season + 1)
    return mean, sigma


def naive_forecast(
    context: np.ndarray, observed: np.ndarray, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sigma) [W, H]: the last observed value, σ·√h."""
    filled = forward_fill(context, observed)
    mean = np.repeat(filled[:, -1:], horizon, axis=1)
    sigma = _residual_sigma(context, observed, 1)[:, None] * np.sqrt(np.arange(1, horizon + 1))
    return mean, sigma


def ets_forecast(
    context: np.ndarray, observed: np.ndarray, horizon: int, season: int
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sigma) [W, H] of AutoETS fitted to each forward-filled context (one StatsForecast
    call for all windows, n_jobs=1: the sweep already owns the cores; Naive where ETS fails)."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, Naive

    W, T = context.shape
    if W == 0:
        return np.zeros((0, horizon)), np.zeros((0, horizon))
    filled = forward_fill(context, observed)
    m = season if 2 <= season <= ETS_MAX_SEASON else 1
    frame = pl.DataFrame(
        {
            "unique_id": np.repeat(np.arange(W, dtype=np.int64), T),
            "ds": np.tile(np.arange(T, dtype=np.int64), W),
            "y": filled.reshape(-1),
        }
    )
    model = StatsForecast(
        models=[AutoETS(season_length=m)], freq=1, n_jobs=1, fallback_model=Naive()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.forecast(h=horizon, df=frame, level=[80]).sort("unique_id", "ds")
    mean = out["AutoETS"].to_numpy().reshape(W, horizon)
    hi, lo = (out[f"AutoETS-{s}-80"].to_numpy().reshape(W, horizon) for s in ("hi", "lo"))
    sigma = np.maximum((hi - lo) / (2.0 * Z80), MIN_SCALE)
    sigma = np.where(np.isfinite(sigma), sigma, 1.0)  # no interval: one context std
    return mean, sigma


def _forecast(model: str, context, observed, horizon: int, season: int):
    if model == "seasonal_naive":
        return seasonal_naive_forecast(context, observed, horizon, season)
    if model == "naive":
        return naive_forecast(context, observed, horizon)
    if model == "auto_ets":
        return ets_forecast(context, observed, horizon, season)
    raise ValueError(f"unknown baseline '{model}' (known: {', '.join(BASELINES)})")


def window_metrics(
    mean: np.ndarray,
    sigma: np.ndarray,
    target: np.ndarray,
    target_observed: np.ndarray,
    context: np.ndarray,
    context_observed: np.ndarray,
    mase_season: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per-window metrics [W] of Gaussian forecasts, with the functions train uses."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = {
            "nll": metrics.gaussian_nll(mean, sigma, target, target_observed),
            "crps": metrics.crps_gaussian(mean, sigma, target, target_observed),
            "mse": metrics.mse(mean, target, target_observed),
            "mae": metrics.mae(mean, target, target_observed),
            "mase": np.empty(len(mean)),
        }
        for m in np.unique(mase_season):
            rows = mase_season == m
            out["mase"][rows] = metrics.mase(
                mean[rows],
                target[rows],
                target_observed[rows],
                context[rows],
                context_observed[rows],
                int(m),
            )
    return out


def _kinds(frame: pl.DataFrame, scenarios: pl.DataFrame | None) -> dict[str, str]:
    kinds = {}
    if scenarios is not None and {"scenario", "kind"} <= set(scenarios.columns):
        kinds = dict(zip(scenarios["scenario"], scenarios["kind"], strict=True))
    return {
        s: kinds.get(s) or (s if s in ("id", VAL_SCENARIO) else "synthetic")
        for s in frame["scenario"].unique().to_list()
    }


def score_baselines(
    eval_frame: pl.DataFrame,
    season: int | None = None,
    *,
    models: tuple[str, ...] | list[str] = BASELINES,
    scenarios: pl.DataFrame | None = None,
    batch_size: int | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score every baseline on every window of `eval_frame` (eval.parquet columns) →
    (results rows, window rows); the frame's windows in memory, scored by `score_windows`."""
    _check_models(models)
    if eval_frame.is_empty() or not models:
        return pl.DataFrame(), pl.DataFrame()
    if "split" not in eval_frame.columns:
        split = pl.when(pl.col("scenario") == VAL_SCENARIO).then(pl.lit("val"))
        eval_frame = eval_frame.with_columns(split=split.otherwise(pl.lit("test")))
    frame = eval_frame.sort(["scenario", "horizon", "split", "series_id", "window_id"])
    meta = frame.drop(LIST_COLUMNS).with_columns(target_length=frame["target"].list.len())
    return score_windows(
        meta,
        WindowArrays.from_frame(frame),
        season,
        models=models,
        scenarios=scenarios,
        batch_size=batch_size,
    )


def _check_models(models) -> None:
    for model in models:
        if model not in BASELINES:
            raise ValueError(f"unknown baseline '{model}' (known: {', '.join(BASELINES)})")


def score_windows(
    meta: pl.DataFrame,
    arrays: WindowArrays,
    season: int | None = None,
    *,
    models: tuple[str, ...] | list[str] = BASELINES,
    scenarios: pl.DataFrame | None = None,
    batch_size: int | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score every baseline on the windows of `arrays` (row i described by row i of `meta`,
    eval.parquet's small columns with ``split``; each scenario × horizon × split one run of
    rows) → (results rows, window rows). Windows are read `batch_size` at a time (all of a
    group when None): memory follows the batch (train passes its ``eval_batch_size``).

    season: the seasonal-naive and ETS period; None = from each window's sampling frequency, as
    MASE takes it. MASE always uses metrics.season_length (the same scale as the models').
    Results rows: one per model × scenario × horizon × split over all windows, plus per-group
    rows (tsfm_cli/groupkeys.py); window rows: one per model × window.
    """
    _check_models(models)
    if meta.is_empty() or not models:
        return pl.DataFrame(), pl.DataFrame()
    if "freq_s" not in meta.columns:
        meta = meta.with_columns(freq_s=pl.lit(1, pl.Int64))
    keys = eval_group_keys(meta)
    kinds = _kinds(meta, scenarios)
    results: list[dict[str, Any]] = []
    windows: list[pl.DataFrame] = []
    for (scenario, horizon, split), lo, hi in runs(meta, ["scenario", "horizon", "split"]):
        stored = meta.slice(lo, hi - lo)
        # the windows are read in store order, their metrics then put in series_id, window_id
        # order: the order their means are summed in (as ever; the bits depend on it)
        order = stored.with_row_index("_i").sort("series_id", "window_id")["_i"].to_numpy()
        part = stored[order]
        h = int(horizon)
        first = part.row(0, named=True)
        describe = {
            "scenario": scenario,
            "kind": kinds[scenario],
            "family": first.get("family") or scenario,
            "severity": float(first.get("severity") or 0.0),
            "horizon": h,
            "split": split,
        }
        width = int(first["target_length"])  # = h in every ood-split output
        step = batch_size or part.height
        per_model: dict[str, dict[str, list[np.ndarray]]] = {
            model: {k: [] for k in METRIC_NAMES} for model in models
        }
        freqs = stored["freq_s"].to_numpy().astype(np.float64)
        for at in range(lo, hi, step):  # read from the store batch by batch
            end = min(at + step, hi)
            freq = freqs[at - lo : end - lo]
            scores = _score_batch(arrays.read(at, end, width, np.float64), freq, h, season, models)
            for model, per in scores.items():
                for k, v in per.items():
                    per_model[model][k].append(v)
        for model in models:
            per = {k: np.concatenate(v)[order] for k, v in per_model[model].items()}
            base = _base(model)
            row = {**base, **describe, "n_windows": part.height}
            results.append({**row, **{k: finite_mean(v) for k, v in per.items()}})
            key_values = {k: part[k].to_numpy() for k in keys}
            results += [{**row, **r} for r in breakdown(key_values, per)]
            windows.append(
                part.select("series_id", "window_id", *keys).with_columns(
                    *[pl.lit(v).alias(k) for k, v in {**base, **describe}.items()],
                    *[pl.Series(k, v, dtype=pl.Float64) for k, v in per.items()],
                )
            )
    result_frame = pl.DataFrame(results, infer_schema_length=None).with_columns(
        pl.col("horizon").cast(pl.Int32), pl.col("n_windows").cast(pl.Int64)
    )
    window_frame = pl.concat(windows, how="diagonal_relaxed").with_columns(
        pl.col("horizon").cast(pl.Int32)
    )
    casts = {**dict.fromkeys(METRIC_NAMES, pl.Float64), "flops": pl.Float64}
    casts |= dict.fromkeys(("params", "params_total", "step", "seed", "tokens"), pl.Int64)
    casts["data_points"] = pl.Int64
    result_frame = result_frame.cast(casts)  # all-null columns would otherwise be Null-typed
    window_frame = window_frame.cast({k: v for k, v in casts.items() if k in window_frame.columns})
    return result_frame, window_frame


def _score_batch(
    arrays, freq: np.ndarray, h: int, season: int | None, models
) -> dict[str, dict[str, np.ndarray]]:
    """Per-window metrics of every model on one batch of windows (each window on its own:
    the figures do not depend on how windows are batched)."""
    raw_ctx, raw_tgt, c_obs, t_obs = arrays
    loc, scale = instance_scale(np.nan_to_num(raw_ctx), c_obs)
    context = np.where(c_obs, (np.nan_to_num(raw_ctx) - loc) / scale, 0.0)
    target = np.where(t_obs, (np.nan_to_num(raw_tgt) - loc) / scale, 0.0)
    n_ctx = context.shape[1]
    mase_season = np.array([metrics.season_length(f, n_ctx) for f in freq])
    periods = mase_season if season is None else np.full(len(freq), season)
    periods = np.where(2 * periods <= n_ctx, periods, 1)
    out = {}
    for model in models:
        mean = np.zeros((len(freq), h))
        sigma = np.ones((len(freq), h))
        for m in np.unique(periods):
            rows = periods == m
            mean[rows], sigma[rows] = _forecast(model, context[rows], c_obs[rows], h, int(m))
        out[model] = window_metrics(mean, sigma, target, t_obs, context, c_obs, mase_season)
    return out


def _base(model: str) -> dict[str, Any]:
    """The run columns of a baseline's rows (README "Baselines")."""
    return {
        "run_id": f"baseline-{model}",
        "arch": BASELINE_ARCH,
        "model": model,
        "params": 0,
        "params_total": 0,
        "step": 0,
        "seed": 0,
        "tokens": 0,
        # no training: zero compute and data, so never a point of a law (fit keeps X > 0)
        "flops": 0.0,
        "data_points": 0,
        "status": "ok",
        "final": True,  # nothing to select: the one "checkpoint" is the forecast itself
        "selected": True,
    }
