"""Raw clip → prediction: PyAV decoding, OpenFace CSV reading, the OpenCV face extractor, checkpoints, predict.

Tiny media files are generated with PyAV itself, so everything but the real-clip checks runs without
``../shared/data``; the real-clip checks skip with the path they looked for.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from msa_lib.data.real import default_data_root
from msa_lib.data.schema import Batch
from msa_lib.features import audio as A
from msa_lib.features import media as M
from msa_lib.features import vision as V

SAMPLES = default_data_root() / "samples"
CLIP1 = SAMPLES / "clip_0001.mp4"
MOSI_CLIP = SAMPLES / "mosi_clip_label_2.6.mp4"
MMSAFET = SAMPLES / "clip_0001_mmsafet_librosa_unaligned.pkl"
MOSI_TRANSCRIPT = "i mean that was impressive"


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"real sample not found at {path} (set MSA_DATA_ROOT)")
    return path


# ----------------------------------------------------------------------------------------- synthetic media
def _sine(n: int, sr: int, f: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * f * np.arange(n) / sr)).astype(np.float32)


def _square_frame(k: int, size=(64, 48)) -> np.ndarray:
    w, h = size
    img = np.full((h, w, 3), 20, dtype=np.uint8)
    x = 4 + 4 * k
    img[12:36, x:x + 16] = 235  # a bright square moving right by 4 px per frame
    return img


def write_clip(path: Path, seconds: float = 1.0, sr: int = 16000, fps: int = 10, audio: bool = True,
               video: bool = True, size=(64, 48)) -> Path:
    """An mp4 (mpeg4 video of a moving square + AAC mono 440 Hz) written with PyAV."""
    import av

    with av.open(str(path), "w") as c:
        vs = ast = None
        if video:
            vs = c.add_stream("mpeg4", rate=fps)
            vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        if audio:
            ast = c.add_stream("aac", rate=sr)
            ast.layout = "mono"
        if vs is not None:
            for k in range(int(round(seconds * fps))):
                for pkt in vs.encode(av.VideoFrame.from_ndarray(_square_frame(k, size), format="rgb24")):
                    c.mux(pkt)
            for pkt in vs.encode(None):
                c.mux(pkt)
        if ast is not None:
            y = _sine(int(seconds * sr), sr)
            for i in range(0, len(y), 1024):
                fr = av.AudioFrame.from_ndarray(y[None, i:i + 1024], format="fltp", layout="mono")
                fr.sample_rate, fr.pts = sr, i
                for pkt in ast.encode(fr):
                    c.mux(pkt)
            for pkt in ast.encode(None):
                c.mux(pkt)
    return path


def write_wav(path: Path, y: np.ndarray, sr: int) -> Path:
    """A 16-bit PCM wav written with PyAV; ``y`` is (channels, n) float in [-1, 1]."""
    import av

    y = np.atleast_2d(y)
    layout = "mono" if y.shape[0] == 1 else "stereo"
    pcm = np.round(np.clip(y, -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), "w", format="wav") as c:
        st = c.add_stream("pcm_s16le", rate=sr)
        st.layout = layout
        fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.T.reshape(1, -1)), format="s16", layout=layout)
        fr.sample_rate, fr.pts = sr, 0
        for pkt in st.encode(fr):
            c.mux(pkt)
        for pkt in st.encode(None):
            c.mux(pkt)
    return path


@pytest.fixture(scope="module")
def tmp_media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    (d / "random.mp4").write_bytes(rng.bytes(4096))
    (d / "notes.wav").write_text("not audio at all\n" * 50)
    stereo = np.stack([_sine(8000, 16000), 0.5 * _sine(8000, 16000)])
    return {"clip": write_clip(d / "clip.mp4"), "silent_video": write_clip(d / "video_only.mp4", audio=False),
            "wav": write_wav(d / "stereo.wav", stereo, 16000), "random": d / "random.mp4", "text": d / "notes.wav",
            "dir": d, "stereo": stereo}


# ------------------------------------------------------------------------------------------------ decoding
def test_probe_and_decode_synthetic_clip(tmp_media):
    info = M.probe(tmp_media["clip"])
    assert info["audio"]["sample_rate"] == 16000 and info["audio"]["channels"] == 1
    assert info["video"]["fps"] == 10 and (info["video"]["width"], info["video"]["height"]) == (64, 48)
    assert info["video"]["n_frames"] == 10 and abs(info["duration_s"] - 1.0) < 0.1
    y, sr = M.decode_audio(tmp_media["clip"])
    assert sr == 16000 and y.dtype == np.float32 and y.ndim == 1 and abs(len(y) - 16000) <= 1024
    # the 440 Hz tone survives AAC and resampling to 22050 Hz; the length scales with the rate
    y2, sr2 = M.decode_audio(tmp_media["clip"], sr=22050)
    assert sr2 == 22050 and abs(len(y2) - len(y) * 22050 / 16000) <= 2
    spec = np.abs(np.fft.rfft(y2[2048:-2048]))
    assert abs(np.argmax(spec) * 22050 / (len(y2) - 4096) - 440) < 3
    assert np.array_equal(y2, M.decode_audio(tmp_media["clip"], sr=22050)[0])  # deterministic


def test_decode_wav_channels_and_mono(tmp_media):
    ref = np.round(tmp_media["stereo"] * 32767) / 32768  # the int16 quantisation the wav stores
    y, sr = M.decode_audio(tmp_media["wav"], mono=False)
    assert sr == 16000 and y.shape == (2, 8000)
    np.testing.assert_allclose(y, ref, atol=1e-6)
    mono, _ = M.decode_audio(tmp_media["wav"])
    np.testing.assert_allclose(mono, ref.mean(0), atol=1e-6)
    # load_audio reads wav with soundfile: same samples as PyAV
    y_sf, sr_sf = A.load_audio(tmp_media["wav"], sr=None)
    assert sr_sf == 16000
    np.testing.assert_allclose(y_sf, mono, atol=1e-6)
    # resampled by load_audio (librosa soxr_hq) vs PyAV's libswresample: same signal, same length
    y_a, _ = A.load_audio(tmp_media["wav"], sr=8000)
    y_b, _ = M.decode_audio(tmp_media["wav"], sr=8000)
    assert len(y_a) == len(y_b) == 4000
    assert np.corrcoef(y_a[200:-200], y_b[200:-200])[0, 1] > 0.999


def test_decode_frames_native_and_resampled(tmp_media):
    frames, ts = M.decode_frames(tmp_media["clip"])
    assert frames.shape == (10, 48, 64, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(ts, np.arange(10) / 10, atol=1e-6)
    # the bright square moves right by 4 px per frame
    cols = [np.argmax(f[..., 0].astype(float).mean(0) > 100) for f in frames]
    assert np.all(np.diff(cols) > 0) and abs(cols[0] - 4) <= 2
    half, ts5 = M.decode_frames(tmp_media["clip"], fps=5)
    assert half.shape[0] == 5 and np.allclose(ts5, np.arange(5) / 5)
    double, ts20 = M.decode_frames(tmp_media["clip"], fps=20)
    assert double.shape[0] == 20
    assert all(np.array_equal(double[k], frames[k // 2]) for k in range(20))  # each frame shown twice
    assert all(np.array_equal(half[k], frames[2 * k]) for k in range(5))  # frame 2k+1 maps to slot k+1, then 2k+2 wins
    g, _ = M.decode_frames(tmp_media["clip"], gray=True, max_frames=3, max_side=32)
    assert g.shape == (3, 24, 32) and g.dtype == np.uint8


def test_decode_errors_are_clear(tmp_media):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        M.decode_audio(tmp_media["dir"] / "nope.mp4")
    with pytest.raises(FileNotFoundError, match="not a file"):
        M.decode_frames(tmp_media["dir"])
    for fn in (M.probe, M.decode_audio, M.decode_frames):
        with pytest.raises(M.MediaDecodeError, match=r"random\.mp4.*cannot open"):
            fn(tmp_media["random"])
    with pytest.raises(M.MediaDecodeError, match=r"video_only\.mp4: has no audio stream \(found: video mpeg4\)"):
        M.decode_audio(tmp_media["silent_video"])
    with pytest.raises(M.MediaDecodeError, match="has no video stream"):
        M.decode_frames(tmp_media["wav"])
    # load_audio: the audio module's error type, which is also a MediaDecodeError
    with pytest.raises(A.AudioDecodeError, match=r"random\.mp4") as ei:
        A.load_audio(tmp_media["random"])
    assert isinstance(ei.value, M.MediaDecodeError)
    with pytest.raises(A.AudioDecodeError, match=r"notes\.wav.*soundfile also failed"):
        A.load_audio(tmp_media["text"])
    with pytest.raises(A.AudioDecodeError, match="no audio stream"):
        A.mmsafet_librosa_features(tmp_media["silent_video"])
    with pytest.raises(ValueError, match="fps"):
        M.decode_frames(tmp_media["clip"], fps=0)


def test_real_clips_decode():
    clip = _need(CLIP1)
    info = M.probe(clip)
    assert (info["audio"]["sample_rate"], info["audio"]["channels"]) == (48000, 2)
    assert (info["video"]["fps"], info["video"]["width"], info["video"]["height"], info["video"]["n_frames"]) == (25, 1920, 804, 32)
    y, sr = M.decode_audio(clip)
    assert (len(y), sr) == (61440, 48000)  # exactly 1.28 s: FFmpeg drops the AAC priming samples
    y22, _ = M.decode_audio(clip, sr=22050)
    assert len(y22) == 28224
    # MMSA-FET extracts OpenFace frames at 25 fps: the same 32 frames as the 32 rows of the real features
    frames, ts = M.decode_frames(clip, fps=25, max_side=480)
    assert frames.shape == (32, 200, 480, 3)  # 804 * 480 / 1920 = 201, rounded to even and np.allclose(ts, np.arange(32) / 25)
    mosi = _need(MOSI_CLIP)
    info = M.probe(mosi)
    assert (info["audio"]["sample_rate"], info["video"]["fps"], info["video"]["n_frames"]) == (44100, 30, 40)
    frames, _ = M.decode_frames(mosi)
    assert frames.shape == (40, 360, 480, 3)


# ---------------------------------------------------------------------------------- MMSA-FET audio parity
def _per_dim_r(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.array([np.corrcoef(ours[:, j], ref[:, j])[0, 1] for j in range(ref.shape[1])])


def test_resample_kaiser_best_is_a_clean_lowpass():
    sr = 48000
    y = _sine(sr, sr, 1000.0) + _sine(sr, sr, 15000.0)  # 15 kHz lies above the new Nyquist (11025 Hz)
    out = A.resample_kaiser_best(y, sr, 22050)
    assert len(out) == 22050 and out.dtype == np.float32
    spec = np.abs(np.fft.rfft(out[2000:-2000] * np.hanning(len(out) - 4000)))
    freqs = np.fft.rfftfreq(len(out) - 4000, 1 / 22050)
    peak = spec.max()
    assert abs(freqs[np.argmax(spec)] - 1000) < 2
    alias = spec[np.abs(freqs - (22050 - 15000)) < 20].max()  # where 15 kHz would fold to
    assert alias < 1e-4 * peak
    up = A.resample_kaiser_best(out, 22050, 48000)
    assert len(up) == sr and np.corrcoef(up[3000:-3000], (_sine(sr, sr, 1000.0))[3000:-3000])[0, 1] > 0.9999


def test_mmsafet_librosa_matches_real_features_from_mp4():
    """PyAV decoding + resampy's kaiser_best → the released MMSA-FET features of clip_0001, column by column."""
    ref = pickle.load(open(_need(MMSAFET), "rb"))["audio"]
    ours, names = A.mmsafet_librosa_features(_need(CLIP1))
    assert ours.shape == ref.shape == (221, 70) and len(names) == 70
    r = _per_dim_r(ours, ref)
    worst = [(names[j], round(float(r[j]), 3)) for j in np.argsort(r)[:4]]
    print(f"kaiser_best: median r {np.median(r):.4f}, worst {worst}")
    assert np.median(r) >= 0.99
    # every column but the top spectral-contrast band (a log-ratio whose valley is the resampler's
    # stop band, so decoder noise dominates it) correlates >= 0.95
    assert names[int(np.argmin(r))] == "spectral_contrast_6" and np.sort(r)[1] >= 0.95
    # librosa 0.11's default resampler (soxr_hq) agrees less on the filter-sensitive columns: this is
    # why MMSAFET_RES_TYPE is kaiser_best
    soxr, _ = A.mmsafet_librosa_features(CLIP1, res_type="soxr_hq")
    r_soxr = _per_dim_r(soxr, ref)
    print(f"soxr_hq: median r {np.median(r_soxr):.4f}, worst {[(names[j], round(float(r_soxr[j]), 3)) for j in np.argsort(r_soxr)[:4]]}")
    assert np.median(r_soxr) >= 0.95
    for col in ("spectral_centroid", "spectral_bandwidth", "spectral_rolloff"):
        j = names.index(col)
        assert r[j] >= 0.97 and r_soxr[j] < 0.9, (col, r[j], r_soxr[j])


