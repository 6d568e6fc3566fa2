"""Fusion baselines every chapter compares against: text-only, early fusion, late fusion, MulT-style.

They are deliberately plain, so that a mixture-of-experts gain over them means something.
"""
from __future__ import annotations

import torch
from torch import nn

from msa_lib.data.schema import Batch
from msa_lib.models.base import ModelOutput, MSAModel, register
from msa_lib.nn import (MLP, CrossAttentionBlock, GRUEncoder, LearnedPositionalEmbedding, LowRankTensorFusion,
                        SinusoidalPositionalEmbedding, SummaryEncoder,
                        TransformerEncoder, masked_mean)
from msa_lib.nn.vit import Attention, CrossTokenTransformer, PreNormAttention, TokenTransformer


@register("text_mlp")
class TextMLP(MSAModel):
    """Mean-pooled token features → MLP. With frozen MiniLM features this is a sentence-embedding probe."""

    def __init__(self, dims, hidden: int = 128, n_layers: int = 2, dropout: float = 0.1, n_out: int = 1,
                 modalities=("text",)):
        super().__init__(dims, modalities, n_out)
        self.mlp = MLP(sum(self.dims.values()), hidden, n_out, n_layers, dropout)

    def forward(self, batch: Batch) -> ModelOutput:
        pooled = [masked_mean(x, m) for x, m in self.inputs(batch).values()]
        y = self.mlp(torch.cat(pooled, -1))
        return ModelOutput(self.head_output(y), self.zero(y))


@register("text_transformer")
class TextTransformer(MSAModel):
    """Projection → learned positions → ``depth`` Transformer layers over tokens → masked mean → head."""

    def __init__(self, dims, hidden: int = 64, depth: int = 1, heads: int = 4, dropout: float = 0.1,
                 max_len: int = 512, n_out: int = 1, modalities=("text",)):
        super().__init__(dims, modalities, n_out)
        (m,) = self.modalities if len(self.modalities) == 1 else (None,)
        if m is None:
            raise ValueError("text_transformer takes exactly one modality")
        self.proj = nn.Linear(self.dims[m], hidden)
        self.pos = LearnedPositionalEmbedding(max_len, hidden)
        self.enc = TransformerEncoder(hidden, depth, heads, 2.0, dropout)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_out))

    def forward(self, batch: Batch) -> ModelOutput:
        ((x, mask),) = self.inputs(batch).values()
        h = self.enc(self.pos(self.proj(x)), mask)
        y = self.head(masked_mean(h, mask))
        return ModelOutput(self.head_output(y), self.zero(y))


@register("text_gru")
class TextGRU(MSAModel):
    """GRU over tokens (packed by length), last valid hidden state → head."""

    def __init__(self, dims, hidden: int = 64, dropout: float = 0.1, n_out: int = 1, modalities=("text",)):
        super().__init__(dims, modalities, n_out)
        if len(self.modalities) != 1:
            raise ValueError("text_gru takes exactly one modality")
        self.gru = GRUEncoder(self.dims[self.modalities[0]], hidden)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_out))

    def forward(self, batch: Batch) -> ModelOutput:
        ((x, mask),) = self.inputs(batch).values()
        y = self.head(self.gru(x, mask))
        return ModelOutput(self.head_output(y), self.zero(y))


@register("early_fusion")
class EarlyFusion(MSAModel):
    """EF: each modality is mean-pooled and projected, the vectors are concatenated, one MLP predicts."""

    def __init__(self, dims, hidden: int = 128, proj: int = 64, n_layers: int = 2, dropout: float = 0.1,
                 n_out: int = 1, modalities=None):
        super().__init__(dims, modalities, n_out)
        self.proj = nn.ModuleDict({m: nn.Sequential(nn.LayerNorm(d), nn.Linear(d, proj)) for m, d in self.dims.items()})
        self.mlp = MLP(proj * len(self.modalities), hidden, n_out, n_layers, dropout)

    def forward(self, batch: Batch) -> ModelOutput:
        z = torch.cat([self.proj[m](masked_mean(x, mask)) for m, (x, mask) in self.inputs(batch).items()], -1)
        y = self.mlp(z)
        return ModelOutput(self.head_output(y), self.zero(y), {"fused": z.detach()})


@register("late_fusion")
class LateFusion(MSAModel):
    """LF: one MLP per modality on its pooled features; predictions are averaged with learned weights."""

    def __init__(self, dims, hidden: int = 64, n_layers: int = 2, dropout: float = 0.1, n_out: int = 1,
                 modalities=None):
        super().__init__(dims, modalities, n_out)
        self.heads = nn.ModuleDict({m: nn.Sequential(nn.LayerNorm(d), MLP(d, hidden, n_out, n_layers, dropout))
                                    for m, d in self.dims.items()})
        self.logit_w = nn.Parameter(torch.zeros(len(self.modalities)))

    def forward(self, batch: Batch) -> ModelOutput:
        outs = torch.stack([self.heads[m](masked_mean(x, mask)) for m, (x, mask) in self.inputs(batch).items()], 1)
        w = torch.softmax(self.logit_w, 0)
        y = (outs * w[None, :, None]).sum(1)
        return ModelOutput(self.head_output(y), self.zero(y), {"modality_weights": w.detach().expand(len(y), -1)})


