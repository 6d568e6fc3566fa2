"""The train loop, the run cache, effects/verdicts and the results contract."""
import json

import numpy as np
import pytest
import torch

from msa_lib.experiments import (RunCache, atomic_write_json, bootstrap_ci, compare_variants, paired_effect,
                                 reported_value, run_grid, run_one, verdict_from_ci)
from msa_lib.reporting import format_cells, results_payload, summary_table, validate_results
from msa_lib.training import TrainConfig, _better, fit, predict, set_seed

FAST = {"epochs": 3, "batch_size": 16, "lr": 3e-3, "progress": False}


def test_same_seed_same_metrics(tiny_ds, tmp_path):
    a = run_one(tiny_ds, "ef", "early_fusion", seed=7, train=FAST)
    b = run_one(tiny_ds, "ef", "early_fusion", seed=7, train=FAST)
    c = run_one(tiny_ds, "ef", "early_fusion", seed=8, train=FAST)
    assert a.test_metrics == b.test_metrics
    assert a.history == b.history
    assert a.test_metrics != c.test_metrics


def test_training_learns_signal(tiny_ds):
    set_seed(0)
    from msa_lib.models import build
    model = build("text_mlp", tiny_ds.dims)
    res = fit(model, tiny_ds, TrainConfig(epochs=25, lr=3e-3, batch_size=16, patience=None, progress=False))
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert res.test_metrics["Corr"] > 0.5  # text carries the label in the fixture
    assert 0 <= res.best_epoch < res.epochs_run


def test_selection_restores_best_epoch(tiny_ds):
    set_seed(0)
    from msa_lib.models import build
    cfg = TrainConfig(epochs=6, lr=3e-3, batch_size=16, patience=None, progress=False, select_key="Has0_acc_2",
                      tie_break="last")
    res = fit(build("early_fusion", tiny_ds.dims), tiny_ds, cfg)
    best = max(h["val_select"] for h in res.history)
    last_best = max(i for i, h in enumerate(res.history) if h["val_select"] == best)
    assert res.best_epoch == last_best  # ties go to the later epoch with tie_break="last"
    assert res.val_metrics["Has0_acc_2"] == best


def test_better_rule():
    assert _better(0.5, None, "Has0_acc_2", "first")
    assert _better(0.6, 0.5, "Has0_acc_2", "first") and not _better(0.6, 0.5, "MAE", "first")
    assert not _better(0.5, 0.5, "loss", "first") and _better(0.5, 0.5, "loss", "last")


def test_binary_task(tiny_ds):
    rec = run_one(tiny_ds, "ef-bin", "early_fusion", seed=1,
                  train={**FAST, "task": "binary", "loss": "ce", "select_key": "Acc"})
    assert set(rec.test_metrics) >= {"Acc", "F1_macro", "AUROC", "loss"}


def test_config_validation():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="loss='ce'"):
        TrainConfig(task="binary", loss="l1")
    with pytest.raises(ValueError, match="unknown training options"):
        TrainConfig.from_dict({"epoch": 3})


def test_scheduler_and_clip_run(tiny_ds):
    rec = run_one(tiny_ds, "x", "early_fusion", seed=0,
                  train={**FAST, "scheduler": "warmup_cosine", "grad_clip": 1.0, "optimizer": "adam"})
    assert rec.epochs_run == 3


def test_run_cache_resumes(tiny_ds, tmp_path):
    recs = run_grid([tiny_ds], {"ef": "early_fusion", "lf": {"model": "late_fusion"}}, [1, 2], tmp_path,
                    train=FAST, progress=False)
    assert len(recs) == 4
    files = sorted((tmp_path / "runs").rglob("*.json"))
    assert len(files) == 4
    stamp = {f: f.stat().st_mtime_ns for f in files}
    again = run_grid([tiny_ds], {"ef": "early_fusion", "lf": {"model": "late_fusion"}}, [1, 2], tmp_path,
                     train=FAST, progress=False)
    assert [r.test_metrics for r in again] == [r.test_metrics for r in recs]
    assert {f: f.stat().st_mtime_ns for f in files} == stamp  # reused, not retrained
    # A changed hyper-parameter is a new run.
    run_grid([tiny_ds], {"ef": {"model": "early_fusion", "hparams": {"hidden": 32}}}, [1], tmp_path, train=FAST,
             progress=False)
    assert len(list((tmp_path / "runs").rglob("*.json"))) == 5
    # A corrupt record is ignored and recomputed (identically, by determinism).
    good = json.loads(files[0].read_text())
    files[0].write_text("{not json")
    cache = RunCache(tmp_path)
    assert cache.get(good["dataset"], good["variant"], good["seed"], good["param_hash"]) is None
    run_grid([tiny_ds], {"ef": "early_fusion", "lf": {"model": "late_fusion"}}, [1, 2], tmp_path, train=FAST,
             progress=False)
    assert json.loads(files[0].read_text())["test_metrics"] == good["test_metrics"]


def test_atomic_write_leaves_no_temp(tmp_path):
    atomic_write_json(tmp_path / "a" / "x.json", {"v": np.float32(1.5), "a": np.arange(3)})
    assert json.loads((tmp_path / "a" / "x.json").read_text()) == {"v": 1.5, "a": [0, 1, 2]}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.json"]


