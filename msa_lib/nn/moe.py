"""Token-level sparse mixture-of-experts layers (SwitchGate, top-k routers) and their balance losses.

Why here: I2MoE wraps a SwitchGate backbone, TEXT routes tokens to experts, MMoLRE mixes experts.
A router + expert FFN with a load-balancing loss is written once and composed by those models.
The layer keeps its last balance loss in ``aux_loss`` (and routing in ``last_routing``), so a
backbone can collect them with `collect_aux_loss` after its forward, as the official code does.
"""
from __future__ import annotations

import torch
from torch import nn


class SparseMoEFFN(nn.Module):
    """Top-``k`` routed FFN experts; ``k=1`` is the Switch Transformer's SwitchGate (Fedus et al. 2022).

    Each token goes to its ``k`` most probable experts; the outputs are weighted by the router's
    probabilities (renormalised over the chosen k when k > 1). The load-balancing loss is
    ``E · Σ_e f_e · P_e`` (f_e: fraction of tokens whose top-1 expert is e; P_e: mean router
    probability of e), which is 1 for a perfectly balanced router and E for a collapsed one.
    """

    def __init__(self, dim: int, hidden: int, n_experts: int = 4, k: int = 1, dropout: float = 0.0,
                 act: type[nn.Module] = nn.GELU):
        super().__init__()
        if not 1 <= k <= n_experts:
            raise ValueError(f"SparseMoEFFN needs 1 <= k <= n_experts (got k={k}, n_experts={n_experts})")
        self.k, self.n_experts = k, n_experts
        self.router = nn.Linear(dim, n_experts, bias=False)
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(dim, hidden), act(), nn.Dropout(dropout),
                                                   nn.Linear(hidden, dim)) for _ in range(n_experts))
        self.aux_loss: torch.Tensor | None = None
        self.last_routing: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        t = x.reshape(-1, shape[-1])
        probs = torch.softmax(self.router(t), -1)  # (T, E)
        top_p, top_i = probs.topk(self.k, -1)
        gates = top_p if self.k == 1 else top_p / top_p.sum(-1, keepdim=True)
        out = torch.zeros_like(t)
        for e, expert in enumerate(self.experts):
            tok, slot = (top_i == e).nonzero(as_tuple=True)
            if tok.numel():
                out = out.index_add(0, tok, gates[tok, slot, None] * expert(t[tok]))
        frac = nn.functional.one_hot(top_i[:, 0], self.n_experts).to(probs.dtype).mean(0)
        self.aux_loss = self.n_experts * (frac * probs.mean(0)).sum()
        self.last_routing = top_i[:, 0].view(shape[:-1]).detach()
        return out.view(shape)


def collect_aux_loss(module: nn.Module) -> torch.Tensor | None:
    """Sum of the balance losses that ``module``'s sparse layers produced in their last forward."""
    losses = [m.aux_loss for m in module.modules() if isinstance(m, SparseMoEFFN) and m.aux_loss is not None]
    return torch.stack(losses).sum() if losses else None
