"""Feature extractors: ``text``, ``audio``, ``media`` (PyAV decoding), ``vision`` (OpenFace CSV, OpenCV faces)
and explanation providers (``explanations``).

Submodules are imported lazily so that ``import msa_lib.features`` does not pull in torch /
transformers / librosa until a name is used.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TextEncoder": "text", "encode_cached": "text", "default_text_encoder_path": "text",
    "encoder_identity": "text",
    "audio_features": "audio", "mmsafet_librosa_features": "audio", "frame_to_length": "audio",
    "frames_to_batch": "audio", "load_audio": "audio", "ffmpeg_available": "audio",
    "AudioDecodeError": "audio", "MMSAFET_LIBROSA_CONFIG": "audio", "MMSAFET_GROUPS": "audio",
    "mmsafet_group_slices": "audio", "group_correlations": "audio", "AUDIO_FEATURE_NAMES": "audio",
    "MediaDecodeError": "media", "probe": "media", "decode_audio": "media", "decode_frames": "media",
    "read_openface_csv": "vision", "openface_columns": "vision", "opencv_face_features": "vision",
    "OPENFACE_COLUMNS": "vision", "OPENCV_FACE_NAMES": "vision",
    "ExplanationProvider": "explanations", "get_provider": "explanations", "attach_explanations": "explanations",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