def test_paired_effect_and_verdicts():
    a = {1: 0.80, 2: 0.82, 3: 0.81}
    b = {1: 0.70, 2: 0.71, 3: 0.72}
    e = paired_effect(a, b, id="C", claim="a beats b", dataset="d", metric="Has0_acc_2")
    assert e.effect == pytest.approx(0.1, abs=1e-9) and e.ci_low > 0 and e.verdict == "supported"
    e = paired_effect(b, a, id="C", claim="b beats a", dataset="d", metric="Has0_acc_2")
    assert e.verdict == "not supported"
    # MAE: lower is better, so the sign flips and "a better" is positive.
    e = paired_effect({1: 0.5, 2: 0.6, 3: 0.55}, {1: 0.7, 2: 0.8, 3: 0.75}, id="C", claim="", dataset="d", metric="MAE")
    assert e.effect == pytest.approx(0.2) and e.verdict == "supported"
    mixed = paired_effect({1: 1.0, 2: 0.0, 3: 0.5}, {1: 0.0, 2: 1.0, 3: 0.5}, id="C", claim="", dataset="d",
                          metric="Corr")
    assert mixed.verdict == "inconclusive"
    assert verdict_from_ci(0.1, 0.2, n=2) == "inconclusive"  # too few seeds
    lo, hi = bootstrap_ci(np.array([1.0, 2.0, 3.0, 4.0]))
    assert 1.0 <= lo < 2.5 < hi <= 4.0


def test_compare_variants_and_tables(tiny_ds):
    recs = run_grid([tiny_ds], {"ef": "early_fusion", "lf": "late_fusion"}, [1, 2, 3], None, train=FAST,
                    progress=False)
    e = compare_variants(recs, "ef", "lf", id="C1", claim="EF beats LF", dataset="tiny", metric="MAE")
    assert e.n_seeds == 3 and e.verdict in ("supported", "not supported", "inconclusive")
    long = summary_table(recs, ["Has0_acc_2", "MAE"], reported=lambda d, m, k: 0.5 if k == "Has0_acc_2" else None)
    assert set(long["n_seeds"]) == {3}
    assert long.loc[long.metric == "MAE", "reported"].isna().all()
    wide = format_cells(long)
    assert wide.loc[("tiny", "ef"), ("MAE", "reported")] == "n/a"
    assert "±" in wide.loc[("tiny", "ef"), ("Has0_acc_2", "reproduced")]
    payload = results_payload("demo", profile="smoke", datasets=["tiny"], tables={"T-main": long}, claims=[e],
                              cost={"ef": {"n_params": 1}}, seeds=[1, 2, 3])
    validate_results(json.loads(json.dumps(payload)))
    bad = dict(payload, claims=[{**payload["claims"][0], "verdict": "maybe"}])
    with pytest.raises(ValueError, match="verdict"):
        validate_results(bad)


def test_reported_registry_is_sourced():
    assert reported_value("MMSA", "mosi", "MulT", "Has0_acc_2") == pytest.approx(0.7971)
    assert reported_value("MMSA", "mosi", "MulT", "MAE") == pytest.approx(0.8799)
    assert reported_value("I2MoE", "mosi", "I2MoE", "Has0_acc_2") is None  # never invented


def test_predict_extras(tiny_ds):
    from msa_lib.models import build
    torch.manual_seed(0)
    model = build("late_fusion", tiny_ds.dims)
    p, ex = predict(model, tiny_ds, "test", batch_size=7, return_extras=True)
    assert p.shape == (24,) and ex["modality_weights"].shape == (24, 3)


def test_track_test_adds_test_curve_without_changing_selection(tiny_ds):
    a = run_one(tiny_ds, "x", "early_fusion", seed=3, train=FAST)
    b = run_one(tiny_ds, "x", "early_fusion", seed=3, train={**FAST, "track_test": True})
    assert "test_select" not in a.history[0] and "test_select" in b.history[0]
    assert a.test_metrics == b.test_metrics and a.best_epoch == b.best_epoch


def test_code_fingerprint_is_in_the_run_hash(tiny_ds, monkeypatch):
    """A code change must invalidate cached runs: the fingerprint enters the parameter hash."""
    import msa_lib.experiments as ex
    a = run_one(tiny_ds, "ef", "early_fusion", seed=1, train=FAST)
    assert a.params["code"] == ex.code_fingerprint() and len(a.params["code"]) == 12
    monkeypatch.setattr(ex, "code_fingerprint", lambda: "changedcode0")
    b = run_one(tiny_ds, "ef", "early_fusion", seed=1, train=FAST)
    assert b.param_hash != a.param_hash


def test_non_inferiority_margin():
    """'A matches B' with margin m: the effect is (A - B) + m in the claim's direction."""
    low, full = {1: 0.80, 2: 0.81, 3: 0.79}, {1: 0.795, 2: 0.80, 3: 0.79}  # A is 0.005 worse on average (MAE)
    strict = paired_effect(low, full, id="C", claim="", dataset="d", metric="MAE")
    assert strict.verdict == "not supported" and strict.effect == pytest.approx(-0.005)
    ni = paired_effect(low, full, id="C", claim="", dataset="d", metric="MAE", margin=0.02)
    assert ni.effect == pytest.approx(0.015) and ni.verdict == "supported"
    assert ni.diffs == pytest.approx([0.015, 0.01, 0.02]) and "margin 0.02 MAE" in ni.note
    with pytest.raises(ValueError, match="margin"):
        paired_effect(low, full, id="C", claim="", dataset="d", metric="MAE", margin=-1)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    from msa_lib.io import atomic_write
    p = atomic_write(tmp_path / "sub" / "f.bin", lambda fh: fh.write(b"old"))
    def boom(fh):
        fh.write(b"half")
        raise RuntimeError("killed mid-write")
    with pytest.raises(RuntimeError, match="mid-write"):
        atomic_write(p, boom)
    assert p.read_bytes() == b"old" and [x.name for x in p.parent.iterdir()] == ["f.bin"]
