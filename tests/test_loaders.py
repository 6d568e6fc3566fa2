"""Loaders: the real MMSA sample, layout-exact fixtures, every bad-input error, and the real MOSI/MOSEI files.

Real data is read in place from ``$MSA_DATA_ROOT`` / ``../shared/data``; tests that need it skip with
the reason when it is absent. Fixture pickles are written into pytest's tmp_path with
`write_mmsa_like` / `write_multibench_like` (random numbers in the exact real key set and dtypes).
"""
from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from msa_lib.data.mmsa import load_mmsa, load_multibench, write_mmsa_like, write_multibench_like
from msa_lib.data.real import (data_available, default_data_root, load_bclstm_audio, load_mosi_text,
                               mosei_label_table, mosi_label_table, mosi_transcripts, read_mosi_csd)
from msa_lib.data.schema import DataError

ROOT = default_data_root()
SAMPLE = ROOT / "samples" / "mmsa_unaligned_example.pkl"
needs_sample = pytest.mark.skipif(not SAMPLE.is_file(), reason=f"real MMSA sample not found at {SAMPLE} "
                                  f"(set MSA_DATA_ROOT to the shared data folder)")
needs_data = pytest.mark.skipif(not data_available(ROOT), reason=f"real data not found under {ROOT} "
                                "(set MSA_DATA_ROOT to the shared data folder)")


# ------------------------------------------------------------------------------------- real sample
@needs_sample
def test_real_flat_mmsa_sample():
    ds = load_mmsa(SAMPLE)
    assert ds.train is None and ds.valid is None
    t = ds.test
    assert t.text.shape == (2, 50, 768) and t.audio.shape == (2, 1432, 25) and t.vision.shape == (2, 143, 171)
    assert t.text.dtype == t.audio.dtype == t.vision.dtype == np.float32  # vision was float64 on disk
    assert t.labels is None
    assert t.audio_lengths.tolist() == [477, 478] and t.vision_lengths.tolist() == [48, 48]
    raw = pickle.load(open(SAMPLE, "rb"))
    assert t.text_lengths.tolist() == raw["text_bert"][:, 1].sum(1).tolist()
    assert np.array_equal(t.vision, raw["vision"].astype(np.float32))
    p = ds.provenance
    assert p["kind"] == "real" and p["labelled"] is False and p["layout"] == "mmsa-unaligned"
    assert p["md5"] == "a5856323241f38299ce34a2fc181cfe7" and p["n_sanitised"] == 0
    assert ds.sizes == {"test": 2} and ds.dims == {"text": 768, "audio": 25, "vision": 171}
    batch = next(ds.loader("test", batch_size=2))
    assert batch.labels is None and batch.audio_mask.sum().item() == 477 + 478


# ------------------------------------------------------------------------------------- fixtures
@pytest.mark.parametrize("aligned", [True, False])
def test_fixture_round_trip(tmp_path, aligned):
    info = write_mmsa_like(tmp_path / "f.pkl", n=(8, 4, 5), L=(50, 40, 30), dims=(768, 5, 20), aligned=aligned)
    raw = pickle.load(open(info["path"], "rb"))
    assert set(raw) == {"train", "valid", "test"}
    keys = {"raw_text", "audio", "vision", "id", "text", "text_bert", "regression_labels", "classification_labels"}
    if not aligned:
        keys |= {"audio_lengths", "vision_lengths"}
    assert set(raw["train"]) == keys
    assert raw["train"]["text"].dtype == np.float32 and raw["train"]["text_bert"].dtype == np.int64
    assert raw["train"]["text_bert"].shape == (8, 3, 50)
    assert raw["train"]["vision"].dtype == (np.float32 if aligned else np.float64)
    assert raw["train"]["regression_labels"].dtype == np.float32

    ds = load_mmsa(info["path"], name="fixture-mosi")
    assert ds.sizes == {"train": 8, "valid": 4, "test": 5}
    assert ds.provenance["layout"] == ("mmsa-aligned" if aligned else "mmsa-unaligned")
    assert ds.metric_family == "mosi" and ds.label_range == (-3.0, 3.0)
    tr = ds.train
    assert np.array_equal(tr.labels, raw["train"]["regression_labels"])
    assert tr.ids.tolist() == raw["train"]["id"].tolist() and tr.raw_text[0] == raw["train"]["raw_text"][0]
    assert np.array_equal(tr.text_lengths, raw["train"]["text_bert"][:, 1].sum(1))
    if aligned:
        assert ds.seq_lens == {"text": 50, "audio": 50, "vision": 50}
        assert (tr.audio_lengths == 50).all() and (tr.vision_lengths == 50).all()
    else:
        assert ds.seq_lens == {"text": 50, "audio": 40, "vision": 30}
        assert np.array_equal(tr.audio_lengths, raw["train"]["audio_lengths"])
    assert tr.vision.dtype == np.float32
    assert "classification_labels" in tr.extras and tr.extras["text_bert"].shape == (8, 3, 50)


