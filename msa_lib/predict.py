"""From a raw clip and its transcript to a sentiment score with a saved checkpoint.

`predict_clip(video, transcript, checkpoint_dir)` reads the checkpoint's ``feature_config``, checks
that the extractors here produce exactly those features (`check_feature_config`; a mismatch is an
error listing each differing setting, never a silent approximation), extracts only the modalities
the model uses, builds a one-sample `Batch` and runs the model in eval mode.

Extractors (the names a ``feature_config`` may use):

* text ``minilm``: the bundled all-MiniLM-L6-v2 (`msa_lib.features.text.TextEncoder`, offline), token
  features (L, 384) with a mask, or the pooled sentence vector (``level="pooled"``, a length-1 sequence);
* audio ``mmsafet_librosa``: MMSA-FET's 70-d librosa set at 22050 Hz, hop 128
  (`msa_lib.features.audio.mmsafet_librosa_features`); ``prosody``: the 33-d MFCC / f0 / spectral set;
* vision ``opencv_face``: the Haar-cascade face-box features (`msa_lib.features.vision`), weaker than
  OpenFace and not comparable to the community's vision features.

Features are fed raw (no standardisation), as MMSA feeds its pickled features. Use `feature_config`
when training on features made by `extract_features`, and store it with `save_checkpoint`.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__all__ = ["EXTRACTORS", "feature_config", "extractor_config", "matching_config", "extract_features", "predict_clip"]

#: Extractor names per modality.
EXTRACTORS: dict[str, tuple[str, ...]] = {
    "text": ("minilm",),
    "audio": ("mmsafet_librosa", "prosody"),
    "vision": ("opencv_face",),
}
#: Settings the trainer chooses freely (copied from the checkpoint, not compared).
_FREE_KEYS = {"text": ("max_len", "level"), "audio": ("max_len",), "vision": ("max_len",)}
_ENCODERS: dict[str, Any] = {}


def extractor_config(modality: str, name: str, *, max_len: int | None = None, level: str = "tokens") -> dict[str, Any]:
    """The canonical config of one extractor: every setting that changes its output, plus ``dim``."""
    if modality not in EXTRACTORS:
        raise ValueError(f"unknown modality {modality!r}; expected one of {list(EXTRACTORS)}")
    if name not in EXTRACTORS[modality]:
        raise ValueError(f"no {modality} extractor named {name!r} here; available: {list(EXTRACTORS[modality])}")
    if max_len is not None and int(max_len) <= 0:
        raise ValueError(f"{modality} max_len must be positive or None; got {max_len}")
    if modality == "text":
        from msa_lib.features.text import default_text_encoder_path, encoder_identity

        if level not in ("tokens", "pooled"):
            raise ValueError(f"text level must be 'tokens' or 'pooled'; got {level!r}")
        return {"extractor": name, "encoder": "all-MiniLM-L6-v2", "encoder_md5": encoder_identity(default_text_encoder_path()),
                "pooling": "masked_mean", "level": level, "max_len": 50 if max_len is None else int(max_len), "dim": 384}
    if modality == "audio":
        from msa_lib.features import audio as A

        if name == "mmsafet_librosa":
            return {"extractor": name, "sample_rate": int(A.MMSAFET_LIBROSA_CONFIG["sample_rate"]),
                    "res_type": A.MMSAFET_RES_TYPE, "mono": True,
                    # the column order matters and a dict comparison ignores it: store it as a list too
                    "feature_order": list(A.MMSAFET_LIBROSA_CONFIG["features"]),
                    "features": A.MMSAFET_LIBROSA_CONFIG["features"], "dim": 70, "max_len": max_len}
        return {"extractor": name, "sample_rate": 22050, "res_type": "soxr_hq", "mono": True, "hop_length": 512,
                "n_fft": 2048, "names": list(A.AUDIO_FEATURE_NAMES), "dim": len(A.AUDIO_FEATURE_NAMES),
                "max_len": max_len}
    from msa_lib.features import vision as V

    return {"extractor": name, "fps": 25.0, "max_side": 480, "cascade": "haarcascade_frontalface_default.xml",
            "scale_factor": 1.2, "min_neighbors": 4, "min_face": 0.08, "names": list(V.OPENCV_FACE_NAMES),
            "dim": len(V.OPENCV_FACE_NAMES), "max_len": max_len}


def feature_config(text: str | None = "minilm", audio: str | None = "mmsafet_librosa", vision: str | None = None, *,
                   text_max_len: int = 50, text_level: str = "tokens", audio_max_len: int | None = None,
                   vision_max_len: int | None = None) -> dict[str, Any]:
    """The ``feature_config`` to store with a checkpoint trained on these extractors' features.

    A modality set to None is left out. ``*_max_len`` pads / trims sequences (first frames kept, as MMSA
    does); None keeps every frame of the clip.
    """
    out: dict[str, Any] = {}
    if text is not None:
        out["text"] = extractor_config("text", text, max_len=text_max_len, level=text_level)
    if audio is not None:
        out["audio"] = extractor_config("audio", audio, max_len=audio_max_len)
    if vision is not None:
        out["vision"] = extractor_config("vision", vision, max_len=vision_max_len)
    if not out:
        raise ValueError("feature_config needs at least one modality")
    return out


def matching_config(expected: Mapping[str, Any], modalities: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
    """What our extractors give for the extractors ``expected`` names (free settings copied from it)."""
    mods = list(modalities) if modalities is not None else list(expected)
    missing = [m for m in mods if m not in expected]
    if missing:
        raise ValueError(f"the model uses modalities {mods} but the checkpoint's feature_config has no entry for "
                         f"{missing}; it cannot say how those features were made")
    out = {}
    for m in mods:
        cfg = expected[m]
        if not isinstance(cfg, Mapping) or "extractor" not in cfg:
            raise ValueError(f"feature_config[{m!r}] must be a mapping with an 'extractor' key; found {cfg!r}")
        free = {k: cfg[k] for k in _FREE_KEYS.get(m, ()) if k in cfg}
        out[m] = extractor_config(m, str(cfg["extractor"]), **free)
    return out


def _text_encoder():
    from msa_lib.features.text import TextEncoder, default_text_encoder_path

    key = str(default_text_encoder_path())
    if key not in _ENCODERS:
        _ENCODERS[key] = TextEncoder(key, progress=False)
    return _ENCODERS[key]


def _fit_len(frames: np.ndarray, max_len: int | None) -> tuple[np.ndarray, int]:
    from msa_lib.features.audio import frame_to_length

    if max_len is None:
        return frames.astype(np.float32, copy=False), int(len(frames))
    return frame_to_length(frames, int(max_len), mode="head")


def extract_features(video: str | Path, transcript: str | None, config: Mapping[str, Any]
                     ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, Any], dict[str, float]]:
    """Extract the modalities in ``config`` (as made by `feature_config`) from one clip.

    Returns ``(features, provenance, seconds)``: ``features[m] = (x (L, d) float32, mask (L,) bool)``,
    ``provenance[m]`` the config used plus versions and the frame count, ``seconds[m]`` the time taken.
    """
    feats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    prov: dict[str, Any] = {}
    secs: dict[str, float] = {}
    video = Path(video)
    if ("audio" in config or "vision" in config) and not video.is_file():
        raise FileNotFoundError(f"video file not found: {video}")
    for m, cfg in config.items():
        t0 = time.perf_counter()
        name = cfg["extractor"]
        if m == "text":
            if transcript is None or not str(transcript).strip():
                raise ValueError("the model uses text: pass the clip's transcript (--transcript)")
            enc = _text_encoder()
            tokens, mask, pooled = enc.encode([str(transcript)], max_len=int(cfg["max_len"]), progress=False)
            if cfg.get("level", "tokens") == "pooled":
                x, msk = pooled[0][None, :], np.ones(1, dtype=bool)
            else:
                x, msk = tokens[0], mask[0]
            import transformers

            prov[m] = {**cfg, "n_tokens": int(mask[0].sum()), "encoder_path": str(enc.path),
                       "transformers": transformers.__version__}
        elif m == "audio":
            import librosa

            from msa_lib.features import audio as A
            from msa_lib.features.media import pyav_version

            if name == "mmsafet_librosa":
                frames, _ = A.mmsafet_librosa_features(video, config={"sample_rate": cfg["sample_rate"],
                                                                       "features": cfg["features"]},
                                                       res_type=cfg["res_type"])
            else:
                y, sr = A.load_audio(video, sr=int(cfg["sample_rate"]), res_type=cfg["res_type"])
                frames, _ = A.audio_features(y, sr=sr, hop_length=int(cfg["hop_length"]), n_fft=int(cfg["n_fft"]))
            if not np.isfinite(frames).all():
                raise ValueError(f"{video}: the {name} audio features contain {int((~np.isfinite(frames)).sum())} "
                                 f"non-finite value(s)")
            x, n = _fit_len(frames, cfg.get("max_len"))
            msk = np.arange(len(x)) < n
            prov[m] = {k: v for k, v in cfg.items() if k not in ("features", "feature_order", "names")}
            prov[m].update(n_frames=int(len(frames)), decoder=pyav_version(), librosa=librosa.__version__)
        elif m == "vision":
            from msa_lib.features import vision as V

            frames, _ = V.opencv_face_features(video, fps=float(cfg["fps"]), max_side=cfg["max_side"],
                                               min_face=float(cfg["min_face"]), scale_factor=float(cfg["scale_factor"]),
                                               min_neighbors=int(cfg["min_neighbors"]))
            x, n = _fit_len(frames, cfg.get("max_len"))
            msk = np.arange(len(x)) < n
            prov[m] = {k: v for k, v in cfg.items() if k != "names"}
            prov[m].update(n_frames=int(len(frames)), face_detected_fraction=float(frames[:, 0].mean()),
                           opencv=V.opencv_version())
        else:
            raise ValueError(f"unknown modality {m!r} in the feature config; expected some of {list(EXTRACTORS)}")
        if x.shape[-1] != int(cfg["dim"]):
            raise ValueError(f"{m} extractor {name!r} gave {x.shape[-1]} dims; the config says {cfg['dim']}")
        feats[m] = (x.astype(np.float32, copy=False), msk.astype(bool))
        secs[m] = time.perf_counter() - t0
    return feats, prov, secs


def predict_clip(video: str | Path, transcript: str | None, checkpoint_dir: str | Path,
                 device: str = "cpu") -> dict[str, Any]:
    """Score one clip with a checkpoint → dict with ``score`` (None for a classifier), ``polarity``,
    ``logits`` (classifiers), ``model``, ``modalities``, ``provenance`` (per-modality extractor settings,
    versions and frame counts, plus the clip's `probe`), ``timings`` and ``seconds`` (wall time, all in).
    """
    import torch

    from msa_lib.checkpoint import check_feature_config, load_checkpoint
    from msa_lib.data.schema import MODALITIES, Batch
    from msa_lib.features.media import probe

    t_start = time.perf_counter()
    model, meta = load_checkpoint(checkpoint_dir, device=device)
    t_load = time.perf_counter() - t_start
    mods = list(meta.get("modalities") or meta["dims"].keys())
    expected = {m: meta["feature_config"][m] for m in mods if m in meta["feature_config"]}
    actual = matching_config(meta["feature_config"], mods)
    check_feature_config(expected, actual)
    for m in mods:
        if int(actual[m]["dim"]) != int(meta["dims"][m]):
            raise ValueError(f"checkpoint dims[{m!r}] = {meta['dims'][m]} but the {actual[m]['extractor']} extractor "
                             f"gives {actual[m]['dim']}")
    feats, prov, secs = extract_features(video, transcript, actual)
    t0 = time.perf_counter()
    kw: dict[str, Any] = {}
    for m in MODALITIES:
        if m in feats:
            x, msk = feats[m]
            kw[m] = torch.from_numpy(x)[None].to(device)
            kw[f"{m}_mask"] = torch.from_numpy(msk)[None].to(device)
        else:
            kw[m], kw[f"{m}_mask"] = None, None
    batch = Batch(labels=None, **kw)
    with torch.no_grad():
        out = model(batch)
    pred = out.pred.detach().float().cpu().numpy().reshape(-1)
    secs["model"] = time.perf_counter() - t0
    secs["load_checkpoint"] = t_load
    res: dict[str, Any] = {"model": meta["model_name"], "modalities": mods, "checkpoint": str(checkpoint_dir),
                           "video": str(video), "transcript": transcript}
    if int(meta.get("n_out", 1)) == 1:
        score = float(pred[0])
        res.update(score=score, polarity="positive" if score > 0 else "negative" if score < 0 else "neutral")
    else:
        res.update(score=None, logits=[float(v) for v in pred], class_index=int(np.argmax(pred)), polarity=None)
    res["provenance"] = {"clip": probe(video) if ("audio" in feats or "vision" in feats) else None, **prov,
                         "checkpoint": {k: meta.get(k) for k in ("model_name", "msa_lib_version", "torch_version",
                                                                 "created", "weights_md5")}}
    res["timings"] = {k: round(v, 4) for k, v in secs.items()}
    res["seconds"] = time.perf_counter() - t_start
    return res
