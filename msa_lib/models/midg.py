"""MIDG: Mixture of Invariant Experts with knowledge injection for Domain Generalisation in MSA
(arXiv 2512.07430).

A *specification-level* reconstruction (``specs/MIDG.md``): there is no official code and no
hyper-parameter table. What the paper states is followed; every other choice is marked **ours**
here, with the reason, and the chapter lists them.

Stated by the paper:

- **Information-entropy decoupling**: each modality's features A^m pass through two encoders,
  giving A^{im} (in-domain) and A^{om} (simulated out-of-domain); a KL-divergence term L_DIS
  minimises their mutual information so that the two take distinct distributions.
- **MoIE** (in-domain branch): concatenate the modalities' A^{im}; a router assigns each input to
  experts; the experts' output goes through a **gradient reversal layer** to a **domain
  discriminator** (adversarial domain invariance); an MLP gives ŷ₁.
- **CM-Adapter** (out-of-domain branch): per target modality, multi-head attention with Q = the
  target and K, V = the other modalities; a gate computed from the target controls how much of the
  injected knowledge is added; the modalities are fused and an MLP gives ŷ₂.
- **Output** ``α·ŷ₁ + β·ŷ₂``.

Ours (each a documented choice, switchable where it matters):

- **Front end** (`SharedWidthEncoders`): a Linear input projection to ``width`` per modality,
  then `SummaryEncoder` (``'mean'`` by default for the CPU budget, ``'gru'`` available). Features
  are utterance-level vectors, as the paper's A^m. With ``source_dims`` (cross-dataset DG, see
  `msa_lib.domains`) the projection is *per dataset*: dataset k's features are the first d_k
  columns of the zero-padded input and get their own ``Linear(d_k, width)``. With
  ``projection='width'`` (default) datasets whose width agrees for a modality share that
  projection (assumed: same feature extractor). This is the only way a held-out target's
  projection is trained at all; ``projection='dataset'`` keeps one per dataset, so a held-out
  target's projection stays at its random initialisation (`untrained_projections` lists those).
- **Posteriors**: each encoder is an MLP giving a diagonal Gaussian (μ, log σ²); log σ² is
  soft-bounded to ±6 by ``6·tanh(·/6)``; reparameterised sample in training, mean in eval.
- **L_DIS**: the paper says "KL divergence". We use the bounded *posterior overlap*
  ``o = exp(−J/d)``, J the symmetric KL (Jeffreys divergence) between the im and om posteriors of
  a sample and d the latent width. Minimising o maximises their KL divergence, as the paper's
  "distinct distributions" asks, but it is bounded in (0, 1]: a raw negative KL is unbounded
  below and is minimised trivially by sending means to infinity or variances to zero. The
  gradient vanishes once the posteriors are apart, so decoupling cannot keep pulling features
  away from the task. o is 1 when the two posteriors coincide (A^{om} duplicates A^{im}) and
  → 0 when they are disjoint. It is reported as the per-sample MI proxy ``extras['mi']`` (B,).
  It is a proxy, not an MI estimate (CLUB would be one). We chose it because it is the paper's
  stated quantity and it needs no auxiliary network whose own training would confound the F-MI
  curve.
- **MoIE** = `SparseMoEFFN` with one token per sample (per-sample top-``top_k`` routing; a
  Switch-style balance loss ``E·Σ_e f_e·P_e``, 1 when balanced, E when collapsed).
  ``use_moie=False`` swaps it for one dense FFN of the same shape as an expert.
- **Domain labels** (``domain_labels``): ``'source'`` = ``batch.domain`` (the source-dataset id or
  the SynthMSA domain) when ``n_domains ≥ 2`` training domains exist; otherwise ``'im_vs_om'``:
  the experts also process A^{om} and the discriminator tells A^{im} from A^{om}, so that the
  experts become invariant to the simulated shift. ``'auto'`` picks ``'source'`` iff
  ``n_domains ≥ 2``. The mode used is ``model.domain_label_mode`` and ``extras['domain_labels']``.
  Domain ids ≥ ``n_domains`` (a held-out target) are ignored by the discriminator loss at
  evaluation and are an error in training.
- **GRL coefficient**: DANN's ramp ``2/(1+exp(−10p))−1``. ``p`` comes from `set_progress` (which
  `training.fit` calls every step), else from an internal step counter over ``expected_steps``.
- **CM-Adapter**: tokens are the per-modality A^{om} vectors. The attention is
  `CrossAttentionBlock` (pre-LN cross-attention + MLP). Its injected update ``inj`` is scaled by
  an element-wise sigmoid gate from the target: ``out = x + g(x) ⊙ inj``. So ``|out − x| ≤ |inj|``
  element-wise. ``use_gate=False`` adds ``inj`` ungated. With one modality there is no other
  modality to inject from, and the adapter is the identity (ŷ₂ is then an MLP on A^{om}).
  Fusion is concatenation.
- **Output**: ``α = β = 0.5`` fixed (the paper gives no values; fixed weights keep both branches
  on the label scale). A branch whose weight is 0 is not computed at all (``alpha=0`` is the
  CM-Adapter-only model). When only one branch runs, ``pred`` is that branch's output
  (``use_adapter=False`` is the MoIE-only model).
- **Loss**: ``aux_loss = λ_dis·L_DIS + λ_adv·CE_domain + λ_lb·L_balance``. The defaults are
  0.1, 0.1 and 0.01 (Switch's balance weight). There are no per-branch task losses: the paper
  supervises only the fused output.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from msa_lib.data.schema import Batch, DataError
from msa_lib.models.base import ModelOutput, MSAModel, register
from msa_lib.nn import MLP, CrossAttentionBlock, SparseMoEFFN, SummaryEncoder, dann_lambda, grad_reverse, masked_mean
from msa_lib.nn.sources import PROJECTIONS, SourceProjection

DOMAIN_LABELS = ("auto", "source", "im_vs_om")
LOGVAR_BOUND = 6.0


# ----------------------------------------------------------------------------------------------
# Front end: per-dataset input projection to a shared width, then a per-modality summary
class SharedWidthEncoders(nn.Module):
    """Input projection to ``width`` (per modality, or per dataset with ``source_dims``), then a
    `SummaryEncoder` per modality → one (B, hidden) vector per modality.

    Without ``source_dims`` the batch's widths must equal ``dims``; a mismatch raises a `DataError`
    naming the modality and both widths. With ``source_dims`` ({domain id: {modality: width}})
    sample i uses the projection of dataset ``batch.domain[i]`` on its first d columns (the rest
    is zero padding, see `msa_lib.domains.project_to_shared`); the padding never reaches the model.
    For ``encoder='mean'`` the frames are pooled before the (linear) projection, which gives the
    same result ~L times faster.
    """

    def __init__(self, dims: dict[str, int], width: int, hidden: int, encoder: str = "mean",
                 source_dims: dict | None = None, projection: str = "width", owner: str = "model"):
        super().__init__()
        if projection not in PROJECTIONS:
            raise ValueError(f"projection={projection!r}; expected one of {PROJECTIONS}")
        self.dims, self.width, self.kind, self.owner = dict(dims), width, encoder, owner
        self.sources = None if source_dims is None else SourceProjection(self.dims, width, source_dims, projection, owner)
        if self.sources is None:
            self.proj = nn.ModuleDict({m: nn.Linear(d, width) for m, d in self.dims.items()})
        self.summary = nn.ModuleDict({m: SummaryEncoder(width, hidden, encoder) for m in self.dims})

    def untrained_projections(self, train_domains: list[int]) -> dict[str, list[int]]:
        """Per modality, the domain ids whose projection no training domain shares (random init)."""
        return {} if self.sources is None else self.sources.untrained(train_domains)

    def check_widths(self, inputs: dict[str, tuple[torch.Tensor, torch.Tensor | None]]) -> None:
        bad = [(m, self.dims[m], int(x.shape[-1])) for m, (x, _) in inputs.items() if x.shape[-1] != self.dims[m]]
        if bad:
            what = "; ".join(f"modality {m!r}: model built for width {e}, batch has {f}" for m, e, f in bad)
            raise DataError(
                f"{self.owner}: feature width mismatch ({what}). Datasets with different feature widths need "
                "per-dataset input projections: combine them with msa_lib.domains.cross_dataset / project_to_shared "
                "and build the model with msa_lib.domains.dg_hparams(ds) (source_dims).")

    def project(self, m: str, x: torch.Tensor, domain: torch.Tensor | None) -> torch.Tensor:
        return self.proj[m](x) if self.sources is None else self.sources(m, x, domain)

    def forward(self, inputs: dict[str, tuple[torch.Tensor, torch.Tensor | None]],
                domain: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self.check_widths(inputs)
        out = {}
        for m, (x, mask) in inputs.items():
            if self.kind == "mean":  # pool, then project: identical for a linear projection, L× cheaper
                out[m] = self.summary[m](self.project(m, masked_mean(x, mask), domain).unsqueeze(1), None)
            else:
                out[m] = self.summary[m](self.project(m, x, domain), mask)
        return out


# ----------------------------------------------------------------------------------------------
# Information-entropy decoupling
class GaussianEncoder(nn.Module):
    """MLP → diagonal Gaussian (μ, log σ²); log σ² soft-bounded to ±6 (ours: keeps KL finite)."""

    def __init__(self, d_in: int, d_z: int, hidden: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.net = MLP(d_in, hidden or d_in, 2 * d_z, 2, dropout)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, lv = self.net(h).chunk(2, -1)
        return mu, LOGVAR_BOUND * torch.tanh(lv / LOGVAR_BOUND)


def jeffreys(mu1: torch.Tensor, lv1: torch.Tensor, mu2: torch.Tensor, lv2: torch.Tensor) -> torch.Tensor:
    """Symmetric KL, KL(p‖q) + KL(q‖p), between diagonal Gaussians, summed over the last dim → (B,)."""
    v1, v2 = lv1.exp(), lv2.exp()
    return 0.5 * (v1 / v2 + v2 / v1 - 2 + (mu1 - mu2).pow(2) * (1 / v1 + 1 / v2)).sum(-1)


def posterior_overlap(mu1: torch.Tensor, lv1: torch.Tensor, mu2: torch.Tensor, lv2: torch.Tensor) -> torch.Tensor:
    """``exp(−J/d)`` in (0, 1]: 1 for identical posteriors, → 0 for disjoint ones (our MI proxy, L_DIS)."""
    return torch.exp(-jeffreys(mu1, lv1, mu2, lv2) / mu1.shape[-1])


class InformationDecoupling(nn.Module):
    """Per modality an im and an om `GaussianEncoder`; returns samples (train) or means (eval) and
    the per-sample overlap per modality. ``decouple=False`` keeps one encoder (A^{om} = A^{im})."""

    def __init__(self, modalities: tuple[str, ...], d_in: int, d_z: int, decouple: bool = True, dropout: float = 0.0):
        super().__init__()
        self.decouple = decouple
        self.im = nn.ModuleDict({m: GaussianEncoder(d_in, d_z, dropout=dropout) for m in modalities})
        self.om = (nn.ModuleDict({m: GaussianEncoder(d_in, d_z, dropout=dropout) for m in modalities})
                   if decouple else None)

    def _draw(self, mu: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * (0.5 * lv).exp() if self.training else mu

    def forward(self, h: dict[str, torch.Tensor]) -> tuple[dict, dict, dict[str, torch.Tensor] | None]:
        z_im, z_om, overlap = {}, {}, {}
        for m, x in h.items():
            mu_i, lv_i = self.im[m](x)
            z_im[m] = self._draw(mu_i, lv_i)
            if self.om is None:
                z_om[m] = z_im[m]
                continue
            mu_o, lv_o = self.om[m](x)
            z_om[m] = self._draw(mu_o, lv_o)
            overlap[m] = posterior_overlap(mu_i, lv_i, mu_o, lv_o)
        return z_im, z_om, overlap if self.om is not None else None


# ----------------------------------------------------------------------------------------------
# MoIE and the CM-Adapter
class MixtureOfInvariantExperts(nn.Module):
    """Router + experts over the concatenated A^{im} (a `SparseMoEFFN` with one token per sample).

    Returns (features, router probabilities (N, E), balance loss, top-1 expert) — the last three
    ``None`` for the dense ablation (``use_moe=False``: one FFN shaped like an expert).
    """

    def __init__(self, dim: int, hidden: int, n_experts: int = 4, top_k: int = 2, dropout: float = 0.0,
                 use_moe: bool = True):
        super().__init__()
        self.moe = SparseMoEFFN(dim, hidden, n_experts, top_k, dropout) if use_moe else None
        self.ffn = None if use_moe else nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                                       nn.Linear(hidden, dim))

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None,
                                                  torch.Tensor | None]:
        if self.moe is None:
            return self.ffn(c), None, None, None
        f = self.moe(c)
        probs = torch.softmax(self.moe.router(c), -1)  # the router's full distribution (what it was given)
        return f, probs, self.moe.aux_loss, self.moe.last_routing


class CrossModalAdapter(nn.Module):
    """Q = the target modality's token, K, V = the other modalities' tokens; gated injection.

    ``out = x + g(x) ⊙ inj`` with ``g = sigmoid(Linear(x))`` element-wise in (0, 1) and ``inj`` the
    update `CrossAttentionBlock` would add (attention + MLP), so ``|out − x| ≤ |inj|``.
    With no other modality the adapter is the identity.
    """

    def __init__(self, d: int, heads: int = 4, dropout: float = 0.0, use_gate: bool = True):
        super().__init__()
        self.block = CrossAttentionBlock(d, heads, 2.0, dropout)
        self.gate = nn.Linear(d, d) if use_gate else None

    def forward(self, x: torch.Tensor, others: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """x (B, d), others (B, K, d) → (out (B, d), gate (B, d) or None, injected update (B, d))."""
        if others.shape[1] == 0:
            return x, None, torch.zeros_like(x)
        inj = self.block(x.unsqueeze(1), others)[:, 0] - x
        if self.gate is None:
            return x + inj, None, inj
        g = torch.sigmoid(self.gate(x))
        return x + g * inj, g, inj


# ----------------------------------------------------------------------------------------------
# The models
@register("midg")
class MIDG(MSAModel):
    """MIDG: decoupling → (MoIE + GRL/discriminator → ŷ₁) and (CM-Adapter → ŷ₂); ``α·ŷ₁ + β·ŷ₂``.

    Ablations (T-ablation): ``use_decoupling=False`` (one encoder, L_DIS = 0), ``use_moie=False``
    (plain FFN), ``use_grl=False`` (no GRL/discriminator), ``use_adapter=False`` (ŷ₁ only),
    ``use_gate=False`` (ungated adapter), ``alpha``/``beta`` (``alpha=0``: CM-Adapter only).
    Cross-dataset DG: pass ``source_dims``/``n_domains`` from `msa_lib.domains.dg_hparams`.
    Call `set_progress` (``training.fit`` does) to drive the GRL ramp.
    """

    def __init__(self, dims: dict[str, int], n_out: int = 1, modalities=None, hidden: int = 64, d_latent: int = 32,
                 encoder: str = "mean", source_dims: dict | None = None, projection: str = "width",
                 n_experts: int = 4, top_k: int = 2, expert_hidden: int | None = None, heads: int = 4,
                 dropout: float = 0.1, use_decoupling: bool = True, use_moie: bool = True, use_grl: bool = True,
                 use_adapter: bool = True, use_gate: bool = True, alpha: float = 0.5, beta: float = 0.5,
                 lambda_dis: float = 0.1, lambda_adv: float = 0.1, lambda_lb: float = 0.01,
                 domain_labels: str = "auto", n_domains: int = 1, expected_steps: int = 1000):
        super().__init__(dims, modalities, n_out)
        if domain_labels not in DOMAIN_LABELS:
            raise ValueError(f"domain_labels={domain_labels!r}; expected one of {DOMAIN_LABELS}")
        if alpha < 0 or beta < 0 or not (math.isfinite(alpha) and math.isfinite(beta)):
            raise ValueError(f"alpha and beta must be finite and >= 0; got alpha={alpha}, beta={beta}")
        if n_domains < 1 or expected_steps < 1:
            raise ValueError(f"n_domains and expected_steps must be >= 1; got {n_domains}, {expected_steps}")
        if domain_labels == "source" and n_domains < 2:
            raise ValueError(f"domain_labels='source' needs n_domains >= 2 training domains (got {n_domains}); "
                             "use 'im_vs_om' (or 'auto') with a single source")
        self.branch1 = alpha > 0
        self.branch2 = use_adapter and beta > 0
        if not (self.branch1 or self.branch2):
            raise ValueError(f"MIDG needs at least one branch: alpha={alpha}, beta={beta}, use_adapter={use_adapter}")
        m = len(self.modalities)
        if self.branch2 and m > 1 and d_latent % heads:
            raise ValueError(f"d_latent={d_latent} must be divisible by heads={heads} (CM-Adapter attention)")
        self.alpha, self.beta = float(alpha), float(beta)
        self.lambda_dis, self.lambda_adv, self.lambda_lb = lambda_dis, lambda_adv, lambda_lb
        self.use_decoupling, self.use_grl = use_decoupling, use_grl and self.branch1
        self.n_domains, self.expected_steps = int(n_domains), int(expected_steps)
        mode = ("source" if n_domains >= 2 else "im_vs_om") if domain_labels == "auto" else domain_labels
        self.domain_label_mode = mode if self.use_grl else "none"
        self._progress: float | None = None
        self._steps = 0

        self.encoders = SharedWidthEncoders(self.dims, hidden, hidden, encoder, source_dims, projection, "midg")
        self.decouple = InformationDecoupling(self.modalities, hidden, d_latent, use_decoupling, dropout)
        fused = m * d_latent
        if self.branch1:
            self.moie = MixtureOfInvariantExperts(fused, expert_hidden or 2 * fused, n_experts, top_k, dropout,
                                                  use_moie)
            self.head1 = MLP(fused, hidden, n_out, 2, dropout)
            if self.use_grl:
                n_cls = self.n_domains if mode == "source" else 2
                self.discriminator = MLP(fused, hidden, n_cls, 2, dropout)
        if self.branch2:
            self.adapter = nn.ModuleDict({mod: CrossModalAdapter(d_latent, heads, dropout, use_gate)
                                          for mod in self.modalities})
            self.head2 = MLP(fused, hidden, n_out, 2, dropout)

    # -- GRL schedule -------------------------------------------------------------------------
    def set_progress(self, p: float) -> None:
        """Training progress in [0, 1] (fraction of planned steps); drives the DANN ramp."""
        self._progress = min(1.0, max(0.0, float(p)))

    def progress(self) -> float:
        if self._progress is not None:
            return self._progress
        return min(1.0, self._steps / self.expected_steps)

    def grl_lambda(self) -> float:
        return dann_lambda(self.progress())

    def untrained_projections(self, train_domains: list[int]) -> dict[str, list[int]]:
        return self.encoders.untrained_projections(train_domains)

    # -- forward ------------------------------------------------------------------------------
    def _domain_loss(self, f_all: torch.Tensor, batch: Batch, n: int, extras: dict[str, Any]) -> torch.Tensor | None:
        lam = self.grl_lambda()
        logits = self.discriminator(grad_reverse(f_all, lam))
        if self.domain_label_mode == "source":
            if batch.domain is None:
                raise DataError("midg: domain_labels='source' needs batch.domain (dataset/domain id per sample); "
                                "this batch has none. Use domain_labels='im_vs_om' for a single source")
            labels = batch.domain.to(logits.device)
            valid = (labels >= 0) & (labels < self.n_domains)
            if self.training and not bool(valid.all()):
                bad = sorted(set(labels[~valid].tolist()))
                raise DataError(f"midg: training batch has domain id(s) {bad} outside [0, n_domains={self.n_domains}); "
                                "set n_domains to the number of training domains (msa_lib.domains.dg_hparams)")
        else:
            labels = torch.arange(2, device=logits.device).repeat_interleave(n)  # n zeros (im), n ones (om)
            valid = torch.ones_like(labels, dtype=torch.bool)
        extras["domain_logits"] = logits[:n].detach()
        extras["grl_lambda"] = logits.new_tensor(lam)
        if not bool(valid.any()):
            extras["disc_acc"] = logits.new_tensor(float("nan"))
            return None
        lv, yv = logits[valid], labels[valid]
        extras["disc_acc"] = (lv.argmax(-1) == yv).float().mean().detach()
        ce = F.cross_entropy(lv, yv)
        extras["adv_loss"] = ce.detach()
        return ce

    def forward(self, batch: Batch) -> ModelOutput:
        h = self.encoders(self.inputs(batch), batch.domain)
        z_im, z_om, overlap = self.decouple(h)
        ref = next(iter(h.values()))
        n = ref.shape[0]
        aux = self.zero(ref)
        extras: dict[str, Any] = {"domain_labels": self.domain_label_mode}
        if overlap is not None:
            mi = torch.stack(list(overlap.values())).mean(0)  # (B,)
            l_dis = mi.mean()
            aux = aux + self.lambda_dis * l_dis
            extras.update({"mi": mi.detach(), "mi_mean": l_dis.detach()})
            extras.update({f"mi:{m}": o.detach() for m, o in overlap.items()})
        ys = []
        if self.branch1:
            c = torch.cat([z_im[m] for m in self.modalities], -1)
            two = self.use_grl and self.domain_label_mode == "im_vs_om"
            c_all = torch.cat([c, torch.cat([z_om[m] for m in self.modalities], -1)]) if two else c
            f_all, probs, balance, top1 = self.moie(c_all)
            f = f_all[:n]
            y1 = self.head_output(self.head1(f))
            ys.append((self.alpha, y1))
            extras.update({"invariant": f.detach(), "y1": y1.detach()})
            if probs is not None:
                extras.update({"router": probs[:n].detach(), "expert": top1[:n].float(), "lb_loss": balance.detach()})
                aux = aux + self.lambda_lb * balance
            if self.use_grl:
                ce = self._domain_loss(f_all, batch, n, extras)
                if ce is not None:
                    aux = aux + self.lambda_adv * ce
        if self.branch2:
            outs = []
            for m in self.modalities:
                others = [z_om[k] for k in self.modalities if k != m]
                src = torch.stack(others, 1) if others else z_om[m].new_zeros(n, 0, z_om[m].shape[-1])
                o, g, _ = self.adapter[m](z_om[m], src)
                outs.append(o)
                if g is not None:
                    extras[f"gate:{m}"] = g.mean(-1).detach()
            y2 = self.head_output(self.head2(torch.cat(outs, -1)))
            ys.append((self.beta, y2))
            extras["y2"] = y2.detach()
        pred = ys[0][1] if len(ys) == 1 else ys[0][0] * ys[0][1] + ys[1][0] * ys[1][1]
        if self.training:
            self._steps += 1
        return ModelOutput(pred, aux, extras)


@register("midg_erm")
class ERM(MSAModel):
    """The ERM baseline of the DG tables: MIDG's front end (projection + summary), concatenation,
    an MLP head; no decoupling, MoIE, GRL or adapter. ``extras['features']`` is the fused vector
    (for the same t-SNE as MIDG's invariant features)."""

    def __init__(self, dims: dict[str, int], n_out: int = 1, modalities=None, hidden: int = 64,
                 encoder: str = "mean", source_dims: dict | None = None, projection: str = "width",
                 dropout: float = 0.1):
        super().__init__(dims, modalities, n_out)
        self.encoders = SharedWidthEncoders(self.dims, hidden, hidden, encoder, source_dims, projection, "midg_erm")
        self.head = MLP(len(self.modalities) * hidden, hidden, n_out, 2, dropout)

    def untrained_projections(self, train_domains: list[int]) -> dict[str, list[int]]:
        return self.encoders.untrained_projections(train_domains)

    def forward(self, batch: Batch) -> ModelOutput:
        h = self.encoders(self.inputs(batch), batch.domain)
        z = torch.cat([h[m] for m in self.modalities], -1)
        y = self.head(z)
        return ModelOutput(self.head_output(y), self.zero(y), {"features": z.detach()})
