"""Output head: a mixture of Student-t distributions per time point (DESIGN §3).

The head maps each token [d] to the parameters of `token_length` points, each a mixture of K
Student-t components (paper: K = 4): mixture logits, locations, scales (softplus) and degrees of
freedom `df = 2 + softplus` (finite variance). ``StudentTMixture`` holds the parameters and gives
the NLL, samples and the (sample) median used as the point forecast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

MIN_SCALE = 1e-4


@dataclass
class StudentTMixture:
    """Parameters, each [..., K] (the leading shape is e.g. [B, T])."""

    logits: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor
    df: torch.Tensor

    def affine(self, shift: torch.Tensor, factor: torch.Tensor) -> StudentTMixture:
        """The distribution of ``factor · X + shift`` (shift, factor broadcast to [..., 1])."""
        return StudentTMixture(
            self.logits, self.loc * factor + shift, self.scale * factor.abs(), self.df
        )

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """y [...] → log density [...] (float32 for stability)."""
        loc, scale, df = self.loc.float(), self.scale.float(), self.df.float()
        z = (y.float()[..., None] - loc) / scale
        component = (
            torch.lgamma((df + 1) / 2)
            - torch.lgamma(df / 2)
            - 0.5 * torch.log(math.pi * df)
            - torch.log(scale)
            - (df + 1) / 2 * torch.log1p(z * z / df)
        )
        return torch.logsumexp(F.log_softmax(self.logits.float(), dim=-1) + component, dim=-1)

    def nll(self, y: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked NLL: (sum over observed points, count). Unobserved y values never matter."""
        y = torch.where(observed, y, torch.zeros_like(y))
        per_point = -self.log_prob(y)
        per_point = torch.where(observed, per_point, torch.zeros_like(per_point))
        return per_point.sum(), observed.sum()

    def sample(self, n: int) -> torch.Tensor:
        """n samples → [n, ...] (torch's global RNG: callers seed it, e.g. under fork_rng)."""
        shape = (n, *self.loc.shape[:-1])
        probs = F.softmax(self.logits.float(), dim=-1)  # [..., K]
        # component by inverse CDF (much faster than torch.multinomial on many small rows)
        u = torch.rand(shape, device=probs.device)[..., None]  # [n, ..., 1]
        pick = (probs.cumsum(-1)[None] < u).sum(-1, keepdim=True)  # [n, ..., 1]
        pick = pick.clamp_max(probs.shape[-1] - 1)

        def chosen(p: torch.Tensor) -> torch.Tensor:
            return torch.gather(p.float().expand(n, *p.shape), -1, pick).squeeze(-1)

        loc, scale, df = chosen(self.loc), chosen(self.scale), chosen(self.df)
        # Student-t = normal / sqrt(chi2(df)/df); chi2(df) = 2·Gamma(df/2).
        normal = torch.randn(shape, device=loc.device)
        gamma = torch._standard_gamma(df / 2)
        t = normal / torch.sqrt(2 * gamma.clamp_min(1e-12) / df)
        return loc + scale * t

    def mean(self) -> torch.Tensor:
        return (F.softmax(self.logits.float(), dim=-1) * self.loc.float()).sum(-1)


class MixtureHead(nn.Module):
    """[B, N, d] tokens → mixture parameters for [B, N·token_length] points."""

    def __init__(self, d_model: int, token_length: int, components: int = 4) -> None:
        super().__init__()
        self.token_length, self.components = token_length, components
        self.proj = nn.Linear(d_model, token_length * components * 4, bias=False)

    def forward(self, h: torch.Tensor) -> StudentTMixture:
        batch, tokens, _ = h.shape
        raw = self.proj(h).view(batch, tokens * self.token_length, self.components, 4)
        logits, loc, scale, df = raw.unbind(-1)  # each [B, T, K]
        return StudentTMixture(
            logits=logits,
            loc=loc,
            scale=F.softplus(scale) + MIN_SCALE,
            df=2.0 + F.softplus(df),
        )
