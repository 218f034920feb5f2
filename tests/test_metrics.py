import numpy as np
import pytest
from scipy import stats

from tsfm_cli import metrics


def test_crps_from_samples_matches_closed_form_for_gaussian():
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(20000, 1, 3))
    target = np.array([[0.0, 1.0, -2.0]])
    got = metrics.crps_from_samples(samples, target, np.ones_like(target, bool))
    z = target[0]
    exact = z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi)
    assert got[0] == pytest.approx(exact.mean(), rel=0.02)


def test_crps_pairwise_identity_equals_brute_force():
    rng = np.random.default_rng(1)
    samples = rng.standard_t(3, size=(40, 2, 5))
    target = rng.normal(size=(2, 5))
    brute = np.abs(samples - target).mean(0) - 0.5 * np.abs(
        samples[:, None] - samples[None, :]
    ).mean((0, 1))
    got = metrics.crps_from_samples(samples, target, np.ones((2, 5), bool))
    np.testing.assert_allclose(got, brute.mean(-1), rtol=1e-10)


def test_unobserved_points_never_count():
    target = np.array([1.0, 2.0, 3.0])
    point = np.array([1.0, 2.0, 100.0])
    observed = np.array([True, True, False])
    assert metrics.mae(point, target, observed) == 0.0
    assert metrics.mse(point, target, observed) == 0.0
    samples = np.stack([point, point])
    assert metrics.crps_from_samples(samples, target, observed) == 0.0


def test_mase_divides_by_seasonal_naive_error():
    context = np.tile([0.0, 1.0, 0.0, 3.0], 4)  # season 2: |diff| alternates 0 and 2 → mean 1
    scale = metrics.seasonal_naive_scale(context, np.ones(16, bool), 2)
    assert scale == pytest.approx(1.0)
    got = metrics.mase(
        np.zeros(4), np.full(4, 2.0), np.ones(4, bool), context, np.ones(16, bool), 2
    )
    assert got == pytest.approx(2.0)


def test_season_length_follows_sampling_frequency():
    assert metrics.season_length(3600) == 24
    assert metrics.season_length(900) == 96
    assert metrics.season_length(1) == 3600
    assert metrics.season_length(86400) == 7
    assert metrics.season_length(3600, context_length=32) == 1


def test_weighted_quantile_loss_is_zero_for_perfect_quantiles():
    target = np.array([[1.0, 2.0]])
    quantiles = np.repeat(target[None], 9, axis=0)
    assert metrics.weighted_quantile_loss(quantiles, target, np.ones((1, 2), bool))[0] == 0.0
