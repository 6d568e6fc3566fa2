"""The shared interfaces: get_dataset names, the loader / Batch contract, mosi-semi labelling."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from msa_lib.data import DataError, get_dataset
from msa_lib.data.mmsa import write_mmsa_like
from msa_lib.data.schema import Batch

from .conftest import ROOT


def test_synth_presets_via_registry():
    ds = get_dataset("synth-sims", seed=0, scale=0.05)
    assert ds.name == "synth-sims" and ds.label_range == (-1.0, 1.0) and ds.metric_family == "sims"
    assert ds.dims == {"text": 768, "audio": 33, "vision": 709}
    assert ds.provenance["kind"] == "synthetic"


def test_unknown_dataset_lists_known_names():
    with pytest.raises(KeyError, match="synth-mosi"):
        get_dataset("mosi-full")


def test_loader_batch_contract():
    ds = get_dataset("synth-mosi", seed=1, scale=0.05)
    batches = list(ds.loader("train", batch_size=16, shuffle=True, seed=3))
    assert sum(len(b) for b in batches) == len(ds.train)
    b = batches[0]
    assert isinstance(b, Batch)
    for m, d in ds.dims.items():
        x, mask = getattr(b, m), getattr(b, f"{m}_mask")
        assert x.dtype == torch.float32 and x.shape[0] == 16 and x.shape[2] == d
        assert mask.dtype == torch.bool and mask.shape == x.shape[:2]
        assert (x[~mask] == 0).all(), f"{m}: padded frames must be zero"
    assert b.labels.shape == (16,) and b.interaction.dtype == torch.long and b.emotions.shape == (16, 6)
    assert b.domain is not None
    # Same seed -> same order; different seed -> different order.
    again = next(ds.loader("train", 16, shuffle=True, seed=3))
    other = next(ds.loader("train", 16, shuffle=True, seed=4))
    assert torch.equal(b.index, again.index) and not torch.equal(b.index, other.index)
    # Unshuffled batches follow the split order.
    assert next(ds.loader("test", 8)).index.tolist() == list(range(8))


def test_mmsa_prefix(tmp_path):
    p = tmp_path / "unaligned_50.pkl"
    write_mmsa_like(p, n=(6, 3, 3), inject_nonfinite=True)
    with pytest.warns(UserWarning):
        ds = get_dataset(f"mmsa:{p}")
    assert ds.sizes == {"train": 6, "valid": 3, "test": 3}
    assert ds.provenance["n_sanitised"] > 0
    with pytest.raises(DataError, match="obtain|download|MMSA"):
        get_dataset(f"mmsa:{tmp_path / 'missing.pkl'}")


def test_mosi_semi_is_labelled_semi_synthetic(data_root):
    ds = get_dataset("mosi-semi", seed=0, data_root=data_root, max_samples=12)
    assert ds.provenance["kind"] == "semi-synthetic" and "SEMI-SYNTHETIC" in ds.provenance["label"]
    assert ds.is_synthetic
    text = get_dataset("mosi-text", seed=0, data_root=data_root, max_samples=12)
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(ds.split(s).labels, text.split(s).labels)  # real labels kept
        np.testing.assert_array_equal(ds.split(s).text, text.split(s).text)  # real text kept
    assert ds.dims["audio"] == 5 and ds.dims["vision"] == 20
    assert ds.train.interaction is not None and ds.train.audio_clue is not None


def test_mosi_text_has_no_audio_and_models_say_so(data_root):
    from msa_lib.models import build
    ds = get_dataset("mosi-text", seed=0, data_root=data_root, max_samples=8)
    assert ds.modalities == ("text",) and ds.provenance["kind"] == "real"
    with pytest.raises(ValueError, match="at least two modalities"):
        build("mult", ds.dims)


def test_step_time_benchmark_json():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "step_time.py"), "--models", "early_fusion,text_mlp",
                          "--batch", "8", "--dataset", "synth-mosi", "--json"], capture_output=True, text=True,
                         timeout=300, check=True)
    rows = json.loads(out.stdout)
    assert [r["model"] for r in rows] == ["early_fusion", "text_mlp"]
    for r in rows:
        assert set(r) == {"model", "batch", "ms_per_step", "samples_per_s", "n_params"}
        assert r["batch"] == 8 and r["ms_per_step"] > 0 and r["n_params"] > 0
        assert r["samples_per_s"] == pytest.approx(8 / (r["ms_per_step"] / 1000), rel=0.01)


def test_cli_lists_models():
    out = subprocess.run([sys.executable, "-m", "msa_lib.cli", "models"], capture_output=True, text=True, check=True)
    assert {"early_fusion", "late_fusion", "mult"} <= set(out.stdout.split())
