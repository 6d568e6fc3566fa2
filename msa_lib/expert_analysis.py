"""What a mixture of experts did on a split: per-sample expert weights and outputs, disagreement,
each expert alone vs the ensemble, and whether the weights recover SynthMSA's true interaction type.

Why a module: I2MoE's interpretability claims (paper Fig. 4, Table 3, Section 5.4) are statements
about these quantities. Computing them once, from a model's ``extras`` (``expert_weights`` (B, E)
and ``expert_outputs`` (B, E, C)), lets `run_one` store them in each cached run record (as a
``summarise`` callback) and lets every MoE chapter reuse them.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.stats import spearmanr

from msa_lib.data.schema import INTERACTION_TYPES, MSADataset
from msa_lib.experiments import accuracy_by_group
from msa_lib.training import predict

# SynthMSA's interaction types → the I2MoE expert that should handle them
TYPE_TO_EXPERT = {"uniq_text": "uni_text", "uniq_audio": "uni_audio", "uniq_vision": "uni_vision",
                  "redundancy": "redundancy", "synergy": "synergy"}


def _decisions(out: np.ndarray) -> np.ndarray:
    """Binary decisions: argmax of logits (…, C) or the sign (≥ 0 positive) of scores (…,)."""
    return out.argmax(-1) if out.ndim >= 2 and out.shape[-1] > 1 else (np.squeeze(out) >= 0).astype(int)


def _truth(labels: np.ndarray, classification: bool) -> np.ndarray:
    """Label ≤ 0 is negative for I2MoE's classification; Has0 (≥ 0 positive) for regression."""
    return (labels > 0).astype(int) if classification else (labels >= 0).astype(int)


def disagreement(outputs: np.ndarray, pred: np.ndarray, labels: np.ndarray, classification: bool) -> dict[str, float]:
    """The paper's Table 3: % of samples where the experts' decisions differ, and the ensemble's
    accuracy on the agree and disagree subsets (NaN for an empty subset)."""
    dec = _decisions(outputs if outputs.ndim == 3 else outputs[..., None])  # (N, E)
    dis = dec.min(1) != dec.max(1)
    hit = _decisions(pred) == _truth(labels, classification)
    return {"disagree_frac": float(dis.mean()),
            "acc_agree": float(hit[~dis].mean()) if (~dis).any() else float("nan"),
            "acc_disagree": float(hit[dis].mean()) if dis.any() else float("nan"),
            "wrong_on_disagree": float(1 - hit[dis].mean()) if dis.any() else float("nan")}


def expert_accuracies(outputs: np.ndarray, pred: np.ndarray, labels: np.ndarray, names: list[str],
                      classification: bool) -> dict[str, float]:
    """Accuracy of each expert alone (its own output on the full input) and of the weighted ensemble."""
    truth = _truth(labels, classification)
    acc = {n: float((_decisions(outputs[:, k]) == truth).mean()) for k, n in enumerate(names)}
    acc["ensemble"] = float((_decisions(pred) == truth).mean())
    return acc


