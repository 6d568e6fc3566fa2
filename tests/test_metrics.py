"""Tests for msa_lib.metrics: hand-computed golden cases and an independent loop-based reference."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from msa_lib.metrics import (
    HIGHER_IS_BETTER,
    METRIC_FAMILIES,
    MOSI_KEYS,
    SIMS_KEYS,
    binary_from_regression,
    classification_metrics,
    default_selection_key,
    emotion_metrics,
    format_metrics,
    regression_metrics,
    scale_for_table,
)

# ------------------------------------------------------------------------------------------------
# Independent reference: written from METRICS.md, one sample at a time, explicit if/else.
# ------------------------------------------------------------------------------------------------


def _clip(x: float, lo: float, hi: float) -> float:
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


def _weighted_f1(y_true: list, y_pred: list) -> float:
    labels = sorted(set(y_true) | set(y_pred))
    total = 0.0
    for c in labels:
        tp = fp = fn = support = 0
        for a, b in zip(y_true, y_pred):
            if a == c:
                support += 1
            if a == c and b == c:
                tp += 1
            elif a != c and b == c:
                fp += 1
            elif a == c and b != c:
                fn += 1
        denom = 2 * tp + fp + fn
        f1 = 0.0 if denom == 0 else 2 * tp / denom
        total += support * f1
    return total / len(y_true)


def _pearson(p: list, t: list) -> float:
    n = len(p)
    mp = sum(p) / n
    mt = sum(t) / n
    sxy = sxx = syy = 0.0
    for a, b in zip(p, t):
        sxy += (a - mp) * (b - mt)
        sxx += (a - mp) ** 2
        syy += (b - mt) ** 2
    if sxx == 0 or syy == 0:
        return math.nan
    return sxy / math.sqrt(sxx * syy)


def ref_mosi(p: list, t: list, swap: bool = False) -> dict:
    n = len(p)
    out = {}
    # Has0: zero is positive
    yt, yp = [], []
    for a, b in zip(t, p):
        yt.append(1 if a >= 0 else 0)
        yp.append(1 if b >= 0 else 0)
    correct = 0
    for a, b in zip(yt, yp):
        if a == b:
            correct += 1
    out["Has0_acc_2"] = correct / n
    out["Has0_F1_score"] = _weighted_f1(yp, yt) if swap else _weighted_f1(yt, yp)
    # Non0: drop zero truth, then > 0
    yt, yp = [], []
    for a, b in zip(t, p):
        if a == 0:
            continue
        yt.append(1 if a > 0 else 0)
        yp.append(1 if b > 0 else 0)
    if len(yt) == 0:
        out["Non0_acc_2"] = math.nan
        out["Non0_F1_score"] = math.nan
    else:
        correct = 0
        for a, b in zip(yt, yp):
            if a == b:
                correct += 1
        out["Non0_acc_2"] = correct / len(yt)
        out["Non0_F1_score"] = _weighted_f1(yp, yt) if swap else _weighted_f1(yt, yp)
    # multi-class: clip then Python round() (round-half-to-even, like numpy)
    for key, bound in (("Mult_acc_3", 1.0), ("Mult_acc_5", 2.0), ("Mult_acc_7", 3.0)):
        correct = 0
        for a, b in zip(t, p):
            if round(_clip(b, -bound, bound)) == round(_clip(a, -bound, bound)):
                correct += 1
        out[key] = correct / n
    total = 0.0
    for a, b in zip(t, p):
        total += abs(b - a)
    out["MAE"] = total / n  # unclipped
    out["Corr"] = _pearson(p, t)  # unclipped
    return out


def _bin2(x: float) -> int:
    if x <= 0.0:
        return 0
    return 1


def _bin3(x: float) -> int:
    if x <= -0.1:
        return 0
    elif x <= 0.1:
        return 1
    else:
        return 2


def _bin5(x: float) -> int:
    if x <= -0.7:
        return 0
    elif x <= -0.1:
        return 1
    elif x <= 0.1:
        return 2
    elif x <= 0.7:
        return 3
    else:
        return 4


def ref_sims(p: list, t: list, swap: bool = False) -> dict:
    pc = [_clip(x, -1.0, 1.0) for x in p]
    tc = [_clip(x, -1.0, 1.0) for x in t]
    n = len(pc)
    out = {}
    for key, fn in (("Mult_acc_2", _bin2), ("Mult_acc_3", _bin3), ("Mult_acc_5", _bin5)):
        correct = 0
        for a, b in zip(tc, pc):
            if fn(a) == fn(b):
                correct += 1
        out[key] = correct / n
    yt = [_bin2(a) for a in tc]
    yp = [_bin2(b) for b in pc]
    out["F1_score"] = _weighted_f1(yp, yt) if swap else _weighted_f1(yt, yp)
    total = 0.0
    for a, b in zip(tc, pc):
        total += abs(b - a)
    out["MAE"] = total / n  # clipped
    out["Corr"] = _pearson(pc, tc)  # clipped
    return out


_EXACT = {"Has0_acc_2", "Non0_acc_2", "Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "Mult_acc_7"}


def _assert_agree(got: dict, ref: dict, keys) -> None:
    assert tuple(got) == tuple(keys)
    for k in keys:
        g, r = got[k], ref[k]
        if math.isnan(r):
            assert math.isnan(g), k
        elif k in _EXACT:
            assert g == round(r, 4), (k, g, r)
        else:  # float summation order may differ: allow one unit in the 4th decimal
            assert abs(g - r) <= 1e-4 + 1e-12, (k, g, r)


def _random_case(rng: np.random.Generator, sims: bool):
    n = int(rng.integers(5, 80))
    if sims:
        t = np.round(rng.uniform(-1.2, 1.2, n), 1)  # hits -1, -0.7, -0.1, 0, 0.1, 0.7, 1 exactly
        p = rng.uniform(-1.3, 1.3, n)
        mask = rng.random(n) < 0.4
        p[mask] = np.round(p[mask], 1)  # boundary values in predictions too
    else:
        t = np.round(rng.normal(0, 1.5, n), int(rng.integers(0, 2)))  # 0 or 1 decimals: many ties
        p = rng.normal(0, 1.8, n)
        r = rng.random(n)
        p[r < 0.15] = 0.0  # exact zero predictions
        halves = (r >= 0.15) & (r < 0.35)
        p[halves] = np.round(p[halves] * 2) / 2  # half-way values such as 2.5 and -0.5
    t[rng.random(n) < 0.15] = 0.0
    return p, t


MOSI_REF_KEYS = ("Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score", "Mult_acc_3", "Mult_acc_5", "Mult_acc_7",
                 "MAE", "Corr")


@pytest.mark.parametrize("family, seed", [("mosi", 1234), ("sims", 4321)])
@pytest.mark.parametrize("f1_order", ["true_pred", "pred_true"])
def test_matches_reference_on_random_inputs(family, seed, f1_order):
    rng = np.random.default_rng(seed)
    swap = f1_order == "pred_true"
    sims = family == "sims"
    ref, keys, kw = (ref_sims, SIMS_KEYS, {}) if sims else (ref_mosi, MOSI_REF_KEYS, {"include_acc3": True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(200):
            p, t = _random_case(rng, sims=sims)
            got = regression_metrics(p, t, family, f1_order=f1_order, **kw)
            _assert_agree(got, ref(p.tolist(), t.tolist(), swap=swap), keys)


# ------------------------------------------------------------------------------------------------
# MOSI / MOSEI golden cases
# ------------------------------------------------------------------------------------------------
T8 = [0.0, 1.0, -1.0, 2.0, -0.4, 3.0, -2.0, 2.0]
P8 = [0.5, 0.0, -1.4, 2.5, 0.2, 5.0, -2.7, 1.4]


def test_mosi_full_hand_computed():
    m = regression_metrics(P8, T8, "mosi", include_acc3=True)
    assert list(m) == ["Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score", "Mult_acc_3",
                       "Mult_acc_5", "Mult_acc_7", "MAE", "Corr"]
    assert m["Has0_acc_2"] == 0.875  # 7/8: only t=-0.4, p=0.2 wrong
    # True: support 5, F1 10/11; False: support 3, F1 4/5
    assert m["Has0_F1_score"] == round((5 * 10 / 11 + 3 * 4 / 5) / 8, 4) == 0.8682
    assert m["Non0_acc_2"] == round(5 / 7, 4)  # t=0 dropped; p=0.0 for t=1 is a miss
    assert m["Non0_F1_score"] == round((4 * 0.75 + 3 * 2 / 3) / 7, 4)
    assert m["Mult_acc_3"] == 0.875
    assert m["Mult_acc_5"] == 0.75
    assert m["Mult_acc_7"] == 0.625
    assert m["MAE"] == round(6.3 / 8, 4) == 0.7875  # unclipped: |5 - 3| counts 2
    p, t = np.array(P8), np.array(T8)
    pc, tc = p - p.mean(), t - t.mean()
    assert m["Corr"] == round(float((pc * tc).sum() / np.sqrt((pc**2).sum() * (tc**2).sum())), 4)
    assert all(isinstance(v, float) for v in m.values())


def test_mosi_default_keys_and_mosei_identical():
    m = regression_metrics(P8, T8)
    assert tuple(m) == MOSI_KEYS
    assert regression_metrics(P8, T8, "MOSEI") == m
    assert "Mult_acc_3" not in m


def test_zero_truth_excluded_in_non0_positive_in_has0():
    t = [0.0, 0.0, 1.0, -1.0]
    p = [-1.0, 1.0, 1.0, -1.0]
    m = regression_metrics(p, t)
    assert m["Has0_acc_2"] == 0.75  # t=0 is positive: p=-1 misses it
    assert m["Non0_acc_2"] == 1.0  # both t=0 samples dropped
    assert m["Non0_F1_score"] == 1.0


def test_zero_prediction_negative_in_non0_positive_in_has0():
    t = [1.0, 1.0, -1.0, -1.0]
    p = [0.0, 0.0, -1.0, 1.0]
    m = regression_metrics(p, t)
    assert m["Has0_acc_2"] == 0.75  # p=0 counts as positive: hits t=1
    assert m["Non0_acc_2"] == 0.25  # p=0 counts as negative: misses t=1


def test_all_zero_truth_gives_nan_non0():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = regression_metrics([0.5, -0.5, 1.0], [0.0, 0.0, 0.0])
    assert math.isnan(m["Non0_acc_2"]) and math.isnan(m["Non0_F1_score"])
    assert m["Has0_acc_2"] == round(2 / 3, 4) == 0.6667
    assert math.isnan(m["Corr"])  # constant truth


@pytest.mark.parametrize("p,t,key,correct", [
    (2.5, 2.0, "Mult_acc_7", True),   # np.round(2.5) == 2
    (1.5, 2.0, "Mult_acc_7", True),   # np.round(1.5) == 2
    (-0.5, 0.0, "Mult_acc_7", True),  # np.round(-0.5) == -0.0 == 0
    (0.5, 1.0, "Mult_acc_7", False),  # np.round(0.5) == 0
    (-1.5, -1.0, "Mult_acc_7", False),  # np.round(-1.5) == -2
    (3.5, 3.0, "Mult_acc_7", True),   # clipped to 3 (unclipped 3.5 would round to 4)
    (5.0, 3.0, "Mult_acc_7", True),   # clip to [-3, 3]
    (-2.7, -2.0, "Mult_acc_5", True),  # clip to [-2, 2]
    (-2.7, -2.0, "Mult_acc_7", False),  # round(-2.7) == -3
    (2.0, 1.0, "Mult_acc_5", False),
])
def test_rounding_and_clipping(p, t, key, correct):
    m = regression_metrics([p], [t], include_acc3=True)
    assert m[key] == (1.0 if correct else 0.0)


def test_mae_is_unclipped_on_mosi():
    m = regression_metrics([5.0], [3.0])
    assert m["MAE"] == 2.0
    assert m["Mult_acc_7"] == 1.0


def test_f1_order_swap_changes_f1_not_accuracy():
    a = regression_metrics(P8, T8, "mosi", f1_order="true_pred")
    b = regression_metrics(P8, T8, "mosi", f1_order="pred_true")
    # swapped: weights are prediction supports (6 positive, 2 negative)
    assert b["Has0_F1_score"] == round((6 * 10 / 11 + 2 * 4 / 5) / 8, 4) == 0.8818
    assert a["Has0_F1_score"] != b["Has0_F1_score"]
    for k in ("Has0_acc_2", "Non0_acc_2", "Mult_acc_5", "Mult_acc_7", "MAE", "Corr"):
        assert a[k] == b[k]


def test_rounded_to_four_decimals():
    m = regression_metrics([0.123456, 1.0, -1.0], [0.0, 1.0, 1.0])
    assert m["Has0_acc_2"] == 0.6667
    assert m["MAE"] == round((0.123456 + 0 + 2) / 3, 4) == 0.7078
    for v in m.values():
        assert v == round(v, 4)
    s = regression_metrics([0.05, 0.5, -0.5], [0.2, 0.5, 0.3], "sims")
    for v in s.values():
        assert v == round(v, 4)


def test_constant_vector_corr_is_nan_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = regression_metrics([1.0, 1.0, 1.0], [0.5, -1.0, 2.0])
        one = regression_metrics([1.0], [2.0], "sims")
    assert math.isnan(m["Corr"]) and math.isnan(one["Corr"])


def test_accepts_tensors_lists_and_any_shape():
    torch = pytest.importorskip("torch")
    ref = regression_metrics(np.array(P8), np.array(T8))
    assert regression_metrics(torch.tensor(P8, dtype=torch.float64).reshape(2, 4),
                              torch.tensor(T8, dtype=torch.float64, requires_grad=True)) == ref
    assert regression_metrics(np.array(P8).reshape(8, 1), T8) == ref
    m32 = regression_metrics(torch.tensor(P8), torch.tensor(T8))  # float32, as MMSA sees it
    assert {k: m32[k] for k in ref if k not in ("MAE", "Corr")} == \
        {k: ref[k] for k in ref if k not in ("MAE", "Corr")}
    assert abs(m32["MAE"] - ref["MAE"]) <= 1e-4
    ints = regression_metrics([1, 0, -1], [1, 1, -1])
    assert ints == regression_metrics([1.0, 0.0, -1.0], [1.0, 1.0, -1.0])


@pytest.mark.parametrize("p,t,dataset,msg", [
    ([1.0, 2.0], [1.0], "mosi", "different lengths"),
    ([], [], "mosi", "empty"),
    ([1.0, float("nan")], [1.0, 2.0], "mosi", "preds contains NaN"),
    ([1.0, 2.0], [float("nan"), 2.0], "sims", "truth contains NaN"),
    ([1.0], [1.0], "iemocap", "unknown dataset"),
])
def test_errors(p, t, dataset, msg):
    with pytest.raises(ValueError, match=msg):
        regression_metrics(p, t, dataset)


def test_bad_f1_order():
    with pytest.raises(ValueError, match="f1_order"):
        regression_metrics([1.0], [1.0], f1_order="truth_first")


# ------------------------------------------------------------------------------------------------
# SIMS golden cases
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("x,bins,just_right", [
    # x, its (2, 3, 5)-class bins, and (acc2, acc3, acc5) for a prediction x + 1e-6
    (-1.0, (0, 0, 0), (1.0, 1.0, 1.0)),
    (-0.7, (0, 0, 0), (1.0, 1.0, 0.0)),
    (-0.1, (0, 0, 1), (1.0, 0.0, 0.0)),
    (0.0, (0, 1, 2), (0.0, 1.0, 1.0)),   # zero is negative in the 2-class bins
    (0.1, (1, 1, 2), (1.0, 0.0, 0.0)),
    (0.7, (1, 2, 3), (1.0, 1.0, 0.0)),
    (1.0, (1, 2, 4), (1.0, 1.0, 1.0)),   # 1 + 1e-6 is clipped to 1
])
def test_sims_boundaries(x, bins, just_right):
    assert (_bin2(x), _bin3(x), _bin5(x)) == bins  # the reference agrees with METRICS.md
    keys = ("Mult_acc_2", "Mult_acc_3", "Mult_acc_5")
    same = regression_metrics([x], [x], "sims")
    assert tuple(same[k] for k in keys) == (1.0, 1.0, 1.0)
    right = regression_metrics([x + 1e-6], [x], "sims")
    assert tuple(right[k] for k in keys) == just_right  # bins are right-closed
    left = regression_metrics([x - 1e-6], [x], "sims")
    assert tuple(left[k] for k in keys) == (1.0, 1.0, 1.0)  # and left-open


def test_sims_boundary_exact_bins():
    # truths on every boundary, predictions in hand-picked bins
    t = [-1.0, -0.7, -0.1, 0.0, 0.1, 0.7, 1.0]
    p = [-0.9, -0.6, 0.0, 0.05, 0.2, 0.8, 0.75]
    # 2-class t: [0,0,0,0,1,1,1]  p: [0,0,0,1,1,1,1] -> 6/7
    # 3-class t: [0,0,0,1,1,2,2]  p: [0,0,1,1,2,2,2] -> 5/7
    # 5-class t: [0,0,1,2,2,3,4]  p: [0,1,2,2,3,4,4] -> 3/7
    m = regression_metrics(p, t, "simsv2")
    assert tuple(m) == SIMS_KEYS
    assert m["Mult_acc_2"] == round(6 / 7, 4)
    assert m["Mult_acc_3"] == round(5 / 7, 4)
    assert m["Mult_acc_5"] == round(3 / 7, 4)
    # F1 on 2-class bins: class 0 support 4 (tp 3, fn 1, fp 0) F1 6/7; class 1 support 3 F1 6/7
    assert m["F1_score"] == round(6 / 7, 4)
    assert m["MAE"] == round((0.1 + 0.1 + 0.1 + 0.05 + 0.1 + 0.1 + 0.25) / 7, 4)


def test_sims_clips_both_before_mae_and_bins():
    m = regression_metrics([1.5, -2.0, 3.0], [1.0, -1.0, 0.5], "sims")
    assert m["MAE"] == round(0.5 / 3, 4)  # 1.5->1, -2->-1, 3->1: only |1 - 0.5| remains
    assert m["Mult_acc_5"] == round(2 / 3, 4)  # 0.5 is bin 3, 1 is bin 4
    assert m["Mult_acc_2"] == 1.0
    m2 = regression_metrics([1.5, -2.0], [1.0, -1.0], "sims")
    assert m2["MAE"] == 0.0 and m2["Corr"] == 1.0


def test_sims_float32_boundary_as_in_mmsa():
    # MMSA compares float32 arrays with float32 edges: float32(0.1) <= float32(0.1) is in the middle
    # 3-class bin, although float64(float32(0.1)) > 0.1 would put it in the top one.
    t32 = np.array([0.1, -0.1, 0.7], dtype=np.float32)
    p32 = np.array([0.05, -0.2, 0.6], dtype=np.float32)
    assert np.float64(t32[0]) > 0.1
    m = regression_metrics(p32, t32, "sims")
    assert m["Mult_acc_2"] == m["Mult_acc_3"] == m["Mult_acc_5"] == 1.0


def test_sims_f1_order_swap():
    t = [0.5, 0.5, 0.5, -0.5, -0.5, -0.5]
    p = [0.5, 0.5, -0.5, -0.5, 0.5, 0.5]
    a = regression_metrics(p, t, "sims")
    b = regression_metrics(p, t, "sims", f1_order="pred_true")
    # class 1: tp 2, fp 2, fn 1 -> F1 4/7; true support 3, predicted support 4
    # class 0: tp 1, fp 1, fn 2 -> F1 2/5; true support 3, predicted support 2
    assert a["F1_score"] == round((3 * 4 / 7 + 3 * 2 / 5) / 6, 4)
    assert b["F1_score"] == round((4 * 4 / 7 + 2 * 2 / 5) / 6, 4)
    assert a["F1_score"] != b["F1_score"]
    a.pop("F1_score"), b.pop("F1_score")
    assert a == b  # accuracies, MAE and Corr do not depend on the F1 argument order


# ------------------------------------------------------------------------------------------------
# helpers and constants
# ------------------------------------------------------------------------------------------------
def test_constants_and_selection_key():
    assert METRIC_FAMILIES == ("mosi", "mosei", "sims", "simsv2")
    assert default_selection_key("MOSI") == "Has0_acc_2"
    assert default_selection_key("mosei") == "Has0_acc_2"
    assert default_selection_key("sims") == default_selection_key("SIMSv2") == "Mult_acc_2"
    with pytest.raises(ValueError, match="unknown dataset"):
        default_selection_key("meld")
    for k in MOSI_KEYS + SIMS_KEYS + ("Mult_acc_3", "Acc", "F1_macro", "AUROC", "WA_avg"):
        assert HIGHER_IS_BETTER[k] is (k != "MAE")
    assert HIGHER_IS_BETTER["MAE"] is False


def test_binary_from_regression():
    y = [-1.0, 0.0, 0.5, 2.0]
    out = binary_from_regression(y)
    assert out.tolist() == [0, 0, 1, 1] and out.dtype.kind == "i"
    assert binary_from_regression(y, zero_is_negative=False).tolist() == [0, 1, 1, 1]


def test_format_and_scale():
    s = format_metrics({"Has0_acc_2": 0.8344, "MAE": 0.708, "Corr": float("nan")})
    assert s == "Has0_acc_2=0.8344 | MAE=0.7080 | Corr=nan"
    assert scale_for_table("Has0_acc_2", 0.8344) == pytest.approx(83.44)
    assert scale_for_table("Corr", 0.7963) == pytest.approx(79.63)
    assert scale_for_table("MAE", 0.708) == 0.708
    assert scale_for_table("MAE", 0.708, mae_x100=True) == pytest.approx(70.8)


# ------------------------------------------------------------------------------------------------
# classification
# ------------------------------------------------------------------------------------------------
def test_classification_binary_scores_and_probs():
    y = [0, 0, 1, 1]
    s = np.array([0.1, 0.4, 0.35, 0.8])
    m = classification_metrics(y, s)
    assert list(m) == ["Acc", "F1_macro", "F1_micro", "AUROC"]
    assert m["AUROC"] == 0.75  # 3 of 4 (pos, neg) pairs ordered correctly
    assert m["Acc"] == 0.75 and m["F1_micro"] == 0.75
    assert m["F1_macro"] == round((4 / 5 + 2 / 3) / 2, 4)
    assert classification_metrics(y, np.stack([1 - s, s], axis=1), n_classes=2) == m


def test_classification_multiclass_ovr():
    y = [0, 1, 2, 0, 1, 2]
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6],
                      [0.3, 0.4, 0.3], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    m = classification_metrics(y, probs, n_classes=3)
    assert m["AUROC"] == round((0.875 + 0.8125 + 1.0) / 3, 4) == 0.8958
    assert m["Acc"] == 0.6667 and m["F1_micro"] == 0.6667
    assert m["F1_macro"] == round((0.5 + 0.5 + 1.0) / 3, 4)
    logits = np.random.default_rng(0).normal(size=(6, 3))  # rows do not sum to 1 -> softmax
    soft = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert classification_metrics(y, logits) == classification_metrics(y, soft)
    assert classification_metrics(y, logits)["AUROC"] == round(
        roc_auc_score(y, soft, multi_class="ovr"), 4)


def test_classification_single_class_and_missing_class():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = classification_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert math.isnan(m["AUROC"]) and m["Acc"] == round(2 / 3, 4)
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.5, 0.2, 0.3], [0.1, 0.6, 0.3]])
    m = classification_metrics([0, 1, 0, 1], probs)  # class 2 absent from y_true
    # class 0 scores pos (0.6, 0.5) vs neg (0.2, 0.1): 1.0; class 1 pos (0.5, 0.6) vs (0.3, 0.2): 1.0
    assert m["AUROC"] == 1.0


def test_classification_errors():
    with pytest.raises(ValueError, match="different lengths"):
        classification_metrics([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="n_classes"):
        classification_metrics([0, 1], np.full((2, 3), 1 / 3), n_classes=2)
    with pytest.raises(ValueError, match="labels"):
        classification_metrics([0, 3], np.full((2, 3), 1 / 3))


# ------------------------------------------------------------------------------------------------
# emotion recognition
# ------------------------------------------------------------------------------------------------
def test_emotion_metrics_hand_computed():
    truth = np.array([[0, 0], [0.5, 0], [0, 0], [0, 0], [0, 0], [2.0, 0]])
    preds = np.array([[0.2, 0.1], [0.0, 0], [-0.1, 0], [0, 0], [-0.3, 0], [0.7, 0]])
    m = emotion_metrics(preds, truth, names=("happy", "sad"))
    assert list(m) == ["WA_happy", "F1_happy", "WA_sad", "F1_sad", "WA_avg", "F1_avg"]
    # happy: P=2, N=4, TP=1, TN=3, FP=1, FN=1 -> WA = (1*4/2 + 3) / 8
    assert m["WA_happy"] == 0.625
    assert m["F1_happy"] == 0.5
    # sad: P=0 -> plain accuracy 5/6; F1 of the positive class is 0
    assert m["WA_sad"] == round(5 / 6, 4)
    assert m["F1_sad"] == 0.0
    assert m["WA_avg"] == round((0.625 + 5 / 6) / 2, 4) == 0.7292
    assert m["F1_avg"] == 0.25


def test_emotion_metrics_probabilities_and_defaults():
    rng = np.random.default_rng(0)
    truth = rng.uniform(-1, 3, size=(20, 6)) * (rng.random((20, 6)) < 0.5)
    probs = rng.random((20, 6))
    m = emotion_metrics(probs, truth, preds_are_probs=True)
    assert len(m) == 14 and "WA_fear" in m and "F1_happy" in m
    assert m == emotion_metrics(probs - 0.5, truth)  # prob > 0.5  <=>  prob - 0.5 > 0
    assert m == emotion_metrics(probs, truth, pred_threshold=0.5)
    with pytest.raises(ValueError, match="shape"):
        emotion_metrics(probs[:, :5], truth)


def test_rounding_follows_mmsa_types_on_exact_ties():
    """MMSA rounds numpy scalars (Mult_acc) with numpy and sklearn floats (acc_2) with Python."""
    truth = np.zeros(160, dtype=np.float32)
    preds = np.full(160, 2.0, dtype=np.float32)
    preds[:39] = 0.0  # 39/160 = 0.24375 correct for Acc-7 / Acc-5
    m = regression_metrics(preds, truth, "mosi")
    assert m["Mult_acc_7"] == 0.2438  # numpy: round(2437.5) -> 2438 (half to even)
    assert round(39 / 160, 4) == 0.2437  # what Python's correctly rounded round() would give
    assert m["Has0_acc_2"] == 1.0  # every truth is 0 -> non-negative; every pred >= 0
    assert np.isnan(m["Non0_acc_2"])  # no non-zero truth
