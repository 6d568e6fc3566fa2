"""Frame-level audio features with librosa, from a wav / mp4 file or a waveform.

* `audio_features`: a compact prosodic + spectral set (33 dims): MFCC 13 + delta 13, f0 (YIN,
  65–500 Hz), RMS energy, spectral centroid / bandwidth / rolloff / flatness, zero-crossing rate.
* `mmsafet_librosa_features`: the MMSA-FET librosa extractor's 70-dim configuration (the one stored
  in ``../shared/data/samples/clip_0001_mmsafet_librosa_unaligned.pkl``), for parity with features
  that MMSA-FET users extract.
* `frame_to_length` / `frames_to_batch`: pad or trim frame sequences to a fixed length.

Decoding (`load_audio`): wav / flac / ogg are read by soundfile; everything else (mp4, m4a, mp3, ...)
is decoded by PyAV (`msa_lib.features.media`, FFmpeg bundled in its wheel), so no ``ffmpeg`` executable
is needed. Both paths decode at the native rate, average the channels and then resample with
`resample`, exactly as ``librosa.load`` does; an mp4 therefore gives the waveform ``librosa.load`` gives
on the wav that ``ffmpeg -i clip.mp4 clip.wav`` writes (up to that wav's 16-bit rounding).
``res_type="kaiser_best"`` is resampy's filter (librosa < 0.10's default), re-implemented here because
MMSA-FET's released features were made with it (see `mmsafet_librosa_features`). A file that cannot
be decoded raises `AudioDecodeError` (a `media.MediaDecodeError`) naming the file and the reason.
A waveform argument is assumed to be mono (or (channels, n), averaged) at the given ``sr``.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from msa_lib.features.media import MediaDecodeError

__all__ = [
    "AudioDecodeError",
    "ffmpeg_available",
    "load_audio",
    "resample",
    "resample_kaiser_best",
    "audio_features",
    "AUDIO_FEATURE_NAMES",
    "MMSAFET_LIBROSA_CONFIG",
    "MMSAFET_RES_TYPE",
    "MMSAFET_GROUPS",
    "mmsafet_librosa_features",
    "mmsafet_group_slices",
    "group_correlations",
    "frame_to_length",
    "frames_to_batch",
]

_SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif", ".au", ".w64", ".rf64"}


class AudioDecodeError(MediaDecodeError):
    """An audio file cannot be decoded (corrupt, truncated, unsupported, or without an audio stream).

    A subclass of `msa_lib.features.media.MediaDecodeError`, so ``except MediaDecodeError`` catches both.
    """


def ffmpeg_available() -> bool:
    """True when an ``ffmpeg`` executable is on PATH. Decoding no longer needs it (PyAV bundles FFmpeg);
    kept for callers that want to compare against the command-line tool."""
    return shutil.which("ffmpeg") is not None


# resampy's "kaiser_best" filter (resampy/filters.py, ISC licence): a Kaiser-windowed sinc with 64 zero
# crossings, 2**9 table entries per crossing, rolloff 0.9475937 and beta 14.7696565.
_KAISER_BEST = {"num_zeros": 64, "precision": 9, "rolloff": 0.9475937167399596, "beta": 14.769656459379492}
_KAISER_BEST_WIN: tuple[np.ndarray, np.ndarray] | None = None


def _kaiser_best_window() -> tuple[np.ndarray, np.ndarray]:
    global _KAISER_BEST_WIN
    if _KAISER_BEST_WIN is None:
        import scipy.signal

        n = (2 ** _KAISER_BEST["precision"]) * _KAISER_BEST["num_zeros"]
        roll = _KAISER_BEST["rolloff"]
        sinc = roll * np.sinc(roll * np.linspace(0, _KAISER_BEST["num_zeros"], num=n + 1, endpoint=True))
        taper = scipy.signal.get_window(("kaiser", _KAISER_BEST["beta"]), 2 * n + 1, fftbins=False)[n:]
        win = taper * sinc
        _KAISER_BEST_WIN = (win, np.append(np.diff(win), 0.0))
    return _KAISER_BEST_WIN


def resample_kaiser_best(y: np.ndarray, orig_sr: int, target_sr: int, chunk: int = 4096) -> np.ndarray:
    """Band-limited sinc interpolation with resampy's ``kaiser_best`` filter (1-D ``y``) → float32.

    Why: librosa < 0.10 resampled with this filter by default, and MMSA-FET's released librosa features
    were extracted that way; librosa 0.11 no longer ships it (it would need the ``resampy`` package).
    Follows ``resampy.resample`` (interpolated filter table, ``floor(n * ratio)`` outputs) and then
    ``librosa.resample``'s zero padding to ``ceil(n * ratio)`` samples (computed exactly in integers).
    Vectorised in chunks of outputs; about 0.1 s per second of 48 kHz input on one core.
    """
    x = np.asarray(y, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"resample_kaiser_best expects a 1-D waveform; found shape {x.shape}")
    ratio = float(target_sr) / float(orig_sr)
    win, delta = _kaiser_best_window()
    if ratio < 1:
        win, delta = win * ratio, delta * ratio
    scale = min(1.0, ratio)
    num_table = 2 ** _KAISER_BEST["precision"]
    index_step = int(scale * num_table)
    nwin, n_in = len(win), len(x)
    n_res = n_in * int(target_sr) // int(orig_sr)  # integer arithmetic: float ratios give 48000.0000001
    out = np.zeros(-(-n_in * int(target_sr) // int(orig_sr)), dtype=np.float64)
    taps = np.arange(nwin // index_step + 1)
    for start in range(0, n_res, chunk):
        t = np.arange(start, min(start + chunk, n_res)) / ratio
        n = t.astype(np.int64)
        frac = scale * (t - n)
        acc = np.zeros(len(t))
        for side in (0, 1):  # 0: x[n - i] (left wing), 1: x[n + 1 + i] (right wing)
            f = frac if side == 0 else scale - frac
            index_frac = f * num_table
            offset = index_frac.astype(np.int64)
            eta = index_frac - offset
            idx = offset[:, None] + taps[None, :] * index_step
            pos = n[:, None] - taps[None, :] if side == 0 else n[:, None] + 1 + taps[None, :]
            ok = (idx < nwin) & (pos >= 0) & (pos < n_in)
            idx_c, pos_c = np.where(ok, idx, 0), np.where(ok, pos, 0)
            w = (win[idx_c] + eta[:, None] * delta[idx_c]) * ok
            acc += (w * x[pos_c]).sum(axis=1)
        out[start:start + len(t)] = acc
    return out.astype(np.float32)


def resample(y: np.ndarray, orig_sr: int, target_sr: int, res_type: str = "soxr_hq") -> np.ndarray:
    """Resample a (n,) or (channels, n) waveform: ``kaiser_best`` here, anything else by ``librosa.resample``."""
    if int(orig_sr) == int(target_sr):
        return np.asarray(y, dtype=np.float32)
    if res_type == "kaiser_best":
        y = np.asarray(y)
        if y.ndim == 1:
            return resample_kaiser_best(y, orig_sr, target_sr)
        return np.stack([resample_kaiser_best(c, orig_sr, target_sr) for c in y])
    import librosa

    return np.asarray(librosa.resample(np.asarray(y, dtype=np.float32), orig_sr=int(orig_sr),
                                       target_sr=int(target_sr), res_type=res_type), dtype=np.float32)


def _read_soundfile(path: Path, mono: bool) -> tuple[np.ndarray, int]:
    import soundfile

    data, file_sr = soundfile.read(str(path), dtype="float32", always_2d=True)  # (n, channels)
    y = data.T
    if mono:
        y = y.mean(axis=0) if y.shape[0] > 1 else y[0]
    return np.ascontiguousarray(y, dtype=np.float32), int(file_sr)


def load_audio(path: str | Path, sr: int | None = 22050, mono: bool = True,
               res_type: str = "soxr_hq") -> tuple[np.ndarray, int]:
    """Decode any audio/video file → (waveform float32, sample rate), as ``librosa.load`` would.

    wav / flac / ogg / aiff go through soundfile (falling back to PyAV if soundfile refuses the file);
    other formats through PyAV (`media.decode_audio` at the native rate). Then, like ``librosa.load``:
    channels averaged when ``mono``, and `resample` to ``sr`` (``None`` keeps the native rate) with
    ``res_type`` (librosa 0.11's default ``soxr_hq``; ``kaiser_best`` for librosa < 0.10 parity).
    Raises FileNotFoundError for a missing file and `AudioDecodeError` naming the file otherwise.
    """
    from msa_lib.features import media

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        if path.suffix.lower() in _SOUNDFILE_SUFFIXES:
            try:
                y, file_sr = _read_soundfile(path, mono)
            except Exception as sf_err:  # an unusual wav codec soundfile lacks: FFmpeg may still read it
                try:
                    y, file_sr = media.decode_audio(path, sr=None, mono=mono)
                except MediaDecodeError as e:
                    raise MediaDecodeError(f"{e}; soundfile also failed ({type(sf_err).__name__}: {sf_err})") from e
        else:
            y, file_sr = media.decode_audio(path, sr=None, mono=mono)
    except MediaDecodeError as e:
        raise AudioDecodeError(str(e)) from e
    if y.shape[-1] == 0:
        raise AudioDecodeError(f"{path}: the audio track is empty (0 samples)")
    if sr is not None and int(sr) != file_sr:
        y, file_sr = resample(y, file_sr, int(sr), res_type), int(sr)
    return np.asarray(y, dtype=np.float32), int(file_sr)


def _wave(path_or_wave: Any, sr: int) -> np.ndarray:
    if isinstance(path_or_wave, (str, Path)):
        y, _ = load_audio(path_or_wave, sr=sr)
        return y
    y = np.asarray(path_or_wave, dtype=np.float32)
    if y.ndim == 2:  # (channels, n) -> mono, as librosa.load(mono=True) does
        y = y.mean(axis=0)
    if y.ndim != 1:
        raise ValueError(f"waveform must be 1-D (n,) or (channels, n); found shape {y.shape}")
    if y.size == 0:
        raise ValueError("waveform is empty")
    if not np.isfinite(y).all():
        raise ValueError("waveform contains non-finite samples")
    return y


AUDIO_FEATURE_NAMES: list[str] = (
    [f"mfcc_{i}" for i in range(13)] + [f"mfcc_delta_{i}" for i in range(13)]
    + ["f0_hz", "rms", "spectral_centroid", "spectral_bandwidth", "spectral_rolloff", "spectral_flatness",
       "zero_crossing_rate"]
)


def _fit(a: np.ndarray, t: int) -> np.ndarray:
    """(d, T') -> (d, t): trim or edge-pad the time axis (librosa features can differ by a frame)."""
    if a.shape[1] >= t:
        return a[:, :t]
    return np.pad(a, ((0, 0), (0, t - a.shape[1])), mode="edge")


def audio_features(path_or_wave: Any, sr: int = 22050, hop_length: int = 512,
                   n_fft: int = 2048) -> tuple[np.ndarray, list[str]]:
    """Frame-level features → (frames (T, 33) float32, names).

    MFCC (13) + delta (13); f0 by ``librosa.yin`` (fmin 65, fmax 500 Hz; unvoiced frames still get
    YIN's estimate); RMS; spectral centroid, bandwidth, rolloff (Hz) and flatness; zero-crossing rate.
    All share ``hop_length`` / ``n_fft`` and librosa's centred framing, so T = 1 + len(y) // hop_length.
    Values are raw (Hz, dB-scaled MFCC): standardise them in the model / data pipeline.
    """
    import librosa

    y = _wave(path_or_wave, sr)
    if y.size < n_fft:  # librosa warns / YIN needs at least one full frame
        y = np.pad(y, (0, n_fft - y.size))
    S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop_length))
    t = S.shape[1]
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(librosa.feature.melspectrogram(S=S ** 2, sr=sr)),
                                sr=sr, n_mfcc=13)
    width = min(9, t if t % 2 == 1 else t - 1)
    delta = librosa.feature.delta(mfcc, width=width) if width >= 3 else np.zeros_like(mfcc)
    f0 = librosa.yin(y, fmin=65.0, fmax=500.0, sr=sr, frame_length=n_fft, hop_length=hop_length)[None, :]
    rms = librosa.feature.rms(S=S, frame_length=n_fft, hop_length=hop_length)
    cen = librosa.feature.spectral_centroid(S=S, sr=sr, n_fft=n_fft, hop_length=hop_length)
    bw = librosa.feature.spectral_bandwidth(S=S, sr=sr, n_fft=n_fft, hop_length=hop_length)
    roll = librosa.feature.spectral_rolloff(S=S, sr=sr, n_fft=n_fft, hop_length=hop_length)
    flat = librosa.feature.spectral_flatness(S=S, n_fft=n_fft, hop_length=hop_length)
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop_length)
    parts = [mfcc, delta, f0, rms, cen, bw, roll, flat, zcr]
    frames = np.concatenate([_fit(np.asarray(p, dtype=np.float64), t) for p in parts], axis=0).T
    frames = np.nan_to_num(frames, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    return frames, list(AUDIO_FEATURE_NAMES)


# ------------------------------------------------------------------------------------------------
# MMSA-FET's librosa extractor
# ------------------------------------------------------------------------------------------------
#: The ``config["audio"]`` stored with clip_0001's real MMSA-FET features (``features`` in call order).
MMSAFET_LIBROSA_CONFIG: dict[str, Any] = {
    "tool": "librosa",
    "sample_rate": 22050,
    "features": {
        "chroma_stft": {"sr": 22050, "hop_length": 128, "n_fft": 512},
        "chroma_cqt": {"sr": 22050, "hop_length": 128},
        "chroma_cens": {"sr": 22050, "hop_length": 128},
        "mfcc": {"n_mfcc": 13, "htk": True, "sr": 22050, "hop_length": 128, "n_fft": 512},
        "rms": {"hop_length": 128, "frame_length": 512},
        "spectral_centroid": {"sr": 22050, "hop_length": 128, "n_fft": 512},
        "spectral_bandwidth": {"sr": 22050, "hop_length": 128, "n_fft": 512},
        "spectral_contrast": {"sr": 22050, "hop_length": 128, "n_fft": 512},
        "spectral_flatness": {"hop_length": 128, "n_fft": 512},
        "spectral_rolloff": {"sr": 22050, "hop_length": 128, "n_fft": 512},
        "poly_features": {"sr": 22050, "hop_length": 128, "n_fft": 512},
        "tonnetz": {"sr": 22050, "hop_length": 128},
        "zero_crossing_rate": {"hop_length": 128, "frame_length": 512},
    },
}
#: The resampler MMSA-FET's released features were made with (librosa < 0.10's default, resampy's filter).
MMSAFET_RES_TYPE = "kaiser_best"
#: (feature, width) in column order of the 70-dim output.
MMSAFET_GROUPS: list[tuple[str, int]] = [
    ("chroma_stft", 12), ("chroma_cqt", 12), ("chroma_cens", 12), ("mfcc", 13), ("rms", 1),
    ("spectral_centroid", 1), ("spectral_bandwidth", 1), ("spectral_contrast", 7), ("spectral_flatness", 1),
    ("spectral_rolloff", 1), ("poly_features", 2), ("tonnetz", 6), ("zero_crossing_rate", 1),
]


def mmsafet_group_slices(groups: Sequence[tuple[str, int]] = MMSAFET_GROUPS) -> dict[str, slice]:
    """Column slice of each feature group in the 70-dim MMSA-FET librosa output."""
    out, start = {}, 0
    for name, width in groups:
        out[name] = slice(start, start + width)
        start += width
    return out


def group_correlations(ours: np.ndarray, ref: np.ndarray,
                       groups: Sequence[tuple[str, int]] = MMSAFET_GROUPS, max_lag: int = 0) -> dict[str, float]:
    """Per feature group, the Pearson correlation of ``ours`` and ``ref`` (both (T, d)) over all cells.

    With ``max_lag`` > 0 the best correlation over time shifts in [-max_lag, max_lag] frames is kept
    (decoders differ in how many priming samples they drop, which shifts frames). Constant groups give NaN.
    """
    out: dict[str, float] = {}
    for name, sl in mmsafet_group_slices(groups).items():
        best = np.nan
        for lag in range(-max_lag, max_lag + 1):
            a, b = ours[:, sl], ref[:, sl]
            if lag > 0:
                a, b = a[lag:], b[:-lag]
            elif lag < 0:
                a, b = a[:lag], b[-lag:]
            t = min(len(a), len(b))
            a, b = a[:t].ravel().astype(np.float64), b[:t].ravel().astype(np.float64)
            if t < 2 or a.std() == 0 or b.std() == 0:
                continue
            r = float(np.corrcoef(a, b)[0, 1])
            best = r if np.isnan(best) else max(best, r)
        out[name] = best
    return out


def mmsafet_librosa_features(wave: Any, sr: int | None = None, config: Mapping[str, Any] | None = None,
                             res_type: str = MMSAFET_RES_TYPE) -> tuple[np.ndarray, list[str]]:
    """Reproduce MMSA-FET's librosa audio extractor → (frames (T, 70) float32, names).

    MMSA-FET calls each ``librosa.feature.<name>(y=y, sr=sr, **kwargs)`` in the config's order
    (falling back to no ``sr`` for the functions without one), transposes to (T, d) and concatenates.
    ``config`` is an MMSA-FET audio config (``{"sample_rate": ..., "features"|"args": {...}}``);
    default `MMSAFET_LIBROSA_CONFIG`. ``wave`` is a path (decoded by `load_audio` and resampled to the
    config's sample rate with ``res_type``) or a waveform at ``sr`` (default: the config's rate).
    MMSA-FET writes a wav with ffmpeg and reads it with ``librosa.load``; the released features fit
    librosa < 0.10, whose resampler was resampy's ``kaiser_best``. That is our default: on clip_0001 it brings the
    filter-sensitive columns (spectral centroid / bandwidth / rolloff) from r ≈ 0.8 with ``soxr_hq``
    to r ≈ 0.98 against the released features (``tests/test_media.py`` checks the numbers).
    """
    import librosa

    cfg = dict(config) if config is not None else MMSAFET_LIBROSA_CONFIG
    feats_cfg = cfg.get("features", cfg.get("args"))
    if not isinstance(feats_cfg, Mapping) or not feats_cfg:
        raise ValueError("config needs a non-empty 'features' (or 'args') mapping of librosa.feature names to kwargs")
    cfg_sr = int(cfg.get("sample_rate", 22050))
    if isinstance(wave, (str, Path)):
        y, sr = load_audio(wave, sr=cfg_sr, res_type=res_type)
    else:
        y = _wave(wave, sr or cfg_sr)
        sr = sr or cfg_sr
    names: list[str] = []
    cols: list[np.ndarray] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_fft > len(y) and tuning warnings on short clips
        for feat, kwargs in feats_cfg.items():
            method = getattr(librosa.feature, feat)
            kw = dict(kwargs)
            kw.pop("sr", None)
            try:
                out = method(y=y, sr=sr, **kw)
            except TypeError:
                out = method(y=y, **kw)
            out = np.asarray(out).T
            cols.append(out)
            names += [f"{feat}_{i}" for i in range(out.shape[1])] if out.shape[1] > 1 else [feat]
    t = min(c.shape[0] for c in cols)
    frames = np.concatenate([c[:t] for c in cols], axis=1).astype(np.float32)
    return frames, names


# ------------------------------------------------------------------------------------------------
# fixed-length sequences
# ------------------------------------------------------------------------------------------------
def frame_to_length(feats: np.ndarray, L: int, mode: str = "head") -> tuple[np.ndarray, int]:
    """Pad with zeros or trim a (T, d) sequence to (L, d); return it with its valid length.

    ``mode="head"`` keeps the first L frames (as MMSA does); ``mode="uniform"`` keeps L evenly spaced
    frames spanning the whole clip when T > L.
    """
    feats = np.asarray(feats)
    if feats.ndim != 2:
        raise ValueError(f"expected (T, d) frames; found shape {feats.shape}")
    if L <= 0:
        raise ValueError(f"L must be positive; got {L}")
    t = feats.shape[0]
    if t > L:
        if mode == "head":
            feats = feats[:L]
        elif mode == "uniform":
            feats = feats[np.linspace(0, t - 1, L).round().astype(int)]
        else:
            raise ValueError(f"mode must be 'head' or 'uniform'; got {mode!r}")
        return feats.astype(np.float32, copy=False), L
    out = np.zeros((L, feats.shape[1]), dtype=np.float32)
    out[:t] = feats
    return out, t


def frames_to_batch(seqs: Sequence[np.ndarray], L: int, mode: str = "head") -> tuple[np.ndarray, np.ndarray]:
    """Stack several (T_i, d) sequences into (N, L, d) float32 plus lengths (N,) int64."""
    pairs = [frame_to_length(s, L, mode) for s in seqs]
    if not pairs:
        raise ValueError("no sequences given")
    return np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=np.int64)