@register("mult")
class MulT(MSAModel):
    """MulT-style: per-modality temporal conv projection plus sinusoidal positions, then for each
    target modality, cross-modal Transformer blocks from each other modality, a self-attention layer
    over the concatenation, a masked mean; the targets' summaries are concatenated into an MLP head
    (Tsai et al. 2019, scaled down for CPU)."""

    def __init__(self, dims, hidden: int = 32, heads: int = 2, cross_depth: int = 1, self_depth: int = 1,
                 dropout: float = 0.1, n_out: int = 1, modalities=None):
        super().__init__(dims, modalities, n_out)
        if len(self.modalities) < 2:
            raise ValueError(f"mult needs at least two modalities; the dataset gives {self.modalities}")
        self.proj = nn.ModuleDict({m: nn.Conv1d(d, hidden, kernel_size=3, padding=1, bias=False)
                                   for m, d in self.dims.items()})
        self.pos = SinusoidalPositionalEmbedding(hidden)
        self.cross = nn.ModuleDict({
            f"{s}->{t}": nn.ModuleList(CrossAttentionBlock(hidden, heads, 2.0, dropout) for _ in range(cross_depth))
            for t in self.modalities for s in self.modalities if s != t})
        k = len(self.modalities) - 1
        self.self_attn = nn.ModuleDict({t: TransformerEncoder(hidden * k, self_depth, heads, 2.0, dropout)
                                        for t in self.modalities})
        d_all = hidden * k * len(self.modalities)
        self.head = nn.Sequential(nn.Linear(d_all, d_all), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_all, n_out))

    def forward(self, batch: Batch) -> ModelOutput:
        inp = self.inputs(batch)
        h = {m: self.pos(self.proj[m](x.transpose(1, 2)).transpose(1, 2)) for m, (x, _) in inp.items()}
        summaries = []
        for t in self.modalities:
            streams = []
            for s in self.modalities:
                if s == t:
                    continue
                z = h[t]
                for blk in self.cross[f"{s}->{t}"]:
                    z = blk(z, h[s], inp[s][1])
                streams.append(z)
            z = self.self_attn[t](torch.cat(streams, -1), inp[t][1])
            summaries.append(masked_mean(z, inp[t][1]))
        y = self.head(torch.cat(summaries, -1))
        return ModelOutput(self.head_output(y), self.zero(y))


@register("lrtf")
class LRTF(MSAModel):
    """Low-rank tensor fusion (LMF, Liu et al. 2018) over per-modality summaries, then an MLP head.

    I2MoE's LRTF baseline: the same summary encoders as its experts (GRU, or ``encoder='mean'``),
    fused multiplicatively.
    """

    def __init__(self, dims, gru_hidden: int = 64, fusion_dim: int = 64, rank: int = 4, dropout: float = 0.1,
                 n_out: int = 1, modalities=None, encoder: str = "gru"):
        super().__init__(dims, modalities, n_out)
        self.gru = nn.ModuleDict({m: SummaryEncoder(d, gru_hidden, encoder) for m, d in self.dims.items()})
        self.fusion = LowRankTensorFusion([gru_hidden] * len(self.modalities), fusion_dim, rank)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(fusion_dim, n_out))

    def forward(self, batch: Batch) -> ModelOutput:
        z = self.fusion([self.gru[m](x, mask) for m, (x, mask) in self.inputs(batch).items()])
        y = self.head(z)
        return ModelOutput(self.head_output(y), self.zero(y))


@register("almt")
class ALMT(MSAModel):
    """ALMT-style baseline (Zhang et al., EMNLP 2023), simplified: each modality is compressed by a
    `TokenTransformer` to ``n_tokens`` leading tokens; the text passes ``ahl_depth`` layers, and at
    each one a hyper-modality state (learned, ``n_tokens`` tokens) gathers audio and vision
    evidence by cross-attention queried by the text (adaptive hyper-modality learning); a cross
    Transformer then lets [token; text] attend to the hyper-modality state; the head reads token 0.
    """

    def __init__(self, dims, dim: int = 64, heads: int = 4, dim_head: int = 16, mlp_dim: int = 64, n_tokens: int = 8,
                 ahl_depth: int = 2, fusion_depth: int = 2, max_frames: int = 50, dropout: float = 0.0, n_out: int = 1,
                 modalities=None):
        super().__init__(dims, modalities, n_out)
        if "text" not in self.modalities or len(self.modalities) < 2:
            raise ValueError(f"almt needs text and at least one other modality; got {self.modalities}")
        self.n_tokens = n_tokens
        self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in self.dims.items()})
        self.compress = nn.ModuleDict({m: TokenTransformer(max_frames, dim, 1, heads, dim_head, mlp_dim, n_tokens, dropout)
                                       for m in self.modalities})
        self.text_layers = nn.ModuleList(TokenTransformer(n_tokens, dim, 1, heads, dim_head, mlp_dim, 0, dropout)
                                         for _ in range(ahl_depth))
        others = [m for m in self.modalities if m != "text"]
        self.hyper_attn = nn.ModuleList(nn.ModuleDict({m: PreNormAttention(dim, Attention(dim, heads, dim_head, dropout))
                                                       for m in others}) for _ in range(ahl_depth))
        self.hyper = nn.Parameter(torch.zeros(1, n_tokens, dim))
        self.token = nn.Parameter(torch.zeros(1, 1, dim))
        self.fuse = CrossTokenTransformer(n_tokens, n_tokens + 1, dim, fusion_depth, heads, dim_head, mlp_dim, dropout)
        self.head = nn.Linear(dim, n_out)

    def forward(self, batch: Batch) -> ModelOutput:
        z = {m: self.compress[m](self.proj[m](x))[:, : self.n_tokens] for m, (x, _) in self.inputs(batch).items()}
        t, h = z["text"], self.hyper.expand(len(z["text"]), -1, -1)
        for layer, attn in zip(self.text_layers, self.hyper_attn):
            t = layer(t)
            h = h + sum(attn[m](t, z[m], z[m]) for m in attn)
        x = self.fuse(source=h, target=torch.cat([self.token.expand(len(t), -1, -1), t], 1))
        y = self.head(x[:, 0])
        return ModelOutput(self.head_output(y), self.zero(y))