def test_fixture_sims_inference(tmp_path):
    info = write_mmsa_like(tmp_path / "sims_unaligned_39.pkl", L=(39, 40, 55), dims=(768, 33, 709),
                           label_range=(-1, 1), unimodal_labels=True)
    ds = load_mmsa(info["path"])
    assert ds.metric_family == "sims" and ds.label_range == (-1.0, 1.0)
    assert {"regression_labels_T", "regression_labels_A", "regression_labels_V"} <= set(ds.provenance["extra_fields"])


def test_sanitise_counts(tmp_path):
    info = write_mmsa_like(tmp_path / "nf.pkl", inject_nonfinite=True)
    with pytest.warns(UserWarning, match=r"replaced 24 non-finite"):
        ds = load_mmsa(info["path"])
    san = ds.provenance["sanitised"]
    for split, per in info["nonfinite"].items():
        for m, k in per.items():
            assert sum(san[split][m].values()) == k, (split, m)
    assert san["train"]["audio"] == {"nan": 2, "posinf": 1, "neginf": 3}
    assert ds.provenance["n_sanitised"] == 24
    raw = pickle.load(open(info["path"], "rb"))
    bad = ~np.isfinite(raw["train"]["audio"])
    assert bad.sum() == 6 and (ds.train.audio[bad] == 0).all()
    assert np.isfinite(ds.train.vision).all() and np.isfinite(ds.test.audio).all()


def test_multibench_round_trip(tmp_path):
    info = write_multibench_like(tmp_path / "mosei_senti_data.pkl", n=(6, 3, 4), L=50, dims=(300, 74, 35),
                                 inject_nonfinite=True)
    with pytest.warns(UserWarning, match="non-finite"):
        ds = load_multibench(info["path"])
    assert ds.metric_family == "mosei" and ds.provenance["layout"] == "multibench"
    assert ds.dims == {"text": 300, "audio": 74, "vision": 35} and ds.sizes == {"train": 6, "valid": 3, "test": 4}
    raw = pickle.load(open(info["path"], "rb"))
    assert np.array_equal(ds.test.labels, raw["test"]["labels"].reshape(-1))
    assert ds.train.ids[0] == "$_$".join(raw["train"]["id"][0])
    assert ds.provenance["n_sanitised"] == 12 and (ds.train.audio_lengths == 50).all()


# ------------------------------------------------------------------------------------- bad input
def _dump(path: Path, obj) -> Path:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)
    return path


def test_missing_file_says_how_to_obtain(tmp_path):
    p = tmp_path / "aligned_50.pkl"
    with pytest.raises(DataError, match=r"aligned_50\.pkl: file not found.*thuiar/MMSA.*data_root"):
        load_mmsa(p)
    with pytest.raises(DataError, match=r"mosi_data\.pkl: file not found.*MulT"):
        load_multibench(tmp_path / "mosi_data.pkl")


def test_not_a_pickle(tmp_path):
    p = tmp_path / "junk.pkl"
    p.write_bytes(b"this is not a pickle at all")
    with pytest.raises(DataError, match=r"junk\.pkl: not a readable pickle"):
        load_mmsa(p)


def test_non_dict_pickle_names_type(tmp_path):
    p = _dump(tmp_path / "list.pkl", [1, 2, 3])
    with pytest.raises(DataError, match=r"list\.pkl: expected a pickled dict.*found an object of type list"):
        load_mmsa(p)
    with pytest.raises(DataError, match=r"type tuple"):
        load_multibench(_dump(tmp_path / "t.pkl", (1, 2)))


def _fixture(tmp_path, **kw):
    info = write_mmsa_like(tmp_path / "fx.pkl", **kw)
    return pickle.load(open(info["path"], "rb"))


def test_missing_split_key(tmp_path):
    raw = _fixture(tmp_path)
    del raw["valid"]
    p = _dump(tmp_path / "nosplit.pkl", raw)
    with pytest.raises(DataError, match=r"nosplit\.pkl: missing split key 'valid'; keys found: \['test', 'train'\]"):
        load_mmsa(p)


def test_missing_field_key(tmp_path):
    raw = _fixture(tmp_path)
    del raw["test"]["audio"]
    p = _dump(tmp_path / "nofield.pkl", raw)
    with pytest.raises(DataError, match=r"nofield\.pkl \[test\]: split 'test' is missing field 'audio'; keys found: "
                                        r"\['audio_lengths', 'classification_labels'.*"):
        load_mmsa(p)


