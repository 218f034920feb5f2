"""Input embeddings: how a scaled series becomes tokens. One registry, used by `train` and
`embed-bench` alike (`embedding: patch` in a recipe picks the entry by name).

Contract of every entry (the backbone and the head rely on it):

- constructed as ``cls(d_model=..., patch_size=..., freq_s=..., **options)``;
- ``token_length``: time points covered by one token (the head predicts that many per token);
- ``forward(values, observed, timestamps_s)`` with values [B, T] already instance-scaled and set to
  0 where not observed, observed [B, T] bool, timestamps_s [B, T] float64 seconds since the epoch
  (or None) → tokens [B, T // token_length, d_model]. T is a multiple of token_length: callers
  left-pad the context with unobserved zeros.
- A value at an unobserved point must not change the tokens (tests change it and compare).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

EMBEDDINGS: dict[str, type[Embedding]] = {}


def register(cls: type[Embedding]) -> type[Embedding]:
    EMBEDDINGS[cls.name] = cls
    return cls


def embedding_class(name: str) -> type[Embedding]:
    try:
        return EMBEDDINGS[name]
    except KeyError:
        known = ", ".join(sorted(EMBEDDINGS))
        raise ValueError(f"unknown embedding '{name}' (known: {known})") from None


def build_embedding(
    name: str, d_model: int, patch_size: int, freq_s: float | None = None, **options
):
    cls = embedding_class(name)
    return cls(d_model=d_model, patch_size=patch_size, freq_s=freq_s, **options)


class Embedding(nn.Module):
    name: ClassVar[str]
    description: ClassVar[str]

    def __init__(self, d_model: int, patch_size: int, freq_s: float | None = None) -> None:
        super().__init__()
        self.d_model = d_model
        self.token_length = patch_size
        self.freq_s = freq_s

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T] → [B, T // token_length, token_length]."""
        batch, length = x.shape[:2]
        return x.reshape(batch, length // self.token_length, self.token_length, *x.shape[2:])


@register
class PatchEmbedding(Embedding):
    """Fixed-length patches, one linear projection, no bias (PatchTST; the paper's default)."""

    name = "patch"
    description = "fixed-length patches, linear projection (PatchTST; the paper's default)"

    def __init__(self, d_model: int, patch_size: int, freq_s: float | None = None) -> None:
        super().__init__(d_model, patch_size, freq_s)
        self.proj = nn.Linear(patch_size, d_model, bias=False)

    def forward(
        self,
        values: torch.Tensor,  # [B, T], scaled, 0 where unobserved
        observed: torch.Tensor,  # [B, T] bool
        timestamps_s: torch.Tensor | None = None,
    ) -> torch.Tensor:
        masked = values * observed.to(values.dtype)
        return self.proj(self.patches(masked))  # [B, T/P, d_model]


# The other strategies (embed-bench's axis) register themselves on import.
from tsfm_cli.models import embedding_strategies as _strategies  # noqa: E402,F401
