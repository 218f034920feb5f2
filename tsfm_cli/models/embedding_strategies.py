"""The embedding strategies that `embed-bench` compares, as entries of the embedding registry.

Every class keeps the contract in `tsfm_cli.models.embeddings` (constructed as
``cls(d_model=, patch_size=, freq_s=, **options)``, a ``token_length``, and
``forward(values, observed, timestamps_s) → [B, T // token_length, d_model]``) and reads a value
only where it is observed (``torch.where``, so even a NaN at an unobserved point changes nothing).
Every token depends on its own span and the past only, so the decoder-only backbone stays causal.

| name | token_length | what one token sees |
|---|---|---|
| `pointwise` | 1 | one value, linear (no mask) |
| `multi_patch` | Moirai's patch size for the sampling frequency | the span at 3 scales |
| `quantised` | patch_size (1 = Chronos) | per-point bin embeddings, concatenated |
| `lag_features` | patch_size (1 = Lag-Llama) | per-point lags + running loc/scale |
| `mask_input` | patch_size | `[values·mask ‖ mask]` |
| `missing_token` | patch_size | values; a learned vector per missing point |
| `time_features` | patch_size | the patch + calendar / shift features |

Every strategy but `patch` takes ``hidden`` (default 0): when > 0, its final linear projection
becomes ``Linear → SiLU → Linear`` of that width. `embed-bench` uses it (and ``bins`` for
`quantised`) to bring all strategies to the same total parameter count.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tsfm_cli.metrics import season_length
from tsfm_cli.models.embeddings import EMBEDDINGS, Embedding, build_embedding, register

_MINUTE, _HOUR, _DAY, _WEEK = 60, 3600, 86400, 7 * 86400


def _masked(values: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Values where observed, exactly 0 elsewhere (NaN/inf at unobserved points included)."""
    return torch.where(observed, values, torch.zeros((), dtype=values.dtype))


def _projection(in_features: int, d_model: int, hidden: int = 0) -> nn.Module:
    """Linear (no bias), or a two-layer SiLU MLP of width `hidden` when hidden > 0."""
    if hidden and hidden > 0:
        return nn.Sequential(
            nn.Linear(in_features, hidden, bias=False),
            nn.SiLU(),
            nn.Linear(hidden, d_model, bias=False),
        )
    return nn.Linear(in_features, d_model, bias=False)


def _check_divisible(length: int, token_length: int, name: str) -> None:
    if length % token_length:
        raise ValueError(
            f"{name}: length {length} is not a multiple of token_length {token_length}"
        )


class _Projected(Embedding):
    """Per-token inputs of width ``in_width(token_length)``, then `_projection` to d_model."""

    def __init__(
        self, d_model: int, patch_size: int, freq_s: float | None = None, hidden: int = 0
    ) -> None:
        super().__init__(d_model, patch_size, freq_s)
        self.token_length = self.choose_token_length(patch_size)
        self.proj = _projection(self.in_width(self.token_length), d_model, hidden)

    def choose_token_length(self, patch_size: int) -> int:
        return patch_size

    def in_width(self, token_length: int) -> int:
        return token_length


@register
class PointwiseEmbedding(_Projected):
    """One token per time step: a linear map of the (masked) value; the mask is not an input."""

    name = "pointwise"
    description = "one token per time step, linear in the value"

    def choose_token_length(self, patch_size: int) -> int:
        return 1

    def forward(self, values, observed, timestamps_s=None):
        return self.proj(_masked(values, observed).unsqueeze(-1))  # [B, T, d_model]


def moirai_patch_sizes(freq_s: float) -> tuple[int, ...]:
    """Patch sizes Moirai allows for a sampling interval (uni2ts `get_default_patch_sizes`)."""
    if freq_s < _MINUTE:
        return (64, 128)
    if freq_s < _HOUR:
        return (32, 64, 128)
    if freq_s < _DAY:
        return (32, 64)
    if freq_s < 28 * _DAY:  # daily and weekly
        return (16, 32)
    if freq_s < 365 * _DAY:  # monthly, quarterly
        return (8, 16, 32)
    return (8,)