def test_wrong_shape(tmp_path):
    raw = _fixture(tmp_path)
    raw["train"]["audio"] = raw["train"]["audio"][:, :, 0]  # (N, L) instead of (N, L, d)
    p = _dump(tmp_path / "shape.pkl", raw)
    with pytest.raises(DataError, match=r"shape\.pkl \[train\]: field 'audio' has the wrong shape: "
                                        r"expected \(N, La, da\), found \(8, 50\)"):
        load_mmsa(p)
    raw = _fixture(tmp_path)
    raw["valid"]["text_bert"] = raw["valid"]["text_bert"][:, :2]
    p = _dump(tmp_path / "tb.pkl", raw)
    with pytest.raises(DataError, match=r"'text_bert' has the wrong shape: expected \(4, 3, 50\).*found \(4, 2, 50\)"):
        load_mmsa(p)


def test_mismatched_n(tmp_path):
    raw = _fixture(tmp_path)
    raw["train"]["vision"] = raw["train"]["vision"][:5]
    p = _dump(tmp_path / "n.pkl", raw)
    with pytest.raises(DataError, match=r"n\.pkl \[train\]: field 'vision' has 5 samples but 'text' has 8"):
        load_mmsa(p)
    raw = _fixture(tmp_path)
    raw["train"]["regression_labels"] = raw["train"]["regression_labels"][:7]
    p = _dump(tmp_path / "n2.pkl", raw)
    with pytest.raises(DataError, match=r"'regression_labels' has the wrong shape: expected \(8,\).*found \(7,\)"):
        load_mmsa(p)


def test_nan_labels(tmp_path):
    lab = np.linspace(-2, 2, 8).astype(np.float32)
    lab[[1, 4]] = np.nan
    info = write_mmsa_like(tmp_path / "nanlab.pkl", labels={"train": lab})
    with pytest.raises(DataError, match=r"nanlab\.pkl \[train\]: field 'regression_labels' contains 2 NaN label"):
        load_mmsa(info["path"])
    info = write_multibench_like(tmp_path / "nanmb.pkl", labels={"test": [np.nan, 0, 1, 2]})
    with pytest.raises(DataError, match=r"nanmb\.pkl \[test\]: field 'labels' contains 1 NaN"):
        load_multibench(info["path"])


def test_empty_split(tmp_path):
    info = write_mmsa_like(tmp_path / "empty.pkl", n=(8, 0, 4))
    with pytest.raises(DataError, match=r"empty\.pkl \[valid\]: split 'valid' is empty \(0 samples\)"):
        load_mmsa(info["path"])


def test_label_out_of_range(tmp_path):
    info = write_mmsa_like(tmp_path / "range.pkl", labels={"test": [0.0, 3.5, -0.2, 1.0]})
    with pytest.raises(DataError, match=r"range\.pkl: .*\[test\]: 1 label\(s\) outside the label range \[-3\.0, 3\.0\]"):
        load_mmsa(info["path"])
    info = write_mmsa_like(tmp_path / "r2.pkl", labels={"train": np.full(8, 2.0)})
    with pytest.raises(DataError, match=r"outside the label range \[-1\.0, 1\.0\]"):
        load_mmsa(info["path"], metric_family="sims")


def test_py2_latin1_pickle(tmp_path):
    from msa_lib.data.mmsa import _read_pickle
    # a Python-2 pickle: {'x': 'caf\xe9'} with py2 byte strings (SHORT_BINSTRING), unreadable as ASCII
    p = tmp_path / "py2.pkl"
    p.write_bytes(b"\x80\x02}q\x00(U\x01xq\x01U\x04caf\xe9q\x02u.")
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(p.read_bytes())
    assert _read_pickle(p, "hint") == {"x": "caf\xe9"}
    with pytest.raises(DataError, match=r"py2\.pkl: missing split key 'train'.*keys found: \['x'\]"):
        load_mmsa(p)


# ------------------------------------------------------------------------------------- real MOSI / MOSEI
@needs_data
def test_mosi_transcripts_match_provenance():
    tables = mosi_transcripts(ROOT)
    assert {s: len(t) for s, t in tables.items()} == {"train": 1284, "valid": 229, "test": 686}
    seg = mosi_label_table(ROOT)
    assert len(seg) == 2199
    for split, df in tables.items():
        # PROVENANCE: per split, the multiset of tsv labels equals the SDK labels of the standard folds
        a = Counter(np.round(df["label"].to_numpy(np.float64), 3))
        b = Counter(np.round(seg.loc[seg["split"] == split, "label"].to_numpy(np.float64), 3))
        assert a == b, split
    csd = read_mosi_csd(ROOT)
    assert len(csd) == 2199 and csd["video"].nunique() == 93 and list(csd.columns) == ["video", "start", "end", "label"]
    assert np.allclose(np.sort(csd["label"].to_numpy()), np.sort(seg["label"].to_numpy()), atol=1e-5)


