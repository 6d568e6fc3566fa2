"""MMoLRE: Multimodal Mixture of Low-Rank Experts for sentiment and emotion (ICME 2025, arXiv 2505.14143).

A *specification-level* reconstruction (``specs/MMOLRE.md``): there is no official code. What the
paper states is followed; every other choice is ours and says so here (and in the chapter):

- Text and audio only. Each modality is projected to width ``d`` (stated: d = 768 with RoBERTa /
  Data2Vec; ours: a Linear + LayerNorm on frozen features, width a parameter).
- **UniTSE** (stated): two stacked blocks; per modality and per task, N shared low-rank experts plus
  one task-specific low-rank expert, mixed by a task-specific router.
- **Low-rank expert** (stated): Conv1d bottleneck d → r → d, kernel 3. Ours: GELU between the two
  convolutions, "same" padding, and a residual + LayerNorm around each UniTSE block.
- **Router** (ours, per the spec's reconstruction): softmax over the N + 1 experts from the
  mean-pooled input, per sample; ``routing='token'`` routes each time step instead.
- **Fusion** (ours): per task, text queries audio by cross-attention, then a sigmoid-gated sum of the
  pooled text and audio summaries feeds the task head.
- **Loss** (stated): L = L_SA + λ_ER · L_ER. ER here is BCE over the six emotion-presence labels
  (intensity > 0), added as ``aux_loss`` when the batch carries ``emotions``; SA is the training
  loop's task loss on ``pred``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from msa_lib.data.schema import EMOTIONS, Batch
from msa_lib.models.base import ModelOutput, MSAModel, register
from msa_lib.nn import MLP, CrossAttentionBlock, masked_mean

TASKS = ("sa", "er")


class LowRankExpert(nn.Module):
    """Conv1d bottleneck d → r → d (kernel ``k``, "same" padding, GELU between); r = d is full rank.

    Parameters: ``d·r·k + r + r·d·k + d`` (two convolutions with bias).
    """

    def __init__(self, d: int, r: int, k: int = 3):
        super().__init__()
        if r < 1 or k < 1 or k % 2 == 0:
            raise ValueError(f"LowRankExpert needs r >= 1 and an odd kernel (got r={r}, k={k})")
        self.down = nn.Conv1d(d, r, k, padding=k // 2)
        self.up = nn.Conv1d(r, d, k, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, d) → (B, L, d)."""
        return self.up(nn.functional.gelu(self.down(x.transpose(1, 2)))).transpose(1, 2)

    @staticmethod
    def n_params(d: int, r: int, k: int = 3) -> int:
        return d * r * k + r + r * d * k + d


