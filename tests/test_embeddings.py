"""Every embedding strategy keeps the registry contract: shapes, mask, causality, parameters."""

from __future__ import annotations

import datetime as dt

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tsfm_cli.embed_bench.config import DEFAULT_STRATEGIES
from tsfm_cli.models.embedding_strategies import (
    calendar_features,
    default_lags,
    describe_embeddings,
    moirai_patch_sizes,
    parameter_count,
)
from tsfm_cli.models.embeddings import EMBEDDINGS, build_embedding

D_MODEL, PATCH, FREQ_S, LENGTH, BATCH = 32, 16, 900.0, 128, 3
ALL = list(DEFAULT_STRATEGIES)  # patch first, then the seven the bench adds
NEW = ALL[1:]


def _inputs(seed: int = 0, missing: float = 0.3):
    gen = torch.Generator().manual_seed(seed)
    observed = torch.rand(BATCH, LENGTH, generator=gen) > missing
    values = torch.randn(BATCH, LENGTH, generator=gen) * 2
    values = torch.where(observed, values, torch.zeros(()))
    start = dt.datetime(2024, 3, 4, 5, 0, tzinfo=dt.timezone.utc).timestamp()
    stamps = start + FREQ_S * torch.arange(LENGTH, dtype=torch.float64)
    return values, observed, stamps.expand(BATCH, LENGTH).clone()


def _build(name: str, **options):
    torch.manual_seed(0)
    return build_embedding(name, D_MODEL, PATCH, FREQ_S, **options).eval()


def test_registry_holds_at_least_eight_strategies():
    assert set(ALL) <= set(EMBEDDINGS)
    assert len(EMBEDDINGS) >= 8


@pytest.mark.parametrize("name", ALL)
def test_shape(name):
    module = _build(name)
    values, observed, stamps = _inputs()
    tokens = module(values, observed, stamps)
    assert tokens.shape == (BATCH, LENGTH // module.token_length, D_MODEL)
    assert torch.isfinite(tokens).all()
    assert module(values, observed, None).shape == tokens.shape


@pytest.mark.parametrize("name", ALL)
def test_unobserved_values_change_nothing(name):
    module = _build(name)
    values, observed, stamps = _inputs()
    noise = torch.randn(values.shape, generator=torch.Generator().manual_seed(9)) * 100
    changed = torch.where(observed, values, noise)
    with torch.no_grad():
        assert torch.equal(module(values, observed, stamps), module(changed, observed, stamps))


@pytest.mark.parametrize("name", NEW)
def test_nan_at_unobserved_points_changes_nothing(name):
    module = _build(name)
    values, observed, stamps = _inputs()
    with_nan = torch.where(observed, values, torch.full((), float("nan")))
    with torch.no_grad():
        assert torch.equal(module(values, observed, stamps), module(with_nan, observed, stamps))


@pytest.mark.parametrize("name", ALL)
def test_observed_values_matter(name):
    module = _build(name)
    values, observed, stamps = _inputs()
    observed[:, :] = True
    changed = values.clone()
    changed[0, 5] += 3.0
    with torch.no_grad():
        before, after = module(values, observed, stamps), module(changed, observed, stamps)
    token = 5 // module.token_length
    assert not torch.equal(before[0, token], after[0, token])
    assert torch.equal(before[1:], after[1:])


@pytest.mark.parametrize("name", ALL)
def test_tokens_depend_on_past_and_own_span_only(name):
    """Changing the last token's span leaves every earlier token unchanged (decoder causality)."""
    module = _build(name)
    values, observed, stamps = _inputs()
    last = LENGTH - module.token_length
    changed = values.clone()
    changed[:, last:] += 5.0
    changed_obs = observed.clone()
    changed_obs[:, last:] = ~observed[:, last:]
    with torch.no_grad():
        before = module(values, observed, stamps)
        after = module(changed, changed_obs, stamps)
    assert torch.equal(before[:, :-1], after[:, :-1])


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_parameter(name):
    module = build_embedding(name, D_MODEL, PATCH, FREQ_S)
    values, observed, stamps = _inputs()
    observed[:, :32] = False  # one fully missing token for `missing_token`'s empty vector
    module(values, observed, stamps).square().mean().backward()
    for pname, param in module.named_parameters():
        if name == "quantised" and pname == "table.weight":
            continue  # only the rows of bins in use get gradient
        assert param.grad is not None and param.grad.abs().sum() > 0, pname


def test_mask_input_tells_missing_from_zero():
    module = _build("mask_input")
    values = torch.zeros(1, LENGTH)
    all_seen = torch.ones(1, LENGTH, dtype=torch.bool)
    none_seen = torch.zeros(1, LENGTH, dtype=torch.bool)
    assert not torch.allclose(module(values, all_seen), module(values, none_seen))
    assert not torch.allclose(_build("patch")(values, all_seen), module(values, all_seen))


def test_missing_token_equals_patch_when_all_observed_and_empty_patch_is_learned():
    values, observed, _ = _inputs()
    observed[:] = True
    missing = _build("missing_token")
    patch = _build("patch")
    with torch.no_grad():
        patch.proj.weight.copy_(missing.proj.weight)
        assert torch.allclose(missing(values, observed), patch(values, observed))
        observed[:, :PATCH] = False
        tokens = missing(values, observed)
    assert torch.equal(tokens[:, 0], missing.empty.detach().expand(BATCH, D_MODEL))


def test_multi_patch_token_length_follows_sampling_frequency():
    assert moirai_patch_sizes(1) == (64, 128)
    assert moirai_patch_sizes(900) == (32, 64, 128)
    assert moirai_patch_sizes(3600) == (32, 64)
    assert moirai_patch_sizes(86400) == (16, 32)
    assert build_embedding("multi_patch", 16, 16, 900).token_length == 32
    assert build_embedding("multi_patch", 16, 64, 1).token_length == 64
    assert build_embedding("multi_patch", 16, 100, 86400).token_length == 32
    assert build_embedding("multi_patch", 16, 16, None).token_length == 16
    assert build_embedding("multi_patch", 16, 16, 900).scales == [32, 16, 8]


def test_quantised_bins_and_missing_index():
    module = _build("quantised", bins=30, low=-15, high=15)
    values = torch.tensor([[-100.0, -15.0, -0.5, 0.0, 0.5, 14.99, 100.0, 3.0]])
    observed = torch.tensor([[True] * 7 + [False]])
    index = module.bin_index(values, observed)
    assert index.tolist() == [[0, 0, 14, 15, 15, 29, 29, 30]]


def test_lag_features_mask_lags_outside_window_or_unobserved():
    module = _build("lag_features", lags=[1, 3])
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    observed = torch.tensor([[True, False, True, True, True]])
    feats = module.features(values, observed)[0]  # columns: x, m, x1, m1, x3, m3, loc, scale
    assert feats[:, 0].tolist() == [1.0, 0.0, 3.0, 4.0, 5.0]
    assert feats[:, 2].tolist() == [0.0, 1.0, 0.0, 3.0, 4.0]
    assert feats[:, 3].tolist() == [0.0, 1.0, 0.0, 1.0, 1.0]
    assert feats[:, 4].tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]
    assert feats[:, 5].tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]
    running_mean = torch.tensor([1.0, 1.0, 2.0, 8 / 3, 13 / 4])
    assert torch.allclose(feats[:, 6], torch.asinh(running_mean))
    assert default_lags(900) == [1, 2, 3, 4, 5, 6, 7, 96, 192, 288]
    assert default_lags(None) == [1, 2, 3, 4, 5, 6, 7]


