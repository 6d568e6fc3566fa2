"""TEXT: Text-routed sparse MoE with EXplanation and Temporal alignment (AAAI 2026, arXiv 2512.22741).

Re-implemented from the spec (``specs/TEXT.md``; facts checked against fip-lab/TEXT, nothing
copied). Five token streams (text, audio, vision, audio explanation, vision explanation), each a
projection plus a 1-layer `TokenTransformer` with one prepended token; each explanation stream
queries its raw stream by cross-attention; a Conv1d + cross-gated *temporal alignment* block mixes
audio and vision; a Transformer whose FFNs are a sample-routed noisy top-k sparse MoE (routed by
the *text* tokens, with expert capacity) fuses [text; audio; vision]; a gated head reads the three
streams' prepended tokens.

Variants are hyper-parameters: ``temporal`` ∈ {text, mamba, tca, concat}, ``routing`` ∈ {text, av,
dense, ffn}, ``fusion`` ∈ {gated, mean}, ``explanations`` on/off, ``modalities`` any subset.
Evaluation is deterministic by default (no router noise, no capacity drop); ``official_eval=True``
keeps both at test time, as the official code does, which makes predictions stochastic and
dependent on the rest of the batch.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from msa_lib.data.schema import Batch
from msa_lib.models.base import ModelOutput, MSAModel, register
from msa_lib.nn.blocks import causal_depthwise_conv1d
from msa_lib.nn.moe import SampleRoutedMoE
from msa_lib.nn.ssm import MambaBlock
from msa_lib.nn.vit import Attention, CrossTokenTransformer, PreNormAttention, TokenTransformer, feed_forward

TEMPORAL = ("text", "mamba", "tca", "concat")
ROUTING = ("text", "av", "dense", "ffn")
FUSION = ("gated", "mean")


def frame_window(x: torch.Tensor, mask: torch.Tensor | None, length: int) -> torch.Tensor:
    """The official sequence handling: a ``length``-frame window starting at each sample's first
    valid (non-padding) frame, zero-padded at the end when the sequence is shorter. It also gives
    audio and vision the same length, which the cross-gating needs."""
    b, t, d = x.shape
    start = mask.long().argmax(1) if mask is not None else torch.zeros(b, dtype=torch.long, device=x.device)
    idx = start[:, None] + torch.arange(length, device=x.device)[None]
    valid = idx < t
    out = x.gather(1, idx.clamp_max(t - 1)[..., None].expand(-1, -1, d))
    return out * valid[..., None].to(x.dtype)


class CrossGatedTemporalBlock(nn.Module):
    """TEXT's temporal alignment for one (audio, vision) pair, Mamba-like gating without an SSM:
    RMSNorm → in_proj to 2·inner → (x, w); x through a depthwise causal Conv1d (kernel ``d_conv``);
    cross-gating ``a_x · SiLU(v_w)`` and ``v_x · SiLU(a_w)``; out_proj; residual; concat in time."""

    def __init__(self, dim: int, inner: int = 256, d_conv: int = 4):
        super().__init__()
        self.norm = nn.ModuleList([nn.RMSNorm(dim, eps=1e-5), nn.RMSNorm(dim, eps=1e-5)])
        self.in_proj = nn.ModuleList([nn.Linear(dim, 2 * inner, bias=False) for _ in range(2)])
        self.conv = nn.ModuleList([nn.Conv1d(inner, inner, d_conv, groups=inner, padding=d_conv - 1) for _ in range(2)])
        self.out_proj = nn.ModuleList([nn.Linear(inner, dim, bias=False) for _ in range(2)])

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        xs, ws = [], []
        for i, s in enumerate((a, v)):
            x, w = self.in_proj[i](self.norm[i](s)).chunk(2, -1)
            xs.append(causal_depthwise_conv1d(x, self.conv[i]))  # = conv(x^T)[..., :L]^T, faster on CPU
            ws.append(nn.functional.silu(w))
        a2 = a + self.out_proj[0](xs[0] * ws[1])
        v2 = v + self.out_proj[1](xs[1] * ws[0])
        return torch.cat([a2, v2], 1)


class MambaTemporal(nn.Module):
    """The paper's Mamba comparison: a pre-norm `MambaBlock` with residual per stream, then concat."""

    def __init__(self, dim: int, d_state: int = 16, d_conv: int = 4):
        super().__init__()
        self.norm = nn.ModuleList([nn.RMSNorm(dim, eps=1e-5), nn.RMSNorm(dim, eps=1e-5)])
        self.mamba = nn.ModuleList([MambaBlock(dim, d_state, d_conv) for _ in range(2)])

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.cat([s + self.mamba[i](self.norm[i](s)) for i, s in enumerate((a, v))], 1)


