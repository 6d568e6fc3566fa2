"""Encoders and attention blocks shared by every model in the book.

Why here: a cross-attention block or a GRU encoder appears in all four papers. Writing each once,
with masks handled correctly, keeps the paper models short and makes their differences visible.
All blocks are device-agnostic (no `.cuda()`); they follow the device of their inputs.
"""
from __future__ import annotations

import torch
from torch import nn


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None, dim: int = 1) -> torch.Tensor:
    """Mean over ``dim`` counting only positions where ``mask`` is True (all positions if mask is None).

    A row with an all-False mask returns zeros instead of NaN.
    """
    if mask is None:
        return x.mean(dim)
    if x.dim() == 3 and dim == 1:
        # one batched (1, L) @ (L, D) product per sample instead of a (B, L, D) masked copy: on CPU the
        # copy dominated (~8x slower for 768-d text features); same sum, another summation order
        m = mask.to(x.dtype)
        return torch.bmm(m.unsqueeze(1), x).squeeze(1) / m.sum(1, keepdim=True).clamp_min(1.0)
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim) / m.sum(dim).clamp_min(1.0)


def key_padding(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Convert a validity mask to attention's key_padding_mask (True = ignore).

    A fully padded row would make the softmax NaN, so such rows may attend to position 0.
    """
    if mask is None:
        return None
    pad = ~mask
    empty = pad.all(1)
    if empty.any():
        pad = pad.clone()
        pad[empty, 0] = False
    return pad


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout, as ``F.dropout``, with a cheaper mask on CPU when ``p`` is a multiple of 1/256.

    Why: on CPU ``F.dropout`` samples its mask with ``bernoulli_``, which cost ~45 % of an I2MoE
    training step (dropout 0.5 on every backbone activation). Here one 64-bit random integer gives
    8 mask bytes, and a byte ``b`` keeps its element iff ``b >= 256·p``: exactly probability 1 − p,
    the same distribution as ``F.dropout`` (kept values scaled by 1 / (1 − p)), ~3x faster. It is
    a different random stream, so the exact masks differ from ``F.dropout``'s for the same seed
    (still deterministic per seed). Any other ``p`` (0.1, ...), and every non-CPU tensor, go to
    ``F.dropout`` unchanged.
    """
    if not training or p == 0.0:
        return x
    k = p * 256
    if x.device.type != "cpu" or not 0 < p < 1 or k != int(k) or not x.is_floating_point():
        return nn.functional.dropout(x, p, training)
    n = x.numel()
    bits = torch.empty((n + 7) // 8, dtype=torch.int64).random_(-2**63, 2**63 - 1)  # 64 uniform bits each
    keep = bits.view(torch.uint8)[:n].view(x.shape) >= int(k)
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """`nn.Dropout` through `dropout` (the cheaper CPU mask for p = k/256; identical otherwise)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)


class MultiheadAttention(nn.MultiheadAttention):
    """`nn.MultiheadAttention` (same parameters, initialisation and state-dict keys) with a leaner
    forward for the one call pattern the blocks here use: ``batch_first``, no attention weights, a
    boolean key-padding mask or none.

    Why: torch's generic training path transposes to (L, B, E), packs and unpacks q/k/v through
    copies, and in backward fills a zero (3, L, B, E) buffer per call; that bookkeeping cost ~35 % of
    the attention on CPU at our sizes. Here: one packed ``F.linear`` (or q + kv for cross-attention,
    as torch does), views to (B, H, L, d), ``scaled_dot_product_attention`` (with the module's
    attention dropout in training), the output projection. In training the forward is the same
    arithmetic (bit-identical in the tests) and gradients agree to float rounding; in evaluation it
    replaces torch's fused inference kernel, which it matches to ~1e-7 and is not slower than.
    Any other call pattern falls back to the parent.
    """

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if (need_weights or attn_mask is not None or is_causal or not self.batch_first or query.dim() != 3
                or not self._qkv_same_embed_dim or self.bias_k is not None or self.add_zero_attn
                or self.in_proj_bias is None
                or (key_padding_mask is not None and key_padding_mask.dtype != torch.bool)):
            return super().forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                                   attn_mask=attn_mask, average_attn_weights=average_attn_weights,
                                   is_causal=is_causal)
        b, lq, e = query.shape
        lk, h = key.shape[1], self.num_heads
        w, bias = self.in_proj_weight, self.in_proj_bias
        if query is key and key is value:
            q, k, v = nn.functional.linear(query, w, bias).view(b, lq, 3, h, e // h).permute(2, 0, 3, 1, 4).unbind(0)
        elif key is value:
            q = nn.functional.linear(query, w[:e], bias[:e]).view(b, lq, h, e // h).transpose(1, 2)
            k, v = nn.functional.linear(key, w[e:], bias[e:]).view(b, lk, 2, h, e // h).permute(2, 0, 3, 1, 4).unbind(0)
        else:
            wq, wk, wv = w.chunk(3)
            bq, bk, bv = bias.chunk(3)
            q = nn.functional.linear(query, wq, bq).view(b, lq, h, e // h).transpose(1, 2)
            k = nn.functional.linear(key, wk, bk).view(b, lk, h, e // h).transpose(1, 2)
            v = nn.functional.linear(value, wv, bv).view(b, lk, h, e // h).transpose(1, 2)
        mask = None if key_padding_mask is None else (~key_padding_mask)[:, None, None, :]  # True = attend
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                         dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, lq, e)), None


def causal_depthwise_conv1d(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """``conv(x.transpose(1, 2))[..., :L].transpose(1, 2)`` for a depthwise ``conv`` (groups = channels,
    padding = kernel − 1): the causal part, on x (B, L, C) → (B, L, C), as k shifted multiply-adds.

    Why: on CPU the depthwise convolution's backward was ~11 % of a TEXT step at our sizes, plus two
    transposed copies; k shifted products in the (B, L, C) layout compute the same sum (another
    summation order) about twice as fast. Same parameters (``conv.weight`` (C, 1, k), ``conv.bias``).
    """
    k, length = conv.kernel_size[0], x.shape[1]
    if conv.groups != x.shape[-1] or conv.weight.shape[1] != 1 or conv.padding[0] != k - 1 or conv.stride[0] != 1 \
            or conv.dilation[0] != 1:
        raise ValueError("causal_depthwise_conv1d needs Conv1d(C, C, k, groups=C, padding=k-1)")
    w = conv.weight[:, 0]  # (C, k)
    xp = nn.functional.pad(x, (0, 0, k - 1, 0))  # k-1 zero frames in front: y_t = sum_j w_j x_{t+j-(k-1)}
    y = xp[:, :length] * w[:, 0]
    for j in range(1, k):
        y = torch.addcmul(y, xp[:, j:j + length], w[:, j])
    return y + conv.bias if conv.bias is not None else y


class MLP(nn.Sequential):
    """Linear → activation → dropout stacks; ``n_layers`` counts Linear layers (≥ 1)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, n_layers: int = 2, dropout: float = 0.0,
                 act: type[nn.Module] = nn.ReLU):
        if n_layers < 1:
            raise ValueError(f"MLP needs n_layers >= 1, got {n_layers}")
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(n_layers - 1):
            layers += [nn.Linear(d, hidden), act(), Dropout(dropout)]
            d = hidden
        layers.append(nn.Linear(d, out_dim))
        super().__init__(*layers)


class GRUEncoder(nn.Module):
    """GRU over a padded sequence; returns the last *valid* hidden state (and optionally all states).

    Sequences are packed by their true lengths, so padding never leaks into the summary vector.
    """

    def __init__(self, in_dim: int, hidden: int, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False):
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden, num_layers=num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)
        self.out_dim = hidden * (2 if bidirectional else 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                return_sequence: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if mask is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
        else:
            lengths = mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, h = self.gru(packed)
        last = torch.cat([h[-2], h[-1]], -1) if self.gru.bidirectional else h[-1]
        if not return_sequence:
            return last
        seq, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return last, seq


ENCODERS = ("gru", "mean")


class SummaryEncoder(nn.Module):
    """One modality's sequence → one vector: a GRU (last valid state, I2MoE's MOSI encoder), or ``'mean'``.

    ``'mean'`` (masked mean → LayerNorm → Linear → ReLU) is our CPU-budget option: a GRU over 50
    frames is ~10× slower on 2 cores and learns little in a few epochs. The fusion part, where
    the paper models' mechanisms live, is identical either way; chapters say which one ran.
    """

    def __init__(self, in_dim: int, out_dim: int, kind: str = "gru"):
        super().__init__()
        if kind not in ENCODERS:
            raise ValueError(f"encoder={kind!r}; expected one of {ENCODERS}")
        self.kind = kind
        self.net = GRUEncoder(in_dim, out_dim) if kind == "gru" else nn.Sequential(
            nn.LayerNorm(in_dim), nn.Linear(in_dim, out_dim), nn.ReLU())

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.net(x, mask) if self.kind == "gru" else self.net(masked_mean(x, mask))


class LearnedPositionalEmbedding(nn.Module):
    """Adds a learned (optionally zero-initialised) position vector to each time step."""

    def __init__(self, max_len: int, dim: int, zero_init: bool = False):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, max_len, dim))
        if not zero_init:
            nn.init.normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.pos.shape[1]:
            raise ValueError(f"sequence length {x.shape[1]} exceeds the positional table ({self.pos.shape[1]})")
        return x + self.pos[:, : x.shape[1]]


