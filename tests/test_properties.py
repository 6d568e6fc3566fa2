"""Property-based tests (hypothesis) for the metrics and the feature-pickle loaders.

Why properties on top of the golden cases in ``test_metrics.py`` / ``test_loaders.py``: the golden
cases pin a handful of hand-computed inputs; the invariants below (ranges, Has0/Non0 consistency,
clipping, permutation invariance, perfect predictions; loaders that either load a valid layout with
the right shapes or refuse a broken one by name) must hold for *every* input, and hypothesis looks
for the input that breaks them. Every invariant is derived from ``../shared/specs/METRICS.md`` and
the loaders' documented behaviour, never from what the code happens to return.

Examples are derandomised (the same ones every run, as a reproducibility book should be); set
``MSA_PROPERTY_RANDOM=1`` to explore new ones. Nothing is written to a hypothesis database.
"""
from __future__ import annotations

import math
import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score

from msa_lib.data.mmsa import FAMILY_RANGES, load_mmsa, load_multibench
from msa_lib.data.schema import SPLITS, DataError
from msa_lib.metrics import (CLASSIFICATION_KEYS, EMOTION_NAMES, MOSI_KEYS, MOSI_KEYS_WITH_ACC3, SIMS_KEYS,
                             binary_from_regression, classification_metrics, emotion_metrics, regression_metrics)


