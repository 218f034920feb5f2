"""Each drift family's effect, checked numerically on batches of windows."""

from __future__ import annotations

import numpy as np
import pytest

from tsfm_cli.drift import FAMILIES, apply_drift, check, window_spread

N, T, ONSET = 64, 512, 256


def _batch(seed: int = 0, missing: float = 0.1):
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    level = rng.uniform(-50, 50, size=(N, 1))
    amp = rng.uniform(1, 5, size=(N, 1))
    values = level + amp * np.sin(2 * np.pi * t / 64) + 0.3 * amp * rng.standard_normal((N, T))
    observed = rng.random((N, T)) > missing
    values = np.where(observed, values, np.nan).astype(np.float32)
    return values, observed, window_spread(values, observed)


def _apply(family, severity, missing=0.1, seed=1):
    values, observed, spread = _batch(missing=missing)
    out, out_obs = apply_drift(
        family,
        values,
        observed,
        severity,
        onset=ONSET,
        spread=spread,
        rng=np.random.default_rng(seed),
        freq_s=300,
    )
    return values, observed, spread, out, out_obs


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_masks_stay_honest_and_before_onset_unchanged(family):
    values, observed, _, out, out_obs = _apply(family, 3.0)
    assert out.dtype == np.float32 and out.shape == values.shape
    assert not (out_obs & ~observed).any(), "an unobserved point became observed"
    assert np.isnan(out[~out_obs]).all()
    assert np.isfinite(out[out_obs]).all()
    np.testing.assert_array_equal(out_obs[:, :ONSET], observed[:, :ONSET])
    np.testing.assert_array_equal(out[:, :ONSET], values[:, :ONSET])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_deterministic_with_the_rng(family):
    a = _apply(family, 2.0, seed=7)
    b = _apply(family, 2.0, seed=7)
    np.testing.assert_array_equal(a[3], b[3])
    np.testing.assert_array_equal(a[4], b[4])


def test_at_least_ten_families_with_descriptions():
    assert len(FAMILIES) >= 10
    for family in FAMILIES.values():
        assert family.description and family.params


@pytest.mark.parametrize("k", [0.5, 1.0, 3.0])
def test_level_shift_moves_mean_by_k_spreads(k):
    values, observed, spread, out, out_obs = _apply("level_shift", k)
    moved = np.nanmean(out[:, ONSET:] - values[:, ONSET:], axis=1)
    np.testing.assert_allclose(moved, k * spread, rtol=1e-4)
    np.testing.assert_array_equal(out_obs, observed)


def test_ramp_reaches_k_spreads_at_the_end():
    values, observed, spread, out, _ = _apply("ramp", 2.0, missing=0.0)
    delta = out.astype(np.float64) - values
    np.testing.assert_allclose(delta[:, -1], 2.0 * spread, rtol=1e-3)
    np.testing.assert_allclose(delta[:, ONSET], 2.0 * spread / (T - ONSET), rtol=1e-2, atol=1e-3)
    assert (np.diff(delta[:, ONSET:], axis=1) > -1e-3).all()


def test_gain_change_scales_deviations():
    values, observed, _, out, _ = _apply("gain_change", 2.0, missing=0.0)
    ratio = np.std(out[:, ONSET:], axis=1) / np.std(values[:, ONSET:], axis=1)
    np.testing.assert_allclose(ratio, 2.0, rtol=1e-3)


def test_noise_increase_adds_noise_of_half_k_spreads():
    values, _, spread, out, _ = _apply("noise_increase", 4.0, missing=0.0)
    added = np.std(out[:, ONSET:] - values[:, ONSET:], axis=1) / spread
    assert abs(np.median(added) - 2.0) < 0.15


def test_spikes_hit_the_stated_rate_and_amplitude():
    values, observed, spread, out, _ = _apply("spikes", 5.0)
    delta = np.abs(out.astype(np.float64) - values)
    hit = np.nan_to_num(delta) > 1e-3 * spread[:, None]
    assert not hit[:, :ONSET].any()
    rate = hit[:, ONSET:].sum() / observed[:, ONSET:].sum()
    assert 0.07 < rate < 0.13  # min(0.25, 0.02 * 5) = 0.1
    np.testing.assert_allclose((delta / spread[:, None])[hit], 8.0, rtol=1e-3)


