"""Vision features: a reader for OpenFace 2.0 CSV output, and a weak built-in OpenCV extractor.

* `read_openface_csv` reads what OpenFace 2.0's ``FeatureExtraction`` writes (one row per frame): gaze,
  eye landmarks, head pose, 2D/3D face landmarks, PDM parameters and action units. This is where the
  community's vision features come from: MMSA-FET runs ``FeatureExtraction -2Dfp -pose -aus`` on
  frames extracted at 25 fps and keeps every column after the first five: the 177-d vision features
  of ``clip_0001_mmsafet_librosa_unaligned.pkl`` (preset ``"mmsa_fet"``; also the width of CH-SIMS v2's
  vision features). All 709 feature columns (preset ``"all"``) match the width of CH-SIMS's OpenFace
  features. OpenFace itself is a C++ tool that is not installed here; run it elsewhere, pass its CSV.
* `opencv_face_features` is a built-in stand-in that needs nothing beyond ``opencv-python-headless``:
  OpenCV's bundled Haar cascade (``cv2.data.haarcascades``) finds a frontal face per frame (the
  most-voted detection), and we report the box, the motion and intensity statistics inside it, and
  whole-frame motion.
  **It is much weaker than OpenFace** (no landmarks, no action units, no gaze or head pose; Haar
  cascades miss profile and small faces) **and its features are not comparable to the community's**:
  a model trained on MMSA / OpenFace features cannot take them. Use it only to run a model trained
  on these same features end to end on raw clips.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = [
    "OPENFACE_META", "OPENFACE_COLUMNS", "OPENFACE_HEADER", "OPENFACE_PRESETS", "openface_columns",
    "read_openface_csv", "OPENCV_FACE_NAMES", "opencv_face_features", "opencv_version",
]

# ------------------------------------------------------------------------------------------------
# OpenFace 2.0 CSV layout (RecorderCSV: the column groups in the order they are written)
# ------------------------------------------------------------------------------------------------
_AUS_R = ["01", "02", "04", "05", "06", "07", "09", "10", "12", "14", "15", "17", "20", "23", "25", "26", "45"]
_AUS_C = ["01", "02", "04", "05", "06", "07", "09", "10", "12", "14", "15", "17", "20", "23", "25", "26", "28", "45"]

#: Per-row bookkeeping columns that precede the features.
OPENFACE_META: list[str] = ["frame", "face_id", "timestamp", "confidence", "success"]
#: Feature column groups, in the order OpenFace 2.0 writes them (each present only with its flag).
OPENFACE_COLUMNS: dict[str, list[str]] = {
    "gaze": ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y"],
    "eye_landmarks_2d": [f"eye_lmk_{a}_{i}" for a in ("x", "y") for i in range(56)],
    "eye_landmarks_3d": [f"eye_lmk_{a}_{i}" for a in ("X", "Y", "Z") for i in range(56)],
    "pose": ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"],
    "landmarks_2d": [f"{a}_{i}" for a in ("x", "y") for i in range(68)],
    "landmarks_3d": [f"{a}_{i}" for a in ("X", "Y", "Z") for i in range(68)],
    "pdm": ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"] + [f"p_{i}" for i in range(34)],
    "au_r": [f"AU{a}_r" for a in _AUS_R],
    "au_c": [f"AU{a}_c" for a in _AUS_C],
}
#: The full header of ``FeatureExtraction`` run with every output (714 columns).
OPENFACE_HEADER: list[str] = OPENFACE_META + [c for cols in OPENFACE_COLUMNS.values() for c in cols]
#: Named group selections. ``mmsa_fet``: MMSA-FET's OpenFace config (-2Dfp -pose -aus) → 177 dims;
#: ``all`` → 709 dims; ``au_gaze_pose`` → 31 dims, a compact expression set.
OPENFACE_PRESETS: dict[str, tuple[str, ...]] = {
    "mmsa_fet": ("pose", "landmarks_2d", "au_r", "au_c"),
    "all": tuple(OPENFACE_COLUMNS),
    "au_gaze_pose": ("au_r", "gaze", "pose"),
}


def openface_columns(groups: str | Sequence[str] = "mmsa_fet") -> list[str]:
    """Feature column names for a preset name or a sequence of groups (in the order given)."""
    if isinstance(groups, str):
        if groups in OPENFACE_PRESETS:
            groups = OPENFACE_PRESETS[groups]
        elif groups in OPENFACE_COLUMNS:
            groups = (groups,)
        else:
            raise ValueError(f"unknown OpenFace preset/group {groups!r}; presets: {sorted(OPENFACE_PRESETS)}, "
                             f"groups: {list(OPENFACE_COLUMNS)}")
    unknown = [g for g in groups if g not in OPENFACE_COLUMNS]
    if unknown:
        raise ValueError(f"unknown OpenFace column group(s) {unknown}; available: {list(OPENFACE_COLUMNS)}")
    if not groups:
        raise ValueError("no OpenFace column group requested")
    return [c for g in groups for c in OPENFACE_COLUMNS[g]]


def read_openface_csv(path: str | Path, groups: str | Sequence[str] = "mmsa_fet", *, min_confidence: float = 0.0,
                      failed: str = "keep", face_id: int | None = None
                      ) -> tuple[np.ndarray, list[str], np.ndarray, dict[str, Any]]:
    """Read an OpenFace 2.0 CSV → (features float32 (T, d), column names, timestamps (T,) s, info).

    OpenFace writes ``", "``-separated headers and values; names are stripped, so both that and plain
    commas work. ``groups`` is a preset (`OPENFACE_PRESETS`) or a sequence of `OPENFACE_COLUMNS` keys;
    columns come out in that order (``"mmsa_fet"`` equals MMSA-FET's ``df.columns[5:]``).

    Failed frames: OpenFace marks a frame where tracking failed with ``success = 0`` (its features are
    then written as zeros); a frame with ``confidence < min_confidence`` is treated the same. With
    ``failed="keep"`` (default, what MMSA-FET does) such rows stay exactly as written; ``"zero"`` sets
    their features to 0; ``"drop"`` removes them. ``info`` counts them (``n_rows``, ``n_failed``,
    ``n_low_confidence``, ``n_dropped``, ``n_zeroed``) and reports non-finite cells (``n_nonfinite``), which
    are replaced by 0 (OpenFace can write ``nan`` for some rows) and never silently. With several faces
    (``face_id`` column, OpenFace's multi-face tool), ``face_id=None`` keeps the face with the most
    successful frames and says which in ``info["face_id"]``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OpenFace CSV not found: {path}")
    if failed not in ("keep", "zero", "drop"):
        raise ValueError(f"failed must be 'keep', 'zero' or 'drop'; got {failed!r}")
    want = openface_columns(groups)
    with open(path, encoding="utf-8-sig") as fh:
        header_line = fh.readline()
        rows = [line for line in fh if line.strip()]
    if not header_line.strip():
        raise ValueError(f"{path}: empty file; expected an OpenFace CSV with a header line")
    header = [h.strip() for h in header_line.rstrip("\r\n").split(",")]
    dup = sorted(h for h, k in Counter(header).items() if k > 1)
    if dup:
        raise ValueError(f"{path}: duplicate column names in the header: {dup[:10]}")
    col = {h: i for i, h in enumerate(header)}
    required = ["timestamp", "success"] + (["confidence"] if min_confidence > 0 else [])
    missing = [c for c in required + want if c not in col]
    if missing:
        present = [g for g, cs in OPENFACE_COLUMNS.items() if all(c in col for c in cs)]
        raise ValueError(f"{path}: missing {len(missing)} column(s) needed for groups {groups!r}: "
                         f"{missing[:12]}{' ...' if len(missing) > 12 else ''}; the file has the groups {present} "
                         f"(was OpenFace run with the matching flags, e.g. -2Dfp -pose -aus -gaze?)")
    if not rows:
        raise ValueError(f"{path}: header only, no frames")
    try:
        table = np.array([[float(v) for v in line.split(",")] for line in rows], dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"{path}: a row is not numeric ({e})") from e
    except Exception as e:  # ragged rows make np.array fail
        raise ValueError(f"{path}: malformed rows ({type(e).__name__}: {e})") from e
    if table.ndim != 2 or table.shape[1] != len(header):
        lens = sorted({len(line.split(",")) for line in rows})
        raise ValueError(f"{path}: rows have {lens} fields but the header has {len(header)} columns")
    info: dict[str, Any] = {"path": str(path), "n_rows": int(len(table)), "face_ids": None, "face_id": None}
    if "face_id" in col:
        ids = table[:, col["face_id"]].astype(np.int64)
        uniq = sorted(set(ids.tolist()))
        info["face_ids"] = uniq
        if face_id is None:
            succ = table[:, col["success"]] > 0.5
            face_id = max(uniq, key=lambda f: (int((succ & (ids == f)).sum()), -f))
        if face_id not in uniq:
            raise ValueError(f"{path}: face_id {face_id} not in the file (face ids: {uniq})")
        table = table[ids == face_id]
        info["face_id"] = int(face_id)
    elif face_id is not None:
        raise ValueError(f"{path}: face_id={face_id} requested but the file has no 'face_id' column")
    feats = table[:, [col[c] for c in want]]
    ts = table[:, col["timestamp"]]
    bad = table[:, col["success"]] < 0.5
    low = np.zeros(len(table), dtype=bool)
    if min_confidence > 0:
        low = (~bad) & (table[:, col["confidence"]] < min_confidence)
    nonfinite = ~np.isfinite(feats)
    info.update(n_failed=int(bad.sum()), n_low_confidence=int(low.sum()), n_nonfinite=int(nonfinite.sum()),
                n_dropped=0, n_zeroed=0, failed_policy=failed, min_confidence=float(min_confidence))
    if nonfinite.any():
        feats = np.where(nonfinite, 0.0, feats)
    reject = bad | low
    if failed == "zero":
        feats[reject] = 0.0
        info["n_zeroed"] = int(reject.sum())
    elif failed == "drop":
        feats, ts = feats[~reject], ts[~reject]
        info["n_dropped"] = int(reject.sum())
        if len(feats) == 0:
            raise ValueError(f"{path}: every frame failed (success=0 or confidence < {min_confidence}); "
                             f"nothing left after failed='drop'")
    info["n_frames"] = int(len(feats))
    return feats.astype(np.float32), list(want), ts.astype(np.float64), info


# ------------------------------------------------------------------------------------------------
# OpenCV Haar-cascade extractor (weak, self-contained)
# ------------------------------------------------------------------------------------------------
#: Output columns of `opencv_face_features`. Box values are fractions of the frame width / height;
#: intensities and motions are on a 0–1 scale (grey levels / 255).
OPENCV_FACE_NAMES: list[str] = [
    "face_detected", "face_cx", "face_cy", "face_w", "face_h",
    "face_motion", "face_mean", "face_std", "frame_motion",
]
_CASCADE = "haarcascade_frontalface_default.xml"


def opencv_version() -> str:
    import cv2

    return f"opencv {cv2.__version__} ({_CASCADE})"


def _cascade():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - pinned in requirements.txt
        raise ImportError("opencv_face_features needs opencv-python-headless (pinned in requirements.txt)") from e
    base = getattr(getattr(cv2, "data", None), "haarcascades", None)
    xml = Path(base) / _CASCADE if base else None
    if xml is None or not xml.is_file() or not hasattr(cv2, "CascadeClassifier"):
        raise RuntimeError(f"OpenCV {cv2.__version__} does not ship the Haar cascade {_CASCADE} in cv2.data.haarcascades "
                           f"(OpenCV 5 dropped it); install the pinned opencv-python-headless 4.x from requirements.txt")
    clf = cv2.CascadeClassifier(str(xml))
    if clf.empty():
        raise RuntimeError(f"OpenCV could not load the Haar cascade {xml}")
    return clf


def _to_gray(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W[, 3]); found dtype {frames.dtype}")
    if frames.ndim == 3:
        return frames
    if frames.ndim == 4 and frames.shape[-1] == 3:
        # ITU-R BT.601 luma, as cv2.cvtColor(RGB2GRAY)
        return np.round(frames @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)
    raise ValueError(f"frames must be (T, H, W) grey or (T, H, W, 3) RGB; found shape {frames.shape}")


def opencv_face_features(path_or_frames: str | Path | np.ndarray, fps: float | None = 25.0, *,
                         max_side: int | None = 480, min_face: float = 0.08, scale_factor: float = 1.2,
                         min_neighbors: int = 4) -> tuple[np.ndarray, list[str]]:
    """Per-frame face-box features from OpenCV's Haar cascade → (features float32 (T, 9), names).

    Weaker than OpenFace and not comparable to the community's features (see the module docstring).
    ``path_or_frames`` is a video (decoded at ``fps`` with ``max_side`` downscaling by
    `msa_lib.features.media.decode_frames`) or uint8 frames (T, H, W[, 3]). Per frame: the detected face
    with the most cascade votes (minimum side ``min_face`` × the shorter frame side) gives ``face_detected`` = 1, its
    centre and size as fractions of the frame, ``face_motion`` (mean |Δ grey| / 255 inside the box vs the
    previous frame; 0 on the first frame), ``face_mean`` / ``face_std`` (grey level / 255 in the box),
    and ``frame_motion`` (mean |Δ grey| / 255 over the whole frame). Frames without a face get
    ``face_detected`` = 0 and 0 for every face column (no carrying forward); the fraction of frames
    with a face is ``features[:, 0].mean()``. Deterministic.
    """
    import cv2

    if isinstance(path_or_frames, (str, Path)):
        from msa_lib.features.media import decode_frames

        frames, _ = decode_frames(path_or_frames, fps=fps, gray=True, max_side=max_side)
    else:
        frames = path_or_frames
    gray = _to_gray(frames)
    if len(gray) == 0:
        raise ValueError("no frames given")
    clf = _cascade()
    t, h, w = gray.shape
    side = max(1, int(math.ceil(min_face * min(h, w))))
    out = np.zeros((t, len(OPENCV_FACE_NAMES)), dtype=np.float64)
    prev = None
    for i, g in enumerate(gray):
        gf = g.astype(np.float64)
        if prev is not None:
            out[i, 8] = np.abs(gf - prev).mean() / 255.0
        # no histogram equalisation: on letterboxed video the black bars dominate it and flatten the face
        boxes, votes = clf.detectMultiScale2(g, scaleFactor=scale_factor, minNeighbors=min_neighbors,
                                             minSize=(side, side))
        if len(boxes):
            # the most-voted box (largest on ties): "largest" alone picks big false positives in clutter
            k = max(range(len(boxes)), key=lambda j: (int(votes[j]), int(boxes[j][2]) * int(boxes[j][3]), -j))
            x, y, bw, bh = (int(v) for v in boxes[k])
            patch = gf[y:y + bh, x:x + bw]
            out[i, :5] = (1.0, (x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h)
            out[i, 6] = patch.mean() / 255.0
            out[i, 7] = patch.std() / 255.0
            if prev is not None:
                out[i, 5] = np.abs(patch - prev[y:y + bh, x:x + bw]).mean() / 255.0
        prev = gf
    return out.astype(np.float32), list(OPENCV_FACE_NAMES)
