"""Explanation providers and clue encoding for TEXT (msa_lib.features.explanations)."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from msa_lib.data import get_dataset
from msa_lib.data.schema import DataError, MSADataset, Split
from msa_lib.data.synth import parse_clue
from msa_lib.features import explanations as E
from msa_lib.features import text as T

MAX_LEN = 24


def _encoder_missing() -> str | None:
    try:
        p = T.default_text_encoder_path()
    except ImportError as e:
        return f"default text encoder package not installed ({e})"
    if not (p / "config.json").is_file() or not any((p / f).is_file() for f in T._WEIGHT_FILES):
        return f"default text encoder files not found under {p}"
    return None


@pytest.fixture(scope="module")
def encoder():
    reason = _encoder_missing()
    if reason:
        pytest.skip(reason)
    return T.TextEncoder(progress=False)


@pytest.fixture(scope="module")
def ds() -> MSADataset:
    return get_dataset("synth-mosi", seed=0, scale=0.03)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("clue_cache")


@pytest.fixture(scope="module")
def attached(ds, encoder, cache) -> MSADataset:
    return E.attach_explanations(ds, E.get_provider("synth"), cache_dir=cache, max_len=MAX_LEN, encoder=encoder)


# ------------------------------------------------------------------------------------ synth provider
def test_synth_provider_returns_split_clues(ds):
    for split, sp in ds.splits.items():
        a, v = E.SynthTemplateProvider().explain(ds, split)
        assert a.shape == v.shape == (len(sp),)
        assert (a == sp.audio_clue).all() and (v == sp.vision_clue).all()
    bare = ds.with_splits(valid=replace(ds.valid, audio_clue=None))
    with pytest.raises(DataError, match=r"synth-mosi \[valid\].*audio_clue"):
        E.SynthTemplateProvider().explain(bare, "valid")


def test_clue_noise_changes_some_clues(ds):
    noisy = get_dataset("synth-mosi", seed=0, scale=0.03, clue_noise=0.25)
    np.testing.assert_array_equal(noisy.train.audio, ds.train.audio)  # same samples, only the clues change
    a0, _ = E.SynthTemplateProvider().explain(ds, "train")
    a1, _ = E.SynthTemplateProvider().explain(noisy, "train")
    diff = a0 != a1
    assert diff.sum() == round(0.25 * len(a0))
    l0, l1 = parse_clue(a0[diff], "audio"), parse_clue(a1[diff], "audio")
    assert ((l0 * l1 < 0) | ((l0 == 0) & (l1 != 0))).all()  # swapped for the opposite polarity


# ------------------------------------------------------------------------------------ encoding
def test_attach_records_provenance_and_keeps_input(ds, attached):
    info = attached.provenance["explanations"]
    assert info["provider"] == "synth" and info["encoded"] and info["max_len"] == MAX_LEN
    assert info["encoder"] == "all-MiniLM-L6-v2" and info["encoder_identity"] == T.encoder_identity()
    assert info["n_strings"] == 2 * sum(ds.sizes.values()) and info["n_unique"] < info["n_strings"]
    assert ds.train.audio_clue_feats is None and "explanations" not in ds.provenance


def test_unique_encoding_matches_encoding_every_string(attached, encoder, tmp_path):
    sp = attached.train
    rows = np.array([0, 1, 2, 3, 4, 5, 0, 3])  # includes repeats
    texts = list(sp.audio_clue[rows]) + list(sp.vision_clue[rows])
    direct = T.encode_cached(texts, cache_dir=tmp_path, max_len=MAX_LEN, encoder=encoder)
    lc = sp.audio_clue_feats.shape[1]
    assert direct["mask"][:, lc:].sum() == 0  # trimming to Lc drops only padding
    got = np.concatenate([sp.audio_clue_feats[rows], sp.vision_clue_feats[rows]])
    np.testing.assert_allclose(got, direct["tokens"][:, :lc], atol=1e-5)
    mask = np.concatenate([sp.extras["audio_clue_mask"][rows], sp.extras["vision_clue_mask"][rows]])
    np.testing.assert_array_equal(mask, direct["mask"][:, :lc])


def test_batches_carry_clue_tensors(attached):
    lc = attached.train.audio_clue_feats.shape[1]
    assert 1 <= lc <= MAX_LEN
    b = next(attached.loader("train", batch_size=8))
    assert tuple(b.audio_clue.shape) == (8, lc, 384) and tuple(b.vision_clue.shape) == (8, lc, 384)
    np.testing.assert_array_equal(b.audio_clue.numpy(), attached.train.audio_clue_feats[:8])
    pad = ~attached.train.extras["audio_clue_mask"][:8]
    assert (b.audio_clue.numpy()[pad] == 0).all() and b.audio_clue.abs().sum() > 0
    sub = attached.test.subset(np.arange(3))  # masks in extras follow subsetting
    assert sub.extras["vision_clue_mask"].shape == (3, lc)


def test_none_yields_no_clue_feats(attached):
    out = E.attach_explanations(attached, E.get_provider("none"))  # needs no encoder
    for sp in out.splits.values():
        assert sp.audio_clue_feats is None and sp.vision_clue_feats is None and sp.audio_clue is None
        assert "audio_clue_mask" not in (sp.extras or {})
    assert out.provenance["explanations"]["provider"] == "none"
    assert out.provenance["explanations"]["encoded"] is False
    b = next(out.loader("train", batch_size=4))
    assert b.audio_clue is None and b.vision_clue is None


# ------------------------------------------------------------------------------------ file provider
def _clue_map(ds):
    return {s: (sp.audio_clue, sp.vision_clue) for s, sp in ds.splits.items()}


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_file_provider_round_trip(ds, tmp_path, suffix):
    path = E.FileProvider.write(tmp_path / f"clues{suffix}", _clue_map(ds))
    prov = E.get_provider("file", path=path)
    for split, sp in ds.splits.items():
        a, v = prov.explain(ds, split)
        assert a.tolist() == sp.audio_clue.tolist() and v.tolist() == sp.vision_clue.tolist()
    assert prov.describe(ds)["format"] == suffix[1:]


def test_file_provider_aligns_by_ids(ds, tmp_path):
    sp = ds.train
    rev = slice(None, None, -1)
    path = E.FileProvider.write(tmp_path / "c.json", {"train": (sp.audio_clue[rev], sp.vision_clue[rev])},
                                ids={"train": sp.ids[rev]})
    a, v = E.FileProvider(path).explain(ds, "train")
    assert a.tolist() == sp.audio_clue.tolist() and v.tolist() == sp.vision_clue.tolist()


def test_file_provider_errors(ds, tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(DataError, match=r"not found: .*nope\.json.*expected JSON .*\"audio\"") as e:
        E.FileProvider(missing)
    assert "CSV" in str(e.value)

    n = len(ds.valid)
    data = {s: {"audio": list(a), "vision": list(v)} for s, (a, v) in _clue_map(ds).items()}
    data["valid"]["vision"] = data["valid"]["vision"][:-1]
    p = tmp_path / "short.json"
    p.write_text(json.dumps(data))
    prov = E.FileProvider(p)
    prov.explain(ds, "train")  # the other splits are fine
    with pytest.raises(DataError, match=rf"short\.json \[valid\]: 'vision'.*expected {n}.*found {n - 1}"):
        prov.explain(ds, "valid")

    data = {s: {"audio": list(a), "vision": list(v)} for s, (a, v) in _clue_map(ds).items()}
    data["test"]["audio"][2] = 7
    p = tmp_path / "int.json"
    p.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"\[test\]: 'audio'\[2\] must be a string; found int"):
        E.FileProvider(p).explain(ds, "test")

    p = tmp_path / "notest.json"
    p.write_text(json.dumps({"train": data["train"]}))
    with pytest.raises(DataError, match=r"no explanations for split 'test'.*\['train'\]"):
        E.FileProvider(p).explain(ds, "test")


# ------------------------------------------------------------------------------------ prosody provider
def _loudness_ds() -> MSADataset:
    """6 clips, 3 audio columns; clips 0-2 loud (column 0 high), 3-5 quiet; clip 5 has a flat pitch."""
    rng = np.random.default_rng(0)
    n, L = 6, 10
    audio = rng.normal(0, 0.1, (n, L, 3)).astype(np.float32)
    audio[:3, :, 0] += 5.0
    audio[:, :, 1] += np.sin(np.arange(L) * (1 + np.arange(n))[:, None]).astype(np.float32)  # pitch wiggles
    audio[5, :, 1] = 0.0
    sp = Split(text=None, audio=audio, vision=None, labels=np.zeros(n, np.float32),
               ids=np.array([f"c{i}" for i in range(n)]), audio_lengths=np.full(n, L))
    return MSADataset("loudness", sp, None, None)


def test_prosody_sentences_deterministic_and_loudness_sensitive():
    ds = _loudness_ds()
    prov = E.ProsodyTemplateProvider(energy_cols=[0], pitch_cols=[1])
    a, v = prov.explain(ds, "train")
    again, _ = E.ProsodyTemplateProvider(energy_cols=[0], pitch_cols=[1]).explain(ds, "train")
    assert a.tolist() == again.tolist()
    assert all("louder than average" in s for s in a[:3]) and all("quieter than average" in s for s in a[3:])
    assert "pitch barely varies" in a[5]
    assert set(v) == {E.NEUTRAL_VISION_CLUE}
    generic, _ = E.get_provider("prosody").explain(ds, "train")  # all columns, generic wording
    assert set(generic[:3]).isdisjoint(generic[3:5])


def test_prosody_needs_audio(ds):
    text_only = ds.drop_modalities("audio")
    with pytest.raises(DataError, match=r"\[train\]: no audio features"):
        E.ProsodyTemplateProvider().explain(text_only, "train")


def test_prosody_works_on_synth_splits(ds):
    a, v = E.ProsodyTemplateProvider().explain(ds, "test")  # bins come from the train split
    assert a.shape == v.shape == (len(ds.test),) and all(s.startswith("the voice is ") for s in a)


# ------------------------------------------------------------------------------------ registry
def test_get_provider_names_and_unknown():
    assert isinstance(E.get_provider("synth"), E.SynthTemplateProvider)
    assert isinstance(E.get_provider("none"), E.NoExplanations)
    with pytest.raises(KeyError, match=r"unknown explanation provider 'mllm'.*synth, file, prosody, none"):
        E.get_provider("mllm")