def weights_by_type(weights: np.ndarray, interaction: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    """Mean expert weight per true interaction type: {type: {expert: mean weight}}."""
    out = {}
    for t, tname in enumerate(INTERACTION_TYPES):
        sel = interaction == t
        if sel.any():
            out[tname] = {n: float(weights[sel, k].mean()) for k, n in enumerate(names)}
    return out


def recovery_scores(weights: np.ndarray, interaction: np.ndarray, names: list[str]) -> dict[str, float]:
    """Do the weights single out the true interaction type?

    - ``spearman``: for each expert with a matching type, Spearman ρ over samples between its weight
      and the indicator "this sample is of my type"; averaged over experts (0 = no recovery).
    - ``top1_match``: fraction of samples whose highest-weighted expert is the one for their type
      (chance = 1 / number of experts).
    - ``chance``: that chance level.
    """
    rhos = []
    match = np.zeros(len(weights), dtype=bool)
    top = weights.argmax(1)
    for t, tname in enumerate(INTERACTION_TYPES):
        expert = TYPE_TO_EXPERT.get(tname)
        if expert not in names:
            continue
        k = names.index(expert)
        ind = (interaction == t).astype(float)
        if 0 < ind.sum() < len(ind) and np.ptp(weights[:, k]) > 0:
            rhos.append(float(spearmanr(weights[:, k], ind).statistic))
        elif 0 < ind.sum() < len(ind):
            rhos.append(0.0)  # constant weights carry no ranking information
        match |= (interaction == t) & (top == k)
    return {"spearman": float(np.mean(rhos)) if rhos else float("nan"),
            "top1_match": float(match.mean()), "chance": 1.0 / len(names)}


def summarise_experts(classification: bool, split: str = "test", keep_weights: bool = True,
                      device: str = "cpu") -> Callable[[Any, MSADataset], dict[str, Any]]:
    """A `run_one` ``summarise`` callback storing the expert analyses in the run record.

    Every model gets ``acc_by_interaction`` (polarity accuracy per true SynthMSA type, when known);
    models exposing ``expert_weights`` / ``expert_outputs`` get the expert analyses too, named by
    the model's ``expert_names``. With ``keep_weights`` the per-sample weights (4 decimals) are kept
    too, for weight-distribution figures.
    """
    def summarise(model, ds: MSADataset) -> dict[str, Any]:
        sp = ds.split(split)
        pred, extras = predict(model, ds, split, device=device, return_extras=True)
        res: dict[str, Any] = {}
        if sp.interaction is not None:
            hit = _decisions(pred) == _truth(sp.labels, classification)
            res["acc_by_interaction"] = accuracy_by_group(hit, sp.interaction, INTERACTION_TYPES)
        if "expert_weights" not in extras:
            return res  # not a mixture (a baseline in the same grid): only the per-type accuracy
        w, outs = extras["expert_weights"], extras["expert_outputs"]
        en = list(getattr(model, "expert_names", None) or [f"expert_{k}" for k in range(w.shape[1])])
        res.update({"expert_names": en,
                    "expert_acc": expert_accuracies(outs, pred, sp.labels, en, classification),
                    "disagreement": disagreement(outs, pred, sp.labels, classification),
                    "mean_weights": dict(zip(en, w.mean(0).round(6).tolist()))})
        if sp.interaction is not None:
            res["weights_by_type"] = weights_by_type(w, sp.interaction, en)
            res["recovery"] = recovery_scores(w, sp.interaction, en)
        if keep_weights:
            res["weights"] = w.round(4).tolist()
            res["interaction"] = sp.interaction.tolist() if sp.interaction is not None else None
        return res
    summarise.__qualname__ = f"summarise_experts[{split},{classification},{keep_weights}]"
    return summarise


# ----------------------------------------------------------------------------------------------
# Sample-routed MoE (TEXT): expert load, routing by sentiment, and the official evaluation's spread
def routing_summary(model, ds: MSADataset, split: str = "test", bins: tuple[float, ...] = (-3.01, -1.5, -0.5, 0.5, 1.5, 3.01),
                    device: str = "cpu") -> dict[str, Any]:
    """Expert load (share of the routing weight each expert gets, per layer) and the mean weight per
    expert by sentiment bin (layer 0), from a deterministic pass; needs ``extras['routing']`` (B, depth, E)."""
    _, extras = predict(model, ds, split, device=device, return_extras=True)
    if "routing" not in extras:
        return {}
    r = extras["routing"]  # (N, depth, E)
    labels = ds.split(split).labels
    lo, hi = float(np.min(labels)), float(np.max(labels))
    edges = np.asarray(bins, dtype=float) if hi > 1.01 or lo < -1.01 else np.linspace(-1.01, 1.01, 6)
    which = np.clip(np.digitize(labels, edges) - 1, 0, len(edges) - 2)
    names = [f"[{edges[i]:.1f}, {edges[i + 1]:.1f})" for i in range(len(edges) - 1)]
    by_bin = {names[b]: r[which == b, 0].mean(0).round(6).tolist() for b in range(len(names)) if (which == b).any()}
    return {"load": r.mean(0).round(6).tolist(), "by_bin": by_bin, "bin_counts": {names[b]: int((which == b).sum())
                                                                                   for b in range(len(names))}}


def evaluation_spread(model, ds: MSADataset, metrics: tuple[str, ...], repeats: int = 10,
                      batch_sizes: tuple[int | None, ...] = (1, 64, None), split: str = "test",
                      device: str = "cpu", seed: int = 0) -> dict[str, Any]:
    """How much the official TEXT evaluation (router noise and capacity kept at test time) moves a
    model's test metrics: ``repeats`` evaluations at batch 64, one per batch size (None = the whole
    split), and the deterministic evaluation for reference. Needs a model with ``official_eval``."""
    import torch

    from msa_lib.metrics import regression_metrics
    if not hasattr(model, "official_eval"):
        raise AttributeError(f"{type(model).__name__} has no official_eval switch")
    labels = ds.split(split).labels
    n = len(labels)

    def score(bs: int | None) -> dict[str, float]:
        p = predict(model, ds, split, batch_size=bs or n, device=device)
        m = regression_metrics(p, labels, ds.metric_family)
        return {k: float(m[k]) for k in metrics}

    old = model.official_eval
    try:
        model.official_eval = False
        det = score(64)
        model.official_eval = True
        torch.manual_seed(seed)
        reps = [score(64) for _ in range(repeats)]
        by_bs = {str(bs or "full"): score(bs) for bs in batch_sizes}
    finally:
        model.official_eval = old
    return {"deterministic": det, "repeats": reps, "by_batch_size": by_bs}


def summarise_text(metrics: tuple[str, ...], official_eval_repeats: int = 0, device: str = "cpu"):
    """`run_one` summarise callback for TEXT runs: routing summary, and (when ``official_eval_repeats``)
    the official evaluation's spread and batch dependence."""
    def summarise(model, ds: MSADataset) -> dict[str, Any]:
        res: dict[str, Any] = {"routing": routing_summary(model, ds, device=device)}
        if official_eval_repeats and hasattr(model, "official_eval"):
            res["eval_spread"] = evaluation_spread(model, ds, metrics, official_eval_repeats, device=device)
        return res
    summarise.__qualname__ = f"summarise_text[{','.join(metrics)},{official_eval_repeats}]"
    return summarise
