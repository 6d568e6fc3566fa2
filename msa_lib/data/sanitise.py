"""Explicit, counted sanitising of feature arrays.

MMSA replaces `-inf`/`NaN` in audio/vision features with 0 (real MOSI/MOSEI COVAREP features contain
them). We do the same, but never silently: every replacement is counted and the counts go into the
dataset's provenance, so a reader can see how much of an input was repaired. Labels are never
sanitised: a NaN label is an error (see `Split.validate`).
"""
from __future__ import annotations

import numpy as np


def is_real_numeric(dtype: np.dtype) -> bool:
    """Integer or floating point: what can become float32 without silently losing information.

    ``np.number`` alone is not enough: it includes complex, and casting complex to float32 drops the
    imaginary part with only a numpy ``ComplexWarning``. Booleans are not features either.
    """
    return bool(np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating))


def sanitise_features(x: np.ndarray, *, name: str = "features", counts: dict | None = None,
                      fill: float = 0.0) -> np.ndarray:
    """Return ``x`` as float32 with NaN / +inf / -inf replaced by ``fill``.

    ``counts`` (if given) is updated in place with ``{name: {"nan": k, "posinf": k, "neginf": k}}``
    so that callers can record exactly what was replaced.
    """
    x = np.asarray(x)
    if not is_real_numeric(x.dtype):
        raise TypeError(f"{name}: expected a real numeric (integer or float) array, found dtype {x.dtype}")
    x = x.astype(np.float32, copy=True)
    nan, pos, neg = np.isnan(x), np.isposinf(x), np.isneginf(x)
    c = {"nan": int(nan.sum()), "posinf": int(pos.sum()), "neginf": int(neg.sum())}
    if c["nan"] or c["posinf"] or c["neginf"]:
        x[nan | pos | neg] = fill
    if counts is not None:
        counts[name] = c
    return x


def total_replaced(counts: dict) -> int:
    """Total number of values replaced across all entries of a counts dict."""
    return int(sum(sum(v.values()) for v in counts.values()))