class TemporalCrossAttention(nn.Module):
    """The paper's TCA comparison: each stream attends to the other (pre-norm, residual), then concat."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64):
        super().__init__()
        self.a2v = PreNormAttention(dim, Attention(dim, heads, dim_head))
        self.v2a = PreNormAttention(dim, Attention(dim, heads, dim_head))

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.cat([a + self.a2v(a, v, v), v + self.v2a(v, a, a)], 1)


class ConcatTemporal(nn.Module):
    """No temporal alignment: plain concatenation in time."""

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.cat([a, v], 1)


class GatedFusionHead(nn.Module):
    """softmax(Linear(S·d → S)) gates over the S stream tokens, weighted sum, MLP d → d/2 → GELU →
    Dropout 0.1 → n_out. ``mode='mean'`` replaces the gates with a plain mean (our ablation)."""

    def __init__(self, dim: int, n_streams: int, n_out: int = 1, mode: str = "gated"):
        super().__init__()
        self.mode = mode
        self.gate = nn.Linear(n_streams * dim, n_streams) if mode == "gated" else None
        self.head = nn.Sequential(nn.Linear(dim, dim // 2), nn.GELU(), nn.Dropout(0.1), nn.Linear(dim // 2, n_out))

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.gate is None:
            g = tokens.new_full(tokens.shape[:2], 1.0 / tokens.shape[1])
        else:
            g = torch.softmax(self.gate(tokens.flatten(1)), -1)
        return self.head((g.unsqueeze(-1) * tokens).sum(1)), g


class RoutedMoETransformer(nn.Module):
    """TEXT's fusion Transformer: learned positions, then per layer pre-norm attention + residual and
    a pre-norm sample-routed sparse MoE (``routing='text'|'av'``), a dense MoE (all experts) or a
    plain FFN (``'ffn'``), + residual. No load-balancing loss (as the paper)."""

    def __init__(self, max_tokens: int, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int,
                 n_experts: int, top_k: int, capacity_factor: float, routing: str, dropout: float = 0.0):
        super().__init__()
        self.routing = routing
        self.pos = nn.Parameter(torch.randn(1, max_tokens, dim))
        self.attn = nn.ModuleList(PreNormAttention(dim, Attention(dim, heads, dim_head, dropout)) for _ in range(depth))
        if routing == "ffn":
            self.ffn = nn.ModuleList(feed_forward(dim, mlp_dim, dropout) for _ in range(depth))
        else:
            k = n_experts if routing == "dense" else top_k
            self.norm = nn.ModuleList(nn.LayerNorm(dim) for _ in range(depth))
            self.moe = nn.ModuleList(SampleRoutedMoE(dim, mlp_dim, n_experts, k, capacity_factor, dropout)
                                     for _ in range(depth))

    def forward(self, route: torch.Tensor, x: torch.Tensor, noisy: bool, capacity: bool) -> tuple[torch.Tensor, list]:
        if x.shape[1] > self.pos.shape[1]:
            raise ValueError(f"{x.shape[1]} tokens exceed the positional table ({self.pos.shape[1]})")
        x = x + self.pos[:, : x.shape[1]]
        weights = []
        for i, attn in enumerate(self.attn):
            x = attn(x, x, x) + x
            if self.routing == "ffn":
                x = self.ffn[i](x) + x
            else:
                x = self.moe[i](route, self.norm[i](x), noisy=noisy, capacity=capacity) + x
                weights.append(self.moe[i].last_weights)
        return x, weights


@register("text")
class TEXT(MSAModel):
    """The TEXT model (d = 128, heads 8 × 64, MLP 128, 5 experts, top-3 by default = the official MOSI setting).

    ``clue_dim``/``clue_len``: width and token count of the encoded explanations (batch.audio_clue /
    batch.vision_clue); needed when ``explanations=True``. ``max_frames``: the audio/vision window
    (and the text length unless ``text_frames`` is given); longer streams are cut to it.
    """

    def __init__(self, dims: dict[str, int], n_out: int = 1, modalities=None, dim: int = 128, heads: int = 8,
                 dim_head: int = 64, mlp_dim: int = 128, depth: int = 3, n_experts: int = 5, top_k: int = 3,
                 capacity_factor: float = 1.0, dropout: float = 0.0, max_frames: int = 50, clue_dim: int | None = None,
                 clue_len: int = 50, explanations: bool = True, temporal: str = "text", routing: str = "text",
                 fusion: str = "gated", official_eval: bool = False, inner_dim: int = 256, d_conv: int = 4,
                 d_state: int = 16, text_frames: int | None = None):
        super().__init__(dims, modalities, n_out)
        for name, val, allowed in (("temporal", temporal, TEMPORAL), ("routing", routing, ROUTING), ("fusion", fusion, FUSION)):
            if val not in allowed:
                raise ValueError(f"{name}={val!r}; expected one of {allowed}")
        mods = set(self.modalities)
        if routing == "text" and "text" not in mods:
            raise ValueError("routing='text' needs the text modality; use routing='av' for audio/vision-only subsets")
        if routing == "av" and not mods & {"audio", "vision"}:
            raise ValueError("routing='av' needs audio or vision")
        self.explanations = explanations and bool(mods & {"audio", "vision"})
        if self.explanations and not clue_dim:
            raise ValueError("explanations=True needs clue_dim (the width of the encoded explanation tokens); "
                             "attach explanations to the dataset (msa_lib.features.explanations) or set explanations=False")
        self.routing, self.official_eval = routing, official_eval
        self.frames = {m: (text_frames or max_frames) if m == "text" else max_frames for m in self.modalities}
        L = max_frames + 1
        self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in self.dims.items()})
        self.enc = nn.ModuleDict({m: TokenTransformer(self.frames[m], dim, 1, heads, dim_head, mlp_dim, 1, dropout)
                                  for m in self.modalities})
        av = [m for m in ("audio", "vision") if m in mods]
        stream_len = {m: self.frames[m] + 1 for m in self.modalities}
        if self.explanations:
            self.clue_proj = nn.ModuleDict({m: nn.Linear(clue_dim, dim) for m in av})
            self.clue_enc = nn.ModuleDict({m: TokenTransformer(clue_len, dim, 1, heads, dim_head, mlp_dim, 1, dropout)
                                           for m in av})
            self.align = nn.ModuleDict({m: CrossTokenTransformer(L, clue_len + 1, dim, 1, heads, dim_head, mlp_dim, dropout)
                                        for m in av})
            stream_len.update({m: clue_len + 1 for m in av})
        if len(av) == 2:
            self.temporal = {"text": lambda: CrossGatedTemporalBlock(dim, inner_dim, d_conv),
                             "mamba": lambda: MambaTemporal(dim, d_state, d_conv),
                             "tca": lambda: TemporalCrossAttention(dim, heads, dim_head),
                             "concat": ConcatTemporal}[temporal]()
        else:
            self.temporal = None
        self.order = [m for m in ("text", "audio", "vision") if m in mods]
        self.fusion = RoutedMoETransformer(sum(stream_len[m] for m in self.order), dim, depth, heads, dim_head, mlp_dim,
                                           n_experts, top_k, capacity_factor, routing, dropout)
        self.head = GatedFusionHead(dim, len(self.order), n_out, fusion)

    def streams(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Each modality's token stream after its encoder (and explanation alignment)."""
        inp = self.inputs(batch)
        out = {m: self.enc[m](self.proj[m](frame_window(x, mask, self.frames[m])))
               for m, (x, mask) in inp.items()}
        if self.explanations:
            for m in self.align:
                clue = getattr(batch, f"{m}_clue")
                if clue is None:
                    raise ValueError(f"batch has no {m}_clue tokens; attach explanations to the dataset or set "
                                     "explanations=False")
                target = self.clue_enc[m](self.clue_proj[m](clue))
                out[m] = self.align[m](source=out[m], target=target)
        return out

    def forward(self, batch: Batch) -> ModelOutput:
        s = self.streams(batch)
        if self.temporal is not None:
            av = self.temporal(s["audio"], s["vision"])
        else:
            av = torch.cat([s[m] for m in ("audio", "vision") if m in s], 1) if ("audio" in s or "vision" in s) else None
        parts = ([s["text"]] if "text" in s else []) + ([av] if av is not None else [])
        x = torch.cat(parts, 1)
        starts, pos = [], 0
        for m in self.order:  # the prepended token of each stream: 0, 51, 102 in the official layout
            starts.append(pos)
            pos += s[m].shape[1]
        # the router reads the text (TEXT, and the dense-MoE variant) or the audio/vision stream ('av')
        route = s["text"] if self.routing in ("text", "dense") and "text" in s else (av if av is not None else x)
        noisy = capacity = self.training or self.official_eval
        x, weights = self.fusion(route, x, noisy, capacity)
        y, gates = self.head(x[:, starts])
        extras: dict[str, Any] = {"stream_gates": gates.detach()}
        if weights:
            extras["routing"] = torch.stack(weights, 1)  # (B, depth, E)
        return ModelOutput(self.head_output(y), self.zero(y), extras)