def prop(n: int) -> settings:
    """Shared hypothesis settings: ``n`` examples, no deadline (shared CPUs), no database."""
    return settings(max_examples=n, deadline=None, database=None,
                    derandomize=os.environ.get("MSA_PROPERTY_RANDOM") != "1",
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


EPS = 1e-12
ROUND = 1e-4 + EPS  # outputs are rounded to 4 dp: two routes to the same real number may differ by one unit


# ================================================================================================
# Metrics
# ================================================================================================
@st.composite
def regression_pairs(draw, family: str = "mosi", min_size: int = 1, max_size: int = 40):
    """(preds, truth) as the models produce them.

    Truth lies on the label grid (MOSI: averaged annotations, 1/5 steps in [-3, 3]; SIMS: 1/10 steps in
    [-1, 1], which hits the bin edges ±0.1 and ±0.7). Predictions are on a 1e-3 grid a bit beyond the
    label range (so clipping matters) and include exact zeros and .5 ties for numpy's round-half-even.
    """
    n = draw(st.integers(min_size, max_size))
    if family == "mosi":
        t = draw(st.lists(st.integers(-15, 15), min_size=n, max_size=n))
        truth = np.array(t, dtype=np.float64) / 5
        p = draw(st.lists(st.one_of(st.integers(-4500, 4500), st.sampled_from([0, 500, -500, 2500, -1500])),
                          min_size=n, max_size=n))
    else:
        t = draw(st.lists(st.integers(-10, 10), min_size=n, max_size=n))
        truth = np.array(t, dtype=np.float64) / 10
        p = draw(st.lists(st.one_of(st.integers(-1500, 1500), st.sampled_from([0, 100, -100, 700, -700])),
                          min_size=n, max_size=n))
    preds = np.array(p, dtype=np.float64) / 1000
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return preds.astype(dtype), truth.astype(dtype)


_ACC_F1 = {"Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score", "Mult_acc_3", "Mult_acc_5", "Mult_acc_7",
           "Mult_acc_2", "F1_score"}


def same(a: dict[str, float], b: dict[str, float]) -> bool:
    """Equal metric dicts, NaN equal to NaN (an undefined metric stays undefined)."""
    return a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def _constant(x: np.ndarray) -> bool:
    return bool(np.all(x == x[0]))


@prop(60)
@given(st.sampled_from(["mosi", "sims"]).flatmap(lambda f: st.tuples(st.just(f), regression_pairs(f))))
def test_regression_metric_ranges(case):
    family, (p, t) = case
    r = regression_metrics(p, t, family)
    assert tuple(r) == (MOSI_KEYS if family == "mosi" else SIMS_KEYS)
    assert all(isinstance(v, float) for v in r.values())
    assert r["MAE"] >= 0
    for k in _ACC_F1 & set(r):
        if k.startswith("Non0") and np.all(t == 0):
            assert math.isnan(r[k]), k  # MMSA would crash; documented as NaN
        else:
            assert 0.0 <= r[k] <= 1.0, (k, r[k])
    # Corr: Pearson on unclipped (MOSI) / clipped (SIMS) values; NaN exactly when a side is constant
    pc, tc = (p, t) if family == "mosi" else (np.clip(p, -1, 1), np.clip(t, -1, 1))
    if _constant(pc) or _constant(tc):
        assert math.isnan(r["Corr"])
    else:
        assert -1.0 <= r["Corr"] <= 1.0


@prop(40)
@given(st.sampled_from(["mosi", "sims"]).flatmap(lambda f: st.tuples(st.just(f), regression_pairs(f))))
def test_perfect_predictions(case):
    family, (_, t) = case
    r = regression_metrics(t.copy(), t, family)
    assert r["MAE"] == 0.0
    for k in _ACC_F1 & set(r):
        if k.startswith("Non0") and np.all(t == 0):
            assert math.isnan(r[k])
        else:
            assert r[k] == 1.0, k
    tc = t if family == "mosi" else np.clip(t, -1, 1)
    assert math.isnan(r["Corr"]) if _constant(tc) else r["Corr"] == 1.0


@prop(40)
@given(st.sampled_from(["mosi", "sims"]).flatmap(lambda f: st.tuples(st.just(f), regression_pairs(f, min_size=2))),
       st.randoms(use_true_random=False))
def test_permutation_invariance(case, rnd):
    family, (p, t) = case
    perm = np.array(rnd.sample(range(len(t)), len(t)))
    a, b = regression_metrics(p, t, family), regression_metrics(p[perm], t[perm], family)
    for k in a:
        if k in ("MAE", "Corr"):  # float sums in another order: equal up to the 4-dp rounding
            assert (math.isnan(a[k]) and math.isnan(b[k])) or abs(a[k] - b[k]) <= ROUND, k
        else:  # counts of hits: exactly equal
            assert (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k], k


@prop(50)
@given(regression_pairs("mosi"))
def test_non0_is_has0_without_zero_truth(pt):
    """Non0 = Has0 on the samples whose truth is not 0, with a zero prediction counted as negative."""
    p, t = pt
    t = np.where(t == 0, np.asarray(0.2, t.dtype), t)  # no zero truth
    r = regression_metrics(p, t)
    p_neg0 = np.where(p == 0, np.asarray(-1, p.dtype), p)  # p > 0 (Non0) is p >= 0 (Has0) once zeros are negative
    h = regression_metrics(p_neg0, t)
    assert (r["Non0_acc_2"], r["Non0_F1_score"]) == (h["Has0_acc_2"], h["Has0_F1_score"])
    if not np.any(p == 0):
        assert (r["Non0_acc_2"], r["Non0_F1_score"]) == (r["Has0_acc_2"], r["Has0_F1_score"])


@prop(40)
@given(regression_pairs("mosi"), st.lists(st.integers(-4000, 4000), min_size=1, max_size=10),
       st.randoms(use_true_random=False))
def test_zero_truth_samples_never_change_non0(pt, extra_preds, rnd):
    p, t = pt
    assume(np.any(t != 0))
    k = len(extra_preds)
    p2 = np.concatenate([p, np.array(extra_preds, dtype=p.dtype) / 1000])
    t2 = np.concatenate([t, np.zeros(k, dtype=t.dtype)])
    # the zero-truth rows at random positions, the others in their order
    slots = set(rnd.sample(range(len(t2)), k))
    idx_old, idx_new = iter(range(len(t))), iter(range(len(t), len(t2)))
    inter = np.array([next(idx_new) if i in slots else next(idx_old) for i in range(len(t2))])
    a, b = regression_metrics(p, t), regression_metrics(p2[inter], t2[inter])
    assert (a["Non0_acc_2"], a["Non0_F1_score"]) == (b["Non0_acc_2"], b["Non0_F1_score"])


@prop(50)
@given(regression_pairs("mosi"))
def test_has0_counts_zero_truth_as_positive(pt):
    p, t = pt
    r = regression_metrics(p, t)
    r_pos = regression_metrics(p, np.where(t == 0, np.asarray(0.2, t.dtype), t))
    assert (r["Has0_acc_2"], r["Has0_F1_score"]) == (r_pos["Has0_acc_2"], r_pos["Has0_F1_score"])
    # A prediction of exactly 0 is positive in Has0 and negative in Non0 (METRICS.md).
    z = regression_metrics(np.zeros_like(p), t)
    assert abs(z["Has0_acc_2"] - float(np.mean(t >= 0))) <= ROUND
    if np.any(t != 0):
        assert abs(z["Non0_acc_2"] - float(np.mean(t[t != 0] < 0))) <= ROUND


@prop(50)
@given(regression_pairs("mosi"))
def test_mosi_clipping_and_nested_bins(pt):
    p, t = pt
    r = regression_metrics(p, t, include_acc3=True)
    assert tuple(r) == MOSI_KEYS_WITH_ACC3
    assert same({k: v for k, v in r.items() if k != "Mult_acc_3"}, regression_metrics(p, t))
    # Acc-7 / Acc-5 clip before binning ...
    assert regression_metrics(np.clip(p, -3, 3), t)["Mult_acc_7"] == r["Mult_acc_7"]
    assert regression_metrics(np.clip(p, -2, 2), t)["Mult_acc_5"] == r["Mult_acc_5"]
    # ... so coarser classes can only merge hits: a hit in 7 classes is a hit in 5 and in 3.
    assert r["Mult_acc_3"] >= r["Mult_acc_5"] >= r["Mult_acc_7"]
    # ... but MAE is on the unclipped values
    assert abs(r["MAE"] - float(np.mean(np.abs(p.astype(np.float64) - t.astype(np.float64))))) <= 5e-5 + 1e-6


@prop(50)
@given(regression_pairs("sims"))
def test_sims_clips_first_and_zero_is_negative(pt):
    p, t = pt
    r = regression_metrics(p, t, "sims")
    pc, tc = np.clip(p, -1, 1), np.clip(t, -1, 1)
    assert same(regression_metrics(pc, tc, "sims"), r)  # everything, MAE and Corr included, is on clipped values
    assert same(r, regression_metrics(p, t, "simsv2"))
    assert abs(r["Mult_acc_2"] - float(np.mean((pc > 0) == (tc > 0)))) <= ROUND  # [-1, 0] -> 0: zero negative
    assert r["Mult_acc_3"] >= r["Mult_acc_5"]  # the 5-class edges include the 3-class ones
    assert abs(r["MAE"] - float(np.mean(np.abs(pc.astype(np.float64) - tc.astype(np.float64))))) <= 5e-5 + 1e-6


@prop(50)
@given(st.lists(st.integers(-15, 15), min_size=1, max_size=40))
def test_binary_from_regression_zero_convention(ks):
    y = np.array(ks, dtype=np.float64) / 5
    neg0, pos0 = binary_from_regression(y), binary_from_regression(y, zero_is_negative=False)
    assert set(np.unique(neg0)) <= {0, 1} and neg0.dtype == np.int64
    assert np.array_equal(neg0 != pos0, y == 0) and np.all(neg0 <= pos0)


@st.composite
def classification_cases(draw):
    """(y, scores): binary (N,) scores or (N, C) probabilities / logits."""
    n = draw(st.integers(1, 40))
    c = draw(st.integers(2, 4))
    y = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)), dtype=np.int64)
    kind = draw(st.sampled_from(["scores", "probs", "logits"] if c == 2 else ["probs", "logits"]))
    if kind == "scores":
        s = np.array(draw(st.lists(st.integers(0, 100), min_size=n, max_size=n)), dtype=np.float64) / 100
    else:
        raw = np.array(draw(st.lists(st.integers(1, 50), min_size=n * c, max_size=n * c)), dtype=np.float64)
        s = raw.reshape(n, c)
        s = s / s.sum(1, keepdims=True) if kind == "probs" else (s - 25) / 5
    return y, s


