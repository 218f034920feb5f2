"""The forecaster: embedding → backbone → Student-t mixture head, in two architectures.

- ``encoder`` (encoder-only): bidirectional attention; the horizon's tokens are replaced by one
  learned mask token, and the head reads the forecast off those positions.
- ``decoder`` (decoder-only): causal attention, next-patch prediction; the head at token i gives
  the distribution of patch i+1. The horizon's NLL is teacher-forced (the exact likelihood under
  the autoregressive factorisation); samples and point forecasts roll forward patch by patch.

Scaling: the model sees values normalised by its own scaler (``normalisation``, registry in
``scaling.py``); its output distribution is mapped to the *evaluation space* — values
standardised by mean/std of the observed context — where every metric lives, so
``nll_scaled = nll_raw − log σ`` (DESIGN §3) whatever the normalisation.

- Encoder: the scaler's statistics come from the observed context (the horizon is never seen).
- Decoder: *causal* instance scaling. Token i (patches 0..i) is normalised, and its prediction of
  patch i+1 is de-normalised, with statistics of the observed points of patches 0..i only
  (``scaling.causal_scale``; cumulative, minimum scale 1e-5). Context-wide statistics would let
  the training targets (every patch after the first) shape their own scaling, which forecasting
  cannot do. The training loss of patch i+1 is measured in the std space of that same prefix, so
  changing a later patch changes no earlier prediction or loss term; patches whose prefix holds
  fewer than two observed points or no spread (scale at the minimum) are not scored in training.
  At evaluation the prefix always includes the whole context (and, teacher-forced, the horizon
  patches before the predicted one), and metrics use the context's evaluation space as above.

Unobserved points are zeroed before the embedding and never count in the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tsfm_cli.models.backbone import Backbone
from tsfm_cli.models.config import ModelConfig
from tsfm_cli.models.embeddings import build_embedding
from tsfm_cli.models.heads import MixtureHead, StudentTMixture
from tsfm_cli.models.scaling import MIN_SCALE, causal_count, causal_scale, get_scaler, std_scaler

ARCHS = ("encoder", "decoder")


def check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"unknown arch '{arch}' (known: {', '.join(ARCHS)})")


@dataclass
class Window:
    """A batch of windows, padded so that both parts are whole tokens.

    values [B, T] raw (anything where unobserved), observed [B, T] bool, timestamps_s [B, T]
    float64 or None; the first ``n_context`` points are the context, the rest the horizon.
    """

    values: torch.Tensor
    observed: torch.Tensor
    n_context: int
    timestamps_s: torch.Tensor | None = None

    @property
    def horizon(self) -> int:
        return self.values.shape[1] - self.n_context


class Forecaster(nn.Module):
    def __init__(
        self,
        arch: str,
        cfg: ModelConfig,
        patch_size: int = 32,
        embedding: str = "patch",
        normalisation: str = "std",
        components: int = 4,
        freq_s: float | None = None,
        embedding_options: dict | None = None,
    ) -> None:
        super().__init__()
        check_arch(arch)
        self.arch, self.cfg = arch, cfg
        self.normalisation = normalisation
        self.scaler = get_scaler(normalisation)
        self.embed = build_embedding(
            embedding, cfg.d_model, patch_size, freq_s, **(embedding_options or {})
        )
        self.token_length = self.embed.token_length
        self.backbone = Backbone(cfg, causal=arch == "decoder")
        self.head = MixtureHead(cfg.d_model, self.token_length, components)
        if arch == "encoder":
            self.mask_token = nn.Parameter(torch.randn(cfg.d_model) * 0.02)

    # -- sizes --------------------------------------------------------------------------------
    def num_params(self) -> tuple[int, int]:
        """(N non-embedding = blocks + final norm, total)."""
        total = sum(p.numel() for p in self.parameters())
        return self.backbone.num_params(), total

    # -- core ---------------------------------------------------------------------------------
    def pad(self, window: Window) -> tuple[Window, int, int]:
        """Left-pad the context and right-pad the horizon with unobserved points to whole tokens.

        Returns the padded window, the left padding and the horizon's right padding.
        """
        p = self.token_length
        left = (-window.n_context) % p
        right = (-window.horizon) % p
        if not left and not right:
            return window, 0, 0

        def pad(x: torch.Tensor, fill: float | bool) -> torch.Tensor:
            batch = x.shape[0]
            before = torch.full((batch, left), fill, dtype=x.dtype, device=x.device)
            after = torch.full((batch, right), fill, dtype=x.dtype, device=x.device)
            return torch.cat([before, x, after], dim=1)

        ts = window.timestamps_s
        if ts is not None:  # extend the time axis linearly (one step = the first difference)
            step = (ts[:, 1:2] - ts[:, :1]) if ts.shape[1] > 1 else torch.ones_like(ts[:, :1])
            before = ts[:, :1] - step * torch.arange(left, 0, -1, device=ts.device, dtype=ts.dtype)
            after = ts[:, -1:] + step * torch.arange(1, right + 1, device=ts.device, dtype=ts.dtype)
            ts = torch.cat([before, ts, after], dim=1)
        padded = Window(
            pad(window.values, 0.0), pad(window.observed, False), window.n_context + left, ts
        )
        return padded, left, right

    def _scales(self, window: Window):
        """(loc_m, scale_m) the model's normalisation per point, broadcastable to [B, T]
        (encoder: [B, 1] from the context; decoder: [B, T], causal per token), and
        (loc_e, scale_e) [B, 1] the evaluation space (std of the observed context)."""
        ctx = window.values[:, : window.n_context]
        ctx_obs = window.observed[:, : window.n_context]
        loc_e, scale_e = std_scaler(ctx, ctx_obs)  # evaluation space [B, 1]
        if self.arch == "decoder":
            loc_t, scale_t = self._causal(self.normalisation, window)
            return self._per_point(loc_t), self._per_point(scale_t), loc_e, scale_e
        loc_m, scale_m = self.scaler(ctx, ctx_obs)  # the model's own normalisation [B, 1]
        return loc_m, scale_m, loc_e, scale_e

    def _causal(self, name: str, window: Window) -> tuple[torch.Tensor, torch.Tensor]:
        """Statistics of patches 0..i for every token i → (loc, scale), each [B, N, 1]."""
        return causal_scale(name, window.values, window.observed, self.token_length)

    def _per_point(self, per_token: torch.Tensor) -> torch.Tensor:
        """[B, N, 1] → [B, N·p]: each token's statistic repeated over its points."""
        batch, tokens, _ = per_token.shape
        return per_token.expand(batch, tokens, self.token_length).reshape(batch, -1)

    def _hidden(self, window: Window, visible: torch.Tensor, loc_m, scale_m) -> torch.Tensor:
        """Embed the visible points (model space) and run the backbone → [B, N, d]."""
        scaled = (window.values.float() - loc_m) / scale_m
        scaled = torch.where(visible, scaled, torch.zeros_like(scaled))
        tokens = self.embed(scaled, visible, window.timestamps_s)  # [B, N, d]
        if self.arch == "encoder":
            n_ctx = window.n_context // self.token_length
            mask = self.mask_token.to(tokens.dtype).expand(
                tokens.shape[0], tokens.shape[1] - n_ctx, -1
            )
            tokens = torch.cat([tokens[:, :n_ctx], mask], dim=1)
        return self.backbone(tokens)

    def distribution(
        self, window: Window, first: int, space: str = "context"
    ) -> tuple[StudentTMixture, torch.Tensor]:
        """Predictive distribution of points ``first:`` of a padded window and those points'
        values, both in one space: ``context`` (the evaluation space, every metric) or, decoder
        only, ``causal`` (patch i+1 standardised by the std statistics of patches 0..i: the
        training loss). → (distribution over [B, T - first], values [B, T - first]).

        Encoder: ``first`` must be ``n_context`` (the horizon). Decoder: any multiple of the
        token length ≥ one token (teacher-forced).
        """
        loc_m, scale_m, loc_e, scale_e = self._scales(window)
        p = self.token_length
        if self.arch == "encoder":
            visible = window.observed.clone()
            visible[:, window.n_context :] = False  # the target never reaches the encoder
            h = self._hidden(window, visible, loc_m, scale_m)[:, first // p :]
        else:
            h = self._hidden(window, window.observed, loc_m, scale_m)[:, first // p - 1 : -1]
            # token i predicts patch i+1 in token i's model space: shift the statistics by a patch
            loc_m, scale_m = loc_m[:, first - p : -p], scale_m[:, first - p : -p]
            if space == "causal":
                loc_c, scale_c = self._causal("std", window)
                loc_e = self._per_point(loc_c)[:, first - p : -p]
                scale_e = self._per_point(scale_c)[:, first - p : -p]
        dist = self.head(h).affine(
            ((loc_m - loc_e) / scale_e)[..., None], (scale_m / scale_e)[..., None]
        )
        y = (window.values[:, first:].float() - loc_e) / scale_e
        return dist, y

    def loss(self, window: Window) -> tuple[torch.Tensor, torch.Tensor]:
        """Training loss: mean NLL per scored observed point and the count.

        Encoder: over the horizon (evaluation space). Decoder: next-patch over every patch after
        the first, each in its own prefix's std space (causal; see the module docstring).
        """
        window, _, _ = self.pad(window)
        p = self.token_length
        if self.arch == "encoder":
            first = window.n_context
            dist, y = self.distribution(window, first)
            scored = window.observed[:, first:]
        else:
            first = p
            dist, y = self.distribution(window, first, space="causal")
            _, scale = self._causal("std", window)
            count = causal_count(window.observed, p)[..., None]  # [B, N, 1]
            usable = (count >= 2) & (scale > MIN_SCALE)  # a prefix with a spread to scale by
            scored = window.observed[:, first:] & self._per_point(usable)[:, :-p]
        total, count = dist.nll(y, scored)
        return total / count.clamp_min(1), count

    # -- evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def forecast(self, window: Window, n_samples: int = 100) -> dict[str, torch.Tensor]:
        """Forecast the horizon of ``window`` (its horizon values are only used for the NLL).

        Returns, all in evaluation space over the unpadded horizon: ``samples`` [S, B, H],
        ``median`` [B, H], ``nll`` [B, H] per point (NaN where unobserved), ``target`` [B, H],
        and ``context`` [B, Tc].
        """
        horizon, n_ctx = window.horizon, window.n_context
        padded, left, right = self.pad(window)
        end = padded.values.shape[1] - right
        dist, y = self.distribution(padded, padded.n_context)
        nll = -dist.log_prob(y)[:, :horizon]
        target_obs = padded.observed[:, padded.n_context : end]
        nll = torch.where(target_obs, nll, torch.full_like(nll, float("nan")))
        if self.arch == "encoder":
            samples = dist.sample(n_samples)[..., :horizon]  # [S, B, H]
        else:
            samples = self._rollout(padded, n_samples)[..., :horizon]
        return {
            "samples": samples,
            "median": samples.median(dim=0).values,
            "nll": nll,
            "target": y[:, :horizon],
            "context": self._evaluation_space(padded)[:, left : left + n_ctx],
        }

    def _evaluation_space(self, window: Window) -> torch.Tensor:
        """The window's values standardised by the observed context's mean/std → [B, T]."""
        n = window.n_context
        loc, scale = std_scaler(window.values[:, :n], window.observed[:, :n])
        return (window.values.float() - loc) / scale

    def _rollout(self, window: Window, n_samples: int) -> torch.Tensor:
        """Decoder: sample paths patch by patch, each fed back as observed → [S, B, H_padded].

        Every step recomputes the causal statistics of the path so far (context + samples)."""
        p, n_ctx = self.token_length, window.n_context
        batch, total = window.values.shape
        _, _, loc_e, scale_e = self._scales(window)
        rep = lambda x: x.repeat(n_samples, *([1] * (x.dim() - 1)))  # noqa: E731 - [S·B, ...]
        values = rep(window.values.float()[:, :n_ctx])
        observed = rep(window.observed[:, :n_ctx])
        ts = rep(window.timestamps_s) if window.timestamps_s is not None else None
        le, se = rep(loc_e), rep(scale_e)
        for start in range(n_ctx, total, p):
            part = Window(values, observed, start, None if ts is None else ts[:, :start])
            loc_t, scale_t = self._causal(self.normalisation, part)  # [S·B, N, 1]
            lm, sm = self._per_point(loc_t), self._per_point(scale_t)
            h = self._hidden(part, observed, lm, sm)[:, -1:]  # [S·B, 1, d]
            dist = self.head(h)
            step = dist.sample(1)[0] * scale_t[:, -1] + loc_t[:, -1]  # raw units [S·B, p]
            values = torch.cat([values, step], dim=1)
            observed = torch.cat([observed, torch.ones_like(step, dtype=torch.bool)], dim=1)
        paths = (values[:, n_ctx:] - le) / se  # evaluation space
        return paths.view(n_samples, batch, total - n_ctx)
