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
