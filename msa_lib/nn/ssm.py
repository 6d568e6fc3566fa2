"""Plain-PyTorch Mamba block (selective state-space model, S6; Gu & Dao 2023).

Why here: the TEXT paper (AAAI 2026) compares its temporal-alignment block against a Mamba block,
and the official ``mamba-ssm`` package ships only CUDA kernels. This module gives a CPU-friendly,
differentiable selective scan (a time loop of cheap elementwise ops on (B, D_in, N) states, fine for
the L <= ~150 sequences we use) plus a deliberately slow reference that the tests check it against.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from msa_lib.nn.blocks import causal_depthwise_conv1d


def _check_scan_shapes(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                       C: torch.Tensor, D: torch.Tensor | None) -> None:
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u and delta must both be (B, L, D_in); got {tuple(u.shape)} and {tuple(delta.shape)}")
    bt, length, d_in = u.shape
    if A.dim() != 2 or A.shape[0] != d_in:
        raise ValueError(f"A must be (D_in={d_in}, N); got {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.shape != (bt, length, n):
            raise ValueError(f"{name} must be (B, L, N) = {(bt, length, n)}; got {tuple(t.shape)}")
    if D is not None and D.shape != (d_in,):
        raise ValueError(f"D must be (D_in={d_in},); got {tuple(D.shape)}")


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None) -> torch.Tensor:
    """Mamba S6 recurrence, returning y of shape (B, L, D_in).

    Shapes: u, delta (B, L, D_in) with delta > 0; A (D_in, N), negative reals; B, C (B, L, N); D (D_in,) or None.
    Zero-order-hold discretisation as in Mamba: ``dA = exp(delta * A)``, ``dBu = delta * B * u``;
    ``h_t = dA_t * h_{t-1} + dBu_t`` (h_{-1} = 0), ``y_t = <h_t, C_t> + D * u_t``.

    The loop over time works on (B, D_in, N) slices only: each step discretises, updates the state
    and reads it out with a batched matmul, so the (B, L, D_in, N) tensors are never materialised
    (about 3x faster forward+backward on one CPU core than building them up front, since each step
    stays in cache).
    """
    _check_scan_shapes(u, delta, A, B, C, D)
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])                        # (B, D_in, N)
    ys = []
    for d_t, du_t, b_t, c_t in zip(delta.unbind(1), (delta * u).unbind(1), B.unbind(1), C.unbind(1)):
        h = torch.exp(d_t.unsqueeze(-1) * A) * h + du_t.unsqueeze(-1) * b_t.unsqueeze(1)
        ys.append(torch.bmm(h, c_t.unsqueeze(-1)).squeeze(-1))                 # (B, D_in)
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + u * D
    return y


def naive_selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                         D: torch.Tensor | None = None) -> torch.Tensor:
    """Slow reference for :func:`selective_scan`: explicit loops over time and channels (tests only)."""
    _check_scan_shapes(u, delta, A, B, C, D)
    bt, length, d_in = u.shape
    h = [u.new_zeros(bt, A.shape[1]) for _ in range(d_in)]                     # one (B, N) state per channel
    ys = []
    for t in range(length):
        y_t = []
        for d in range(d_in):
            dt = delta[:, t, d].unsqueeze(-1)                                  # (B, 1)
            h[d] = torch.exp(dt * A[d]) * h[d] + dt * B[:, t] * u[:, t, d].unsqueeze(-1)
            y = (h[d] * C[:, t]).sum(-1)
            if D is not None:
                y = y + D[d] * u[:, t, d]
            y_t.append(y)
        ys.append(torch.stack(y_t, dim=-1))
    return torch.stack(ys, dim=1)


class MambaBlock(nn.Module):
    """Standard Mamba block mapping (B, L, dim) -> (B, L, dim); causal in time.

    in_proj -> (x, z); x -> depthwise causal conv -> SiLU -> x_proj -> (dt, B, C);
    delta = softplus(dt_proj(dt)); y = selective_scan(x, delta, -exp(A_log), B, C, D) * SiLU(z); out_proj.
    The block is pure: no normalisation and no residual connection, the caller adds those.
    Initialisation follows the reference implementation (S4D-real A, D = 1, dt bias so that
    softplus(bias) is log-uniform in [dt_min, dt_max]).
    """

    def __init__(self, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank: int | None = None,
                 dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        if min(dim, d_state, d_conv, expand) < 1:
            raise ValueError(f"MambaBlock needs positive sizes (dim={dim}, d_state={d_state}, d_conv={d_conv}, "
                             f"expand={expand})")
        self.dim, self.d_state, self.d_conv = dim, d_state, d_conv
        self.inner = expand * dim
        self.dt_rank = math.ceil(dim / 16) if dt_rank is None else dt_rank
        self.in_proj = nn.Linear(dim, 2 * self.inner, bias=False)
        self.conv1d = nn.Conv1d(self.inner, self.inner, d_conv, groups=self.inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(self.inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.inner, bias=True)
        self.out_proj = nn.Linear(self.inner, dim, bias=False)
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
        dt = torch.exp(torch.rand(self.inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))         # inverse softplus
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.inner, 1)  # (inner, N)
        self.A_log = nn.Parameter(torch.log(a))
        self.D = nn.Parameter(torch.ones(self.inner))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"MambaBlock expects (B, L, {self.dim}); got {tuple(x.shape)}")
        xs, z = self.in_proj(x).chunk(2, dim=-1)                               # (B, L, inner) each
        xs = causal_depthwise_conv1d(xs, self.conv1d)                          # the causal part of the conv
        xs = F.silu(xs)
        dt, b, c = self.x_proj(xs).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        y = selective_scan(xs, delta, -torch.exp(self.A_log), b, c, self.D)
        return self.out_proj(y * F.silu(z))
