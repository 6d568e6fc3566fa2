"""End-to-end fine-tuning of the local MiniLM (`msa_lib.finetune`) on a few toy sentences."""
from __future__ import annotations

import json

import numpy as np
import pytest

from msa_lib import finetune as F

POS = ["this movie was great", "i loved every minute of it", "what a wonderful story", "the acting is superb",
       "really fun and touching", "a beautiful and moving film", "i would happily watch it again", "brilliant work"]
NEG = ["this movie was terrible", "i hated every minute of it", "what a boring story", "the acting is awful",
       "really dull and stupid", "an ugly and tedious film", "i would never watch it again", "a complete waste"]


def _texts(n_train: int = 32):
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for i in range(n_train + 16):
        pos = i % 2 == 0
        base = (POS if pos else NEG)[(i // 2) % 8]
        texts.append(base if i < 16 else f"{base} {'indeed' if i % 3 else 'honestly'}")
        labels.append(float(np.clip((2.0 if pos else -2.0) + rng.normal(0, 0.3), -3, 3)))
    return {"train": (texts[:n_train], labels[:n_train]), "valid": (texts[n_train:n_train + 8], labels[n_train:n_train + 8]),
            "test": (texts[n_train + 8:], labels[n_train + 8:])}


CFG = {"epochs": 4, "batch_size": 8, "max_len": 16, "lr_encoder": 1e-4, "lr_head": 3e-3, "warmup_frac": 0.0,
       "head_hidden": 32, "progress": False}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ft")
    return out, F.finetune_text(_texts(), seed=7, cfg=CFG, out_dir=out)


def test_tiny_finetune_learns_and_records(first_run):
    out, rec = first_run
    losses = [h["train_loss"] for h in rec.history]
    assert len(losses) == 4 and rec.epochs_run == 4
    assert losses[-1] < 0.7 * losses[0], losses  # training lowers the loss
    assert rec.dataset == "texts" and rec.variant == F.DEFAULT_VARIANT and rec.seed == 7
    assert {"Has0_acc_2", "Non0_acc_2", "Mult_acc_7", "MAE", "Corr", "loss"} <= set(rec.test_metrics)
    assert 0 <= rec.best_epoch < 4 and rec.val_metrics["loss"] == pytest.approx(rec.history[rec.best_epoch]["val_loss"], abs=1e-5)
    assert rec.train_seconds > 0 and rec.infer_ms_per_sample > 0 and rec.n_params > 22_000_000  # MiniLM + head
    assert len(rec.extras["test_pred"]) == 8 and rec.extras["n_train"] == 32
    assert rec.params["finetune"]["lr_encoder"] == 1e-4 and rec.params["encoder"] == "all-MiniLM-L6-v2"
    stored = list((out / "runs" / "texts" / F.DEFAULT_VARIANT).glob("seed7-*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["param_hash"] == rec.param_hash


def test_tiny_finetune_is_deterministic(first_run):
    _, rec = first_run
    again = F.finetune_text(_texts(), seed=7, cfg=CFG)  # no cache: trains again
    assert again.extras["test_pred"] == rec.extras["test_pred"]
    assert again.test_metrics == rec.test_metrics and [h["train_loss"] for h in again.history] == [h["train_loss"] for h in rec.history]
    other = F.finetune_text(_texts(), seed=8, cfg={**CFG, "epochs": 1})
    assert other.extras["test_pred"] != rec.extras["test_pred"]


def test_cache_is_reused_without_training(first_run, monkeypatch):
    out, rec = first_run

    def boom(*a, **k):
        raise AssertionError("trained although a cached record exists")
    monkeypatch.setattr(F, "_train", boom)
    hit = F.finetune_text(_texts(), seed=7, cfg=F.FinetuneConfig(**CFG), out_dir=out)
    assert hit == rec
    # progress / device do not change the hash; anything that changes results does
    assert F.finetune_param_hash(_texts(), 7, {**CFG, "progress": True})[0] == rec.param_hash
    assert F.finetune_param_hash(_texts(), 7, {**CFG, "lr_encoder": 2e-5})[0] != rec.param_hash
    changed = _texts()
    changed["test"] = (changed["test"][0], [v + 0.1 for v in changed["test"][1]])
    assert F.finetune_param_hash(changed, 7, CFG)[0] != rec.param_hash
    with pytest.raises(AssertionError, match="trained although"):
        F.finetune_text(_texts(), seed=8, cfg=CFG, out_dir=out)


def test_clear_errors(tmp_path, tiny_ds):
    with pytest.raises(FileNotFoundError, match="text encoder folder not found: .*no_such_encoder"):
        F.finetune_text(_texts(), seed=0, cfg={**CFG, "encoder_path": str(tmp_path / "no_such_encoder")})
    with pytest.raises(ValueError, match=r"tiny \[train\] has no raw_text"):
        F.finetune_text(tiny_ds, seed=0, cfg=CFG)
    with pytest.raises(ValueError, match="unknown fine-tuning options"):
        F.FinetuneConfig.from_dict({"lr": 1e-3})
    bad = _texts()
    bad["valid"] = (bad["valid"][0], bad["valid"][1][:3])
    with pytest.raises(ValueError, match="split 'valid': 8 texts but 3 labels"):
        F.finetune_text(bad, seed=0, cfg=CFG)