# ------------------------------------------------------------------------------------------- OpenFace CSV
def _openface_csv(path: Path, header: list[str], rows: np.ndarray) -> Path:
    """Written the way OpenFace 2.0 writes it: ", " between fields, also in the header."""
    lines = [", ".join(header)] + [", ".join(f"{v:g}" for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_openface_header_layout():
    assert len(V.OPENFACE_HEADER) == 714 and V.OPENFACE_HEADER[:5] == V.OPENFACE_META
    assert V.OPENFACE_HEADER[5:13] == V.OPENFACE_COLUMNS["gaze"]
    assert V.OPENFACE_HEADER[13] == "eye_lmk_x_0" and V.OPENFACE_HEADER[293:299] == V.OPENFACE_COLUMNS["pose"]
    assert V.OPENFACE_HEADER[-19:] == ["AU45_r"] + [f"AU{a}_c" for a in ("01", "02", "04", "05", "06", "07", "09", "10",
                                                                      "12", "14", "15", "17", "20", "23", "25", "26",
                                                                      "28", "45")]
    assert len(V.openface_columns("mmsa_fet")) == 177 and len(V.openface_columns("all")) == 709
    with pytest.raises(ValueError, match="unknown OpenFace"):
        V.openface_columns("facet")


def test_read_openface_csv_full_header(tmp_path):
    n = len(V.OPENFACE_HEADER)
    rows = np.tile(np.arange(n, dtype=float) * 0.01, (4, 1))
    rows[:, :5] = [[1, 0, 0.00, 0.98, 1], [2, 0, 0.04, 0.97, 1], [3, 0, 0.08, 0.00, 0], [4, 0, 0.12, 0.50, 1]]
    rows[2, 5:] = 0.0  # OpenFace writes zeros when tracking failed
    rows[:, 5:] += np.arange(4)[:, None]  # make rows distinguishable
    path = _openface_csv(tmp_path / "of.csv", V.OPENFACE_HEADER, rows)
    x, names, ts, info = V.read_openface_csv(path, "au_gaze_pose")
    assert x.shape == (4, 31) and x.dtype == np.float32
    assert names == V.OPENFACE_COLUMNS["au_r"] + V.OPENFACE_COLUMNS["gaze"] + V.OPENFACE_COLUMNS["pose"]
    col = {h: i for i, h in enumerate(V.OPENFACE_HEADER)}
    np.testing.assert_allclose(x, rows[:, [col[c] for c in names]], rtol=1e-6)
    np.testing.assert_allclose(ts, [0, 0.04, 0.08, 0.12])
    assert (info["n_rows"], info["n_failed"], info["n_dropped"], info["n_low_confidence"]) == (4, 1, 0, 0)
    assert info["face_ids"] == [0] and info["failed_policy"] == "keep"
    xd, _, tsd, infod = V.read_openface_csv(path, ("pose",), failed="drop", min_confidence=0.9)
    assert xd.shape == (2, 6) and np.allclose(tsd, [0, 0.04])
    assert (infod["n_failed"], infod["n_low_confidence"], infod["n_dropped"]) == (1, 1, 2)
    xz, _, _, infoz = V.read_openface_csv(path, ("pose",), failed="zero", min_confidence=0.9)
    assert xz.shape == (4, 6) and (xz[2:] == 0).all() and (xz[:2] != 0).all() and infoz["n_zeroed"] == 2
    full, full_names, _, _ = V.read_openface_csv(path, "all")
    assert full.shape == (4, 709) and full_names == V.OPENFACE_HEADER[5:]


def test_read_openface_csv_errors(tmp_path):
    aus_only = V.OPENFACE_META + V.OPENFACE_COLUMNS["au_r"] + V.OPENFACE_COLUMNS["au_c"]
    path = _openface_csv(tmp_path / "aus.csv", aus_only, np.zeros((2, len(aus_only))))
    x, _, _, _ = V.read_openface_csv(path, ("au_r", "au_c"))
    assert x.shape == (2, 35)
    with pytest.raises(ValueError, match=r"aus\.csv: missing 142 column\(s\).*pose_Tx.*groups \['au_r', 'au_c'\]"):
        V.read_openface_csv(path, "mmsa_fet")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        V.read_openface_csv(tmp_path / "missing.csv")
    (tmp_path / "head.csv").write_text(", ".join(aus_only) + "\n")
    with pytest.raises(ValueError, match="header only"):
        V.read_openface_csv(tmp_path / "head.csv", ("au_r",))
    (tmp_path / "ragged.csv").write_text(", ".join(aus_only) + "\n1, 2, 3\n")
    with pytest.raises(ValueError, match="ragged.csv"):
        V.read_openface_csv(tmp_path / "ragged.csv", ("au_r",))


def test_read_openface_csv_reproduces_real_mmsafet_vision(tmp_path):
    """Write the real clip_0001 OpenFace features (32 x 177) back as the CSV OpenFace -2Dfp -pose -aus
    writes; reading it with the 'mmsa_fet' preset gives them back, and the columns mean what their names say."""
    vis = pickle.load(open(_need(MMSAFET), "rb"))["vision"]
    header = V.OPENFACE_META + V.openface_columns("mmsa_fet")
    meta = np.column_stack([np.arange(1, 33), np.zeros(32), np.arange(32) / 25, np.full(32, 0.98), np.ones(32)])
    lines = [", ".join(header)] + [", ".join(repr(float(v)) for v in row) for row in np.hstack([meta, vis])]
    (tmp_path / "clip_0001.csv").write_text("\n".join(lines) + "\n")
    x, names, ts, info = V.read_openface_csv(tmp_path / "clip_0001.csv")
    assert x.shape == (32, 177) and info["n_failed"] == 0
    np.testing.assert_array_equal(x, vis.astype(np.float32))
    f = {n: x[:, i] for i, n in enumerate(names)}
    assert 500 < np.median(f["pose_Tz"]) < 2000  # mm from the camera
    assert all(0 <= f[f"x_{i}"].min() and f[f"x_{i}"].max() <= 1920 for i in range(68))  # pixels in a 1920 x 804 frame
    assert all(0 <= f[f"y_{i}"].min() and f[f"y_{i}"].max() <= 804 for i in range(68))
    assert all(set(np.unique(f[c])) <= {0.0, 1.0} for c in V.OPENFACE_COLUMNS["au_c"])
    assert all(0 <= f[c].min() and f[c].max() <= 5 for c in V.OPENFACE_COLUMNS["au_r"])


# --------------------------------------------------------------------------------------- OpenCV extractor
def test_opencv_face_features_synthetic(tmp_media):
    frames = np.stack([_square_frame(k) for k in range(6)])
    x, names = V.opencv_face_features(frames)
    assert x.shape == (6, 9) and x.dtype == np.float32 and names == V.OPENCV_FACE_NAMES
    assert (x[:, :8] == 0).all()  # no face in a moving square: flag 0 and face columns 0 (nothing carried forward)
    assert x[0, 8] == 0 and (x[1:, 8] > 0).all()  # whole-frame motion
    gray = np.round(frames @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    np.testing.assert_array_equal(V.opencv_face_features(gray)[0], x)
    from_file, _ = V.opencv_face_features(tmp_media["clip"], fps=10)
    assert from_file.shape == (10, 9) and (from_file[1:, 8] > 0).all()
    with pytest.raises(ValueError, match="uint8"):
        V.opencv_face_features(frames.astype(np.float32))


def test_opencv_face_box_agrees_with_openface_on_real_clip():
    """The Haar face box centre vs the centre of OpenFace's 68 landmarks in the released clip_0001 features."""
    vis = pickle.load(open(_need(MMSAFET), "rb"))["vision"]
    x, names = V.opencv_face_features(_need(CLIP1), fps=25)
    assert x.shape == (32, 9)
    det = x[:, 0] == 1
    assert det.mean() >= 0.9
    lx, ly = vis[:, 6:74], vis[:, 74:142]
    cx, cy = (lx.min(1) + lx.max(1)) / 2 / 1920, (ly.min(1) + ly.max(1)) / 2 / 804
    assert np.abs(x[det, 1] - cx[det]).max() < 0.03  # the cascade box also covers the forehead: y is looser
    assert np.abs(x[det, 2] - cy[det]).max() < 0.07


# -------------------------------------------------------------------------------------------- checkpoints
def _tiny_batch(dims: dict[str, int], seed: int = 0, n: int = 3) -> Batch:
    g = torch.Generator().manual_seed(seed)
    kw = {}
    for m in ("text", "audio", "vision"):
        if m in dims:
            kw[m] = torch.randn(n, 7, dims[m], generator=g)
            kw[f"{m}_mask"] = torch.arange(7)[None, :] < torch.tensor([7, 5, 3][:n])[:, None]
        else:
            kw[m], kw[f"{m}_mask"] = None, None
    return Batch(labels=torch.randn(n, generator=g), **kw)


def test_checkpoint_round_trip(tmp_path):
    from msa_lib.checkpoint import load_checkpoint, save_checkpoint
    from msa_lib.models import build

    dims, hp = {"text": 12, "audio": 5}, {"hidden": 8, "dropout": 0.0}
    torch.manual_seed(0)
    model = build("late_fusion", dims, **hp)
    fc = {"text": {"extractor": "toy", "dim": 12}, "audio": {"extractor": "toy", "dim": 5}}
    rng_before = torch.get_rng_state()
    out = save_checkpoint(model, tmp_path / "ck", model_name="late_fusion", dims=dims, hparams=hp, feature_config=fc,
                          extra={"val_mae": 1.25})
    assert torch.equal(torch.get_rng_state(), rng_before)  # saving does not consume the caller's RNG
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.json", "weights.pt"]  # no temp files left
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["model_name"] == "late_fusion" and meta["dims"] == dims and meta["modalities"] == ["text", "audio"]
    assert meta["n_out"] == 1 and meta["hparams"] == hp and meta["feature_config"] == fc and meta["extra"] == {"val_mae": 1.25}
    assert meta["torch_version"] == torch.__version__ and meta["msa_lib_version"] and meta["created"]
    loaded, meta2 = load_checkpoint(out)
    assert meta2 == meta and not loaded.training
    model.eval()
    b = _tiny_batch(dims)
    with torch.no_grad():
        assert torch.equal(model(b).pred, loaded(b).pred)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


def test_checkpoint_errors(tmp_path):
    from msa_lib.checkpoint import load_checkpoint, save_checkpoint
    from msa_lib.models import build

    dims, hp = {"text": 12, "audio": 5}, {"hidden": 8}
    model = build("early_fusion", dims, **hp)
    kw = dict(dims=dims, feature_config={"text": {"dim": 12}})
    with pytest.raises(KeyError, match="'no_such_model' is not in the registry"):
        save_checkpoint(model, tmp_path / "a", model_name="no_such_model", hparams=hp, **kw)
    with pytest.raises(ValueError, match="registry name 'early_fusion'"):
        save_checkpoint(model, tmp_path / "a", model_name="late_fusion", hparams=hp, **kw)
    with pytest.raises(ValueError, match="does not rebuild this model"):
        save_checkpoint(model, tmp_path / "a", model_name="early_fusion", hparams={"hidden": 16}, **kw)
    with pytest.raises(ValueError, match=r"feature_config\['text'\]\['dim'\] = 384 but dims\['text'\] = 12"):
        save_checkpoint(model, tmp_path / "a", model_name="early_fusion", hparams=hp, dims=dims,
                        feature_config={"text": {"dim": 384}})
    with pytest.raises(TypeError, match="hparams must be JSON-serialisable"):
        save_checkpoint(model, tmp_path / "a", model_name="early_fusion", hparams={"hidden": 8, "act": torch.nn.ReLU}, **kw)
    with pytest.raises(FileNotFoundError, match="checkpoint folder not found"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a checkpoint folder"):
        load_checkpoint(tmp_path / "empty")
    ck = save_checkpoint(model, tmp_path / "ok", model_name="early_fusion", hparams=hp, **kw)
    meta = json.loads((ck / "checkpoint.json").read_text())
    (ck / "checkpoint.json").write_text(json.dumps({**meta, "model_name": "gone"}))
    with pytest.raises(KeyError, match="model 'gone' is not in this msa_lib's registry"):
        load_checkpoint(ck)
    (ck / "checkpoint.json").write_text(json.dumps(meta))
    torch.save({"x": torch.zeros(1)}, ck / "weights.pt")
    with pytest.raises(ValueError, match="md5 differs"):
        load_checkpoint(ck)


def test_check_feature_config_lists_every_mismatch():
    from msa_lib.checkpoint import check_feature_config

    a = {"audio": {"extractor": "mmsafet_librosa", "sample_rate": 16000, "dim": 70, "mono": True},
         "text": {"max_len": 50}}
    check_feature_config(a, json.loads(json.dumps(a)))  # equal: no error
    check_feature_config({"x": {"fps": 25}}, {"x": {"fps": 25.0}})  # numbers compare by value
    b = {"audio": {"extractor": "mmsafet_librosa", "sample_rate": 22050, "dim": 70, "mono": 1}, "vision": {"dim": 9}}
    with pytest.raises(ValueError) as ei:
        check_feature_config(a, b)
    msg = str(ei.value)
    assert "4 key(s)" in msg
    assert "audio.sample_rate: checkpoint has 16000, extractor gives 22050" in msg
    assert "audio.mono: checkpoint has True, extractor gives 1" in msg
    assert "text.max_len: checkpoint has 50, extractor gives '<missing>'" in msg
    assert "vision.dim: checkpoint has '<missing>', extractor gives 9" in msg


# ----------------------------------------------------------------------------------------------- predict
@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory):
    """early_fusion on MiniLM tokens + MMSA-FET librosa audio, trained for ONE step on random tensors: untrained."""
    from msa_lib.checkpoint import save_checkpoint
    from msa_lib.models import build
    from msa_lib.predict import feature_config

    dims, hp = {"text": 384, "audio": 70}, {"hidden": 16, "proj": 8, "dropout": 0.0}
    torch.manual_seed(0)
    model = build("early_fusion", dims, **hp)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    b = _tiny_batch(dims)
    torch.nn.functional.l1_loss(model(b).pred, b.labels).backward()
    opt.step()
    fc = feature_config(text="minilm", audio="mmsafet_librosa", text_max_len=16)
    d = tmp_path_factory.mktemp("ckpt")
    good = save_checkpoint(model, d / "good", model_name="early_fusion", dims=dims, hparams=hp, feature_config=fc,
                           extra={"note": "1 training step on random tensors; untrained"})
    bad_fc = json.loads(json.dumps(fc))
    bad_fc["audio"]["sample_rate"] = 16000
    bad_fc["audio"]["res_type"] = "soxr_hq"
    bad = save_checkpoint(model, d / "bad", model_name="early_fusion", dims=dims, hparams=hp, feature_config=bad_fc)
    odd = json.loads(json.dumps(fc))
    odd["audio"] = {"extractor": "opensmile", "dim": 70}
    unknown = save_checkpoint(model, d / "unknown", model_name="early_fusion", dims=dims, hparams=hp, feature_config=odd)
    return {"good": good, "bad": bad, "unknown": unknown}


@pytest.fixture(scope="module")
def predict_video(tmp_media) -> Path:
    return MOSI_CLIP if MOSI_CLIP.is_file() else tmp_media["clip"]


def test_predict_clip_end_to_end(toy_checkpoint, predict_video):
    from msa_lib.predict import predict_clip

    res = predict_clip(predict_video, MOSI_TRANSCRIPT, toy_checkpoint["good"])
    print(f"predict_clip({predict_video.name}): score {res['score']:+.4f} (untrained toy checkpoint), "
          f"{res['seconds']:.2f} s, timings {res['timings']}")
    assert np.isfinite(res["score"]) and res["polarity"] in ("positive", "negative", "neutral")
    assert res["model"] == "early_fusion" and res["modalities"] == ["text", "audio"]
    prov = res["provenance"]
    assert prov["text"]["encoder"] == "all-MiniLM-L6-v2" and prov["text"]["n_tokens"] == 7
    assert prov["audio"]["extractor"] == "mmsafet_librosa" and prov["audio"]["sample_rate"] == 22050
    assert prov["audio"]["res_type"] == "kaiser_best" and prov["audio"]["decoder"].startswith("av ")
    dur = prov["clip"]["audio"]["duration_s"]
    assert abs(prov["audio"]["n_frames"] - (1 + dur * 22050 / 128)) < 15  # hop 128 at 22050 Hz
    assert "vision" not in prov  # the model does not use vision: no frames decoded
    assert res["seconds"] > 0 and set(res["timings"]) >= {"text", "audio", "model"}
    again = predict_clip(predict_video, MOSI_TRANSCRIPT, toy_checkpoint["good"])
    assert again["score"] == res["score"]  # deterministic


def test_predict_refuses_mismatched_or_unknown_features(toy_checkpoint, predict_video):
    from msa_lib.predict import predict_clip

    with pytest.raises(ValueError) as ei:
        predict_clip(predict_video, MOSI_TRANSCRIPT, toy_checkpoint["bad"])
    msg = str(ei.value)
    assert "audio.sample_rate: checkpoint has 16000, extractor gives 22050" in msg
    assert "audio.res_type: checkpoint has 'soxr_hq', extractor gives 'kaiser_best'" in msg
    with pytest.raises(ValueError, match=r"no audio extractor named 'opensmile' here; available: \['mmsafet_librosa', 'prosody'\]"):
        predict_clip(predict_video, MOSI_TRANSCRIPT, toy_checkpoint["unknown"])
    with pytest.raises(ValueError, match="pass the clip's transcript"):
        predict_clip(predict_video, None, toy_checkpoint["good"])


def test_cli_predict(toy_checkpoint, predict_video, capsys):
    from msa_lib import cli

    argv = ["predict", "--video", str(predict_video), "--transcript", MOSI_TRANSCRIPT,
            "--checkpoint", str(toy_checkpoint["good"])]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("score: ") and "audio: mmsafet_librosa 70-d @ 22050 Hz" in out and "time: " in out
    assert cli.main(argv + ["--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert float(out.split()[1]) == pytest.approx(res["score"], abs=1e-4)
    assert cli.main(argv[:-1] + [str(toy_checkpoint["bad"])]) == 2
    err = capsys.readouterr().err
    assert "msa-book predict: error: feature config mismatch" in err and "audio.sample_rate" in err


# --------------------------------------------------------------------------------- training -> checkpoint
def test_train_and_save_checkpoint(tmp_path, tiny_ds, monkeypatch):
    """Training saves a checkpoint: weights + JSON (model, dims, hparams, feature config, metrics); reruns reuse it."""
    from msa_lib import training
    from msa_lib.checkpoint import load_checkpoint, train_and_save

    fc = {"text": {"extractor": "toy", "dim": 12}, "audio": {"extractor": "toy", "dim": 5},
          "vision": {"extractor": "toy", "dim": 7}}
    hp, train = {"hidden": 16, "proj": 8}, {"epochs": 2, "batch_size": 16, "patience": None}
    model, meta = train_and_save(tiny_ds, "early_fusion", tmp_path / "ck", feature_config=fc, hparams=hp, train=train,
                                 seed=3, extra={"note": "unit test"})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["checkpoint.json", "weights.pt"]
    assert meta["model_name"] == "early_fusion" and meta["dims"] == {"text": 12, "audio": 5, "vision": 7}
    assert meta["hparams"] == hp and meta["feature_config"] == fc
    ex = meta["extra"]
    assert ex["dataset"] == "tiny" and ex["seed"] == 3 and ex["epochs_run"] == 2 and ex["note"] == "unit test"
    assert ex["train"]["epochs"] == 2 and "MAE" in ex["test_metrics"] and len(ex["param_hash"]) == 12
    loaded, _ = load_checkpoint(tmp_path / "ck")
    b = _tiny_batch(meta["dims"])
    with torch.no_grad():
        assert torch.equal(model(b).pred, loaded(b).pred)
    # the same seed trains the same model as experiments.run_one
    from msa_lib.experiments import run_one
    rec = run_one(tiny_ds, "ef", {"model": "early_fusion", "hparams": hp}, 3, train=train)
    assert rec.test_metrics["MAE"] == ex["test_metrics"]["MAE"]

    def boom(*a, **k):
        raise AssertionError("trained although the checkpoint exists")
    monkeypatch.setattr(training, "fit", boom)
    again, meta2 = train_and_save(tiny_ds, "early_fusion", tmp_path / "ck", feature_config=fc, hparams=hp, train=train,
                                  seed=3, extra={"note": "unit test"})
    assert meta2 == meta
    with pytest.raises(AssertionError, match="trained although"):  # another seed is another run
        train_and_save(tiny_ds, "early_fusion", tmp_path / "ck", feature_config=fc, hparams=hp, train=train, seed=4)
    with pytest.raises(ValueError, match=r"no entry for \['vision'\]"):
        train_and_save(tiny_ds, "early_fusion", tmp_path / "x", feature_config={k: fc[k] for k in ("text", "audio")},
                       hparams=hp, train=train)
    with pytest.raises(ValueError, match=r"feature_config\['audio'\]\['dim'\] = 70 but tiny's audio features are 5-d"):
        train_and_save(tiny_ds, "early_fusion", tmp_path / "x", feature_config={**fc, "audio": {"dim": 70}},
                       hparams=hp, train=train)


def test_train_and_save_text_model_predicts_a_clip(tmp_path):
    """A text model trained on MiniLM features (made here like mosi-text makes them) → checkpoint → predict_clip:
    the score equals the model's output on the transcript's features, and a wrong max_len is refused."""
    from msa_lib.checkpoint import train_and_save
    from msa_lib.data.schema import MSADataset, Split
    from msa_lib.features.text import encoder_identity
    from msa_lib.predict import _text_encoder, feature_config, predict_clip

    enc = _text_encoder()
    texts = ["what a great film", "i loved it", "truly wonderful", "this was awful", "i hated it", "so boring",
             "pretty good overall", "not good at all"]
    y = np.array([2.4, 2.0, 2.6, -2.2, -2.0, -1.6, 1.2, -1.4], dtype=np.float32)
    tok, mask, _ = enc.encode(texts, max_len=12)

    def split(rows):
        return Split(text=tok[rows], audio=None, vision=None, labels=y[rows], ids=np.array([f"r{i}" for i in rows]),
                     text_lengths=mask[rows].sum(1).astype(np.int64), raw_text=np.array(texts)[rows])
    prov = {"kind": "real", "source": "tests", "text_encoder": {"max_len": 12, "encoder_identity": enc.identity}}
    ds = MSADataset("toy-text", split([0, 1, 3, 4, 6, 7]), split([2, 5]), split([2, 5]), provenance=prov)
    fc = feature_config(text="minilm", audio=None, text_max_len=12)
    assert fc["text"]["encoder_md5"] == encoder_identity()
    model, meta = train_and_save(ds, "text_mlp", tmp_path / "txt", feature_config=fc, hparams={"hidden": 16},
                                 train={"epochs": 3, "batch_size": 4}, seed=0)
    assert meta["modalities"] == ["text"] and meta["feature_config"]["text"]["max_len"] == 12
    clip = MOSI_CLIP if MOSI_CLIP.is_file() else tmp_path / "not_needed.mp4"  # text-only: the video is not read
    res = predict_clip(clip, MOSI_TRANSCRIPT, tmp_path / "txt")
    t, m, _ = enc.encode([MOSI_TRANSCRIPT], max_len=12)
    batch = Batch(text=torch.from_numpy(t), text_mask=torch.from_numpy(m), audio=None, audio_mask=None, vision=None,
                  vision_mask=None, labels=None)
    with torch.no_grad():
        assert res["score"] == pytest.approx(float(model(batch).pred[0]), abs=1e-5)
    assert res["provenance"]["text"]["max_len"] == 12 and res["provenance"]["clip"] is None
    with pytest.raises(ValueError, match=r"made with max_len = 12 but feature_config\['text'\]\['max_len'\] = 50"):
        train_and_save(ds, "text_mlp", tmp_path / "bad", feature_config=feature_config(text="minilm", audio=None),
                       hparams={"hidden": 16}, train={"epochs": 1})