@prop(40)
@given(classification_cases(), st.randoms(use_true_random=False))
def test_classification_metric_properties(case, rnd):
    y, s = case
    r = classification_metrics(y, s)
    assert tuple(r) == CLASSIFICATION_KEYS
    for k in ("Acc", "F1_macro", "F1_micro"):
        assert 0.0 <= r[k] <= 1.0
    if len(np.unique(y)) < 2:
        assert math.isnan(r["AUROC"])
    else:
        assert 0.0 <= r["AUROC"] <= 1.0
    assert abs(r["Acc"] - r["F1_micro"]) <= ROUND  # single-label micro-F1 is accuracy
    perm = np.array(rnd.sample(range(len(y)), len(y)))
    q = classification_metrics(y[perm], s[perm])
    assert (r["Acc"], r["F1_macro"], r["F1_micro"]) == (q["Acc"], q["F1_macro"], q["F1_micro"])
    assert (math.isnan(r["AUROC"]) and math.isnan(q["AUROC"])) or abs(r["AUROC"] - q["AUROC"]) <= ROUND
    # perfect predictions: one-hot rows (or the labels themselves as binary scores)
    c = s.shape[1] if s.ndim == 2 else 2
    perfect = np.eye(c)[y] if s.ndim == 2 else y.astype(np.float64)
    pr = classification_metrics(y, perfect)
    assert (pr["Acc"], pr["F1_macro"], pr["F1_micro"]) == (1.0, 1.0, 1.0)
    assert math.isnan(pr["AUROC"]) if len(np.unique(y)) < 2 else pr["AUROC"] == 1.0