class SinusoidalPositionalEmbedding(nn.Module):
    """Fixed sine/cosine positions (Vaswani et al.), as MulT uses: no parameters, any length."""

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        self.dim, self.base = dim, base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length, half = x.shape[1], self.dim // 2
        pos = torch.arange(length, device=x.device, dtype=x.dtype)[:, None]
        freq = torch.exp(-torch.arange(half, device=x.device, dtype=x.dtype) * (torch.log(torch.tensor(self.base)) / max(1, half - 1)))
        pe = torch.zeros(length, self.dim, device=x.device, dtype=x.dtype)
        pe[:, 0:2 * half:2] = torch.sin(pos * freq)
        pe[:, 1:2 * half:2] = torch.cos(pos * freq)
        return x + pe[None]


class TransformerBlock(nn.Module):
    """Pre-LN self-attention + MLP block with residuals; ``mask`` is True on valid positions.

    ``dropout`` acts on the residual branches; ``attn_dropout`` on the attention weights (off by
    default: on CPU, sampling a (B, heads, L, L) mask costs more than the attention itself).
    ``ffn`` replaces the dense MLP (e.g. a `SparseMoEFFN` for SwitchGate-style backbones).
    ``attn_residual=False`` reproduces I2MoE's official attention block, which has no residual:
    ``a = attn(LN(x)); x = a + dropout(a)``. It exists only to measure that quirk.
    """

    def __init__(self, dim: int, heads: int = 4, mlp_ratio: float = 2.0, dropout: float = 0.0,
                 act: type[nn.Module] = nn.GELU, attn_dropout: float = 0.0, ffn: nn.Module | None = None,
                 attn_residual: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiheadAttention(dim, heads, dropout=attn_dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ffn if ffn is not None else nn.Sequential(
            nn.Linear(dim, int(dim * mlp_ratio)), act(), Dropout(dropout), nn.Linear(int(dim * mlp_ratio), dim))
        self.drop = Dropout(dropout)
        self.attn_residual = attn_residual

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x)
        pad = key_padding(mask)
        a, _ = self.attn(h, h, h, key_padding_mask=pad, need_weights=False)
        x = x + self.drop(a) if self.attn_residual else a + self.drop(a)
        return x + self.drop(self.mlp(self.norm2(x)))


class TransformerEncoder(nn.Module):
    """A stack of `TransformerBlock`s with a final LayerNorm."""

    def __init__(self, dim: int, depth: int = 1, heads: int = 4, mlp_ratio: float = 2.0, dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, mask)
        return self.norm(x)


class CrossAttentionBlock(nn.Module):
    """Pre-LN cross-attention: ``target`` tokens query ``source`` tokens, then an MLP; both residual.

    This is the MulT cross-modal unit, TEXT's explanation-alignment unit and MIDG's CM-Adapter core.
    """

    def __init__(self, dim: int, heads: int = 4, mlp_ratio: float = 2.0, dropout: float = 0.0,
                 attn_dropout: float = 0.0):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = MultiheadAttention(dim, heads, dropout=attn_dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), Dropout(dropout),
                                 nn.Linear(int(dim * mlp_ratio), dim))
        self.drop = Dropout(dropout)

    def forward(self, target: torch.Tensor, source: torch.Tensor,
                source_mask: torch.Tensor | None = None) -> torch.Tensor:
        q, kv = self.norm_q(target), self.norm_kv(source)
        pad = key_padding(source_mask)
        a, _ = self.attn(q, kv, kv, key_padding_mask=pad, need_weights=False)
        x = target + self.drop(a)
        return x + self.drop(self.mlp(self.norm2(x)))


class PatchEmbeddings(nn.Module):
    """Split a vector into ``num_patches`` equal chunks (zero-padded) and project each to ``embed_dim``.

    I2MoE's MOSI encoders turn a GRU summary vector into a few tokens this way, so the fusion
    Transformer has several tokens per modality to attend over.
    """

    def __init__(self, feature_size: int, num_patches: int, embed_dim: int):
        super().__init__()
        if num_patches < 1 or feature_size < 1:
            raise ValueError(f"PatchEmbeddings needs feature_size, num_patches >= 1 (got {feature_size}, {num_patches})")
        self.num_patches = num_patches
        self.patch_size = -(-feature_size // num_patches)  # ceil
        self.pad = num_patches * self.patch_size - feature_size
        self.proj = nn.Linear(self.patch_size, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, (0, self.pad))
        return self.proj(x.view(*x.shape[:-1], self.num_patches, self.patch_size))
