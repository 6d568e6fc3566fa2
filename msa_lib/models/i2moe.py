"""I2MoE: Interpretable Multimodal Interaction-aware Mixture-of-Experts (Xin et al., ICML 2025).

The pieces, as the official code (Raina-Xin/I2MoE) builds them for MOSI, re-implemented from the
spec (``specs/I2MOE.md``):

- `PatchEncoders`: per modality a GRU (last hidden state) and `PatchEmbeddings`, giving
  ``num_patches`` tokens per modality. They are shared by all experts and run once per batch.
- `FusionBackbone`: the network every expert copies. Tokens of all modalities + a zero-initialised
  learned position table → Transformer layers (MLP ratio 2, GELU; a top-1 `SparseMoEFFN` for the
  SwitchGate backbone) → mean per modality → concat (the *latent*) → Linear.
- `InteractionExperts`: M uniqueness experts, one synergy and one redundancy expert; during
  training each expert also sees the M inputs with one modality's *encoded* tokens replaced
  (random / zero / mean vector), and the interaction losses push its outputs apart from or towards
  those perturbed outputs. The M + 1 passes of an expert run as **one batched forward** over a
  (M + 1)·B batch.
- `MLPReweighting`: per-sample softmax weights over the experts (the interpretation), with a
  temperature; `global` replaces it with one learnable weight vector (an official ablation).

Deviations from the official code are flags, so each can be measured: ``official_quirks`` restores
the attention block without residual; ``synergy_loss="official"`` restores the regression synergy
loss that equals the redundancy loss.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from msa_lib.data.schema import Batch
from msa_lib.models.base import ModelOutput, MSAModel, register
from msa_lib.nn import MLP, PatchEmbeddings, SparseMoEFFN, SummaryEncoder, TransformerBlock, collect_aux_loss

PERTURBATIONS = ("random", "zero", "mean")

#: The official code's eight ablations (src/ablation/), plus the two deviations we measure, as
#: hyper-parameter overrides of `InteractionExperts`. "single expert" appears once per type.
ABLATIONS: dict[str, dict[str, Any]] = {
    "no interaction loss": {"interaction_loss": False},
    "latent contrastive": {"latent_contrastive": True},
    "less perturbed forward": {"perturb_subset": 2},
    "synergy + redundancy only": {"experts": ["synergy", "redundancy"]},
    "simple weighted average": {"reweighting": "global"},
    "zero-vector perturbation": {"perturbation": "zero"},
    "mean-vector perturbation": {"perturbation": "mean"},
    "single expert: uniqueness (text)": {"experts": ["uni_text"]},
    "single expert: synergy": {"experts": ["synergy"]},
    "single expert: redundancy": {"experts": ["redundancy"]},
    "official quirks (no attention residual)": {"official_quirks": True},
}
BACKBONES = ("transformer", "switchgate")


# ----------------------------------------------------------------------------------------------
# Encoders and the fusion backbone
class PatchEncoders(nn.Module):
    """`SummaryEncoder` (in_dim → ``gru_hidden``) → `PatchEmbeddings` per modality.

    Returns tokens of shape (B, M, num_patches, hidden): every modality has the same number of
    tokens, which is what lets the perturbed passes be stacked into one batch.
    """

    def __init__(self, dims: dict[str, int], gru_hidden: int = 256, num_patches: int = 4, hidden: int = 128,
                 encoder: str = "gru"):
        super().__init__()
        self.modalities = tuple(dims)
        self.enc = nn.ModuleDict({m: SummaryEncoder(d, gru_hidden, encoder) for m, d in dims.items()})
        self.patch = nn.ModuleDict({m: PatchEmbeddings(gru_hidden, num_patches, hidden) for m in dims})

    def forward(self, inputs: dict[str, tuple[torch.Tensor, torch.Tensor | None]]) -> torch.Tensor:
        return torch.stack([self.patch[m](self.enc[m](x, mask)) for m, (x, mask) in inputs.items()], 1)


class FusionBackbone(nn.Module):
    """I2MoE's Transformer fusion network on pre-encoded tokens (the thing each expert copies).

    ``backbone='switchgate'`` makes the first layer's FFN (and every second one after it, as the
    official code does) a top-``top_k`` sparse MoE with ``n_moe_experts`` experts; its
    load-balancing loss is returned as ``gate_loss``. ``official_quirks`` drops the attention
    residual exactly as the official block does. ``attn_dropout`` (dropout on the attention
    weights) is 0 by default: the official code uses ``dropout`` there too, but on CPU sampling that
    mask costs ~40 % of an I2MoE step; the full profile sets it back to the official value.
    """

    def __init__(self, n_modalities: int, num_patches: int, hidden: int, n_out: int, depth: int = 1, heads: int = 1,
                 dropout: float = 0.5, backbone: str = "transformer", n_moe_experts: int = 4, top_k: int = 1,
                 official_quirks: bool = False, attn_dropout: float = 0.0):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone={backbone!r}; expected one of {BACKBONES}")
        if hidden % heads:
            raise ValueError(f"hidden={hidden} must be divisible by heads={heads}")
        self.n_modalities, self.num_patches, self.hidden = n_modalities, num_patches, hidden
        self.pos = nn.Parameter(torch.zeros(1, n_modalities * num_patches, hidden))  # zero-initialised, as official
        blocks = []
        for j in range(depth):
            sparse = backbone == "switchgate" and j % 2 == 0  # layers 0, 2, 4, ...
            ffn = SparseMoEFFN(hidden, 2 * hidden, n_moe_experts, top_k, dropout) if sparse else None
            blocks.append(TransformerBlock(hidden, heads, 2.0, dropout, attn_dropout=attn_dropout, ffn=ffn,
                                           attn_residual=not official_quirks))
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(hidden * n_modalities, n_out)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """tokens (N, M, P, H) → (output (N, n_out), latent (N, M·H), gate loss or None)."""
        n, m, p, h = tokens.shape
        x = tokens.reshape(n, m * p, h) + self.pos
        for blk in self.blocks:
            x = blk(x)
        latent = x.view(n, m, p, h).mean(2).reshape(n, m * h)
        return self.head(latent), latent, collect_aux_loss(self)


class _PatchModel(MSAModel):
    """Shared constructor bits: encoders and one backbone, with the official MOSI defaults."""

    def __init__(self, dims, n_out: int = 1, modalities=None, backbone: str = "transformer", gru_hidden: int = 256,
                 hidden: int = 128, num_patches: int = 4, depth: int = 1, heads: int = 1, dropout: float = 0.5,
                 n_moe_experts: int = 4, top_k: int = 1, gate_loss_weight: float = 0.01, official_quirks: bool = False,
                 encoder: str = "gru", attn_dropout: float = 0.0):
        super().__init__(dims, modalities, n_out)
        self.encoders = PatchEncoders(self.dims, gru_hidden, num_patches, hidden, encoder)
        self.backbone_kind = backbone
        self.gate_loss_weight = gate_loss_weight
        self._backbone_kw = dict(n_modalities=len(self.modalities), num_patches=num_patches, hidden=hidden, n_out=n_out,
                                 depth=depth, heads=heads, dropout=dropout, backbone=backbone,
                                 n_moe_experts=n_moe_experts, top_k=top_k, official_quirks=official_quirks,
                                 attn_dropout=attn_dropout)

    def encode(self, batch: Batch) -> torch.Tensor:
        return self.encoders(self.inputs(batch))


@register("fusion_backbone")
class VanillaFusion(_PatchModel):
    """The vanilla baseline I2MoE is compared with: the same encoders and *one* fusion backbone."""

    def __init__(self, dims, **kw: Any):
        super().__init__(dims, **kw)
        self.fusion = FusionBackbone(**self._backbone_kw)

    def forward(self, batch: Batch) -> ModelOutput:
        y, latent, gate = self.fusion(self.encode(batch))
        aux = self.gate_loss_weight * gate if gate is not None else self.zero(y)
        return ModelOutput(self.head_output(y), aux, {"latent": latent.detach()})


# ----------------------------------------------------------------------------------------------
# Interaction losses (pure functions: unit-tested for their signs)
def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1).mean()


def uniqueness_loss(anchor: torch.Tensor, positives: list[torch.Tensor], negative: torch.Tensor,
                    regression: bool = False) -> torch.Tensor:
    """Uniqueness expert for modality i: outputs without modality j ≠ i stay close to the full output
    (positives), the output without modality i moves away (negative).

    Classification: mean over positives of TripletMarginLoss(margin 1, p 2, eps 1e-7).
    Regression (official): mean over positives of MSE(anchor, pos) − MSE(anchor, neg).
    """
    if not positives:
        return anchor.new_zeros(())
    if regression:
        return torch.stack([F.mse_loss(anchor, p) - F.mse_loss(anchor, negative) for p in positives]).mean()
    return torch.stack([F.triplet_margin_loss(anchor, p, negative, margin=1.0, p=2, eps=1e-7)
                        for p in positives]).mean()


def synergy_loss(anchor: torch.Tensor, negatives: list[torch.Tensor], regression: bool = False,
                 form: str = "corrected", margin: float = 1.0) -> torch.Tensor:
    """Synergy expert: every single-modality removal should *change* the output (all negatives).

    Classification: mean_j cos(anchor, perturb_j); minimising it pushes the outputs apart.
    Regression: ``form='corrected'`` (default) is the hinge mean_j max(0, margin − MSE), which also
    pushes apart; ``form='official'`` is mean_j MSE, which pulls them *together*, identical to the
    redundancy loss (the official code's bug, kept to measure it).
    """
    if not negatives:
        return anchor.new_zeros(())
    if not regression:
        return torch.stack([_cos(anchor, n) for n in negatives]).mean()
    if form == "official":
        return torch.stack([F.mse_loss(anchor, n) for n in negatives]).mean()
    if form != "corrected":
        raise ValueError(f"synergy loss form {form!r}; expected 'corrected' or 'official'")
    return torch.stack([F.relu(margin - F.mse_loss(anchor, n)) for n in negatives]).mean()


def redundancy_loss(anchor: torch.Tensor, positives: list[torch.Tensor], regression: bool = False) -> torch.Tensor:
    """Redundancy expert: removing any one modality should *not* change the output (all positives).

    Classification: mean_j (1 − cos(anchor, perturb_j)); regression: mean_j MSE(anchor, perturb_j).
    """
    if not positives:
        return anchor.new_zeros(())
    if regression:
        return torch.stack([F.mse_loss(anchor, p) for p in positives]).mean()
    return torch.stack([1 - _cos(anchor, p) for p in positives]).mean()


# ----------------------------------------------------------------------------------------------
# The model
class MLPReweighting(nn.Module):
    """Mean-pooled modality embeddings → MLP (ReLU, dropout 0.5) → softmax(logits / temperature)."""

    def __init__(self, in_dim: int, n_experts: int, hidden: int = 256, n_layers: int = 2, temperature: float = 1.0,
                 dropout: float = 0.5):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature_rw must be > 0, got {temperature}")
        self.mlp = MLP(in_dim, hidden, n_experts, n_layers, dropout)
        self.temperature = temperature

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.mlp(tokens.mean(2).flatten(1)) / self.temperature, -1)


class GlobalReweighting(nn.Module):
    """The 'simple weighted average' ablation: one learnable weight vector shared by all samples."""

    def __init__(self, n_experts: int, temperature: float = 1.0):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_experts))
        self.temperature = temperature

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits / self.temperature, -1).expand(tokens.shape[0], -1)


def expert_names(modalities: tuple[str, ...] | list[str]) -> list[str]:
    """The M + 2 expert names in the official order: uniqueness per modality, synergy, redundancy."""
    return [f"uni_{m}" for m in modalities] + ["synergy", "redundancy"]


@register("i2moe")
class InteractionExperts(_PatchModel):
    """I2MoE around a fusion backbone (``backbone='transformer' | 'switchgate'``).

    Ablation switches (the official code's eight, plus ours):
      ``interaction_loss=False`` (no interaction loss: no perturbed passes), ``latent_contrastive``
      (losses on the pre-head latents), ``perturb_subset=k`` (less perturbed forward: k random
      modalities per step), ``experts=[...]`` (a subset, e.g. synergy + redundancy only, or one
      expert), ``reweighting='global'`` (simple weighted average), ``perturbation='zero' | 'mean'``,
      ``synergy_loss='official'`` (regression bug), ``official_quirks`` (no attention residual).
    ``batched=False`` runs the M + 1 passes one by one (same numbers, slower; for the benchmark).
    Classification (``n_out ≥ 2``) uses the triplet/cosine losses on logits; regression the MSE forms.
    """

    def __init__(self, dims, n_out: int = 1, lambda_int: float = 0.5, temperature_rw: float = 1.0,
                 num_layer_rw: int = 2, hidden_rw: int = 256, perturbation: str = "random",
                 synergy_loss: str = "corrected", synergy_margin: float = 1.0, interaction_loss: bool = True,
                 latent_contrastive: bool = False, perturb_subset: int | None = None,
                 experts: list[str] | None = None, reweighting: str = "mlp", batched: bool = True, **kw: Any):
        super().__init__(dims, n_out=n_out, **kw)
        if perturbation not in PERTURBATIONS:
            raise ValueError(f"perturbation={perturbation!r}; expected one of {PERTURBATIONS}")
        if synergy_loss not in ("corrected", "official"):
            raise ValueError(f"synergy_loss={synergy_loss!r}; expected 'corrected' or 'official'")
        if reweighting not in ("mlp", "global"):
            raise ValueError(f"reweighting={reweighting!r}; expected 'mlp' or 'global'")
        all_names = expert_names(self.modalities)
        self.expert_names = list(experts) if experts else all_names
        unknown = [e for e in self.expert_names if e not in all_names]
        if unknown or len(set(self.expert_names)) != len(self.expert_names):
            raise ValueError(f"experts={experts}: unknown or repeated {unknown}; choose from {all_names}")
        m = len(self.modalities)
        if perturb_subset is not None and not 1 <= perturb_subset <= m:
            raise ValueError(f"perturb_subset={perturb_subset} must be in 1..{m}")
        self.lambda_int, self.perturbation, self.synergy_form = lambda_int, perturbation, synergy_loss
        self.synergy_margin, self.use_interaction = synergy_margin, interaction_loss
        self.latent_contrastive, self.perturb_subset, self.batched = latent_contrastive, perturb_subset, batched
        self.regression = n_out == 1
        proto = FusionBackbone(**self._backbone_kw)
        # official: deepcopy of one backbone, so all experts start from the same weights
        self.experts = nn.ModuleList(copy.deepcopy(proto) for _ in self.expert_names)
        hidden = self._backbone_kw["hidden"]
        self.reweight = (MLPReweighting(m * hidden, len(self.expert_names), hidden_rw, num_layer_rw, temperature_rw)
                         if reweighting == "mlp" else GlobalReweighting(len(self.expert_names), temperature_rw))
        p = self._backbone_kw["num_patches"]
        self.register_buffer("mean_sum", torch.zeros(m, p, hidden))  # running mean of encoded tokens ('mean')
        self.register_buffer("mean_count", torch.zeros(()))

    # -- perturbation ---------------------------------------------------------------------------
    def perturbed_modalities(self) -> list[int]:
        """Which modalities get a perturbed pass this step (all, or a random subset)."""
        m = len(self.modalities)
        if self.perturb_subset is None or self.perturb_subset == m:
            return list(range(m))
        return sorted(torch.randperm(m)[: self.perturb_subset].tolist())

    def replacement(self, tokens: torch.Tensor, i: int) -> torch.Tensor:
        """What modality ``i``'s encoded tokens (B, P, H) are replaced with."""
        x = tokens[:, i]
        if self.perturbation == "random":
            return torch.randn_like(x)
        if self.perturbation == "zero":
            return torch.zeros_like(x)
        mean = self.mean_sum[i] / self.mean_count.clamp_min(1.0)
        return mean.expand_as(x)

    def perturbed_stack(self, tokens: torch.Tensor, idx: list[int]) -> torch.Tensor:
        """(1 + len(idx), B, M, P, H): the full input, then one copy per perturbed modality."""
        views = [tokens]
        for i in idx:
            v = tokens.clone()
            v[:, i] = self.replacement(tokens, i)
            views.append(v)
        return torch.stack(views)

    # -- experts --------------------------------------------------------------------------------
    def run_experts(self, tokens: torch.Tensor, idx: list[int] | None) -> tuple[list[torch.Tensor], list[torch.Tensor], list]:
        """Outputs and latents of every expert: (1 + len(idx), B, ·) each, or (1, B, ·) without idx.

        Each expert draws its own perturbations (as the official code does) and runs all its passes
        as one forward over the stacked batch (``batched``), or pass by pass.
        """
        outs, lats, gates = [], [], []
        for expert in self.experts:
            stack = self.perturbed_stack(tokens, idx) if idx else tokens[None]
            if self.batched:
                o, lat, g = expert(stack.flatten(0, 1))
                o, lat = o.unflatten(0, stack.shape[:2]), lat.unflatten(0, stack.shape[:2])
                g = [g] if g is not None else []
            else:
                res = [expert(s) for s in stack]
                o = torch.stack([r[0] for r in res])
                lat = torch.stack([r[1] for r in res])
                g = [r[2] for r in res if r[2] is not None]
            outs.append(o)
            lats.append(lat)
            gates += g
        return outs, lats, gates

    def interaction_losses(self, outs: list[torch.Tensor], idx: list[int]) -> dict[str, torch.Tensor]:
        """One loss per expert from its (1 + len(idx), B, ·) outputs (or latents)."""
        reg = self.regression and not self.latent_contrastive
        losses = {}
        for name, o in zip(self.expert_names, outs):
            anchor, perturbed = o[0], list(o[1:])
            if name.startswith("uni_"):
                i = self.modalities.index(name[4:])
                if i not in idx:
                    continue  # less-perturbed forward: this modality was not perturbed this step
                k = idx.index(i)
                losses[name] = uniqueness_loss(anchor, perturbed[:k] + perturbed[k + 1:], perturbed[k], reg)
            elif name == "synergy":
                losses[name] = synergy_loss(anchor, perturbed, reg, self.synergy_form, self.synergy_margin)
            else:
                losses[name] = redundancy_loss(anchor, perturbed, reg)
        return losses

    def forward(self, batch: Batch) -> ModelOutput:
        tokens = self.encode(batch)
        train_int = self.training and self.use_interaction and self.lambda_int > 0
        if self.training and self.perturbation == "mean":
            with torch.no_grad():
                self.mean_sum += tokens.detach().mean(0)
                self.mean_count += 1
        idx = self.perturbed_modalities() if train_int else None
        outs, lats, gates = self.run_experts(tokens, idx)
        full = torch.stack([o[0] for o in outs], 1)  # (B, E, n_out)
        w = self.reweight(tokens)  # (B, E)
        y = (full * w.unsqueeze(-1)).sum(1)
        aux = self.zero(y)
        extras: dict[str, Any] = {"expert_weights": w.detach(), "expert_outputs": full.detach()}
        if idx:
            losses = self.interaction_losses(lats if self.latent_contrastive else outs, idx)
            if losses:
                aux = aux + self.lambda_int * torch.stack(list(losses.values())).sum() / len(self.expert_names)
            extras.update({f"int_loss_{k}": v.detach() for k, v in losses.items()})
        if gates:
            aux = aux + self.gate_loss_weight * torch.stack(gates).mean()
        return ModelOutput(self.head_output(y), aux, extras)