@needs_data
def test_load_mosi_text_small(tmp_path):
    from msa_lib.features.text import TextEncoder
    enc = TextEncoder(progress=False)
    ds = load_mosi_text(ROOT, encoder=enc, cache_dir=tmp_path / "cache", max_samples=16, seed=0)
    assert ds.name == "mosi-text" and ds.sizes == {"train": 16, "valid": 16, "test": 16}
    assert ds.modalities == ("text",) and ds.dims == {"text": 384} and ds.seq_lens == {"text": 50}
    assert ds.train.audio is None and ds.train.raw_text is not None
    assert ds.label_range == (-3.0, 3.0) and ds.metric_family == "mosi"
    p = ds.provenance
    assert p["kind"] == "real" and p["subsampled"] and p["full_sizes"] == {"train": 1284, "valid": 229, "test": 686}
    assert p["md5"]["train"] == "c7c9e20815e7f06ef9fbae338120554c" and "no clip ids" in p["ids_note"]
    # ids point back at tsv rows, and labels / text match those rows
    tables = mosi_transcripts(ROOT)
    rows = [int(i.split("_")[1]) for i in ds.valid.ids]
    assert np.allclose(ds.valid.labels, tables["valid"]["label"].to_numpy()[rows])
    assert ds.valid.raw_text[0] == tables["valid"]["text"].iloc[rows[0]].strip()
    assert (ds.train.text_lengths >= 3).all() and ds.train.extras["text_pooled"].shape == (16, 384)
    # same seed → same rows; second call is a cache hit and identical
    again = load_mosi_text(ROOT, encoder=enc, cache_dir=tmp_path / "cache", max_samples=16, seed=0)
    assert again.train.ids.tolist() == ds.train.ids.tolist() and np.array_equal(again.train.text, ds.train.text)
    with pytest.raises(DataError, match=r"(?s)MOSI transcripts folder not found.*expected layout"):
        load_mosi_text(tmp_path / "nowhere", encoder=enc)


@needs_data
def test_mosei_label_table():
    df = mosei_label_table(ROOT)
    assert df.shape[0] == 23259
    assert df["split_name"].value_counts().to_dict() == {"train": 16327, "test": 4662, "valid": 1871, "none": 399}
    assert set(df["emotion"]) == {"happy", "sad", "anger", "surprise", "disgust", "fear"}
    assert (df.loc[df["label6"] == 2, "emotion"] == "anger").all()
    assert df["label7"].between(-3, 3).all()


@needs_data
def test_bclstm_audio():
    d = load_bclstm_audio(ROOT)
    assert d["train_x"].shape == (62, 63, 73) and d["test_x"].shape == (31, 63, 73) and d["max_len"] == 63
    assert d["train_lengths"].sum() == 1447 and d["test_lengths"].sum() == 752
    assert d["mask_train"].sum() == 1447
    assert set(np.unique(d["train_y"][d["mask_train"]])) <= {0.0, 1.0}


def test_mmsa_loader_keeps_text_explanation_strings(tmp_path):
    """The TEXT authors' pickles carry audio_clue / visual_clue strings; they land in the split's clue slots."""
    import pickle
    from msa_lib.data import load_mmsa
    from msa_lib.data.mmsa import write_mmsa_like
    pkl = tmp_path / "unaligned_50.pkl"
    write_mmsa_like(pkl, n=(6, 3, 3), L=(50, 60, 40), seed=0)
    d = pickle.loads(pkl.read_bytes())
    for split, sd in d.items():
        n = len(sd["regression_labels"])
        sd["audio_clue"] = np.array([f"the voice of {split} {i}" for i in range(n)], dtype=object)
        sd["visual_clue"] = np.array([f"the face of {split} {i}" for i in range(n)], dtype=object)
    pkl.write_bytes(pickle.dumps(d))
    ds = load_mmsa(pkl)
    assert ds.train.audio_clue[1] == "the voice of train 1" and ds.test.vision_clue[2] == "the face of test 2"
    d["valid"]["audio_clue"] = d["valid"]["audio_clue"][:2]
    pkl.write_bytes(pickle.dumps(d))
    with pytest.raises(DataError, match="audio_clue"):
        load_mmsa(pkl)