def test_calendar_features_know_weekday_and_shift():
    monday_0630 = dt.datetime(2024, 3, 4, 6, 30, tzinfo=dt.timezone.utc).timestamp()
    saturday_2300 = dt.datetime(2024, 3, 9, 23, 0, tzinfo=dt.timezone.utc).timestamp()
    feats = calendar_features(torch.tensor([monday_0630, saturday_2300], dtype=torch.float64))
    assert feats.shape == (2, 10)
    assert feats[:, 4].tolist() == [0.0, 1.0]  # weekend
    assert feats[0, 5:8].tolist() == [1.0, 0.0, 0.0]  # 06:00-14:00 shift
    assert feats[1, 5:8].tolist() == [0.0, 0.0, 1.0]  # 22:00-06:00 shift


def test_time_features_use_timestamps():
    module = _build("time_features")
    values, observed, stamps = _inputs()
    with torch.no_grad():
        base = module(values, observed, stamps)
        later = module(values, observed, stamps + 3 * 3600)
        # same first time stamp, a longer step: only the next patch's calendar differs
        slower = stamps[:, :1] + (stamps - stamps[:, :1]) * 4
        other = module(values, observed, slower)
    assert not torch.allclose(base, later)
    assert not torch.allclose(base[:, 0], other[:, 0])


def test_hidden_width_adds_parameters_and_keeps_contract():
    for name in NEW:
        plain, wide = _build(name), _build(name, hidden=48)
        assert parameter_count(wide) > parameter_count(plain)
        values, observed, stamps = _inputs()
        noise = torch.where(observed, values, torch.full((), 7.0))
        with torch.no_grad():
            assert torch.equal(wide(values, observed, stamps), wide(noise, observed, stamps))


def test_parameter_counts_reported():
    rows = {row["name"]: row for row in describe_embeddings(D_MODEL, PATCH, FREQ_S)}
    d, p = D_MODEL, PATCH
    lags = len(default_lags(FREQ_S))
    expected = {
        "patch": p * d,
        "pointwise": d,
        "multi_patch": (32 + 16 + 8) * d + d * d,
        "quantised": 513 * 8 + p * 8 * d,
        "lag_features": (2 + 2 * lags + 2) * 8 + p * 8 * d,
        "mask_input": 2 * p * d,
        "missing_token": 2 * p * d + d,
        "time_features": p * d + 20 * d,
    }
    assert {name: rows[name]["params"] for name in expected} == expected
    assert all(row["description"] for row in rows.values())


def test_variant_with_bound_options_is_registered_once():
    from tsfm_cli.models.embedding_strategies import with_options

    assert with_options("pointwise", {}) == "pointwise"
    label = with_options("pointwise", {"hidden": 12})
    assert label == "pointwise[hidden=12]" and with_options("pointwise", {"hidden": 12}) == label
    module = build_embedding(label, D_MODEL, PATCH, FREQ_S)
    assert parameter_count(module) == 12 + 12 * D_MODEL
    assert EMBEDDINGS[label].base_name == "pointwise"


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(ALL),
    missing=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
    hidden=st.sampled_from([0, 8]),
)
def test_mask_invariance_holds_for_any_mask(name, missing, seed, hidden):
    options = {"hidden": hidden} if hidden and name != "patch" else {}
    module = _build(name, **options)
    values, observed, stamps = _inputs(seed, missing)
    noise = torch.randn(values.shape, generator=torch.Generator().manual_seed(seed + 1)) * 1e3
    with torch.no_grad():
        tokens = module(values, observed, stamps)
        assert torch.equal(tokens, module(torch.where(observed, values, noise), observed, stamps))
    assert torch.isfinite(tokens).all()
