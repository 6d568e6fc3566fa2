"""Shared fixtures: tiny seeded datasets built directly from the schema (no generator needed)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # this process only; notebook kernels force the inline backend themselves

from msa_lib.data.schema import MSADataset, Split  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = Path(os.environ.get("MSA_DATA_ROOT", ROOT.parent / "shared" / "data"))


def make_split(n: int, rng: np.random.Generator, dims=(12, 5, 7), L=(10, 8, 6), signal: float = 1.0) -> Split:
    """Random sequences whose text mean carries the label (so models can learn something)."""
    labels = np.clip(np.round(rng.normal(0, 1.3, n) * 5) / 5, -3, 3).astype(np.float32)
    arrs = {}
    for m, d, length in zip(("text", "audio", "vision"), dims, L):
        x = rng.normal(0, 1, (n, length, d)).astype(np.float32)
        x[:, :, 0] += signal * labels[:, None]
        arrs[m] = x
    lengths = {f"{m}_lengths": rng.integers(max(1, length // 2), length + 1, n) for m, length in zip(("text", "audio", "vision"), L)}
    return Split(**arrs, labels=labels, ids=np.array([f"s{i}" for i in range(n)]), **lengths)


@pytest.fixture
def tiny_ds() -> MSADataset:
    rng = np.random.default_rng(0)
    return MSADataset("tiny", make_split(64, rng), make_split(24, rng), make_split(24, rng),
                      provenance={"kind": "synthetic", "source": "tests"})


@pytest.fixture
def data_root() -> Path:
    if not (DATA_ROOT / "mosi" / "transcripts" / "train.tsv").exists():
        pytest.skip(f"real data not found at {DATA_ROOT} (set MSA_DATA_ROOT)")
    return DATA_ROOT