def official_parameter_count(dims: dict[str, int], clue_dim: int = 768, depth: int = 3, n_experts: int = 5,
                             dim: int = 128, heads: int = 8, dim_head: int = 64, mlp_dim: int = 128,
                             frames: int = 50, inner: int = 256, d_conv: int = 4) -> int:
    """Parameters of the official TEXT model without BERT, from its architecture alone (independent
    arithmetic, so a test can check our module against it)."""
    lin = lambda i, o, b=True: i * o + (o if b else 0)  # noqa: E731
    ln = 2 * dim
    attn = 3 * ln + 3 * lin(dim, heads * dim_head, False) + lin(heads * dim_head, dim)  # 3 LayerNorms + q,k,v,out
    ffn = ln + lin(dim, mlp_dim) + lin(mlp_dim, dim)
    layer = attn + ffn
    stream = (frames + 1) * dim + dim + layer  # positions + prepended token + 1 layer
    cross = 2 * (frames + 1) * dim + layer
    temporal = 2 * (dim + lin(dim, 2 * inner, False) + inner * d_conv + inner + lin(inner, dim, False))
    tokens = 3 * (frames + 1)
    moe_layer = attn + ln + 2 * lin(dim, n_experts) + n_experts * (lin(dim, mlp_dim) + lin(mlp_dim, dim))
    fusion = tokens * dim + depth * moe_layer
    head = lin(3 * dim, 3) + lin(dim, dim // 2) + lin(dim // 2, 1)
    proj = sum(lin(d, dim) for d in dims.values()) + 2 * lin(clue_dim, dim)
    return proj + 5 * stream + 2 * cross + temporal + fusion + head
