"""Evaluation metrics, reproducing the MSA community's definitions exactly.

Why this module is so literal: numbers in multimodal sentiment analysis (MSA) papers are compared
across papers, and those comparisons only mean something if everyone computes the *same* metric.
The de-facto definitions are those of the MMSA toolkit (``thuiar/MMSA``, ``utils/metricsTop.py``).
Small-looking choices change the reported numbers by whole points: whether a zero label counts as
positive (Has0) or is dropped (Non0), numpy's round-half-to-even in the multi-class accuracies,
clipping before binning but *not* before MAE on MOSI (and the opposite on SIMS), left-open bins on
SIMS, and the argument order of ``f1_score``. Every such choice below follows
``../shared/specs/METRICS.md`` to the letter; deviations are opt-in and named.

Deliberate, documented departures from MMSA (none of which changes a value MMSA can produce):

* every output is rounded to 4 decimals (MMSA does not round its SIMS outputs);
* where MMSA would crash (no non-zero truth for Non0) the value is NaN;
* the correlation of a constant vector is NaN *without* numpy's RuntimeWarning;
* inputs are validated (equal length, non-empty, finite).

Rounding uses Python's ``round(float(x), 4)``. MMSA calls ``round`` on numpy scalars, which uses
numpy's rounding (scale by 1e4, round half to even); the two differ by 1e-4 only on exact ties,
e.g. an accuracy of 39/160 = 0.24375 (numpy 0.2438, Python 0.2437), or a float32 MAE within an
ulp of such a tie. Exact ties are impossible for the standard test sizes (686, 4659, 457).

Float32 inputs (e.g. torch tensors) are kept in float32, as in MMSA, so that a label such as
``float32(0.1)`` lands in the same SIMS bin as it does there (the bin edges take the data's dtype).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

__all__ = [
    "MOSI_KEYS", "MOSI_KEYS_WITH_ACC3", "SIMS_KEYS", "CLASSIFICATION_KEYS", "EMOTION_NAMES",
    "METRIC_FAMILIES", "HIGHER_IS_BETTER",
    "default_selection_key", "regression_metrics", "classification_metrics",
    "binary_from_regression", "emotion_metrics", "format_metrics", "scale_for_table",
]

MOSI_KEYS: tuple[str, ...] = (
    "Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score",
    "Mult_acc_5", "Mult_acc_7", "MAE", "Corr",
)
#: MOSI/MOSEI keys with TEXT's extra ``Mult_acc_3`` (``include_acc3=True``).
MOSI_KEYS_WITH_ACC3: tuple[str, ...] = MOSI_KEYS[:4] + ("Mult_acc_3",) + MOSI_KEYS[4:]
SIMS_KEYS: tuple[str, ...] = ("Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr")
CLASSIFICATION_KEYS: tuple[str, ...] = ("Acc", "F1_macro", "F1_micro", "AUROC")
EMOTION_NAMES: tuple[str, ...] = ("happy", "sad", "anger", "surprise", "disgust", "fear")
METRIC_FAMILIES: tuple[str, ...] = ("mosi", "mosei", "sims", "simsv2")

_EMOTION_KEYS = tuple(f"{p}_{e}" for e in EMOTION_NAMES for p in ("WA", "F1")) + ("WA_avg", "F1_avg")
#: Direction of every fixed metric name this module produces: only MAE is lower-is-better.
HIGHER_IS_BETTER: dict[str, bool] = {
    k: k != "MAE"
    for k in dict.fromkeys(MOSI_KEYS_WITH_ACC3 + SIMS_KEYS + CLASSIFICATION_KEYS + _EMOTION_KEYS)
}

_F1_ORDERS = ("true_pred", "pred_true")
# Inner bin edges for SIMS (right-closed bins; the outer edges are the clip range [-1, 1]).
_SIMS_EDGES = {2: (0.0,), 3: (-0.1, 0.1), 5: (-0.7, -0.1, 0.1, 0.7)}


# ----------------------------------------------------------------------------------------- helpers
def _family(dataset: str) -> str:
    if not isinstance(dataset, str) or dataset.lower() not in METRIC_FAMILIES:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {METRIC_FAMILIES} "
                         "(case-insensitive)")
    return dataset.lower()


def default_selection_key(dataset: str) -> str:
    """Metric used for model selection by default: ``Has0_acc_2`` (MOSI/MOSEI), ``Mult_acc_2`` (SIMS)."""
    return "Has0_acc_2" if _family(dataset) in ("mosi", "mosei") else "Mult_acc_2"


def _to_numpy(x: Any) -> np.ndarray:
    """numpy view of an array-like or a torch tensor (no torch import needed)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        t = x.detach().cpu()
        try:
            return t.numpy()
        except TypeError:  # bfloat16 and other dtypes numpy lacks
            return t.float().numpy()
    return np.asarray(x)


