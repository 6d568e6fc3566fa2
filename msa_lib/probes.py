"""Linear probes that check SynthMSA does what it says.

Why: a synthetic benchmark is only useful if its ground truth is *verifiably* in the features.
These probes measure, with sklearn, how well each modality alone (and all jointly) predicts the
sentiment polarity per interaction type, and how a domain shift degrades a probe trained on one
domain. The data chapter plots them; the tests assert them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from msa_lib.data.schema import INTERACTION_TYPES, Split


def pooled(split: Split, modality: str) -> np.ndarray:
    """Masked mean over time: the (N, d) summary a pooling baseline sees."""
    x = getattr(split, modality)
    if x is None:
        raise ValueError(f"split has no {modality!r} modality")
    m = split.mask(modality).astype(np.float32)[..., None]
    return (x * m).sum(1) / np.maximum(m.sum(1), 1.0)


def _probe(kind: str, seed: int):
    if kind == "linear":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
    if kind == "mlp":
        return make_pipeline(StandardScaler(), MLPClassifier((64,), max_iter=600, alpha=1e-2, random_state=seed))
    raise ValueError(f"unknown probe kind {kind!r}; use 'linear' or 'mlp'")


def probe_accuracy(x: np.ndarray, y: np.ndarray, kind: str = "linear", folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of predicting binary ``y`` from ``x``."""
    if len(np.unique(y)) < 2 or len(y) < 2 * folds:
        return float("nan")
    return float(cross_val_score(_probe(kind, seed), x, y, cv=folds).mean())


def probe_by_interaction(split: Split, modalities: tuple[str, ...] = ("text", "audio", "vision"),
                         kind: str = "linear", joint_kind: str = "mlp", seed: int = 0,
                         max_dim: int = 64) -> pd.DataFrame:
    """Polarity (label > 0) probe accuracy per interaction type × modality, plus a joint probe.

    High-dimensional modalities are reduced to their first ``max_dim`` principal directions so the
    probe is not starved of samples. Columns: interaction, modality, accuracy, n.
    """
    if split.interaction is None:
        raise ValueError("probe_by_interaction needs ground-truth interaction types (a SynthMSA split)")
    feats = {m: _reduce(pooled(split, m), max_dim, seed) for m in modalities}
    y = (split.labels > 0).astype(int)
    rows = []
    for k, name in enumerate(INTERACTION_TYPES):
        idx = np.flatnonzero(split.interaction == k)
        if len(idx) == 0:
            continue
        for m in modalities:
            rows.append({"interaction": name, "modality": m, "accuracy": probe_accuracy(feats[m][idx], y[idx], kind, seed=seed),
                         "n": len(idx)})
        joint = np.concatenate([feats[m][idx] for m in modalities], 1)
        rows.append({"interaction": name, "modality": "joint (" + joint_kind + ")",
                     "accuracy": probe_accuracy(joint, y[idx], joint_kind, seed=seed), "n": len(idx)})
    return pd.DataFrame(rows)


def _reduce(x: np.ndarray, max_dim: int, seed: int) -> np.ndarray:
    if x.shape[1] <= max_dim:
        return x
    xc = x - x.mean(0)
    # Randomised-free exact PCA via SVD on the (N, d) matrix; N is at most a few thousand here.
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    return xc @ vt[:max_dim].T


def domain_shift_probe(train: Split, test: Split, modalities: tuple[str, ...] = ("text", "audio", "vision"),
                       kind: str = "linear", seed: int = 0) -> float:
    """Polarity accuracy on ``test`` of a probe fitted on ``train`` (pooled features of all modalities)."""
    xtr = np.concatenate([pooled(train, m) for m in modalities], 1)
    xte = np.concatenate([pooled(test, m) for m in modalities], 1)
    clf = _probe(kind, seed).fit(xtr, (train.labels > 0).astype(int))
    return float(clf.score(xte, (test.labels > 0).astype(int)))