def _runs(row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    edges = np.flatnonzero(np.diff(np.r_[0, row.astype(np.int8), 0]))
    return edges[::2], edges[1::2]


def test_stuck_sensor_freezes_at_the_last_value():
    values, observed, _, out, out_obs = _apply("stuck_sensor", 2.0, missing=0.0)
    changed = out != values
    assert not changed[:, :ONSET].any()
    np.testing.assert_array_equal(out_obs, observed)
    # severity 2 → half of the drifted part, in episodes of 1/8 of it (32 points)
    frozen = np.zeros_like(changed)
    for r in range(N):
        for start, end in zip(*_runs(np.diff(out[r]) == 0), strict=True):
            frozen[r, start + 1 : end + 1] = True
            assert (out[r, start : end + 1] == values[r, start]).all()
    np.testing.assert_allclose(frozen[:, ONSET:].mean(axis=1), 0.5, atol=0.02)


@pytest.mark.parametrize(("severity", "fraction"), [(1.0, 2 / 16), (3.0, 5 / 16), (9.0, 14 / 16)])
def test_missing_burst_clears_the_mask_over_bursts(severity, fraction):
    values, observed, _, out, out_obs = _apply("missing_bursts", severity, missing=0.0)
    cleared = observed & ~out_obs
    assert not cleared[:, :ONSET].any()
    np.testing.assert_allclose(cleared[:, ONSET:].mean(axis=1), fraction)
    assert np.isnan(out[cleared]).all()
    # dropped points come in whole bursts of 16 points (1/16 of the 256 drifted points)
    for row in cleared:
        starts, ends = _runs(row)
        assert ((ends - starts) % 16 == 0).all() and ((starts - ONSET) % 16 == 0).all()


def test_quantisation_rounds_to_the_step():
    values, _, spread, out, _ = _apply("quantisation", 2.0, missing=0.0)
    step = (0.5 * 2.0 * spread)[:, None]
    ratio = out[:, ONSET:] / step
    np.testing.assert_allclose(ratio, np.round(ratio), atol=1e-3)
    assert (np.abs(out[:, ONSET:] - values[:, ONSET:]) <= step / 2 + 1e-4).all()


def test_time_warp_stretches_the_cycles():
    values, _, _, out, _ = _apply("time_warp", 4.0, missing=0.0)  # stretch 2
    j = np.arange(0, (T - ONSET) // 2)
    np.testing.assert_allclose(out[:, ONSET + 2 * j], values[:, ONSET + j], rtol=1e-5, atol=1e-4)


def test_sampling_rate_holds_each_reading():
    values, _, _, out, _ = _apply("sampling_rate", 2.0, missing=0.0)  # every 3 steps
    for lag in (1, 2):
        idx = np.arange(ONSET, T - lag, 3)
        np.testing.assert_array_equal(out[:, idx + lag], values[:, idx])


def test_onset_in_target_only_leaves_the_context_alone():
    values, observed, spread = _batch()
    out, _ = apply_drift(
        "level_shift",
        values,
        observed,
        1.0,
        onset=T,
        spread=spread,
        rng=np.random.default_rng(0),
    )
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize(
    ("family", "severity", "message"),
    [
        ("nope", 1.0, "unknown drift family"),
        ("level_shift", 0.0, "out of range"),
        ("level_shift", 11.0, "out of range"),
    ],
)
def test_check_rejects_bad_family_or_severity(family, severity, message):
    assert message in check(family, severity)
    with pytest.raises(ValueError, match=message):
        apply_drift(
            family,
            np.zeros((1, 4), np.float32),
            np.ones((1, 4), bool),
            severity,
            onset=0,
            spread=np.ones(1),
            rng=np.random.default_rng(0),
        )


def test_window_spread_has_a_fallback_for_flat_rows():
    values = np.array([[5.0, 5.0, 5.0], [0.0, 0.0, 0.0], [1.0, 3.0, np.nan]])
    observed = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 0]], bool)
    np.testing.assert_allclose(window_spread(values, observed), [0.05, 1.0, 1.0])
