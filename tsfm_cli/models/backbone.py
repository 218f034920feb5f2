"""The Transformer backbone (DESIGN §3), nanoGPT-style: one screen per module, shapes in comments.

Pre-norm RMSNorm, RMS-normalised queries and keys, rotary positions, SwiGLU feed-forward
(hidden = 8·d/3 rounded up to a multiple of 8), no biases anywhere. Causal (decoder-only) or
bidirectional (encoder-only). Every parameter here counts towards N (non-embedding parameters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tsfm_cli.models.config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., dim] → [..., dim]
        norm = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return (x.float() * norm).type_as(x) * self.weight


def rotary(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding over the sequence axis. x: [B, H, T, hd] → same shape."""
    _, _, length, head_dim = x.shape
    half = head_dim // 2
    freq = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)  # [hd/2]
    angle = torch.arange(length, device=x.device, dtype=torch.float32)[:, None] * freq  # [T, hd/2]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, causal: bool) -> None:
        super().__init__()
        d, self.heads, self.causal = cfg.d_model, cfg.heads, causal
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.q_norm = RMSNorm(cfg.head_dim)  # shared over heads: head_dim weights each
        self.k_norm = RMSNorm(cfg.head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, d = x.shape  # [B, T, d]
        q, k, v = self.qkv(x).split(d, dim=-1)  # 3 × [B, T, d]
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        q, k = rotary(self.q_norm(q)), rotary(self.k_norm(k))  # [B, H, T, hd]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # [B, H, T, hd]
        return self.out(y.transpose(1, 2).reshape(batch, length, d))  # [B, T, d]


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(cfg.d_model, cfg.hidden, bias=False)
        self.up = nn.Linear(cfg.d_model, cfg.hidden, bias=False)
        self.down = nn.Linear(cfg.hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, d] → [B, T, d]
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, causal: bool) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model)
        self.attn = Attention(cfg, causal)
        self.mlp_norm = RMSNorm(cfg.d_model)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, d]
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class Backbone(nn.Module):
    """Blocks + final norm: exactly the parameters counted as N."""

    def __init__(self, cfg: ModelConfig, causal: bool) -> None:
        super().__init__()
        self.cfg, self.causal = cfg, causal
        self.blocks = nn.ModuleList(Block(cfg, causal) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.d_model)
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, d] → [B, T, d]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)


def flops_per_token(cfg: ModelConfig, seq_len: int, n_params: int | None = None) -> float:
    """Training FLOPs per token (forward + backward), as nanoGPT's estimate_mfu: 6·N for the
    matmuls plus 12·layers·d·T for attention scores and values."""
    n = cfg.non_embedding_params() if n_params is None else n_params
    return 6.0 * n + 12.0 * cfg.layers * cfg.d_model * seq_len


def estimate_mfu(
    cfg: ModelConfig,
    seq_len: int,
    tokens_per_s: float,
    peak_flops: float,
    n_params: int | None = None,
) -> float:
    """Model FLOPs utilisation: achieved training FLOP/s ÷ the hardware's peak FLOP/s."""
    return flops_per_token(cfg, seq_len, n_params) * tokens_per_s / peak_flops
