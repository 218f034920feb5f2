"""Instance normalisation: each window is scaled by statistics of its observed context.

A registry (``SCALERS``) so that embed-bench can sweep it by name: ``std`` (mean/std of the
observed context, minimum scale 1e-5; the default and the paper's), ``meanabs`` (mean absolute
value, no shift; as in Chronos) and ``none``. Metrics are always reported on ``std``-scaled values
whatever the model's own normalisation (README "Metrics"), so strategies stay comparable.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

MIN_SCALE = 1e-5

Scaler = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
SCALERS: dict[str, Scaler] = {}


def register_scaler(name: str) -> Callable[[Scaler], Scaler]:
    def wrap(fn: Scaler) -> Scaler:
        SCALERS[name] = fn
        return fn

    return wrap


def get_scaler(name: str) -> Scaler:
    try:
        return SCALERS[name]
    except KeyError:
        known = ", ".join(sorted(SCALERS))
        raise ValueError(f"unknown normalisation '{name}' (known: {known})") from None


def _observed_mean(x: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    weight = observed.to(torch.float32)
    count = weight.sum(-1, keepdim=True).clamp_min(1.0)
    return (torch.where(observed, x, 0.0).float() * weight).sum(-1, keepdim=True) / count, count


@register_scaler("std")
def std_scaler(x: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x, observed: [B, T] → (loc, scale), each [B, 1]; scale = std of observed points."""
    loc, count = _observed_mean(x, observed)
    dev = torch.where(observed, x.float() - loc, 0.0)
    var = dev.pow(2).sum(-1, keepdim=True) / count
    return loc, var.sqrt().clamp_min(MIN_SCALE)


@register_scaler("meanabs")
def meanabs_scaler(x: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    absmean, _ = _observed_mean(x.abs(), observed)
    return torch.zeros_like(absmean), absmean.clamp_min(MIN_SCALE)


@register_scaler("none")
def no_scaler(x: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ones = torch.ones(x.shape[0], 1, dtype=torch.float32, device=x.device)
    return torch.zeros_like(ones), ones


# -- causal statistics (the decoder) ------------------------------------------------------------
# The decoder predicts patch i+1 from patches 0..i, so the statistics that scale its input token i
# and its prediction at token i come from the observed points of patches 0..i only (cumulative,
# observed-masked). Context-wide statistics would let the targets' own values (patches 1.. are
# loss targets) shape how they are scaled: a leak between training and forecasting.


def _cumulative_moments(
    x: torch.Tensor, observed: torch.Tensor, patch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x, observed [B, N·p] → (count, mean, variance), each [B, N, 1], over patches 0..i.

    Float64 and shifted by patch 0's observed mean (every prefix holds patch 0, so the shift is
    causal) so that E[x²] − E[x]² does not cancel catastrophically for large offsets.
    """
    batch = x.shape[0]
    obs = observed.reshape(batch, -1, patch).to(torch.float64)
    xs = torch.where(observed, x, 0.0).to(torch.float64).reshape(batch, -1, patch)
    first_count = obs[:, :1].sum(-1, keepdim=True)
    shift = xs[:, :1].sum(-1, keepdim=True) / first_count.clamp_min(1.0)  # [B, 1, 1]
    centred = (xs - shift) * obs
    count = obs.sum(-1, keepdim=True).cumsum(1)  # [B, N, 1]
    s1 = centred.sum(-1, keepdim=True).cumsum(1)
    s2 = centred.pow(2).sum(-1, keepdim=True).cumsum(1)
    n = count.clamp_min(1.0)
    mean = s1 / n
    var = (s2 / n - mean.pow(2)).clamp_min(0.0)
    return count, mean + shift, var


def causal_scale(
    name: str, x: torch.Tensor, observed: torch.Tensor, patch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-patch (loc, scale) [B, N, 1] of scaler ``name`` from the observed points of patches
    0..i (float32). ``std``: mean/std; ``meanabs``: 0 / mean |x|; ``none``: 0 / 1. Minimum scale
    MIN_SCALE, as the context scalers."""
    get_scaler(name)  # the same names and the same error as the context scalers
    batch, n = x.shape[0], x.shape[1] // patch
    if name == "none":
        ones = torch.ones(batch, n, 1, dtype=torch.float32, device=x.device)
        return torch.zeros_like(ones), ones
    if name == "meanabs":
        obs = observed.reshape(batch, n, patch).to(torch.float64)
        absx = torch.where(observed, x.abs(), 0.0).to(torch.float64).reshape(batch, n, patch)
        total = absx.sum(-1, keepdim=True).cumsum(1)
        count = obs.sum(-1, keepdim=True).cumsum(1).clamp_min(1.0)
        scale = (total / count).float().clamp_min(MIN_SCALE)
        return torch.zeros_like(scale), scale
    _, mean, var = _cumulative_moments(x, observed, patch)
    return mean.float(), var.sqrt().float().clamp_min(MIN_SCALE)


def causal_count(observed: torch.Tensor, patch: int) -> torch.Tensor:
    """Observed points in patches 0..i → [B, N] (how much history each prefix's statistics
    rest on)."""
    return observed.reshape(observed.shape[0], -1, patch).sum(-1).cumsum(1)