@register
class MultiPatchEmbedding(Embedding):
    """Moirai-style frequency-dependent patching, embedded at several scales.

    The token length is the patch size Moirai allows for the sampling interval that is closest to
    `patch_size` (ties → the smaller; `patch_size` itself without a frequency). Each token's span is
    cut into sub-patches of length L, L/2 and L/4; each scale has its own projection, its
    sub-patch embeddings go through SiLU and are averaged, the scales are summed and projected.
    """

    name = "multi_patch"
    description = "Moirai's patch size for the sampling frequency, embedded at scales L, L/2, L/4"

    def __init__(
        self,
        d_model: int,
        patch_size: int,
        freq_s: float | None = None,
        hidden: int = 0,
        patch_sizes: list[int] | None = None,
    ) -> None:
        super().__init__(d_model, patch_size, freq_s)
        allowed = tuple(patch_sizes) if patch_sizes else None
        if allowed is None:
            allowed = moirai_patch_sizes(freq_s) if freq_s else (patch_size,)
        self.token_length = min(allowed, key=lambda size: (abs(size - patch_size), size))
        self.scales = sorted(
            {self.token_length // k for k in (1, 2, 4) if self.token_length // k >= 1}, reverse=True
        )
        self.scale_proj = nn.ModuleList(
            nn.Linear(scale, d_model, bias=False) for scale in self.scales
        )
        self.out = _projection(d_model, d_model, hidden)

    def forward(self, values, observed, timestamps_s=None):
        _check_divisible(values.shape[1], self.token_length, self.name)
        spans = self.patches(_masked(values, observed))  # [B, N, L]
        total = 0
        for scale, proj in zip(self.scales, self.scale_proj, strict=True):
            sub = spans.reshape(*spans.shape[:2], self.token_length // scale, scale)
            total = total + nn.functional.silu(proj(sub)).mean(dim=2)  # [B, N, d]
        return self.out(total)


class _StepEmbedding(Embedding):
    """Per-step vectors of width `step_dim`, concatenated over a token's steps and projected."""

    def __init__(self, d_model, patch_size, freq_s, step_dim: int, hidden: int) -> None:
        super().__init__(d_model, patch_size, freq_s)
        self.step_dim = step_dim
        self.proj = _projection(patch_size * step_dim, d_model, hidden)

    def step_vectors(self, values, observed, timestamps_s) -> torch.Tensor:  # [B, T, step_dim]
        raise NotImplementedError

    def forward(self, values, observed, timestamps_s=None):
        _check_divisible(values.shape[1], self.token_length, self.name)
        steps = self.step_vectors(values, observed, timestamps_s)
        tokens = steps.reshape(steps.shape[0], -1, self.token_length * self.step_dim)
        return self.proj(tokens)  # [B, T / P, d_model]


@register
class QuantisedEmbedding(_StepEmbedding):
    """Chronos-style tokens: uniform bins over a fixed range of the scaled value, a lookup table.

    Each point gets bin ``floor((x − low) / (high − low) · bins)`` (clipped), or an extra
    "missing" index when unobserved (Chronos's PAD token); its table row (`step_dim` wide) is
    concatenated over the patch and projected. ``patch_size = 1`` gives Chronos's one token per
    step; the default per-patch form keeps the sequence as short as `patch`'s.
    """

    name = "quantised"
    description = "uniform bins of the scaled value + embedding table (Chronos), per patch"

    def __init__(
        self,
        d_model: int,
        patch_size: int,
        freq_s: float | None = None,
        hidden: int = 0,
        bins: int = 512,
        low: float = -15.0,
        high: float = 15.0,
        step_dim: int = 8,
    ) -> None:
        super().__init__(d_model, patch_size, freq_s, step_dim, hidden)
        if bins < 2 or not high > low:
            raise ValueError("quantised: need bins >= 2 and high > low")
        self.bins, self.low, self.high = bins, float(low), float(high)
        self.table = nn.Embedding(bins + 1, step_dim)  # last row: missing

    def bin_index(self, values, observed) -> torch.Tensor:
        x = _masked(values, observed).to(torch.float32)
        index = torch.floor((x - self.low) / (self.high - self.low) * self.bins)
        index = index.clamp(0, self.bins - 1).to(torch.long)
        return torch.where(observed, index, torch.full_like(index, self.bins))

    def step_vectors(self, values, observed, timestamps_s):
        return self.table(self.bin_index(values, observed))


def default_lags(freq_s: float | None) -> list[int]:
    """Lag-Llama-like lags: 1..7 steps plus one, two and three seasons (season from freq_s)."""
    lags = set(range(1, 8))
    if freq_s:
        season = season_length(freq_s)
        if season > 1:
            lags |= {season, 2 * season, 3 * season}
    return sorted(lags)


@register
class LagFeaturesEmbedding(_StepEmbedding):
    """Lag-Llama-style inputs: per step its value, lagged values and running loc/scale features.

    Step t's features: ``x_t, m_t``, for every lag l ``x_{t−l}, m_{t−l}`` (0 and mask 0 when t−l
    falls before the window or is unobserved), and ``asinh`` of the running mean and standard
    deviation of the observed values up to t (causal, so the decoder never sees the future).
    A linear map takes them to `step_dim`; the steps of a patch are concatenated and projected.
    ``patch_size = 1`` gives Lag-Llama's one token per step.
    """

    name = "lag_features"
    description = "each step's lags + running loc/scale features (Lag-Llama), per patch"

    def __init__(
        self,
        d_model: int,
        patch_size: int,
        freq_s: float | None = None,
        hidden: int = 0,
        lags: list[int] | None = None,
        step_dim: int = 8,
    ) -> None:
        super().__init__(d_model, patch_size, freq_s, step_dim, hidden)
        self.lags = sorted({int(lag) for lag in (lags or default_lags(freq_s))})
        if not self.lags or self.lags[0] < 1:
            raise ValueError("lag_features: lags must be positive integers")
        self.n_features = 2 + 2 * len(self.lags) + 2
        self.step = nn.Linear(self.n_features, step_dim, bias=False)

    def features(self, values, observed) -> torch.Tensor:  # [B, T, n_features]
        x = _masked(values, observed).to(torch.float32)
        m = observed.to(torch.float32)
        length = x.shape[1]
        columns = [x, m]
        for lag in self.lags:
            if lag >= length:
                zeros = torch.zeros_like(x)
                columns += [zeros, zeros]
                continue
            pad = x.new_zeros(x.shape[0], lag)
            columns += [torch.cat([pad, x[:, :-lag]], 1), torch.cat([pad, m[:, :-lag]], 1)]
        count = m.cumsum(1).clamp_min(1.0)
        mean = x.cumsum(1) / count
        var = ((x * x).cumsum(1) / count - mean * mean).clamp_min(0.0)
        columns += [torch.asinh(mean), torch.asinh(torch.sqrt(var + 1e-12))]
        return torch.stack(columns, dim=-1)

    def step_vectors(self, values, observed, timestamps_s):
        return self.step(self.features(values, observed))


@register
class MaskInputEmbedding(_Projected):
    """`[values·mask ‖ mask]` per patch, one linear projection (Moirai-2, Chronos-Bolt)."""

    name = "mask_input"
    description = "[values·mask ‖ mask] per patch, linear (Moirai-2, Chronos-Bolt)"

    def in_width(self, token_length: int) -> int:
        return 2 * token_length

    def forward(self, values, observed, timestamps_s=None):
        _check_divisible(values.shape[1], self.token_length, self.name)
        x = self.patches(_masked(values, observed))
        m = self.patches(observed.to(x.dtype))
        return self.proj(torch.cat([x, m], dim=-1))


@register
class MissingTokenEmbedding(_Projected):
    """Patch embedding in which each missing point contributes a learned vector instead.

    token = W·(x·m) + Σ_j (1 − m_j)·v_j with one learned v_j per position in the patch, so a fully
    observed patch is embedded exactly as by `patch`; a patch with no observed point becomes one
    learned `empty` token.
    """

    name = "missing_token"
    description = "patch embedding; missing points replaced by learned vectors"

    def __init__(
        self, d_model: int, patch_size: int, freq_s: float | None = None, hidden: int = 0
    ) -> None:
        super().__init__(d_model, patch_size, freq_s, hidden)
        self.missing = nn.Parameter(torch.randn(patch_size, d_model) * patch_size**-0.5)
        self.empty = nn.Parameter(torch.randn(d_model) * 0.02)

    def forward(self, values, observed, timestamps_s=None):
        _check_divisible(values.shape[1], self.token_length, self.name)
        x = self.patches(_masked(values, observed))
        missing = self.patches((~observed).to(x.dtype))  # [B, N, P]
        tokens = self.proj(x) + missing @ self.missing.to(x.dtype)
        empty = missing.sum(-1, keepdim=True) >= self.token_length
        return torch.where(empty, self.empty.to(x.dtype), tokens)


def calendar_features(
    timestamps_s: torch.Tensor, shift_hours: float = 8.0, shift_start_h: float = 6.0
) -> torch.Tensor:
    """[..., ] seconds since the epoch (UTC or local) → [..., n] calendar and shift features.

    sin/cos of the time of day, of the (continuous) day of week, a weekend flag, a one-hot of the
    shift (shifts of `shift_hours` starting at `shift_start_h`), sin/cos of the position in shift.
    """
    t = timestamps_s.to(torch.float64)
    day_s = torch.remainder(t, _DAY)
    tod = day_s / _DAY
    days = torch.floor(t / _DAY)
    dow = torch.remainder(days + 3, 7)  # 1970-01-01 was a Thursday; Monday = 0
    week = (dow + tod) / 7
    n_shifts = math.ceil(24 / shift_hours)
    into_shift_h = torch.remainder(day_s / _HOUR - shift_start_h, 24)
    shift = torch.clamp(torch.floor(into_shift_h / shift_hours), max=n_shifts - 1).long()
    in_shift = torch.remainder(into_shift_h, shift_hours) / shift_hours
    two_pi = 2 * math.pi
    columns = [
        torch.sin(two_pi * tod),
        torch.cos(two_pi * tod),
        torch.sin(two_pi * week),
        torch.cos(two_pi * week),
        (dow >= 5).to(torch.float64),
        *(shift == k for k in range(n_shifts)),
        torch.sin(two_pi * in_shift),
        torch.cos(two_pi * in_shift),
    ]
    return torch.stack([c.to(torch.float64) for c in columns], dim=-1)


@register
class TimeFeaturesEmbedding(_Projected):
    """Patch embedding plus a linear map of calendar features of the patch and of the next one.

    Features (see `calendar_features`: time of day, day of week, weekend, work shift) at each
    patch's first time stamp and at the next patch's (time stamps are known in advance, so this
    stays causal and tells a decoder token *when* the patch it predicts lies). Time stamps are
    shifted by `utc_offset_h` to plant-local time first. Without time stamps only the patch part
    remains.
    """

    name = "time_features"
    description = "patch embedding + time-of-day / day-of-week / shift features"

    def __init__(
        self,
        d_model: int,
        patch_size: int,
        freq_s: float | None = None,
        hidden: int = 0,
        shift_hours: float = 8.0,
        shift_start_h: float = 6.0,
        utc_offset_h: float = 0.0,
    ) -> None:
        super().__init__(d_model, patch_size, freq_s, hidden)
        if not 0 < shift_hours <= 24:
            raise ValueError("time_features: shift_hours must be in (0, 24]")
        self.shift_hours, self.shift_start_h = float(shift_hours), float(shift_start_h)
        self.utc_offset_s = float(utc_offset_h) * _HOUR
        self.n_time = 2 * (7 + math.ceil(24 / self.shift_hours))
        self.time_proj = nn.Linear(self.n_time, d_model, bias=False)

    def forward(self, values, observed, timestamps_s=None):
        _check_divisible(values.shape[1], self.token_length, self.name)
        tokens = self.proj(self.patches(_masked(values, observed)))
        if timestamps_s is None:
            return tokens
        ts = timestamps_s.to(torch.float64) + self.utc_offset_s
        if ts.shape[1] > 1:
            step = ts[:, 1:2] - ts[:, :1]
        else:
            step = torch.full_like(ts[:, :1], float(self.freq_s or 0.0))
        start = ts[:, :: self.token_length]  # [B, N]
        following = start + step * self.token_length
        feats = torch.cat(
            [
                calendar_features(start, self.shift_hours, self.shift_start_h),
                calendar_features(following, self.shift_hours, self.shift_start_h),
            ],
            dim=-1,
        )
        return tokens + self.time_proj(feats.to(tokens.dtype))


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def describe_embeddings(
    d_model: int, patch_size: int, freq_s: float | None = None, names: list[str] | None = None
) -> list[dict]:
    """One row per registered strategy: name, token_length, params, description."""
    rows = []
    for name in names or sorted(EMBEDDINGS):
        module = build_embedding(name, d_model, patch_size, freq_s)
        rows.append(
            {
                "name": name,
                "token_length": module.token_length,
                "params": parameter_count(module),
                "description": EMBEDDINGS[name].description,
            }
        )
    return rows


def with_options(name: str, options: dict | None) -> str:
    """Registry name of embedding `name` with `options` bound, e.g. ``pointwise[hidden=520]``.

    Registered on first use (same name → same class), so code that only passes an embedding's
    name (a run spec, a recipe) can still train a resized variant.
    """
    if not options:
        return name
    base = EMBEDDINGS[name]
    bound = dict(sorted(options.items()))
    label = f"{name}[{','.join(f'{key}={value}' for key, value in bound.items())}]"
    if label not in EMBEDDINGS:

        def __init__(self, d_model, patch_size, freq_s=None, **extra):  # noqa: N807
            base.__init__(self, d_model, patch_size, freq_s, **{**bound, **extra})

        EMBEDDINGS[label] = type(
            f"{base.__name__}Variant",
            (base,),
            {"name": label, "base_name": name, "bound_options": bound, "__init__": __init__},
        )
    return label