@st.composite
def emotion_cases(draw):
    """(preds, truth) of shape (N, 6): truth intensities on MOSEI's 1/3 grid in [0, 3]."""
    n = draw(st.integers(1, 30))
    t = np.array(draw(st.lists(st.integers(0, 9), min_size=6 * n, max_size=6 * n)), dtype=np.float64) / 3
    p = np.array(draw(st.lists(st.integers(-30, 90), min_size=6 * n, max_size=6 * n)), dtype=np.float64) / 30
    return p.reshape(n, 6), t.reshape(n, 6)


@prop(40)
@given(emotion_cases())
def test_emotion_metric_properties(case):
    p, t = case
    r = emotion_metrics(p, t)
    assert list(r) == [f"{a}_{e}" for e in EMOTION_NAMES for a in ("WA", "F1")] + ["WA_avg", "F1_avg"]
    assert all(0.0 <= v <= 1.0 for v in r.values())
    for j, e in enumerate(EMOTION_NAMES):
        a, b = t[:, j] > 0, p[:, j] > 0
        if 0 < a.sum() < len(a):  # WA = (TP*N/P + TN) / 2N is balanced accuracy when both classes occur
            assert abs(r[f"WA_{e}"] - balanced_accuracy_score(a, b)) <= ROUND
        else:  # undefined there: plain accuracy
            assert abs(r[f"WA_{e}"] - float(np.mean(a == b))) <= ROUND
    assert abs(r["WA_avg"] - np.mean([r[f"WA_{e}"] for e in EMOTION_NAMES])) <= ROUND
    perfect = emotion_metrics(t, t)
    for j, e in enumerate(EMOTION_NAMES):
        assert perfect[f"WA_{e}"] == 1.0
        assert perfect[f"F1_{e}"] == (1.0 if (t[:, j] > 0).any() else 0.0)  # zero_division=0


# ================================================================================================
# Loaders
# ================================================================================================
MODS = ("text", "audio", "vision")


@st.composite
def mmsa_layouts(draw) -> dict[str, Any]:
    """A random *valid* MMSA pickle (the layout `write_mmsa_like` documents) and what it should load as."""
    ns = [draw(st.integers(1, 4)) for _ in SPLITS]
    aligned = draw(st.booleans())
    ls = [draw(st.integers(1, 6))] * 3 if aligned else [draw(st.integers(1, 6)) for _ in MODS]
    dims = [draw(st.integers(1, 5)) for _ in MODS]
    family = draw(st.sampled_from(["mosi", "mosei", "sims", "simsv2"]))
    text_bert = draw(st.booleans())
    over = draw(st.booleans()) and not aligned  # real files store lengths before truncation to L
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lo, hi = FAMILY_RANGES[family]
    obj: dict[str, Any] = {}
    for s, n in zip(SPLITS, ns):
        d: dict[str, Any] = {
            "text": rng.normal(size=(n, ls[0], dims[0])).astype(np.float32),
            "audio": rng.normal(size=(n, ls[1], dims[1])).astype(np.float32),
            "vision": rng.normal(size=(n, ls[2], dims[2])).astype(np.float32 if aligned else np.float64),
            "id": np.array([f"vid{i // 2}$_${i % 2}" for i in range(n)], dtype=str),
            "raw_text": np.array([f"sentence {s} {i}" for i in range(n)], dtype=str),
            "regression_labels": (np.round(rng.uniform(lo, hi, n) * 5) / 5).astype(np.float32),
            "classification_labels": rng.integers(0, 3, n).astype(np.float32),
        }
        if text_bert:
            tlen = rng.integers(1, ls[0] + 1, n)
            mask = (np.arange(ls[0])[None] < tlen[:, None]).astype(np.int64)
            d["text_bert"] = np.stack([mask * 101, mask, np.zeros_like(mask)], 1)
        if not aligned:
            for m, length in zip(("audio", "vision"), ls[1:]):
                d[f"{m}_lengths"] = rng.integers(0, length + (3 if over else 1), n).astype(np.int64)
        obj[s] = d
    return {"obj": obj, "ns": ns, "ls": ls, "dims": dims, "aligned": aligned, "family": family}


