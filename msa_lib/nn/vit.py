"""ViT-style token Transformers as the ALMT / TEXT line of work builds them.

Why separate from `blocks.TransformerBlock`: these papers use a specific attention form (bias-free
q/k/v projections of width ``heads · dim_head``, an output projection, one LayerNorm each for query,
key and value, no masks) plus a prepended learnable token and a learned positional table. Matching
it exactly is what makes a parameter count comparable with the official model's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention with bias-free q/k/v projections (width ``heads·dim_head``) and an output Linear."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        project = not (heads == 1 and dim_head == dim)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout)) if project else nn.Identity()

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        def split(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)
        out = F.scaled_dot_product_attention(split(self.to_q(q)), split(self.to_k(k)), split(self.to_v(v)))
        return self.to_out(out.transpose(1, 2).flatten(2))


class PreNormAttention(nn.Module):
    """LayerNorm on query, key and value separately, then `Attention` (no residual here)."""

    def __init__(self, dim: int, attn: Attention):
        super().__init__()
        self.norm_q, self.norm_k, self.norm_v = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = attn

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.attn(self.norm_q(q), self.norm_k(k), self.norm_v(v))


def feed_forward(dim: int, hidden: int, dropout: float = 0.0) -> nn.Sequential:
    """LayerNorm → Linear → GELU → Dropout → Linear → Dropout (the pre-norm FFN branch)."""
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, dim), nn.Dropout(dropout))


class TokenTransformer(nn.Module):
    """Prepend ``n_tokens`` learnable (zero-initialised) tokens, add a learned position table
    (``randn``-initialised, sliced to the input length), then ``depth`` pre-norm layers.

    With ``n_tokens=0`` nothing is prepended. ``max_frames`` is the longest input it accepts.
    """

    def __init__(self, max_frames: int, dim: int, depth: int = 1, heads: int = 8, dim_head: int = 64,
                 mlp_dim: int = 128, n_tokens: int = 1, dropout: float = 0.0):
        super().__init__()
        self.n_tokens = n_tokens
        self.pos = nn.Parameter(torch.randn(1, max_frames + n_tokens, dim))
        self.token = nn.Parameter(torch.zeros(1, n_tokens, dim)) if n_tokens else None
        self.layers = nn.ModuleList(nn.ModuleList([PreNormAttention(dim, Attention(dim, heads, dim_head, dropout)),
                                                   feed_forward(dim, mlp_dim, dropout)]) for _ in range(depth))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.token is not None:
            x = torch.cat([self.token.expand(x.shape[0], -1, -1), x], 1)
        if x.shape[1] > self.pos.shape[1]:
            raise ValueError(f"{x.shape[1]} tokens exceed the positional table ({self.pos.shape[1]}); raise max_frames")
        return x + self.pos[:, : x.shape[1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for attn, ff in self.layers:
            x = attn(x, x, x) + x
            x = ff(x) + x
        return x


class CrossTokenTransformer(nn.Module):
    """Target tokens attend to source tokens (``depth`` pre-norm layers, residual on the target),
    each side with its own learned position table. Output has the target's length."""

    def __init__(self, source_frames: int, target_frames: int, dim: int, depth: int = 1, heads: int = 8,
                 dim_head: int = 64, mlp_dim: int = 128, dropout: float = 0.0):
        super().__init__()
        self.pos_s = nn.Parameter(torch.randn(1, source_frames, dim))
        self.pos_t = nn.Parameter(torch.randn(1, target_frames, dim))
        self.layers = nn.ModuleList(nn.ModuleList([PreNormAttention(dim, Attention(dim, heads, dim_head, dropout)),
                                                   feed_forward(dim, mlp_dim, dropout)]) for _ in range(depth))

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        for x, pos in ((source, self.pos_s), (target, self.pos_t)):
            if x.shape[1] > pos.shape[1]:
                raise ValueError(f"{x.shape[1]} tokens exceed the positional table ({pos.shape[1]})")
        source = source + self.pos_s[:, : source.shape[1]]
        target = target + self.pos_t[:, : target.shape[1]]
        for attn, ff in self.layers:
            target = attn(target, source, source) + target
            target = ff(target) + target
        return target
