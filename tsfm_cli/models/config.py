"""Model sizes as data (DESIGN §3; litgpt-style named configs).

``ModelConfig.from_name("100K")`` gives the paper's ladder entry; any ``d_model``/``layers``/
``heads`` works too (``ModelConfig(d_model=32, layers=2)``). Heads default to ``d_model / 64``
(one head when ``d_model <= 64``). With the backbone in ``backbone.py`` the ladder's
non-embedding parameter count N is exact: 1K → 872, 100K → 100,928, 300K → 302,656,
1M → 1,771,712, 3M → 4,747,264 (tests check them against the modules' ``numel``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# The paper's size ladder: name → (d_model, layers). The name is the nominal N.
PRESETS: dict[str, tuple[int, int]] = {
    "1K": (8, 1),
    "10K": (24, 2),
    "100K": (64, 2),
    "300K": (64, 6),
    "1M": (192, 4),
    "3M": (256, 6),
    "10M": (384, 8),
    "30M": (512, 12),
    "100M": (768, 18),
    "300M": (1024, 24),
    "1B": (1536, 36),
}


def default_heads(d_model: int) -> int:
    return max(1, d_model // 64)


def swiglu_hidden(d_model: int) -> int:
    """SwiGLU hidden width: 8·d/3 rounded up to a multiple of 8."""
    return int(math.ceil(8 * d_model / 3 / 8) * 8)


@dataclass(frozen=True)
class ModelConfig:
    d_model: int = 64
    layers: int = 2
    heads: int | None = None  # None → d_model / 64 (one head when d_model <= 64)
    name: str = "custom"  # preset name, or "custom"

    def __post_init__(self) -> None:
        if self.heads is None:
            object.__setattr__(self, "heads", default_heads(self.d_model))
        if self.d_model <= 0 or self.layers <= 0 or self.heads <= 0:
            raise ValueError(f"bad model size {self}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        if self.head_dim % 2:
            raise ValueError(f"head dimension {self.head_dim} must be even for rotary positions")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @property
    def hidden(self) -> int:
        return swiglu_hidden(self.d_model)

    @classmethod
    def from_name(cls, name: str) -> ModelConfig:
        try:
            d_model, layers = PRESETS[name]
        except KeyError:
            known = ", ".join(PRESETS)
            raise ValueError(f"unknown model size '{name}' (known: {known})") from None
        return cls(d_model=d_model, layers=layers, name=name)

    @classmethod
    def parse(cls, spec: str | dict[str, Any] | ModelConfig) -> ModelConfig:
        """A preset name, or a mapping with ``d_model``, ``layers`` and optionally ``heads``."""
        if isinstance(spec, ModelConfig):
            return spec
        if isinstance(spec, str):
            return cls.from_name(spec)
        if isinstance(spec, dict):
            unknown = set(spec) - {"d_model", "layers", "heads", "name"}
            if unknown or "d_model" not in spec or "layers" not in spec:
                raise ValueError(
                    f"a custom size needs d_model and layers (optionally heads), got {spec}"
                )
            return cls(**{"name": "custom", **spec})
        raise ValueError(f"bad model size {spec!r}")

    def non_embedding_params(self) -> int:
        """N by formula: per block 4d² (attention) + 3·d·hidden (SwiGLU) + 2d (norms)
        + 2·head_dim (q/k RMSNorm weights), plus the final norm d."""
        d = self.d_model
        block = 4 * d * d + 3 * d * self.hidden + 2 * d + 2 * self.head_dim
        return self.layers * block + d

    @property
    def label(self) -> str:
        return self.name if self.name != "custom" else f"d{self.d_model}L{self.layers}"