def _write(tmp: str, obj: Any, name: str = "fixture.pkl") -> Path:
    p = Path(tmp) / name
    with open(p, "wb") as fh:
        pickle.dump(obj, fh, protocol=4)
    return p


def _load_quiet(loader, path: Path, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = loader(path, **kw)
    return ds, [str(w.message) for w in caught]


@prop(40)
@given(mmsa_layouts())
def test_valid_mmsa_layouts_load_with_the_right_shapes(case):
    obj = case["obj"]
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, obj)
        ds, msgs = _load_quiet(load_mmsa, path, metric_family=case["family"])
    assert ds.sizes == dict(zip(SPLITS, case["ns"]))
    assert ds.dims == dict(zip(MODS, case["dims"])) and ds.seq_lens == dict(zip(MODS, case["ls"]))
    assert ds.metric_family == case["family"] and ds.label_range == FAMILY_RANGES[case["family"]]
    prov = ds.provenance
    assert prov["layout"] == ("mmsa-aligned" if case["aligned"] else "mmsa-unaligned")
    assert prov["n_sanitised"] == 0 and prov["labelled"] and not prov["ids_generated"]
    clipped = prov.get("lengths_clipped", {})
    for s in SPLITS:
        sp, d = ds.split(s), obj[s]
        for m in MODS:
            x = getattr(sp, m)
            assert x.dtype == np.float32 and np.array_equal(x, d[m].astype(np.float32))
        assert np.array_equal(sp.labels, d["regression_labels"]) and sp.ids.tolist() == d["id"].tolist()
        assert np.array_equal(sp.extras["classification_labels"], d["classification_labels"])
        exp_t = d["text_bert"][:, 1].sum(1) if "text_bert" in d else np.full(len(sp), case["ls"][0])
        assert np.array_equal(sp.text_lengths, exp_t)
        for m, length in zip(("audio", "vision"), case["ls"][1:]):
            raw = d.get(f"{m}_lengths", np.full(len(sp), length))
            assert np.array_equal(getattr(sp, f"{m}_lengths"), np.minimum(raw, length))
            n_over = int((raw > length).sum())
            assert clipped.get(s, {}).get(f"{m}_lengths", 0) == n_over  # every clip is counted
    assert bool(clipped) == any("clipped" in m for m in msgs)


# ------------------------------------------------------------------------------------------ corruptions
def _grow(x: np.ndarray) -> np.ndarray:
    """One sample too many (a mismatched N)."""
    return np.concatenate([x, x[:1]])


CORRUPTIONS = ("drop", "ndim", "n_mismatch", "dtype", "nan_label", "inf_label", "negative_length", "not_a_dict")