class LowRankExpertBank(nn.Module):
    """N low-rank experts (ranks r_n) stored as two wide convolutions.

    Why: UniTSE runs N experts × tasks × blocks × modalities; as 2N small convolutions this is
    launch-bound on a CPU. Concatenating the experts' down-projections into one Conv1d(d, Σr_n) and
    their up-projections into one Conv1d(Σr_n, d) is *exactly* the same function, the same
    parameters (Σ_n LowRankExpert.n_params(d, r_n, k)) and the same FLOPs: for a per-sample weight
    w_n, Σ_n w_n·U_n(h_n) = U_cat([w_1 h_1; …; w_N h_N]) because each U_n is linear. Each slice is
    initialised as PyTorch initialises the separate Conv1d, and `expert(n)` returns expert n as a
    standalone `LowRankExpert` (the unit tests check the equivalence).
    """

    def __init__(self, d: int, ranks: list[int], k: int = 3):
        super().__init__()
        if not ranks or min(ranks) < 1 or k < 1 or k % 2 == 0:
            raise ValueError(f"LowRankExpertBank needs ranks >= 1 and an odd kernel (got ranks={ranks}, k={k})")
        self.d, self.k, self.ranks = d, k, [int(r) for r in ranks]
        self.down = nn.Conv1d(d, sum(self.ranks), k, padding=k // 2)
        self.up_weight = nn.Parameter(torch.empty(d, sum(self.ranks), k))
        self.up_bias = nn.Parameter(torch.empty(len(self.ranks), d))
        self.register_buffer("_expert_of_channel", torch.tensor(
            [n for n, r in enumerate(self.ranks) for _ in range(r)], dtype=torch.long), persistent=False)
        with torch.no_grad():  # as N separate nn.Conv1d(r_n, d, k): U(-1/sqrt(r_n k), 1/sqrt(r_n k))
            for n, sl in enumerate(self._slices()):
                bound = 1.0 / math.sqrt(self.ranks[n] * k)
                self.up_weight[:, sl].uniform_(-bound, bound)
                self.up_bias[n].uniform_(-bound, bound)

    def __len__(self) -> int:
        return len(self.ranks)

    def _slices(self) -> list[slice]:
        ends = np.cumsum([0, *self.ranks])
        return [slice(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:])]

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, d) → every expert's bottleneck activations (B, Σr, L)."""
        return nn.functional.gelu(self.down(x.transpose(1, 2)))

    def mix(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Σ_n w[..., n]·f_n(x) for per-sample weights: x (B, L, d), w (B, K, N) → (B, K, L, d).

        K weightings of the same input (e.g. one per task when the tasks share their input) reuse
        one down-projection.
        """
        h = self.hidden(x)  # (B, R, L)
        b, kk, n = w.shape
        scale = w[:, :, self._expert_of_channel]  # (B, K, R)
        hs = (h[:, None] * scale[..., None]).reshape(b * kk, h.shape[1], h.shape[2])
        y = nn.functional.conv1d(hs, self.up_weight, padding=self.k // 2)  # (B·K, d, L)
        y = y + (w.reshape(b * kk, n) @ self.up_bias)[:, :, None]
        return y.reshape(b, kk, self.d, -1).transpose(2, 3)

    def all(self, x: torch.Tensor) -> torch.Tensor:
        """Each expert's output separately: x (B, L, d) → (B, L, d, N) (for per-token routing)."""
        h = self.hidden(x)
        ys = [nn.functional.conv1d(h[:, sl], self.up_weight[:, sl], self.up_bias[n], padding=self.k // 2)
              for n, sl in enumerate(self._slices())]
        return torch.stack(ys, -1).transpose(1, 2)

    @torch.no_grad()
    def expert(self, n: int) -> LowRankExpert:
        """Expert ``n`` as a standalone `LowRankExpert` with the same weights (a copy)."""
        sl = self._slices()[n]
        e = LowRankExpert(self.d, self.ranks[n], self.k)
        e.down.weight.copy_(self.down.weight[sl])
        e.down.bias.copy_(self.down.bias[sl])
        e.up.weight.copy_(self.up_weight[:, sl])
        e.up.bias.copy_(self.up_bias[n])
        return e


class UniTSEBlock(nn.Module):
    """One UniTSE block for one modality: N shared experts + one task-specific expert per task, mixed
    per task by that task's router; residual + LayerNorm (ours).

    Switches for the ablations: ``use_shared`` / ``use_task_specific`` drop an expert group;
    ``shared_router`` gives both tasks one router. The shared experts are a `LowRankExpertBank`.
    """

    def __init__(self, d: int, ranks: list[int], tasks: tuple[str, ...] = TASKS, task_rank: int | None = None,
                 kernel: int = 3, use_shared: bool = True, use_task_specific: bool = True,
                 shared_router: bool = False, routing: str = "sample"):
        super().__init__()
        if not (use_shared or use_task_specific):
            raise ValueError("UniTSE needs shared or task-specific experts (or both)")
        if routing not in ("sample", "token"):
            raise ValueError(f"routing={routing!r}; expected 'sample' or 'token'")
        self.tasks, self.routing = tasks, routing
        self.shared = LowRankExpertBank(d, ranks, kernel) if use_shared and ranks else None
        tr = task_rank or (ranks[0] if ranks else d)
        self.specific = nn.ModuleDict({t: LowRankExpert(d, tr, kernel) for t in tasks}) if use_task_specific else None
        self.n_shared = len(self.shared) if self.shared is not None else 0
        n = self.n_shared + (1 if use_task_specific else 0)
        router = nn.Linear(d, n)
        self.router = nn.ModuleDict({t: router if shared_router else nn.Linear(d, n) for t in tasks})
        self.norm = nn.ModuleDict({t: nn.LayerNorm(d) for t in tasks})

    def forward(self, xs: dict[str, torch.Tensor], mask: torch.Tensor | None) -> tuple[dict[str, torch.Tensor], dict]:
        """``xs``: the task copies {task: (B, L, d)}; when every task passes the *same* tensor (the first
        block) the shared experts' down-projection runs once."""
        tasks = list(xs)
        if self.routing == "sample":
            w = {t: torch.softmax(self.router[t](masked_mean(xs[t], mask)), -1) for t in tasks}  # (B, n)
        else:
            w = {t: torch.softmax(self.router[t](xs[t]), -1) for t in tasks}  # (B, L, n)
        mixed = {t: xs[t] for t in tasks}  # residual
        if self.shared is not None:
            ns = self.n_shared
            if self.routing == "sample":
                if all(xs[t] is xs[tasks[0]] for t in tasks):
                    y = self.shared.mix(xs[tasks[0]], torch.stack([w[t][:, :ns] for t in tasks], 1))
                    ys = {t: y[:, i] for i, t in enumerate(tasks)}
                else:
                    y = self.shared.mix(torch.cat([xs[t] for t in tasks]), torch.cat([w[t][:, None, :ns] for t in tasks]))
                    ys = dict(zip(tasks, y[:, 0].chunk(len(tasks))))
            else:
                ys = {t: (self.shared.all(xs[t]) * w[t][:, :, None, :ns]).sum(-1) for t in tasks}
            mixed = {t: mixed[t] + ys[t] for t in tasks}
        if self.specific is not None:
            gate = {t: (w[t][:, -1, None, None] if self.routing == "sample" else w[t][:, :, -1, None]) for t in tasks}
            mixed = {t: mixed[t] + gate[t] * self.specific[t](xs[t]) for t in tasks}
        out = {t: self.norm[t](mixed[t]) for t in tasks}
        weights = {t: w[t] if self.routing == "sample" else masked_mean(w[t], mask) for t in tasks}
        return out, weights


@register("mmolre")
class MMoLRE(MSAModel):
    """Multi-task MMoLRE: SA prediction in ``pred``; the ER loss (× ``lambda_er``) in ``aux_loss``.

    ``tasks=("sa",)`` trains SA only (a single-task baseline; also what MOSI allows, having no
    emotion labels). ``full_rank=True`` sets every rank to d. ``n_blocks`` is UniTSE's depth (2 stated).
    """

    def __init__(self, dims: dict[str, int], n_out: int = 1, modalities=("text", "audio"), d: int = 64,
                 n_experts: int = 15, rank: int | list[int] = 128, task_rank: int | None = None, kernel: int = 3,
                 n_blocks: int = 2, heads: int = 4, lambda_er: float = 1.0, tasks: tuple[str, ...] = TASKS,
                 use_shared: bool = True, use_task_specific: bool = True, shared_router: bool = False,
                 routing: str = "sample", full_rank: bool = False, dropout: float = 0.1):
        super().__init__(dims, modalities, n_out)
        tasks = tuple(tasks)
        if not tasks or any(t not in TASKS for t in tasks):
            raise ValueError(f"tasks={tasks}; expected a non-empty subset of {TASKS}")
        if n_out != 1:
            raise ValueError("MMoLRE's SA head is a regression head (n_out=1)")
        if "text" not in self.modalities or len(self.modalities) != 2:
            raise ValueError(f"MMoLRE fuses text with one other modality (audio in the paper); got {self.modalities}")
        ranks = [d] * n_experts if full_rank else (list(rank) if isinstance(rank, (list, tuple)) else [rank] * n_experts)
        if len(ranks) != n_experts:
            raise ValueError(f"{len(ranks)} ranks given for n_experts={n_experts}")
        self.tasks, self.lambda_er = tasks, lambda_er
        self.proj = nn.ModuleDict({m: nn.Sequential(nn.Linear(dm, d), nn.LayerNorm(d)) for m, dm in self.dims.items()})
        self.unitse = nn.ModuleDict({m: nn.ModuleList(
            UniTSEBlock(d, ranks, tasks, d if full_rank else task_rank, kernel, use_shared, use_task_specific,
                        shared_router, routing) for _ in range(n_blocks)) for m in self.modalities})
        self.fuse_attn = nn.ModuleDict({t: CrossAttentionBlock(d, heads, 2.0, dropout) for t in tasks})
        self.fuse_gate = nn.ModuleDict({t: nn.Linear(2 * d, 1) for t in tasks})
        self.heads = nn.ModuleDict({"sa": MLP(d, d, 1, 2, dropout)} if "sa" in tasks else {})
        if "er" in tasks:
            self.heads["er"] = MLP(d, d, len(EMOTIONS), 2, dropout)

    def features(self, batch: Batch) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Per task, the fused vector (B, d); plus the routers' weights per modality, block and task."""
        inp = self.inputs(batch)
        streams, routing = {}, {}
        for m, (x, mask) in inp.items():
            p = self.proj[m](x)
            h = {t: p for t in self.tasks}  # features duplicated per task (one tensor until block 1)
            for b, block in enumerate(self.unitse[m]):
                h, w = block(h, mask)
                routing.update({f"{m}/block{b}/{t}": v for t, v in w.items()})
            streams[m] = (h, mask)
        fused = {}
        (ht, mt) = streams["text"]
        (ha, ma) = next(v for m, v in streams.items() if m != "text")
        for t in self.tasks:
            q = self.fuse_attn[t](ht[t], ha[t], ma)
            pt, pa = masked_mean(q, mt), masked_mean(ha[t], ma)
            g = torch.sigmoid(self.fuse_gate[t](torch.cat([pt, pa], -1)))
            fused[t] = g * pt + (1 - g) * pa
        return fused, routing

    def forward(self, batch: Batch) -> ModelOutput:
        fused, routing = self.features(batch)
        ref = next(iter(fused.values()))
        pred = self.heads["sa"](fused["sa"]).squeeze(-1) if "sa" in self.heads else ref.new_zeros(len(ref))
        aux = self.zero(ref)
        extras: dict[str, Any] = {f"router:{k}": v.detach() for k, v in routing.items()}
        if "er" in self.heads:
            logits = self.heads["er"](fused["er"])
            extras["emotion_logits"] = logits.detach()
            if batch.emotions is not None:
                target = (batch.emotions > 0).to(logits.dtype)
                er = nn.functional.binary_cross_entropy_with_logits(logits, target)
                aux = aux + self.lambda_er * er
                extras["er_loss"] = er.detach()
        return ModelOutput(pred, aux, extras)


@register("mtl_hard_sharing")
class HardSharingMTL(MSAModel):
    """Hard-parameter-sharing multi-task baseline: one shared trunk (projection, a Conv1d + GELU layer
    and cross-attention fusion) feeding two heads (SA regression, ER BCE)."""

    def __init__(self, dims: dict[str, int], n_out: int = 1, modalities=("text", "audio"), d: int = 64,
                 heads: int = 4, lambda_er: float = 1.0, dropout: float = 0.1):
        super().__init__(dims, modalities, n_out)
        if "text" not in self.modalities or len(self.modalities) != 2:
            raise ValueError(f"mtl_hard_sharing fuses text with one other modality; got {self.modalities}")
        self.lambda_er = lambda_er
        self.proj = nn.ModuleDict({m: nn.Sequential(nn.Linear(dm, d), nn.LayerNorm(d)) for m, dm in self.dims.items()})
        self.conv = nn.ModuleDict({m: nn.Conv1d(d, d, 3, padding=1) for m in self.modalities})
        self.fuse = CrossAttentionBlock(d, heads, 2.0, dropout)
        self.sa = MLP(2 * d, d, 1, 2, dropout)
        self.er = MLP(2 * d, d, len(EMOTIONS), 2, dropout)

    def forward(self, batch: Batch) -> ModelOutput:
        inp = self.inputs(batch)
        h = {m: nn.functional.gelu(self.conv[m](self.proj[m](x).transpose(1, 2))).transpose(1, 2)
             for m, (x, _) in inp.items()}
        (t, mt), (a, ma) = (h["text"], inp["text"][1]), next((h[m], inp[m][1]) for m in self.modalities if m != "text")
        z = torch.cat([masked_mean(self.fuse(t, a, ma), mt), masked_mean(a, ma)], -1)
        pred = self.sa(z).squeeze(-1)
        logits = self.er(z)
        aux = self.zero(pred)
        extras: dict[str, Any] = {"emotion_logits": logits.detach()}
        if batch.emotions is not None:
            er = nn.functional.binary_cross_entropy_with_logits(logits, (batch.emotions > 0).to(logits.dtype))
            aux = aux + self.lambda_er * er
            extras["er_loss"] = er.detach()
        return ModelOutput(pred, aux, extras)
