"""Text (MiniLM) and audio (librosa) features, including a check against real MMSA-FET librosa output."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from msa_lib.data.real import default_data_root
from msa_lib.features import audio as A
from msa_lib.features import text as T

SENTS = ["I MEAN THAT WAS IMPRESSIVE", "the movie was terribly boring", "ok"]
SAMPLES = default_data_root() / "samples"
MMSAFET = SAMPLES / "clip_0001_mmsafet_librosa_unaligned.pkl"
needs_mmsafet = pytest.mark.skipif(not MMSAFET.is_file(), reason=f"real MMSA-FET sample not found at {MMSAFET}")


@pytest.fixture(scope="module")
def encoder():
    return T.TextEncoder(progress=False)


# ------------------------------------------------------------------------------------- text
def test_default_path_is_bundled_minilm():
    p = T.default_text_encoder_path()
    assert (p / "config.json").is_file() and (p / "model.safetensors").is_file()


def test_encode_shapes_mask_pooling(encoder):
    tokens, mask, pooled = encoder.encode(SENTS, max_len=50)
    assert tokens.shape == (3, 50, 384) and mask.shape == (3, 50) and pooled.shape == (3, 384)
    assert tokens.dtype == np.float32 and pooled.dtype == np.float32 and mask.dtype == bool
    n_tok = [len(encoder.tokenizer(s)["input_ids"]) for s in SENTS]  # incl. [CLS] and [SEP]
    assert mask.sum(1).tolist() == n_tok
    assert (tokens[~mask] == 0).all()
    mean = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(pooled, mean, rtol=1e-5, atol=1e-6)
    # deterministic, and independent of batch composition up to float rounding
    t1, m1, p1 = encoder.encode(SENTS, max_len=50)
    assert np.array_equal(t1, tokens) and np.array_equal(p1, pooled)
    t2, m2, p2 = encoder.encode(SENTS[::-1], max_len=50, batch_size=2)
    np.testing.assert_allclose(p2[::-1], pooled, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(t2[::-1], tokens, rtol=1e-4, atol=1e-4)
    assert np.array_equal(m2[::-1], mask)
    # truncation to max_len
    t3, m3, _ = encoder.encode(["word " * 100], max_len=50)
    assert m3.sum() == 50


def test_uncased_tokenizer(encoder):
    assert encoder.lowercases  # MOSI transcripts are upper-case; MiniLM's tokenizer lowercases
    _, _, a = encoder.encode(["THAT WAS IMPRESSIVE"])
    _, _, b = encoder.encode(["that was impressive"])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_pooled_matches_sentence_transformers_similarity(encoder):
    _, _, p = encoder.encode(["a great film", "an excellent movie", "the stock market fell today"])
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    assert p[0] @ p[1] > p[0] @ p[2] + 0.2


def test_encode_cached_hit(tmp_path, encoder, monkeypatch):
    first = T.encode_cached(SENTS, cache_dir=tmp_path, encoder=encoder)
    assert not first["cache_hit"] and first["tokens"].shape == (3, 50, 384)
    assert list(tmp_path.glob(".tmp_*")) == [] and len(list(tmp_path.glob("*.npz"))) == 1

    class Boom(T.TextEncoder):
        def __init__(self, *a, **k):
            raise AssertionError("a cache hit must not build the model")

    monkeypatch.setattr(T, "TextEncoder", Boom)
    second = T.encode_cached(SENTS, cache_dir=tmp_path)  # by path: no model needed on a hit
    assert second["cache_hit"] and second["seconds"] < first["seconds"]
    for k in ("tokens", "mask", "pooled"):
        assert np.array_equal(first[k], second[k])
    # a different max_len or text list is a different key
    with pytest.raises(AssertionError, match="must not build"):
        T.encode_cached(SENTS[:2], cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="must not build"):
        T.encode_cached(SENTS, cache_dir=tmp_path, max_len=32)


def test_module_exposes_hf_model(encoder):
    import torch
    assert isinstance(encoder.module, torch.nn.Module)
    enc = encoder.tokenize(SENTS, max_len=16)
    assert enc["input_ids"].shape == (3, 16)


# ------------------------------------------------------------------------------------- audio
def _sine(sec=1.28, sr=22050, f=220.0):
    t = np.arange(int(sec * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_audio_features_sine():
    y = _sine()
    frames, names = A.audio_features(y, sr=22050)
    assert frames.shape == (1 + len(y) // 512, 33) and len(names) == 33 and frames.dtype == np.float32
    assert np.isfinite(frames).all()
    f0 = frames[2:-2, names.index("f0_hz")]
    assert abs(np.median(f0) - 220) < 5
    cen = frames[2:-2, names.index("spectral_centroid")]
    assert abs(np.median(cen) - 220) < 60
    # stereo (channels, n) input is averaged to mono; very short input is padded
    frames2, _ = A.audio_features(np.stack([y, y]), sr=22050)
    np.testing.assert_allclose(frames2, frames, rtol=1e-4, atol=1e-3)
    short, _ = A.audio_features(y[:300], sr=22050)
    assert short.shape[1] == 33 and np.isfinite(short).all()


def test_frame_to_length():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    out, n = A.frame_to_length(x, 15)
    assert out.shape == (15, 2) and n == 10 and (out[10:] == 0).all()
    out, n = A.frame_to_length(x, 4)
    assert n == 4 and np.array_equal(out, x[:4])
    out, n = A.frame_to_length(x, 4, mode="uniform")
    assert np.array_equal(out[[0, -1]], x[[0, -1]])
    batch, lengths = A.frames_to_batch([x, x[:3]], 5)
    assert batch.shape == (2, 5, 2) and lengths.tolist() == [5, 3]


def test_mp4_decodes_without_ffmpeg_executable(monkeypatch):
    """mp4 audio goes through PyAV (FFmpeg bundled in its wheel): no ffmpeg on PATH is needed."""
    clip = SAMPLES / "mosi_clip_label_2.6.mp4"
    if not clip.is_file():
        pytest.skip(f"real clip not found at {clip}")
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(A.shutil, "which", lambda *a, **k: None)
    assert not A.ffmpeg_available()
    y, sr = A.load_audio(clip, sr=16000)
    assert sr == 16000 and y.dtype == np.float32 and y.ndim == 1 and abs(len(y) / sr - 1.31) < 0.02


def test_mp4_clip_features():
    clip = SAMPLES / "mosi_clip_label_2.6.mp4"
    if not clip.is_file():
        pytest.skip(f"real clip not found at {clip}")
    frames, names = A.audio_features(clip)
    assert frames.shape[1] == 33 and frames.shape[0] > 20 and np.isfinite(frames).all()


# ------------------------------------------------------------------------------------- MMSA-FET parity
@pytest.fixture(scope="module")
def mmsafet():
    return pickle.load(open(MMSAFET, "rb"))


@needs_mmsafet
def test_mmsafet_config_and_shape(mmsafet):
    cfg = mmsafet["config"]["audio"]
    assert cfg["tool"] == "librosa" and cfg["sample_rate"] == 22050
    assert list(cfg["features"]) == [g for g, _ in A.MMSAFET_GROUPS]
    assert cfg["features"] == A.MMSAFET_LIBROSA_CONFIG["features"]
    ref = mmsafet["audio"]
    # The clip's audio track lasts 1.28 s: at 22050 Hz and hop 128 that is 1 + 28224 // 128 = 221 frames.
    ours, names = A.mmsafet_librosa_features(_sine(1.28), sr=22050, config=cfg)
    assert ours.shape == ref.shape == (221, 70) and len(names) == 70


@needs_mmsafet
def test_mmsafet_derived_groups_match_exactly(mmsafet):
    """tonnetz and chroma_cens are functions of chroma_cqt: recomputing them from the stored chroma_cqt with
    our librosa reproduces the stored columns, so the group order is right and the post-processing agrees."""
    import librosa
    import scipy.ndimage

    ref = mmsafet["audio"]
    sl = A.mmsafet_group_slices()
    cqt = ref[:, sl["chroma_cqt"]].T
    tonnetz = librosa.feature.tonnetz(chroma=cqt, sr=22050).T
    np.testing.assert_allclose(tonnetz, ref[:, sl["tonnetz"]], atol=1e-6)
    # chroma_cens post-processing (librosa.feature.chroma_cens after its internal chroma_cqt)
    ch = librosa.util.normalize(cqt, norm=1, axis=0)
    q = sum((ch > s) * 0.25 for s in (0.4, 0.2, 0.1, 0.05))
    win = librosa.filters.get_window("hann", 43, fftbins=False)
    cens = librosa.util.normalize(scipy.ndimage.convolve(q, (win / win.sum())[None, :], mode="constant"), norm=2, axis=0)
    np.testing.assert_allclose(cens.T, ref[:, sl["chroma_cens"]], atol=1e-6)


@needs_mmsafet
def test_mmsafet_silent_frames_fingerprint(mmsafet):
    """The clip starts with >= 512 zero samples (rms is 0 in frames 0-2). For the groups whose value on
    silence does not depend on the rest of the clip, our extractor gives the stored numbers exactly."""
    ref = mmsafet["audio"]
    sl = A.mmsafet_group_slices()
    assert (ref[:3, sl["rms"]] == 0).all()
    rng = np.random.default_rng(0)
    y = np.concatenate([np.zeros(512), 0.1 * rng.normal(size=28224 - 512)]).astype(np.float32)
    ours, _ = A.mmsafet_librosa_features(y, sr=22050)
    for g in ("chroma_stft", "rms", "spectral_centroid", "spectral_bandwidth", "spectral_flatness",
              "spectral_rolloff", "poly_features", "zero_crossing_rate"):
        np.testing.assert_allclose(ours[:3, sl[g]], ref[:3, sl[g]], atol=1e-5, err_msg=g)


@needs_mmsafet
def test_mmsafet_full_clip_correlation(mmsafet):
    """The full comparison decodes the clip's audio (AAC in mp4) with PyAV. Thresholds are loose here;
    tests/test_media.py checks the per-column numbers. Per-group correlations are printed (pytest -s)."""
    clip = SAMPLES / "clip_0001.mp4"
    ours, _ = A.mmsafet_librosa_features(clip)
    ref = mmsafet["audio"]
    assert abs(ours.shape[0] - ref.shape[0]) <= 4 and ours.shape[1] == 70
    corr = A.group_correlations(ours, ref, max_lag=4)
    print("MMSA-FET per-group correlation:", {k: round(v, 3) for k, v in corr.items()})
    for g in ("mfcc", "rms", "spectral_centroid", "spectral_rolloff", "zero_crossing_rate"):
        assert corr[g] > 0.8, (g, corr[g])