@st.composite
def mmsa_corruptions(draw):
    """A valid layout, then exactly one documented way of breaking it, and what the error must name."""
    case = draw(mmsa_layouts())
    obj, split = case["obj"], draw(st.sampled_from(SPLITS))
    d = obj[split]
    n = len(d["id"])
    kind = draw(st.sampled_from(CORRUPTIONS))
    if kind == "negative_length" and case["aligned"]:
        kind = "nan_label"
    key, expect = None, []
    if kind == "drop":
        key = draw(st.sampled_from(["text", "audio", "vision", "id", "regression_labels"]))
        del d[key]
        expect = [f"[{split}]", f"missing field '{key}'"]
    elif kind == "ndim":
        key = draw(st.sampled_from(MODS))
        d[key] = d[key][..., 0] if draw(st.booleans()) else d[key][..., None]
        expect = [f"[{split}]", f"'{key}' has the wrong shape", str(d[key].shape)]
    elif kind == "n_mismatch":
        keys = ["audio", "vision", "regression_labels", "id", "raw_text", "classification_labels"]
        keys += [k for k in ("text_bert", "audio_lengths", "vision_lengths") if k in d]
        key = draw(st.sampled_from(keys))
        d[key] = _grow(d[key])
        expect = [f"[{split}]", f"'{key}'", str(n + 1)]
    elif kind == "dtype":
        key = draw(st.sampled_from([*MODS, "regression_labels"]))
        how = draw(st.sampled_from(["str", "object", "bool", "complex"]))
        x = d[key]
        d[key] = {"str": x.astype(str), "object": x.astype(object), "bool": x > 0,
                  "complex": x.astype(np.complex64) * (1 + 1j)}[how]
        expect = [f"[{split}]", f"'{key}'", "numeric"]
    elif kind in ("nan_label", "inf_label"):
        key = "regression_labels"
        bad = np.nan if kind == "nan_label" else draw(st.sampled_from([np.inf, -np.inf]))
        d[key][draw(st.integers(0, n - 1))] = bad
        expect = [f"[{split}]", "NaN label"] if kind == "nan_label" else [f"[{split}]", "outside the label range"]
    elif kind == "negative_length":
        key = draw(st.sampled_from(["audio_lengths", "vision_lengths"]))
        d[key][draw(st.integers(0, n - 1))] = -draw(st.integers(1, 5))
        expect = [f"[{split}]", f"'{key}'", "negative length"]
    elif kind == "not_a_dict":
        obj[split] = list(d.values())
        expect = [f"split '{split}' must be a dict", "list"]
    return {**case, "kind": kind, "split": split, "key": key, "expect": expect}


@prop(80)
@given(mmsa_corruptions())
def test_corrupt_mmsa_layouts_raise_a_named_data_error(case):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, case["obj"], "broken.pkl")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. lengths clipped before the broken field is reached
            with pytest.raises(DataError) as err:
                load_mmsa(path, metric_family=case["family"])
    msg = str(err.value)
    assert str(path) in msg, msg
    for part in case["expect"]:
        assert part in msg, (case["kind"], case["key"], part, msg)


@prop(30)
@given(mmsa_layouts(), st.data())
def test_nonfinite_features_are_sanitised_and_counted(case, data):
    """MMSA sets -inf / NaN in features to 0; we do it too, but count every value and warn."""
    obj = case["obj"]
    injected: dict[str, dict[str, dict[str, int]]] = {}
    total = 0
    for s in SPLITS:
        for m in MODS:
            x = obj[s][m]
            k = data.draw(st.integers(0, min(3, x.size)), label=f"{s}/{m}")
            pos = data.draw(st.lists(st.integers(0, x.size - 1), min_size=k, max_size=k, unique=True))
            vals = data.draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=k, max_size=k))
            x.reshape(-1)[pos] = vals
            injected.setdefault(s, {})[m] = {"nan": sum(map(np.isnan, vals)),
                                             "posinf": sum(v == np.inf for v in vals),
                                             "neginf": sum(v == -np.inf for v in vals)}
            total += k
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, obj)
        ds, msgs = _load_quiet(load_mmsa, path, metric_family=case["family"])
    assert ds.provenance["sanitised"] == injected and ds.provenance["n_sanitised"] == total
    assert any(f"replaced {total} non-finite" in m for m in msgs) == (total > 0)
    for s in SPLITS:
        for m in MODS:
            raw, x = obj[s][m], getattr(ds.split(s), m)
            bad = ~np.isfinite(raw)
            assert np.isfinite(x).all() and (x[bad] == 0).all()
            assert np.array_equal(x[~bad], raw[~bad].astype(np.float32))


# ------------------------------------------------------------------------------------------ MultiBench
@st.composite
def multibench_layouts(draw) -> dict[str, Any]:
    """A random valid MulT/MultiBench pickle: word-aligned (one L), labels (N, 1, 1), ids (N, 3)."""
    ns = [draw(st.integers(1, 4)) for _ in SPLITS]
    length = draw(st.integers(1, 6))
    dims = [draw(st.integers(1, 5)) for _ in MODS]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    obj = {s: {"text": rng.normal(size=(n, length, dims[0])).astype(np.float32),
               "audio": rng.normal(size=(n, length, dims[1])).astype(np.float32),
               "vision": rng.normal(size=(n, length, dims[2])).astype(draw(st.sampled_from([np.float32, np.float64]))),
               "labels": (np.round(rng.uniform(-3, 3, n) * 5) / 5).astype(np.float32).reshape(n, 1, 1),
               "id": np.array([[f"v{i}", str(i), str(i + 1)] for i in range(n)], dtype=str).reshape(n, 3)}
           for s, n in zip(SPLITS, ns)}
    return {"obj": obj, "ns": ns, "L": length, "dims": dims}