def _as_float_1d(x: Any, name: str) -> np.ndarray:
    """Flatten to 1-D; float32/float64 are kept (MMSA works in float32), anything else -> float64."""
    a = _to_numpy(x)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected numeric values, got dtype {a.dtype}")
    a = a.reshape(-1)
    if a.dtype == np.float16:
        a = a.astype(np.float32)
    elif a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    return a


def _check_pair(preds: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = _as_float_1d(preds, "preds"), _as_float_1d(truth, "truth")
    if p.size != t.size:
        raise ValueError(f"preds and truth have different lengths ({p.size} vs {t.size})")
    if p.size == 0:
        raise ValueError("preds and truth are empty")
    for name, a in (("preds", p), ("truth", t)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or inf ({int(np.sum(~np.isfinite(a)))} values)")
    return p, t


def _r4(x: Any) -> float:
    """Round to 4 decimals exactly as MMSA's ``round(x, 4)`` does for the type ``x`` has there.

    MMSA rounds sklearn's accuracy/F1 (Python floats: correctly rounded) and numpy scalars
    (Mult_acc, MAE, Corr: numpy's scale-and-rint, in the scalar's own dtype). The two disagree on
    exact ties such as 39/160 = 0.24375, so each key keeps the type it has in MMSA.
    """
    if isinstance(x, np.generic):
        r = np.round(x, 4)
        # float32 -> shortest repr first, so 0.8972 does not become 0.8971999883651733 in JSON.
        return float(str(r)) if r.dtype == np.float32 else float(r)
    return round(float(x), 4)


def _corr(p: np.ndarray, t: np.ndarray) -> float:
    """np.corrcoef(p, t)[0, 1]; NaN (silently) when either vector is constant or has length 1."""
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.corrcoef(p, t)[0][1])


def _f1w(y_true: np.ndarray, y_pred: np.ndarray, f1_order: str) -> float:
    """Weighted F1 in the requested argument order (``pred_true`` is TEXT's swapped call)."""
    if f1_order == "pred_true":
        return f1_score(y_pred, y_true, average="weighted")
    return f1_score(y_true, y_pred, average="weighted")


def _mult_acc(p: np.ndarray, t: np.ndarray, bound: float) -> np.float64:
    """MMSA's ``__multiclass_acc`` after clipping to [-bound, bound] (numpy round-half-to-even)."""
    hits = np.round(np.clip(p, -bound, bound)) == np.round(np.clip(t, -bound, bound))
    return np.float64(np.sum(hits) / float(len(t)))


def _sims_bin(x: np.ndarray, n_classes: int) -> np.ndarray:
    """Right-closed SIMS bins of already-clipped values; edges in the data's dtype, as in MMSA."""
    edges = np.asarray(_SIMS_EDGES[n_classes], dtype=x.dtype)
    return np.searchsorted(edges, x, side="left")  # edges[i-1] < x <= edges[i]  ->  i


# ------------------------------------------------------------------------------------- regression
def regression_metrics(preds: Any, truth: Any, dataset: str = "mosi", *,
                       f1_order: str = "true_pred", include_acc3: bool = False) -> dict[str, float]:
    """MMSA regression metrics (METRICS.md), every value rounded to 4 decimals.

    ``preds``/``truth``: arrays, lists or torch tensors of any shape (flattened).
    ``dataset``: ``mosi``/``mosei`` -> :data:`MOSI_KEYS` (plus ``Mult_acc_3`` if ``include_acc3``,
    which TEXT reports and MMSA computes but drops); ``sims``/``simsv2`` -> :data:`SIMS_KEYS`
    (``include_acc3`` is ignored there, Acc-3 is always reported).
    ``f1_order="pred_true"`` reproduces TEXT's ``f1_score(preds, truth)`` argument swap for every F1.

    MOSI/MOSEI: MAE and Corr on unclipped values; Has0 = (t >= 0) vs (p >= 0); Non0 drops samples
    with truth == 0, then (t > 0) vs (p > 0). If every truth is 0, ``Non0_*`` are NaN (MMSA crashes).
    SIMS: p and t are clipped to [-1, 1] first, MAE and Corr included; bins are left-open. MMSA does
    not round its SIMS outputs; we do, for uniformity.
    ``Corr`` is NaN (no warning) when p or t is constant.
    """
    family = _family(dataset)
    if f1_order not in _F1_ORDERS:
        raise ValueError(f"f1_order must be one of {_F1_ORDERS}, got {f1_order!r}")
    p, t = _check_pair(preds, truth)
    if family in ("sims", "simsv2"):
        return _sims_metrics(p, t, f1_order)

    mae = np.mean(np.absolute(p - t))  # numpy scalar in the data's dtype, as in MMSA
    corr = np.float64(_corr(p, t))
    nz = t != 0
    if np.any(nz):
        nz_t, nz_p = t[nz] > 0, p[nz] > 0
        non0_acc = float(np.mean(nz_t == nz_p))
        non0_f1 = _f1w(nz_t, nz_p, f1_order)
    else:
        non0_acc = non0_f1 = math.nan
    has0_t, has0_p = t >= 0, p >= 0
    out = {
        "Has0_acc_2": float(np.mean(has0_t == has0_p)),
        "Has0_F1_score": _f1w(has0_t, has0_p, f1_order),
        "Non0_acc_2": non0_acc,
        "Non0_F1_score": non0_f1,
    }
    if include_acc3:
        out["Mult_acc_3"] = _mult_acc(p, t, 1.0)
    out.update({"Mult_acc_5": _mult_acc(p, t, 2.0), "Mult_acc_7": _mult_acc(p, t, 3.0),
                "MAE": mae, "Corr": corr})
    return {k: _r4(v) for k, v in out.items()}


def _sims_metrics(p: np.ndarray, t: np.ndarray, f1_order: str) -> dict[str, float]:
    p, t = np.clip(p, -1.0, 1.0), np.clip(t, -1.0, 1.0)
    out: dict[str, float] = {}
    for k in (2, 3, 5):
        out[f"Mult_acc_{k}"] = np.float64(np.sum(_sims_bin(p, k) == _sims_bin(t, k)) / float(len(t)))
    out["F1_score"] = _f1w(_sims_bin(t, 2), _sims_bin(p, 2), f1_order)
    out["MAE"] = np.mean(np.absolute(p - t))
    out["Corr"] = np.float64(_corr(p, t))
    return {k: _r4(v) for k, v in out.items()}


# --------------------------------------------------------------------------------- classification
def binary_from_regression(labels: Any, zero_is_negative: bool = True) -> np.ndarray:
    """Binary int labels from sentiment scores. I2MoE: ``label <= 0`` is negative (0), else 1.

    With ``zero_is_negative=False`` zero is positive (MMSA's Has0 convention).
    """
    y = _as_float_1d(labels, "labels")
    return (y > 0 if zero_is_negative else y >= 0).astype(np.int64)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def classification_metrics(y_true: Any, probs_or_scores: Any, *, n_classes: int | None = None,
                           threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, macro-F1, micro-F1 and AUROC (keys :data:`CLASSIFICATION_KEYS`), rounded to 4 dp.

    ``y_true``: integer labels in ``0..C-1``. ``probs_or_scores``:

    * shape ``(N,)``: positive-class probability/score of a binary task; the prediction is
      ``score > threshold`` (pass ``threshold=0`` for logits); AUROC on the scores.
    * shape ``(N, C)``: per-class probabilities (or logits); prediction = argmax. Binary (C = 2):
      AUROC on column 1 (after a softmax if rows do not sum to 1). Multi-class: one-vs-rest macro
      AUROC (sklearn ``multi_class='ovr'``); rows that do not sum to 1 are treated as logits and
      softmaxed first (sklearn requires probabilities). If some classes are absent from ``y_true``
      the macro average runs over the classes present (sklearn would raise).

    AUROC is NaN when ``y_true`` holds a single class. F1s average over the labels present in
    ``y_true`` or the predictions (sklearn default).
    """
    y = _to_numpy(y_true).reshape(-1)
    s = _to_numpy(probs_or_scores)
    if s.dtype.kind not in "biuf":
        raise ValueError(f"probs_or_scores: expected numeric values, got dtype {s.dtype}")
    s = s.astype(np.float64)
    if y.size == 0:
        raise ValueError("y_true is empty")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError("y_true must hold integer class labels")
    elif y.dtype.kind not in "biu":
        raise ValueError(f"y_true: expected integer class labels, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim not in (1, 2):
        raise ValueError(f"probs_or_scores must have shape (N,) or (N, C), got {s.shape}")
    if s.shape[0] != y.size:
        raise ValueError(f"y_true and probs_or_scores have different lengths ({y.size} vs {s.shape[0]})")
    if not np.all(np.isfinite(s)):
        raise ValueError("probs_or_scores contains NaN or inf")
    c = 2 if s.ndim == 1 else s.shape[1]
    if n_classes is not None and n_classes != c:
        raise ValueError(f"n_classes={n_classes} but probs_or_scores implies {c} classes")
    if c < 2:
        raise ValueError("need at least 2 classes")
    if y.min() < 0 or y.max() >= c:
        raise ValueError(f"y_true labels must lie in 0..{c - 1}, got range {y.min()}..{y.max()}")

    if s.ndim == 2 and not np.allclose(s.sum(axis=1), 1.0, atol=1e-4):
        s = _softmax(s)
    if s.ndim == 1:
        pred, pos_score = (s > threshold).astype(np.int64), s
    else:
        pred, pos_score = s.argmax(axis=1), s[:, 1]

    present = np.unique(y)
    if present.size < 2:
        auroc = math.nan
    elif c == 2:
        auroc = roc_auc_score(y, pos_score)
    elif present.size == c:
        auroc = roc_auc_score(y, s, multi_class="ovr", average="macro", labels=list(range(c)))
    else:
        auroc = float(np.mean([roc_auc_score(y == k, s[:, k]) for k in present]))
    out = {
        "Acc": float(np.mean(pred == y)),
        "F1_macro": f1_score(y, pred, average="macro"),
        "F1_micro": f1_score(y, pred, average="micro"),
        "AUROC": auroc,
    }
    return {k: _r4(v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------- emotion
def emotion_metrics(pred_intensities_or_probs: Any, true_intensities: Any, *, threshold: float = 0.0,
                    names: Sequence[str] = EMOTION_NAMES, preds_are_probs: bool = False,
                    pred_threshold: float | None = None) -> dict[str, float]:
    """Per-emotion weighted accuracy and F1 (Akhtar et al. 2019 / TBJE convention), rounded to 4 dp.

    Inputs have shape ``(N, E)`` with ``E = len(names)``. An emotion is present when its value is
    ``> threshold`` (truth), and ``> pred_threshold`` for predictions; ``pred_threshold`` defaults to
    0.5 when ``preds_are_probs`` else to ``threshold``.
    ``WA = (TP * N/P + TN) / (2N)`` with P / N the numbers of truly present / absent samples (i.e.
    balanced accuracy); when P = 0 or N = 0 it is undefined and plain accuracy is reported instead.
    ``F1`` is the binary F1 of the "present" class (``zero_division=0``).
    Keys ``WA_<name>``, ``F1_<name>`` for each emotion, then ``WA_avg``, ``F1_avg`` (unweighted means).
    """
    names = tuple(names)
    p = _to_numpy(pred_intensities_or_probs).astype(np.float64)
    t = _to_numpy(true_intensities).astype(np.float64)
    e = len(names)
    if e == 0:
        raise ValueError("names is empty")
    if p.ndim == 1 and e == 1:
        p = p[:, None]
    if t.ndim == 1 and e == 1:
        t = t[:, None]
    if p.ndim != 2 or t.ndim != 2 or p.shape[1] != e or t.shape[1] != e:
        raise ValueError(f"expected preds and truth of shape (N, {e}), got {p.shape} and {t.shape}")
    if p.shape[0] != t.shape[0]:
        raise ValueError(f"preds and truth have different lengths ({p.shape[0]} vs {t.shape[0]})")
    if p.shape[0] == 0:
        raise ValueError("preds and truth are empty")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(t))):
        raise ValueError("preds or truth contains NaN or inf")
    if pred_threshold is None:
        pred_threshold = 0.5 if preds_are_probs else threshold
    yt, yp = t > threshold, p > pred_threshold

    out: dict[str, float] = {}
    was, f1s = [], []
    for j, name in enumerate(names):
        a, b = yt[:, j], yp[:, j]
        n_pos, n_neg = int(a.sum()), int((~a).sum())
        tp, tn = int(np.sum(a & b)), int(np.sum(~a & ~b))
        if n_pos == 0 or n_neg == 0:
            wa = (tp + tn) / a.size
        else:
            wa = (tp * n_neg / n_pos + tn) / (2 * n_neg)
        f1 = float(f1_score(a, b, zero_division=0))
        was.append(wa)
        f1s.append(f1)
        out[f"WA_{name}"], out[f"F1_{name}"] = wa, f1
    out["WA_avg"], out["F1_avg"] = float(np.mean(was)), float(np.mean(f1s))
    return {k: _r4(v) for k, v in out.items()}


# ------------------------------------------------------------------------------------- formatting
def format_metrics(d: Mapping[str, Any]) -> str:
    """One line: ``Has0_acc_2=0.8123 | MAE=0.7421 | ...`` (floats to 4 decimals)."""
    parts = []
    for k, v in d.items():
        if isinstance(v, (float, np.floating)):
            parts.append(f"{k}={float(v):.4f}")
        else:
            parts.append(f"{k}={v}")
    return " | ".join(parts)


def scale_for_table(metric: str, value: float, *, mae_x100: bool = False) -> float:
    """Value as printed in a table: ×100 for accuracies, F1, Corr, AUROC, WA; MAE unchanged.

    MMSA's logs and most papers print MAE raw (e.g. 0.7080); MMSA's ``result-stat.md`` and some
    papers print it ×100 (70.80): pass ``mae_x100=True`` for that. NaN stays NaN.
    """
    if metric == "MAE" and not mae_x100:
        return float(value)
    return float(value) * 100.0
