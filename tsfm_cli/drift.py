"""Synthetic drift families: what sensors and plants do to data over time, in numpy.

Ground floor: used by `ood-split` (synthetic evaluation scenarios) and by `train` (its
training-data-quality axis). Every family works on a batch of windows at once:

    values   [n, T] float32, NaN where not observed
    observed [n, T] bool
    severity float > 0, scaled to each window's own `spread` [n] (its standard deviation)
    onset    index (int, or [n]) from which the drift applies; points before it are unchanged

and returns new `(values, observed)`. A family may hide points (missing bursts, a slower sampling
rate) but never marks an unobserved point observed, and every unobserved point is NaN on return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tsfm_cli.metrics import masked_mean

MAX_SEVERITY = 10.0

# (values, observed, severity, after [n,T] bool, onset [n,1], spread [n,1], rng, freq_s) → (v, o)
_Apply = Callable[..., tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class DriftFamily:
    """One kind of drift: its name, what it models, and how severity sets its parameters."""

    name: str
    description: str
    params: dict[str, str]
    apply: _Apply
    max_severity: float = MAX_SEVERITY


def _drifted_length(after: np.ndarray) -> np.ndarray:
    """[n, 1] number of drifted points per row (at least 1)."""
    return np.maximum(after.sum(axis=1, keepdims=True), 1)


def _steps_since_onset(after: np.ndarray, onset: np.ndarray) -> np.ndarray:
    t = np.arange(after.shape[1])[None, :]
    return np.where(after, t - onset, 0)


def _level_shift(v, o, s, after, onset, spread, rng, freq_s):
    return np.where(after, v + s * spread, v), o


def _ramp(v, o, s, after, onset, spread, rng, freq_s):
    steps = _steps_since_onset(after, onset) + 1
    return np.where(after, v + s * spread * steps / _drifted_length(after), v), o


def _gain_change(v, o, s, after, onset, spread, rng, freq_s):
    before = o & ~after
    ref = np.where(before.any(axis=1, keepdims=True), before, o)
    count = np.maximum(ref.sum(axis=1, keepdims=True), 1)
    centre = np.where(ref, np.nan_to_num(v), 0.0).sum(axis=1, keepdims=True) / count
    gain = 1.0 + 0.5 * s
    return np.where(after, centre + gain * (v - centre), v), o


def _noise_increase(v, o, s, after, onset, spread, rng, freq_s):
    noise = rng.standard_normal(v.shape) * (0.5 * s * spread)
    return np.where(after, v + noise, v), o


def _spike_rate(s: float) -> float:
    return min(0.25, 0.02 * s)


def _spikes(v, o, s, after, onset, spread, rng, freq_s):
    hit = after & o & (rng.random(v.shape) < _spike_rate(s))
    sign = np.where(rng.random(v.shape) < 0.5, -1.0, 1.0)
    return np.where(hit, v + sign * (3.0 + s) * spread, v), o


def _episodes(after, onset, rng, slots: int, fraction: float) -> np.ndarray:
    """[n, T] mask of `round(fraction × slots)` (at least 1) randomly chosen slots among
    `slots` equal slots of each row's drifted part: exact coverage, random placement."""
    steps = _steps_since_onset(after, onset)
    slot = np.minimum(steps * slots // _drifted_length(after), slots - 1)  # near-equal slots
    chosen = max(1, min(slots, int(round(fraction * slots))))
    rank = np.argsort(np.argsort(rng.random((after.shape[0], slots)), axis=1), axis=1)
    picked = rank < chosen  # [n, slots]
    return after & np.take_along_axis(picked, slot, axis=1)


def _stuck_sensor(v, o, s, after, onset, spread, rng, freq_s):
    n, T = v.shape
    stuck = _episodes(after, onset, rng, 8, min(1.0, s / 4.0))
    # inside an episode the sensor repeats the last value it reported before the episode
    t = np.arange(T)[None, :]
    last = np.maximum.accumulate(np.where(o & ~stuck, t, -1), axis=1)
    held = np.take_along_axis(v, np.maximum(last, 0), axis=1)
    return np.where(stuck & (last >= 0), held, v), o


def _missing_bursts(v, o, s, after, onset, spread, rng, freq_s):
    gone = _episodes(after, onset, rng, 20, min(0.9, 0.1 * s))
    return v, o & ~gone


def _quantisation_step(s: float, spread: np.ndarray) -> np.ndarray:
    return 0.5 * s * spread


def _quantisation(v, o, s, after, onset, spread, rng, freq_s):
    q = _quantisation_step(s, spread)
    return np.where(after, np.round(v / q) * q, v), o


def _warp_factor(s: float) -> float:
    return 1.0 + 0.25 * s


def _resample(v, o, after, source):
    """Values at fractional `source` positions (linear), observed only where both ends are."""
    T = v.shape[1]
    lo = np.clip(np.floor(source).astype(np.int64), 0, T - 1)
    hi = np.minimum(lo + 1, T - 1)
    w = source - lo
    v_lo, v_hi = np.take_along_axis(v, lo, 1), np.take_along_axis(v, hi, 1)
    o_lo, o_hi = np.take_along_axis(o, lo, 1), np.take_along_axis(o, hi, 1)
    ok = o_lo & (o_hi | (w == 0))
    value = np.where(w == 0, v_lo, (1 - w) * v_lo + w * v_hi)
    return np.where(after, value, v), np.where(after, ok, o)


def _time_warp(v, o, s, after, onset, spread, rng, freq_s):
    t = np.arange(v.shape[1])[None, :]
    source = np.where(after, onset + (t - onset) / _warp_factor(s), t)
    return _resample(v, o, after, source.astype(np.float64))


def _sampling_every(s: float) -> int:
    return 1 + int(np.ceil(s))


def _sampling_rate(v, o, s, after, onset, spread, rng, freq_s):
    every = _sampling_every(s)
    t = np.arange(v.shape[1])[None, :]
    source = np.where(after, onset + ((t - onset) // every) * every, t)
    return _resample(v, o, after, source.astype(np.float64))


_LIST = [
    DriftFamily(
        "level_shift",
        "a step in the level (a replaced sensor, a new operating point)",
        {"offset": "severity × spread"},
        _level_shift,
    ),
    DriftFamily(
        "ramp",
        "a linear drift away from the true value (sensor aging, fouling)",
        {"end_offset": "severity × spread, reached at the last point"},
        _ramp,
    ),
    DriftFamily(
        "gain_change",
        "deviations from the pre-onset mean are amplified (calibration or unit change)",
        {"gain": "1 + 0.5 × severity"},
        _gain_change,
    ),
    DriftFamily(
        "noise_increase",
        "extra Gaussian measurement noise (a degraded sensor or cable)",
        {"noise_std": "0.5 × severity × spread"},
        _noise_increase,
    ),
    DriftFamily(
        "spikes",
        "isolated outliers on observed points (electrical interference)",
        {"rate": "min(0.25, 0.02 × severity)", "amplitude": "(3 + severity) × spread"},
        _spikes,
    ),
    DriftFamily(
        "stuck_sensor",
        "the reading freezes at its last value for episodes (a stuck valve or transmitter)",
        {
            "stuck_frac": "min(1, severity / 4) of the drifted part",
            "episodes": "of 1/8 of the drifted part each",
        },
        _stuck_sensor,
    ),
    DriftFamily(
        "missing_bursts",
        "bursts of dropped readings (sensor or network dropout): points become unobserved",
        {
            "missing_frac": "min(0.9, 0.1 × severity) of the drifted part, in steps of 0.05",
            "burst_length": "1/20 of the drifted part",
        },
        _missing_bursts,
    ),
    DriftFamily(
        "quantisation",
        "readings rounded to a coarser step (a cheaper ADC, a historian's deadband)",
        {"step": "0.5 × severity × spread"},
        _quantisation,
    ),
    DriftFamily(
        "time_warp",
        "the seasonality slows down: cycles stretch in time (a frequency change of the process)",
        {"stretch": "1 + 0.25 × severity"},
        _time_warp,
    ),
    DriftFamily(
        "sampling_rate",
        "the sensor reports less often and the historian holds the last reading in between",
        {"every": "1 + ceil(severity) grid steps"},
        _sampling_rate,
    ),
]

FAMILIES: dict[str, DriftFamily] = {family.name: family for family in _LIST}


def check(family: str, severity: float) -> str | None:
    """Why (family, severity) cannot be applied, or None when it can."""
    if family not in FAMILIES:
        return f"unknown drift family '{family}' (known: {', '.join(FAMILIES)})"
    limit = FAMILIES[family].max_severity
    if not (isinstance(severity, (int, float)) and 0 < severity <= limit):
        return f"severity {severity!r} of '{family}' is out of range (0, {limit:g}]"
    return None


def window_spread(values: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """[n] standard deviation of each row's observed values; flat or empty rows get a fallback
    of 1 % of the mean's magnitude (or 1 when that is zero), so a shift is never zero."""
    values = np.asarray(values, dtype=np.float64)
    observed = np.asarray(observed, dtype=bool)
    mean = masked_mean(values, observed)
    std = np.sqrt(masked_mean((values - mean[:, None]) ** 2, observed))
    fallback = np.where(np.isfinite(mean) & (np.abs(mean) > 0), 0.01 * np.abs(mean), 1.0)
    return np.where(np.isfinite(std) & (std > 1e-8), std, fallback)


def apply_drift(
    family: str,
    values: np.ndarray,
    observed: np.ndarray,
    severity: float,
    *,
    onset: int | np.ndarray,
    spread: np.ndarray,
    rng: np.random.Generator,
    freq_s: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply one drift family to a batch of windows; see the module docstring for shapes."""
    problem = check(family, severity)
    if problem:
        raise ValueError(problem)
    observed = np.asarray(observed, dtype=bool)
    values = np.where(observed, np.asarray(values, dtype=np.float64), np.nan)
    n, T = values.shape
    onset_col = np.broadcast_to(np.asarray(onset, dtype=np.int64).reshape(-1, 1), (n, 1))
    onset_col = np.clip(onset_col, 0, T)
    after = np.arange(T)[None, :] >= onset_col
    spread_col = np.asarray(spread, dtype=np.float64).reshape(-1, 1)
    out_v, out_o = FAMILIES[family].apply(
        values, observed, float(severity), after, onset_col, spread_col, rng, float(freq_s)
    )
    out_o = np.asarray(out_o, dtype=bool) & observed & np.isfinite(out_v)
    return np.where(out_o, out_v, np.nan).astype(np.float32), out_o