@prop(30)
@given(multibench_layouts())
def test_valid_multibench_layouts_load(case):
    obj = case["obj"]
    with tempfile.TemporaryDirectory() as tmp:
        ds, _ = _load_quiet(load_multibench, _write(tmp, obj, "mosi_data.pkl"))
    assert ds.sizes == dict(zip(SPLITS, case["ns"])) and ds.dims == dict(zip(MODS, case["dims"]))
    assert ds.seq_lens == {m: case["L"] for m in MODS} and ds.provenance["n_sanitised"] == 0
    for s in SPLITS:
        sp = ds.split(s)
        assert np.array_equal(sp.labels, obj[s]["labels"].reshape(-1))
        assert sp.ids.tolist() == ["$_$".join(r) for r in obj[s]["id"]]
        for m in MODS:
            assert getattr(sp, m).dtype == np.float32 and (getattr(sp, f"{m}_lengths") == case["L"]).all()


@st.composite
def multibench_corruptions(draw):
    case = draw(multibench_layouts())
    obj, split = case["obj"], draw(st.sampled_from(SPLITS))
    d = obj[split]
    n = len(d["id"])
    kind = draw(st.sampled_from(["drop", "ndim", "n_mismatch", "dtype", "nan_label"]))
    if kind == "drop":
        key = draw(st.sampled_from(["text", "audio", "vision", "labels"]))
        del d[key]
        expect = [f"missing field '{key}'"]
    elif kind == "ndim":
        key = draw(st.sampled_from(MODS))
        d[key] = d[key][..., 0] if draw(st.booleans()) else d[key][..., None]
        expect = [f"'{key}' has the wrong shape", str(d[key].shape)]
    elif kind == "n_mismatch":
        key = draw(st.sampled_from(["audio", "vision", "labels", "id"]))
        d[key] = _grow(d[key])
        expect = [f"'{key}'", str(n + 1)]
    elif kind == "dtype":
        key = draw(st.sampled_from([*MODS, "labels"]))
        how = draw(st.sampled_from(["str", "object", "bool", "complex"]))
        x = d[key]
        d[key] = {"str": x.astype(str), "object": x.astype(object), "bool": x > 0,
                  "complex": x.astype(np.complex64) * (1 + 1j)}[how]
        expect = [f"'{key}'", "numeric"]
    else:
        key = "labels"
        d[key].reshape(-1)[draw(st.integers(0, n - 1))] = np.nan
        expect = ["NaN label"]
    return {**case, "kind": kind, "expect": [f"[{split}]", *expect]}


@prop(50)
@given(multibench_corruptions())
def test_corrupt_multibench_layouts_raise_a_named_data_error(case):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, case["obj"], "mosi_data.pkl")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(DataError) as err:
                load_multibench(path)
    msg = str(err.value)
    assert str(path) in msg, msg
    for part in case["expect"]:
        assert part in msg, (case["kind"], part, msg)


@prop(30)
@given(mmsa_layouts(), st.booleans(), st.booleans())
def test_flat_single_sample_layout_loads_as_a_test_split(case, labelled, with_id):
    """MMSA's flat files (one split dict, e.g. OpenVNA's example.pkl) load as an unlabelled test split."""
    d = case["obj"]["test"]
    if not labelled:
        del d["regression_labels"]
    if not with_id:
        del d["id"]
    with tempfile.TemporaryDirectory() as tmp:
        ds, _ = _load_quiet(load_mmsa, _write(tmp, d, "example.pkl"), metric_family=case["family"])
    assert ds.train is None and ds.valid is None and ds.sizes == {"test": case["ns"][2]}
    assert ds.dims == dict(zip(MODS, case["dims"])) and ds.provenance["flat_single_split"]
    assert (ds.test.labels is not None) == labelled == ds.provenance["labelled"]
    assert ds.provenance["ids_generated"] == (not with_id)
    assert ds.test.ids.tolist() == (d["id"].tolist() if with_id else [f"test_{i:04d}" for i in range(len(ds.test))])
