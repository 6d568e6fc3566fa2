"""Token-level sparse mixture-of-experts layers (SwitchGate, top-k routers) and their balance losses.

Why here: I2MoE wraps a SwitchGate backbone, TEXT routes tokens to experts, MMoLRE mixes experts.
A router + expert FFN with a load-balancing loss is written once and composed by those models.
The layer keeps its last balance loss in ``aux_loss`` (and routing in ``last_routing``), so a
backbone can collect them with `collect_aux_loss` after its forward, as the official code does.
"""
from __future__ import annotations

import torch
from torch import nn

from msa_lib.nn.blocks import Dropout


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
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(dim, hidden), act(), Dropout(dropout),
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


class NoisyTopKRouter(nn.Module):
    """Per-sample router (TEXT): mean-pool the routing tokens, ``logits + randn · softplus(noise)``,
    keep the top ``k``, softmax over the kept logits. Returns dense weights (B, E), zero off the top k.

    ``noisy=False`` drops the noise term (deterministic); ``k = E`` with no noise is a dense router.
    """

    def __init__(self, dim: int, n_experts: int, k: int):
        super().__init__()
        if not 1 <= k <= n_experts:
            raise ValueError(f"router needs 1 <= k <= n_experts (got k={k}, n_experts={n_experts})")
        self.k = k
        self.route = nn.Linear(dim, n_experts)
        self.noise = nn.Linear(dim, n_experts)

    def forward(self, tokens: torch.Tensor, noisy: bool) -> tuple[torch.Tensor, torch.Tensor]:
        h = tokens.mean(1)
        logits = self.route(h)
        if noisy:
            logits = logits + torch.randn_like(logits) * nn.functional.softplus(self.noise(h))
        top_v, top_i = logits.topk(self.k, -1)
        sparse = torch.full_like(logits, float("-inf")).scatter(-1, top_i, top_v)
        return torch.softmax(sparse, -1), top_i


class SampleRoutedMoE(nn.Module):
    """Sparse MoE where a whole *sample* (all its tokens) is routed by a separate routing sequence.

    TEXT routes by the text tokens. Expert capacity is ``max(1, int(B·k / E · capacity_factor))``
    samples per expert and batch; samples beyond it (in batch order) get nothing from that expert,
    which makes a sample's output depend on the rest of its batch. ``capacity=False`` disables the
    drop (our deterministic evaluation). ``last_weights`` (B, E) keeps the weights actually applied
    after the drop and ``last_dropped`` the number of dropped (sample, expert) assignments.
    """

    def __init__(self, dim: int, hidden: int, n_experts: int = 5, k: int = 3, capacity_factor: float = 1.0,
                 dropout: float = 0.0):
        super().__init__()
        self.router = NoisyTopKRouter(dim, n_experts, k)
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                                   nn.Linear(hidden, dim), nn.Dropout(dropout)) for _ in range(n_experts))
        self.n_experts, self.k, self.capacity_factor = n_experts, k, capacity_factor
        self.last_weights: torch.Tensor | None = None
        self.last_dropped = 0

    def capacity(self, batch: int) -> int:
        return max(1, int(batch * self.k / self.n_experts * self.capacity_factor))

    def forward(self, route_tokens: torch.Tensor, x: torch.Tensor, noisy: bool = True,
                capacity: bool = True) -> torch.Tensor:
        w, top_i = self.router(route_tokens, noisy)
        chosen = torch.zeros_like(w, dtype=torch.bool).scatter(-1, top_i, True)
        dropped = 0
        if capacity:
            cap = self.capacity(x.shape[0])
            rank = torch.cumsum(chosen.long(), 0)  # 1-based position of each sample among the expert's samples
            keep = chosen & (rank <= cap)
            dropped = int((chosen & ~keep).sum())
            chosen = keep
        w = w * chosen
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            idx = chosen[:, e].nonzero(as_tuple=True)[0]
            if idx.numel():
                out = out.index_add(0, idx, w[idx, e, None, None] * expert(x[idx]))
        self.last_weights, self.last_dropped = w.detach(), dropped
        return out
