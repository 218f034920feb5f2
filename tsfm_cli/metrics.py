"""Forecast metrics on instance-scaled values (DESIGN §3), in numpy.

Shared by `train` (evaluation), `embed-bench` and `ood-split` (seasonal-naive error as a shift
measure). Every function takes an `observed` mask and ignores unobserved target points.
Arrays are batched: shape [..., T] for series, [S, ..., T] for samples.
"""

from __future__ import annotations

import numpy as np

QUANTILE_LEVELS = np.linspace(0.1, 0.9, 9)

_HOUR, _DAY, _WEEK = 3600, 86400, 7 * 86400


def season_length(freq_s: float, context_length: int | None = None) -> int:
    """Seasonal period in steps for a sampling interval, as GluonTS chooses it.

    Seconds → an hour, minutes and hours → a day, days → a week. Falls back to 1 (plain naive)
    when the season does not fit twice into the context, so the in-sample scale exists.
    """
    if freq_s <= 0:
        return 1
    if freq_s < 60:
        period = _HOUR
    elif freq_s < _DAY:
        period = _DAY
    else:
        period = _WEEK
    season = max(1, int(round(period / freq_s)))
    if context_length is not None and season * 2 > context_length:
        return 1
    return season


def seasonal_naive_scale(
    context: np.ndarray, observed: np.ndarray, season: int, floor: float = 1e-5
) -> np.ndarray:
    """In-sample MAE of the seasonal-naive forecast, over pairs where both points are observed.

    context, observed: [..., T] → [...]; never below `floor` (a flat context gives the floor).
    """
    context = np.asarray(context, dtype=np.float64)
    observed = np.asarray(observed, dtype=bool)
    diff = np.abs(context[..., season:] - context[..., :-season])
    scale = masked_mean(diff, observed[..., season:] & observed[..., :-season])
    return np.maximum(np.nan_to_num(scale, nan=floor), floor)


def masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the last axis where mask is true; NaN where nothing is observed."""
    count = mask.sum(axis=-1)
    total = np.where(mask, values, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def mse(point: np.ndarray, target: np.ndarray, observed: np.ndarray) -> np.ndarray:
    return masked_mean((np.asarray(point) - np.asarray(target)) ** 2, np.asarray(observed, bool))


def mae(point: np.ndarray, target: np.ndarray, observed: np.ndarray) -> np.ndarray:
    return masked_mean(np.abs(np.asarray(point) - np.asarray(target)), np.asarray(observed, bool))


def mase(
    point: np.ndarray,
    target: np.ndarray,
    observed: np.ndarray,
    context: np.ndarray,
    context_observed: np.ndarray,
    season: int,
) -> np.ndarray:
    """MAE of the forecast ÷ in-sample MAE of the seasonal-naive forecast on the context."""
    return mae(point, target, observed) / seasonal_naive_scale(context, context_observed, season)


def crps_from_samples(samples: np.ndarray, target: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Sample CRPS `E|X−y| − ½E|X−X′|`, averaged over observed target points.

    samples: [S, ..., T]; target, observed: [..., T] → [...]. The pairwise term uses the sorted
    samples' identity E|X−X′| = 2/S² Σ_i (2i − S − 1) x_(i), which is O(S log S), not O(S²).
    """
    samples = np.asarray(samples, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    n = samples.shape[0]
    accuracy = np.abs(samples - target[None]).mean(axis=0)
    ordered = np.sort(samples, axis=0)
    weights = (2 * np.arange(1, n + 1) - n - 1).reshape((n,) + (1,) * (samples.ndim - 1))
    spread = 2.0 * (weights * ordered).sum(axis=0) / (n * n)
    return masked_mean(accuracy - 0.5 * spread, np.asarray(observed, bool))


def weighted_quantile_loss(
    quantiles: np.ndarray,
    target: np.ndarray,
    observed: np.ndarray,
    levels: np.ndarray = QUANTILE_LEVELS,
) -> np.ndarray:
    """Mean weighted quantile loss over `levels` (GluonTS / Chronos "WQL"), per series.

    quantiles: [Q, ..., T] predicted quantiles at `levels` → [...]; each level's pinball loss is
    doubled so that it approximates CRPS, then divided by Σ|y| over observed points.
    """
    quantiles = np.asarray(quantiles, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mask = np.asarray(observed, bool)
    levels = np.asarray(levels).reshape((-1,) + (1,) * target.ndim)
    error = target[None] - quantiles
    pinball = 2.0 * np.maximum(levels * error, (levels - 1.0) * error)
    per_level = np.where(mask[None], pinball, 0.0).sum(axis=-1)
    scale = np.where(mask, np.abs(target), 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return per_level.mean(axis=0) / np.where(scale > 0, scale, np.nan)


def gaussian_nll(
    mean: np.ndarray, sigma: np.ndarray, target: np.ndarray, observed: np.ndarray
) -> np.ndarray:
    """Negative log-likelihood of a Gaussian predictive N(mean, sigma²) per point, averaged over
    observed target points: [..., T] → [...]."""
    mean, sigma, target = (np.asarray(a, dtype=np.float64) for a in (mean, sigma, target))
    z = (target - mean) / sigma
    nll = 0.5 * np.log(2.0 * np.pi) + np.log(sigma) + 0.5 * z * z
    return masked_mean(nll, np.asarray(observed, bool))


def crps_gaussian(
    mean: np.ndarray, sigma: np.ndarray, target: np.ndarray, observed: np.ndarray
) -> np.ndarray:
    """Closed-form CRPS of N(mean, sigma²) (Gneiting & Raftery 2007), averaged over observed
    target points: σ·[z(2Φ(z) − 1) + 2φ(z) − 1/√π], z = (y − μ)/σ. [..., T] → [...]."""
    from math import erf, sqrt

    mean, sigma, target = (np.asarray(a, dtype=np.float64) for a in (mean, sigma, target))
    z = (target - mean) / sigma
    cdf = 0.5 * (1.0 + np.vectorize(erf, otypes=[np.float64])(z / sqrt(2.0)))
    pdf = np.exp(-0.5 * z * z) / sqrt(2.0 * np.pi)
    crps = sigma * (z * (2.0 * cdf - 1.0) + 2.0 * pdf - 1.0 / sqrt(np.pi))
    return masked_mean(crps, np.asarray(observed, bool))
