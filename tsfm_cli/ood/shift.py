"""How far a scenario is from the training data, measured on instance-scaled values.

Every window is scaled by the mean/std of its observed context (minimum scale 1e-5, as the
models do). Against a reference of windows cut from the training period:

- `ks`, `wasserstein`: two-sample Kolmogorov–Smirnov statistic and Wasserstein-1 distance of the
  scaled observed target values;
- `ks_diff`: KS of the scaled first differences (sees noise, holds, warps and dropouts that
  leave the value distribution alone);
- `snaive_mae_ratio`: mean scaled MAE of the seasonal-naive forecast (`metrics.season_length`,
  `metrics.mae`) in the scenario ÷ the same on the reference (1 = as forecastable as training);
- `observed_frac`: the observed share of target points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from tsfm_cli.metrics import mae, season_length
from tsfm_cli.ood.windows import Block

MIN_SCALE = 1e-5
MAX_POOL = 20_000
MEASURES = ("ks", "wasserstein", "ks_diff", "snaive_mae_ratio", "observed_frac")


@dataclass
class Pool:
    values: np.ndarray  # scaled observed target values
    diffs: np.ndarray  # scaled first differences where both points are observed
    snaive_mae: float
    observed_frac: float


def _scaled(block: Block, context: int) -> tuple[np.ndarray, np.ndarray]:
    ctx, ctx_obs = block.values[:, :context].astype(np.float64), block.observed[:, :context]
    count = np.maximum(ctx_obs.sum(axis=1, keepdims=True), 1)
    mean = np.where(ctx_obs, ctx, 0.0).sum(axis=1, keepdims=True) / count
    var = np.where(ctx_obs, (ctx - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / count
    scale = np.maximum(np.sqrt(var), MIN_SCALE)
    return (block.values - mean) / scale, block.observed


def _snaive_mae(scaled: np.ndarray, observed: np.ndarray, freq_s: np.ndarray, context: int):
    """Per-window MAE of the seasonal-naive forecast of the target from the context."""
    horizon = scaled.shape[1] - context
    out = np.full(len(scaled), np.nan)
    for freq in np.unique(freq_s):
        rows = freq_s == freq
        season = season_length(float(freq), context)
        source = context - season + (np.arange(horizon) % season)
        point, point_obs = scaled[rows][:, source], observed[rows][:, source]
        mask = observed[rows][:, context:] & point_obs
        out[rows] = mae(np.nan_to_num(point), np.nan_to_num(scaled[rows][:, context:]), mask)
    return out


def pool(blocks: list[Block], context: int, freq_s: np.ndarray, rng: np.random.Generator) -> Pool:
    """Everything a measure needs from a set of windows (all horizons together)."""
    values, diffs, errors, seen, total = [], [], [], 0, 0
    for block in blocks:
        if block.n == 0:
            continue
        scaled, observed = _scaled(block, context)
        target, target_obs = scaled[:, context:], observed[:, context:]
        values.append(target[target_obs])
        both = target_obs[:, 1:] & target_obs[:, :-1]
        diffs.append(np.diff(target, axis=1)[both])
        errors.append(_snaive_mae(scaled, observed, freq_s[block.series], context))
        seen += int(target_obs.sum())
        total += target_obs.size

    def sample(parts: list[np.ndarray]) -> np.ndarray:
        joined = np.concatenate(parts) if parts else np.empty(0)
        if len(joined) > MAX_POOL:
            joined = rng.choice(joined, size=MAX_POOL, replace=False)
        return joined

    err = np.concatenate(errors) if errors else np.empty(0)
    return Pool(
        sample(values),
        sample(diffs),
        float(np.nanmean(err)) if np.isfinite(err).any() else float("nan"),
        seen / total if total else float("nan"),
    )


def _ks(a: np.ndarray, b: np.ndarray) -> float | None:
    return float(stats.ks_2samp(a, b, method="asymp").statistic) if len(a) and len(b) else None


def value_shift(scenario: Pool, reference: Pool) -> tuple[float | None, float | None]:
    """`ks` and `wasserstein` of the scaled target values (None where a pool has none)."""
    wasserstein = (
        float(stats.wasserstein_distance(scenario.values, reference.values))
        if len(scenario.values) and len(reference.values)
        else None
    )
    return _ks(scenario.values, reference.values), wasserstein


def measure(scenario: Pool, reference: Pool) -> dict[str, float | None]:
    ratio = scenario.snaive_mae / reference.snaive_mae if reference.snaive_mae > 0 else None
    ks, wasserstein = value_shift(scenario, reference)
    return {
        "ks": ks,
        "wasserstein": wasserstein,
        "ks_diff": _ks(scenario.diffs, reference.diffs),
        "snaive_mae_ratio": None if ratio is None or not np.isfinite(ratio) else float(ratio),
        "observed_frac": None
        if not np.isfinite(scenario.observed_frac)
        else scenario.observed_frac,
    }
