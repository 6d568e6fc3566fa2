"""Multi-task analyses for the MMoLRE chapter: emotion scores, per-task routing, gradient conflict.

Why a module: the training loop only selects on sentiment (the MMSA protocol), so what the ER head,
the per-task routers and the two losses' gradients did is summarised after training, inside
`experiments.run_one`'s ``summarise`` callback. The summaries are stored in the run records and the
chapter's tables and figures are drawn from cached runs.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from msa_lib.data.schema import MSADataset
from msa_lib.metrics import emotion_metrics
from msa_lib.training import predict

__all__ = ["emotion_scores", "task_routing", "routing_divergence", "gradient_conflict", "summarise_mmolre"]


def _extras(model: nn.Module, ds: MSADataset, split: str, device: str,
            extras: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    return extras if extras is not None else predict(model, ds, split, device=device, return_extras=True)[1]


def emotion_scores(model: nn.Module, ds: MSADataset, split: str = "test", device: str = "cpu",
                   extras: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Per-emotion weighted accuracy and F1 (`metrics.emotion_metrics`) of the ER head on ``split``.

    The head's sigmoid probabilities are thresholded at 0.5; an emotion is truly present when its
    intensity is > 0. Empty when the model has no ER head or the split has no emotion labels (MOSI).
    ``extras``: the split's `training.predict` extras, when the caller already has them.
    """
    sp = ds.split(split)
    if sp.emotions is None:
        return {}
    extras = _extras(model, ds, split, device, extras)
    if "emotion_logits" not in extras:
        return {}
    probs = 1.0 / (1.0 + np.exp(-extras["emotion_logits"]))
    return emotion_metrics(probs, sp.emotions, preds_are_probs=True)


def task_routing(model: nn.Module, ds: MSADataset, split: str = "test", device: str = "cpu",
                 extras: dict[str, np.ndarray] | None = None) -> dict[str, list[float]]:
    """Mean router weight per expert for every ``router:<modality>/block<b>/<task>`` output on ``split``."""
    extras = _extras(model, ds, split, device, extras)
    return {k.removeprefix("router:"): [round(float(v), 6) for v in w.mean(0)]
            for k, w in extras.items() if k.startswith("router:")}


def routing_divergence(routing: dict[str, list[float]], tasks: tuple[str, str] = ("sa", "er")) -> dict[str, float]:
    """Jensen-Shannon divergence (bits, in [0, 1]) between the two tasks' mean routing, per modality/block.

    0 means both tasks use the experts identically; 1 means disjoint experts.
    """
    from scipy.spatial.distance import jensenshannon
    out = {}
    for key, w in routing.items():
        site, _, task = key.rpartition("/")
        other = f"{site}/{tasks[1]}"
        if task == tasks[0] and other in routing:
            out[site] = round(float(jensenshannon(w, routing[other], base=2) ** 2), 6)
    return out


def gradient_conflict(model: nn.Module, ds: MSADataset, split: str = "train", n_batches: int = 8,
                      batch_size: int = 64, loss: str = "l1", device: str = "cpu") -> dict[str, Any]:
    """Cosine between the gradients of the SA loss and the ER loss on the parameters both reach.

    Why: "shared + task-specific experts avoid the parameter conflicts of multi-task learning" is a
    statement about gradients. Negative cosines mean the tasks pull the shared weights in opposite
    directions. The SA loss is the training loss on ``pred`` (``loss``: l1 | mse); the ER loss is the
    model's ``aux_loss`` (λ_ER · BCE; the cosine does not depend on λ_ER). The shared parameters are
    found, not named: those with a non-zero gradient from both losses. Dropout is off (eval mode), the
    batches are the first ``n_batches`` of ``split`` in order, and the cosine is averaged over them.
    ``by_module`` splits the cosine by top-level module (e.g. ``proj``, ``unitse``).
    Empty when the split has no emotion labels or the model does not train an ER loss.
    """
    sp = ds.split(split)
    if sp.emotions is None:
        return {}
    fn = {"l1": nn.functional.l1_loss, "mse": nn.functional.mse_loss}[loss]
    was_training = model.training
    model.eval()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    cos, cos_mod, n_shared = [], {}, 0
    try:
        for i, batch in enumerate(ds.loader(split, batch_size, shuffle=False, device=device)):
            if i >= n_batches:
                break
            out = model(batch)
            if not (out.pred.requires_grad and out.aux_loss.requires_grad):  # a single-task model
                return {}
            g_sa = torch.autograd.grad(fn(out.pred, batch.labels), [p for _, p in params], retain_graph=True,
                                       allow_unused=True)
            g_er = torch.autograd.grad(out.aux_loss, [p for _, p in params], allow_unused=True)
            both = [(n, a.flatten(), b.flatten()) for (n, _), a, b in zip(params, g_sa, g_er)
                    if a is not None and b is not None and a.abs().sum() > 0 and b.abs().sum() > 0]
            if not both:
                return {}
            n_shared = sum(a.numel() for _, a, _ in both)
            cos.append(float(nn.functional.cosine_similarity(torch.cat([a for _, a, _ in both]),
                                                             torch.cat([b for _, _, b in both]), dim=0)))
            for mod in dict.fromkeys(n.split(".")[0] for n, _, _ in both):
                a = torch.cat([x for n, x, _ in both if n.split(".")[0] == mod])
                b = torch.cat([y for n, _, y in both if n.split(".")[0] == mod])
                cos_mod.setdefault(mod, []).append(float(nn.functional.cosine_similarity(a, b, dim=0)))
    finally:
        model.train(was_training)
    c = np.array(cos)
    return {"cosine": round(float(c.mean()), 6), "cosine_std": round(float(c.std()), 6),
            "frac_negative": round(float((c < 0).mean()), 6), "n_batches": len(c), "n_shared_params": int(n_shared),
            "by_module": {m: round(float(np.mean(v)), 6) for m, v in cos_mod.items()}}


def summarise_mmolre(loss: str = "l1", conflict_batches: int = 8) -> Callable[[nn.Module, MSADataset], dict[str, Any]]:
    """A `run_one` summarise callback: ER scores (test), per-task routing (test) and gradient conflict (train)."""

    def summarise(model: nn.Module, ds: MSADataset) -> dict[str, Any]:
        _, extras = predict(model, ds, "test", return_extras=True)  # one pass for both summaries
        routing = task_routing(model, ds, "test", extras=extras)
        return {"er": emotion_scores(model, ds, "test", extras=extras), "routing": routing,
                "routing_js": routing_divergence(routing),
                "conflict": gradient_conflict(model, ds, "train", conflict_batches, loss=loss)}

    summarise.__qualname__ = f"summarise_mmolre[{loss},{conflict_batches}]"
    return summarise
