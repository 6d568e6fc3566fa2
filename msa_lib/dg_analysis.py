"""What a trained MIDG / ERM model did on a DG task: routing, invariance, MI proxy, an embedding.

Why a module: the MIDG chapter's figures (F-routing, F-invariance, F-MI) need per-sample internals
from the source domains (valid split) and the unseen ones (test split). They are computed once,
inside `experiments.run_one`'s ``summarise`` callback, and stored in the run record, so the
figures are redrawn from cached runs and the code that made them is part of every run's cache key.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np

from msa_lib.data.schema import MSADataset
from msa_lib.domains import summarise_target
from msa_lib.training import predict

__all__ = ["SENTIMENT_BINS", "routing_shares", "domain_predictability", "summarise_midg"]

#: Sentiment bins on the [-1, 1] scale for the routing-by-sentiment figure.
SENTIMENT_BINS = ("strong −", "−", "neutral", "+", "strong +")
_EDGES = np.array([-1.01, -0.5, -1 / 6, 1 / 6, 0.5, 1.01])


def routing_shares(top1: np.ndarray, n_experts: int, groups: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Share of samples whose top-1 expert is e, per group (a boolean mask per group name)."""
    return {g: (np.bincount(top1[m], minlength=n_experts) / max(1, int(m.sum()))).round(4).tolist()
            for g, m in groups.items() if m.any()}


def domain_predictability(feats: np.ndarray, domains: np.ndarray, folds: int = 5) -> dict[str, float]:
    """Cross-validated accuracy of a linear probe predicting the domain from ``feats``, and its chance.

    The probe is shrinkage LDA (closed form, so fast enough to run after every training run); chance
    is the majority-domain rate. Near chance means the features are domain-invariant.
    """
    counts = np.bincount(domains - domains.min())
    chance = float(counts.max() / len(domains))
    if len(np.unique(domains)) < 2:
        return {"probe_acc": float("nan"), "probe_chance": chance}
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import cross_val_score
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny splits: classes with fewer members than folds
        lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
        acc = float(cross_val_score(lda, feats, domains, cv=int(max(2, min(folds, counts.max())))).mean())
    return {"probe_acc": acc, "probe_chance": chance}


def summarise_midg(embed_points: int = 300, device: str = "cpu") -> Callable[[Any, MSADataset], dict[str, Any]]:
    """A `run_one` callback: `domains.summarise_target` plus what the MIDG figures need.

    From one deterministic pass over valid (source domains) and test (unseen domains): the MI proxy
    per split, top-1 expert shares per domain and per sentiment bin (and the largest share, for
    the collapse check), the model's own discriminator accuracy on the source domains, a linear
    probe's domain accuracy and a 2-D PCA (``embed_points`` samples) of the invariant (MIDG) or
    fused (ERM) features.
    """

    def summarise(model: Any, ds: MSADataset) -> dict[str, Any]:
        dg = ds.provenance.get("dg")
        dom_name = {v: k for k, v in dg["domain_ids"].items()} if dg else {}
        ex: dict[str, list[np.ndarray]] = {}
        dom, lab = [], []
        for split in ("valid", "test"):
            preds, e = predict(model, ds, split, device=device, return_extras=True)
            if split == "test":  # one pass over the test split for the metrics and the figures
                out = summarise_target(model, ds, test_preds=preds)
            sp = ds.split(split)
            for k, v in e.items():
                ex.setdefault(k, []).append(v)
            dom.append(sp.domain if sp.domain is not None else np.full(len(sp), -1 if split == "test" else 0))
            lab.append(sp.labels / max(abs(x) for x in ds.label_range))  # [-1, 1] whatever the dataset's scale
        nv = len(dom[0])
        arr = {k: np.concatenate(v) for k, v in ex.items() if len(v) == 2}
        domains, labels = np.concatenate(dom).astype(int), np.concatenate(lab)
        seen = set(domains[:nv].tolist())

        def name(i: int) -> str:
            return dom_name.get(int(i), f"domain {int(i)}") + ("" if int(i) in seen else " (unseen)")

        if "mi" in arr:
            out["mi"] = {"valid": float(arr["mi"][:nv].mean()), "test": float(arr["mi"][nv:].mean()),
                         **{f"test, {k[3:]}": float(v[nv:].mean()) for k, v in arr.items() if k.startswith("mi:")}}
        if "expert" in arr:
            top, n_e = arr["expert"].astype(int), arr["router"].shape[1]
            which = np.clip(np.digitize(labels, _EDGES) - 1, 0, len(SENTIMENT_BINS) - 1)
            out["routing"] = {
                "by_domain": routing_shares(top, n_e, {name(d): domains == d for d in np.unique(domains)}),
                "by_bin": routing_shares(top, n_e, {b: which == i for i, b in enumerate(SENTIMENT_BINS)}),
                "max_share": float(max(routing_shares(top, n_e, {"all": np.ones_like(top, bool)})["all"])),
                "mean_router": arr["router"].mean(0).round(4).tolist()}
        feats = arr.get("invariant", arr.get("features"))
        if feats is not None:
            inv = domain_predictability(feats, domains)
            if "domain_logits" in arr and getattr(model, "domain_label_mode", "") == "source":
                inv["disc_acc"] = float((arr["domain_logits"][:nv].argmax(1) == domains[:nv]).mean())
                inv["disc_chance"] = float(np.bincount(domains[:nv]).max() / nv)
            out["invariance"] = inv
            from sklearn.decomposition import PCA
            keep = np.sort(np.random.default_rng(0).permutation(len(domains))[:embed_points])
            xy = PCA(2, random_state=0).fit_transform(feats)[keep]
            out["embedding"] = {"xy": xy.round(3).tolist(), "domain": [name(d) for d in domains[keep]]}
        return out

    summarise.__qualname__ = f"summarise_midg[{embed_points}]"
    return summarise
