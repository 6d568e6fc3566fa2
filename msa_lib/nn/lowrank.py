"""Low-rank multimodal fusion (LMF / LRTF, Liu et al. 2018).

Why here: tensor fusion of M modality vectors builds a Π(d_m + 1)-sized outer product; LMF factorises
the weight tensor into ``rank`` modality-specific factors, so the fused vector is
``Σ_r w_r · Π_m ([z_m, 1] · W_m^(r)) + b`` at linear cost. I2MoE uses it as a baseline (LRTF).
"""
from __future__ import annotations

import torch
from torch import nn


class LowRankTensorFusion(nn.Module):
    """Fuse a list of (B, d_m) vectors into (B, out_dim) with rank-``rank`` modality factors.

    All factors are registered parameters (the official MultiBench-derived code keeps them in a
    Python list, so they are never trained; see the I2MoE chapter's audit).
    """

    def __init__(self, in_dims: list[int], out_dim: int, rank: int = 4):
        super().__init__()
        if rank < 1 or not in_dims:
            raise ValueError(f"LowRankTensorFusion needs rank >= 1 and at least one input (rank={rank}, in_dims={in_dims})")
        self.in_dims = list(in_dims)
        self.factors = nn.ParameterList(nn.Parameter(torch.empty(rank, d + 1, out_dim)) for d in in_dims)
        for f in self.factors:
            nn.init.xavier_normal_(f)
        self.rank_weights = nn.Parameter(torch.empty(1, rank))
        nn.init.xavier_normal_(self.rank_weights)
        self.bias = nn.Parameter(torch.zeros(out_dim))

    def forward(self, zs: list[torch.Tensor]) -> torch.Tensor:
        if len(zs) != len(self.factors):
            raise ValueError(f"expected {len(self.factors)} modality vectors, got {len(zs)}")
        fused = None
        for z, f in zip(zs, self.factors):
            if z.shape[-1] + 1 != f.shape[1]:
                raise ValueError(f"modality vector of width {z.shape[-1]} does not match factor width {f.shape[1] - 1}")
            z1 = torch.cat([z, z.new_ones(z.shape[0], 1)], -1)
            proj = torch.einsum("bd,rdo->rbo", z1, f)  # (rank, B, out)
            fused = proj if fused is None else fused * proj
        return torch.einsum("r,rbo->bo", self.rank_weights[0], fused) + self.bias