def emotion_sentiment_corr(split: Split, names: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Pearson correlations among the six emotion intensities and the sentiment label."""
    from msa_lib.data.schema import EMOTIONS
    if split.emotions is None:
        raise ValueError("split has no emotion intensities")
    df = pd.DataFrame(split.emotions, columns=list(names or EMOTIONS))
    df.insert(0, "sentiment", split.labels)
    return df.corr()


def joint_poly_probe(split: Split, idx: np.ndarray, modalities: tuple[str, ...] = ("text", "audio", "vision"),
                     n_components: int = 6, seed: int = 0, folds: int = 5) -> float:
    """Polarity accuracy of a *joint* probe with pairwise products of the modalities' top components.

    A linear probe on concatenated features cannot express sign(u)·sign(v); adding degree-2
    products of each modality's first principal directions can, cheaply. This is how the chapter
    shows that synergy is visible jointly.
    """
    from sklearn.preprocessing import PolynomialFeatures
    x = np.concatenate([_reduce(pooled(split, m)[idx], n_components, seed) for m in modalities], 1)
    x2 = PolynomialFeatures(2, include_bias=False).fit_transform(StandardScaler().fit_transform(x))
    return probe_accuracy(x2, (split.labels[idx] > 0).astype(int), "linear", folds, seed)


def synergy_visibility(split: Split, seed: int = 0) -> dict[str, float]:
    """On synergy samples: polarity accuracy of each single modality and of the joint product probe."""
    idx = np.flatnonzero(split.interaction == INTERACTION_TYPES.index("synergy"))
    y = (split.labels[idx] > 0).astype(int)
    out = {m: probe_accuracy(_reduce(pooled(split, m)[idx], 64, seed), y, "linear", seed=seed)
           for m in ("text", "audio", "vision")}
    out["joint"] = joint_poly_probe(split, idx, seed=seed)
    return out


def domain_shift_curve(shifts: list[float], seeds: list[int], preset: str = "mosi",
                       scale: float = 1.0) -> pd.DataFrame:
    """Probe trained on domain 0, scored on domain 0 (in-domain) and on domain 1 (unseen), per shift."""
    from msa_lib.data.synth import domain_split, make_synth
    rows = []
    for shift in shifts:
        for seed in seeds:
            ds = make_synth(preset, seed=seed, scale=scale, n_domains=2, domain_shift=float(shift))
            src = domain_split(ds, [0], [0])
            tgt = domain_split(ds, [0], [1])
            rows.append({"shift": float(shift), "seed": seed, "test domain": "in-domain (0)",
                         "accuracy": domain_shift_probe(src.train, src.test, seed=seed)})
            rows.append({"shift": float(shift), "seed": seed, "test domain": "unseen (1)",
                         "accuracy": domain_shift_probe(src.train, tgt.test, seed=seed)})
    return pd.DataFrame(rows)


def oracle_ceiling(seeds: list[int], preset: str = "mosi", scale: float = 1.0, n_train: int = 10000) -> pd.DataFrame:
    """What a model that reads every cue *perfectly* could reach: regressors on the hidden messages.

    The messages (one scalar per modality) are SynthMSA's ground truth before they are written into
    noisy sequences. A linear regressor on them bounds what linear fusion of perfectly read cues can
    do; gradient boosting approximates the Bayes-optimal fusion (it can learn that agreeing
    modalities signal redundancy and that the audio × vision product carries synergy). Test sets
    are those of ``make_synth(preset, seed)``. Returns one row per (seed, oracle) with MMSA metrics.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression

    from msa_lib.data.synth import make_synth_with_truth
    from msa_lib.metrics import regression_metrics
    rows = []
    for seed in seeds:
        # More training samples than the preset: the oracle's ceiling should not be limited by n.
        ds, truth = make_synth_with_truth(preset, seed=seed, scale=scale, n_train=n_train,
                                          dims=(16, 5, 20) if preset == "mosi" else None)
        for name, reg in (("linear", LinearRegression()),
                          ("gradient boosting", HistGradientBoostingRegressor(max_iter=200, random_state=seed))):
            reg.fit(truth["train"]["messages"], ds.train.labels)
            m = regression_metrics(reg.predict(truth["test"]["messages"]), ds.test.labels, ds.metric_family)
            rows.append({"seed": seed, "oracle": name, **m})
    return pd.DataFrame(rows)
