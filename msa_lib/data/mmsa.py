"""Loaders for the two community feature-pickle layouts, plus a writer of layout-exact FIXTURES.

Layouts
-------
**MMSA** (``aligned_50.pkl``, ``unaligned_50.pkl``, ``unaligned_39.pkl``; thuiar/MMSA): a pickled dict
``{"train": {...}, "valid": {...}, "test": {...}}``. Each split dict holds

==========================  ================================================================
``raw_text``                (N,) transcripts
``id``                      (N,) clip ids, e.g. ``"03bSnISJMiM$_$1"``
``text``                    (N, L, 768) float32 BERT token features
``text_bert``               (N, 3, L) int64: input ids / attention mask / segment ids
``audio``, ``vision``       (N, La, da), (N, Lv, dv); vision is float64 in the unaligned files
``audio_lengths``           (N,) valid frames (unaligned files only; aligned files lack them)
``vision_lengths``          (N,)
``regression_labels``       (N,) the sentiment score
``classification_labels``   (N,) the discretised score
``regression_labels_T/A/V`` optional unimodal labels (CH-SIMS)
==========================  ================================================================

MMSA also ships small *flat* single-sample files (e.g. OpenVNA's ``example.pkl``): one dict with
``text``, ``text_bert``, ``audio``, ``vision``, ``audio_lengths``, ``vision_lengths`` and no labels.
`load_mmsa` reads those as an unlabelled dataset with only a ``test`` split.

**MulT / MultiBench** (``mosi_data.pkl``, ``mosei_senti_data.pkl``; I2MoE's official code uses it):
``{"train"|"valid"|"test": {"vision", "audio", "text" (GloVe 300-d), "labels" (N, 1, 1), "id"}}``, word
aligned, no lengths (every sequence is full length).

Both loaders sanitise ``-inf`` / ``NaN`` in the features to 0 exactly as MMSA does, but count every
replacement (``provenance["sanitised"]`` per split and modality, ``provenance["n_sanitised"]`` in
total) and warn when anything was replaced. Labels are never sanitised: a NaN label is an error.

The TEXT authors' pickles add MLLM explanation strings, ``audio_clue`` and ``visual_clue`` (N,); they
become ``split.audio_clue`` / ``split.vision_clue``, which the ``synth`` explanation provider (the
dataset's own explanations) then encodes.

Fields the schema has no slot for (``classification_labels``, ``regression_labels_T/A/V``, the BERT
``text_bert`` ids) are kept per sample in ``split.extras`` (a dict of arrays that ``Split.subset`` slices too).
"""
from __future__ import annotations

import hashlib
import pickle
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .sanitise import is_real_numeric, sanitise_features, total_replaced
from .schema import SPLITS, DataError, MSADataset, Split

__all__ = [
    "load_mmsa",
    "load_multibench",
    "write_mmsa_like",
    "write_multibench_like",
    "infer_family",
    "FAMILY_RANGES",
    "MMSA_OBTAIN_HINT",
    "MULTIBENCH_OBTAIN_HINT",
]

FAMILY_RANGES: dict[str, tuple[float, float]] = {
    "mosi": (-3.0, 3.0),
    "mosei": (-3.0, 3.0),
    "sims": (-1.0, 1.0),
    "simsv2": (-1.0, 1.0),
}

MMSA_OBTAIN_HINT = (
    "MMSA feature pickles come from the MMSA authors (thuiar/MMSA README: Baidu/Google Drive links, "
    "folders MOSI/ MOSEI/ SIMS/ with Processed/aligned_50.pkl and Processed/unaligned_50.pkl, "
    "SIMS: unaligned_39.pkl); download aligned_50.pkl / unaligned_50.pkl and pass data_root=... "
    "(or the file path) to the loader"
)
MULTIBENCH_OBTAIN_HINT = (
    "MulT/MultiBench pickles (mosi_data.pkl, mosei_senti_data.pkl) come from the MulT authors "
    "(yaohungt/Multimodal-Transformer README: 'download the processed data' link) and are what "
    "MultiBench and I2MoE's official code read; download one and pass data_root=... (or the file path)"
)

_MMSA_REQUIRED = ("text", "audio", "vision", "id", "regression_labels")
_MMSA_FLAT_REQUIRED = ("text", "audio", "vision")
_MULTIBENCH_REQUIRED = ("text", "audio", "vision", "labels")
_EXTRA_LABELS = ("classification_labels", "regression_labels_T", "regression_labels_A", "regression_labels_V")


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------
def file_md5(path: Path, chunk: int = 1 << 22) -> str:
    """md5 of a file, read in chunks (feature pickles can be GBs)."""
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _read_pickle(path: Path, hint: str) -> Any:
    """Unpickle ``path``; retry with ``encoding="latin1"`` for Python-2 pickles; clear DataErrors."""
    if not path.exists():
        raise DataError(f"{path}: file not found. {hint}")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a pickle file. {hint}")
    errors = []
    for kw in ({}, {"encoding": "latin1"}):
        try:
            with open(path, "rb") as fh:
                return pickle.load(fh, **kw)
        except (UnicodeDecodeError, pickle.UnpicklingError, EOFError, ValueError, TypeError,
                AttributeError, ImportError, IndexError, KeyError, OSError) as e:
            errors.append(f"{type(e).__name__}: {e}")
    raise DataError(f"{path}: not a readable pickle ({'; '.join(errors)}); "
                    f"expected a pickled dict of numpy arrays")


def _read_dict(path: Path, hint: str, layout: str) -> Mapping:
    """Unpickle ``path`` and insist on a dict, naming the type found otherwise."""
    obj = _read_pickle(path, hint)
    if not isinstance(obj, Mapping):
        raise DataError(f"{path}: expected a pickled dict with keys 'train', 'valid', 'test' ({layout} layout); "
                        f"found an object of type {type(obj).__name__}")
    return obj


def infer_family(text: str, labels: np.ndarray | None = None) -> str:
    """Guess the metric family from a name/path; ``mosi`` when nothing matches.

    ``sims`` is only chosen when the labels (if given) lie within [-1, 1]; SIMS v2 is recognised by
    ``simsv2`` / ``sims_v2`` / ``sims2`` / ``sims-v2`` in the name.
    """
    t = text.lower().replace("-", "").replace("_", "")
    within_unit = labels is None or labels.size == 0 or bool(np.nanmax(np.abs(labels)) <= 1.0 + 1e-6)
    if "simsv2" in t or "sims2" in t:
        return "simsv2" if within_unit else "mosi"
    if "sims" in t:
        return "sims" if within_unit else "mosi"
    if "mosei" in t:
        return "mosei"
    return "mosi"


def _resolve_family(path: Path, name: str, metric_family: str | None,
                    label_range: tuple[float, float] | None, labels: np.ndarray | None):
    if metric_family is None:
        metric_family = infer_family(f"{name} {path}", labels)
    if metric_family not in FAMILY_RANGES:
        raise DataError(f"{path}: unknown metric_family {metric_family!r}; expected one of {tuple(FAMILY_RANGES)}")
    if label_range is None:
        label_range = FAMILY_RANGES[metric_family]
    return metric_family, (float(label_range[0]), float(label_range[1]))


def _as_array(v: Any, where: str, key: str) -> np.ndarray:
    try:
        return np.asarray(v)
    except Exception as e:  # ragged lists and the like
        raise DataError(f"{where}: field '{key}' cannot be read as an array ({type(e).__name__}: {e})") from None


def _check_ndim(x: np.ndarray, where: str, key: str, expected: str, ndim: int) -> None:
    if x.ndim != ndim:
        raise DataError(f"{where}: field '{key}' has the wrong shape: expected {expected}, found {x.shape}")


def _check_n(x: np.ndarray, n: int, where: str, key: str, ref: str) -> None:
    if x.shape[0] != n:
        raise DataError(f"{where}: field '{key}' has {x.shape[0]} samples but '{ref}' has {n} "
                        f"(mismatched N between fields)")


def _str_ids(v: np.ndarray) -> np.ndarray:
    """(N,) str ids; multi-column ids (MulT stores [video, start, end]) are joined with '$_$'."""
    v = np.asarray(v)
    if v.ndim == 1:
        return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in v], dtype=str)
    flat = v.reshape(v.shape[0], -1)
    return np.array(["$_$".join(x.decode() if isinstance(x, bytes) else str(x) for x in row) for row in flat],
                    dtype=str)


def _split_ids(d: dict, n: int, where: str, split: str) -> np.ndarray:
    """The split's ``id`` field as strings, or generated ``<split>_<row>`` ids when the file has none."""
    if "id" not in d:
        return np.array([f"{split}_{i:04d}" for i in range(n)], dtype=str)
    ids_raw = _as_array(d["id"], where, "id")
    if ids_raw.ndim == 0 or ids_raw.shape[0] != n:
        raise DataError(f"{where}: field 'id' has {ids_raw.shape[0] if ids_raw.ndim else 0} entries but 'text' "
                        f"has {n} (mismatched N between fields)")
    return _str_ids(ids_raw)


def _labels_1d(v: np.ndarray, n: int, where: str, key: str) -> np.ndarray:
    v = np.asarray(v)
    if not is_real_numeric(v.dtype):  # complex would lose its imaginary part in the float32 cast
        raise DataError(f"{where}: field '{key}' must be numeric (integer or float); found dtype {v.dtype}")
    if v.ndim == 0 or v.shape[0] != n or v.size != n:
        raise DataError(f"{where}: field '{key}' has the wrong shape: expected ({n},) "
                        f"(or ({n}, 1) / ({n}, 1, 1)), found {v.shape}")
    v = v.reshape(n).astype(np.float32)
    k = int(np.isnan(v).sum())
    if k:
        raise DataError(f"{where}: field '{key}' contains {k} NaN label(s); labels are never sanitised. "
                        f"Fix or drop those samples")
    return v


def _lengths(v: np.ndarray, n: int, seq_len: int, where: str, key: str, notes: dict) -> np.ndarray:
    v = np.asarray(v)
    if v.shape != (n,) and v.size == n:
        v = v.reshape(n)
    if v.shape != (n,):
        raise DataError(f"{where}: field '{key}' has the wrong shape: expected ({n},), found {v.shape}")
    v = v.astype(np.int64)
    if (v < 0).any():
        raise DataError(f"{where}: field '{key}' has {int((v < 0).sum())} negative length(s)")
    over = v > seq_len
    if over.any():
        # Real MMSA files store the length before truncation to L; clip, but record it.
        notes[key] = int(over.sum())
        v = np.minimum(v, seq_len)
    return v


def _sanitise(x: np.ndarray, where: str, key: str, counts: dict) -> np.ndarray:
    if not is_real_numeric(x.dtype):  # complex would lose its imaginary part in the float32 cast
        raise DataError(f"{where}: field '{key}' must be numeric (integer or float); found dtype {x.dtype}")
    return sanitise_features(x, name=key, counts=counts)


def _finish(path: Path, name: str, splits: dict[str, Split | None], label_range, metric_family,
            provenance: dict) -> MSADataset:
    sanitised = provenance.get("sanitised", {})
    n_san = sum(total_replaced(c) for c in sanitised.values())
    provenance["n_sanitised"] = int(n_san)
    if n_san:
        per = ", ".join(f"{s}/{m}: {sum(c.values())}" for s, cs in sanitised.items() for m, c in cs.items()
                        if sum(c.values()))
        warnings.warn(f"{path}: replaced {n_san} non-finite feature value(s) (-inf/+inf/NaN) with 0 ({per}); "
                      f"counts are in dataset.provenance['sanitised']", stacklevel=3)
    clipped = provenance.get("lengths_clipped")
    if clipped:
        warnings.warn(f"{path}: some lengths exceeded the stored sequence length and were clipped: {clipped}",
                      stacklevel=3)
    try:
        return MSADataset(name=name, train=splits.get("train"), valid=splits.get("valid"),
                          test=splits.get("test"), label_range=label_range, metric_family=metric_family,
                          provenance=provenance)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None


# --------------------------------------------------------------------------------------------------
# MMSA
# --------------------------------------------------------------------------------------------------
def _parse_mmsa_split(d: Any, path: Path, split: str, *, flat: bool, counts: dict, notes: dict) -> Split:
    where = f"{path} [{split}]" if not flat else f"{path}"
    if not isinstance(d, Mapping):
        raise DataError(f"{where}: split '{split}' must be a dict of arrays; found {type(d).__name__}")
    required = _MMSA_FLAT_REQUIRED if flat else _MMSA_REQUIRED
    for key in required:
        if key not in d:
            raise DataError(f"{where}: split '{split}' is missing field '{key}'; keys found: {sorted(map(str, d))}")

    text = _as_array(d["text"], where, "text")
    _check_ndim(text, where, "text", "(N, L, d) e.g. (N, 50, 768) BERT features", 3)
    n = text.shape[0]
    if n == 0:
        raise DataError(f"{where}: split '{split}' is empty (0 samples); every split needs at least one sample")
    audio = _as_array(d["audio"], where, "audio")
    vision = _as_array(d["vision"], where, "vision")
    _check_ndim(audio, where, "audio", "(N, La, da)", 3)
    _check_ndim(vision, where, "vision", "(N, Lv, dv)", 3)
    _check_n(audio, n, where, "audio", "text")
    _check_n(vision, n, where, "vision", "text")

    extras: dict[str, np.ndarray] = {}
    text_lengths = np.full(n, text.shape[1], dtype=np.int64)
    if "text_bert" in d:
        tb = _as_array(d["text_bert"], where, "text_bert")
        if tb.ndim != 3 or tb.shape[0] != n or tb.shape[1] != 3 or tb.shape[2] != text.shape[1]:
            raise DataError(f"{where}: field 'text_bert' has the wrong shape: expected ({n}, 3, {text.shape[1]}) "
                            f"(ids / mask / segment), found {tb.shape}")
        text_lengths = tb[:, 1].sum(axis=1).astype(np.int64)
        extras["text_bert"] = tb.astype(np.int64)

    seq_notes: dict[str, int] = {}
    audio_lengths = vision_lengths = None
    if "audio_lengths" in d:
        audio_lengths = _lengths(d["audio_lengths"], n, audio.shape[1], where, "audio_lengths", seq_notes)
    if "vision_lengths" in d:
        vision_lengths = _lengths(d["vision_lengths"], n, vision.shape[1], where, "vision_lengths", seq_notes)
    if audio_lengths is None:  # aligned layout: every frame is valid
        audio_lengths = np.full(n, audio.shape[1], dtype=np.int64)
    if vision_lengths is None:
        vision_lengths = np.full(n, vision.shape[1], dtype=np.int64)
    if seq_notes:
        notes[split] = seq_notes

    labels = None
    if "regression_labels" in d:
        labels = _labels_1d(_as_array(d["regression_labels"], where, "regression_labels"), n, where,
                            "regression_labels")
    for key in _EXTRA_LABELS:
        if key in d:
            extras[key] = _labels_1d(_as_array(d[key], where, key), n, where, key)

    ids = _split_ids(d, n, where, split)
    raw_text = None
    if "raw_text" in d:
        rt = _as_array(d["raw_text"], where, "raw_text")
        if rt.shape != (n,):
            raise DataError(f"{where}: field 'raw_text' has the wrong shape: expected ({n},), found {rt.shape}")
        raw_text = _str_ids(rt)
    clues = {}
    for key, slot in (("audio_clue", "audio_clue"), ("visual_clue", "vision_clue")):  # TEXT authors' pickles
        if key in d:
            arr = _as_array(d[key], where, key)
            if arr.shape != (n,):
                raise DataError(f"{where}: field {key!r} has the wrong shape: expected ({n},), found {arr.shape}")
            clues[slot] = _str_ids(arr)

    c: dict = {}
    text = _sanitise(text, where, "text", c)
    audio = _sanitise(audio, where, "audio", c)
    vision = _sanitise(vision, where, "vision", c)
    counts[split] = c

    sp = Split(text=text, audio=audio, vision=vision, labels=labels, ids=ids, text_lengths=text_lengths,
               audio_lengths=audio_lengths, vision_lengths=vision_lengths, raw_text=raw_text, extras=extras,
               **clues)
    return sp


def load_mmsa(path: str | Path, *, name: str | None = None, metric_family: str | None = None,
              label_range: tuple[float, float] | None = None) -> MSADataset:
    """Load an MMSA feature pickle (``aligned_50.pkl`` / ``unaligned_50.pkl`` / ``unaligned_39.pkl``).

    Also reads the flat single-split layout (one dict with ``text``/``audio``/``vision`` and no
    ``train``/``valid``/``test``): only ``test`` is set and ``labels`` is None unless the file has
    ``regression_labels``.

    ``metric_family`` / ``label_range`` are inferred from ``name`` and the path when not given (a name
    containing ``sims`` with labels in [-1, 1] → ``sims``; ``mosei`` → ``mosei``; otherwise ``mosi``).
    Non-finite features are set to 0 and counted in ``provenance["sanitised"]``; vision float64 is cast
    to float32. Every malformed input raises `DataError` naming the file, split, field and shapes.
    """
    path = Path(path)
    obj = _read_dict(path, MMSA_OBTAIN_HINT, "MMSA")
    keys = sorted(map(str, obj.keys()))
    has_splits = any(s in obj for s in SPLITS)
    flat = not has_splits and all(k in obj for k in _MMSA_FLAT_REQUIRED)
    if not has_splits and not flat:
        raise DataError(f"{path}: missing split key 'train' (expected 'train', 'valid', 'test', or the flat "
                        f"single-split layout with 'text', 'audio', 'vision'); keys found: {keys}")
    counts: dict = {}
    notes: dict = {}
    splits: dict[str, Split | None] = {}
    if flat:
        splits["test"] = _parse_mmsa_split(obj, path, "test", flat=True, counts=counts, notes=notes)
        splits["train"] = splits["valid"] = None
        has_lengths = "audio_lengths" in obj or "vision_lengths" in obj
    else:
        for s in SPLITS:
            if s not in obj:
                raise DataError(f"{path}: missing split key '{s}'; keys found: {keys}")
        for s in SPLITS:
            splits[s] = _parse_mmsa_split(obj[s], path, s, flat=False, counts=counts, notes=notes)
        has_lengths = any(("audio_lengths" in obj[s]) or ("vision_lengths" in obj[s]) for s in SPLITS)

    present = [sp for sp in splits.values() if sp is not None]
    labelled = all(sp.labels is not None for sp in present)
    if any(sp.labels is not None for sp in present) and not labelled:
        raise DataError(f"{path}: some splits have 'regression_labels' and others do not")
    all_labels = np.concatenate([sp.labels for sp in present]) if labelled else None
    name = name or path.stem
    metric_family, label_range = _resolve_family(path, name, metric_family, label_range, all_labels)

    first = present[0]
    provenance = {
        "kind": "real",
        "source": str(path),
        "md5": file_md5(path),
        "layout": "mmsa-unaligned" if has_lengths else "mmsa-aligned",
        "flat_single_split": flat,
        "labelled": labelled,
        "sanitised": counts,
        "dims": {m: int(getattr(first, m).shape[-1]) for m in ("text", "audio", "vision")},
        "extra_fields": sorted(first.extras),
        "ids_generated": ("id" not in obj) if flat else any("id" not in obj[s] for s in SPLITS),
    }
    if notes:
        provenance["lengths_clipped"] = notes
    if not has_lengths:
        provenance["lengths_note"] = "aligned layout has no audio/vision lengths: all frames treated as valid"
    return _finish(path, name, splits, label_range, metric_family, provenance)


# --------------------------------------------------------------------------------------------------
# MulT / MultiBench
# --------------------------------------------------------------------------------------------------
def load_multibench(path: str | Path, *, name: str | None = None, metric_family: str | None = None,
                    label_range: tuple[float, float] | None = None) -> MSADataset:
    """Load a MulT / MultiBench pickle (``mosi_data.pkl``, ``mosei_senti_data.pkl``).

    Word-aligned, so every sequence is full length (``<m>_lengths`` = L). Text is GloVe 300-d.
    Labels ``(N, 1, 1)`` are flattened to ``(N,)``. Same sanitising and errors as `load_mmsa`.
    """
    path = Path(path)
    obj = _read_dict(path, MULTIBENCH_OBTAIN_HINT, "MulT/MultiBench")
    keys = sorted(map(str, obj.keys()))
    for s in SPLITS:
        if s not in obj:
            raise DataError(f"{path}: missing split key '{s}'; keys found: {keys}")
    counts: dict = {}
    splits: dict[str, Split | None] = {}
    ids_generated = False
    for s in SPLITS:
        d = obj[s]
        where = f"{path} [{s}]"
        if not isinstance(d, Mapping):
            raise DataError(f"{where}: split '{s}' must be a dict of arrays; found {type(d).__name__}")
        for key in _MULTIBENCH_REQUIRED:
            if key not in d:
                raise DataError(f"{where}: split '{s}' is missing field '{key}'; keys found: {sorted(map(str, d))}")
        arrs = {}
        for key in ("text", "audio", "vision"):
            arrs[key] = _as_array(d[key], where, key)
            _check_ndim(arrs[key], where, key, "(N, L, d)", 3)
        n = arrs["text"].shape[0]
        if n == 0:
            raise DataError(f"{where}: split '{s}' is empty (0 samples); every split needs at least one sample")
        _check_n(arrs["audio"], n, where, "audio", "text")
        _check_n(arrs["vision"], n, where, "vision", "text")
        labels = _labels_1d(_as_array(d["labels"], where, "labels"), n, where, "labels")
        ids_generated = ids_generated or "id" not in d
        ids = _split_ids(d, n, where, s)
        c: dict = {}
        feats = {k: _sanitise(v, where, k, c) for k, v in arrs.items()}
        counts[s] = c
        sp = Split(text=feats["text"], audio=feats["audio"], vision=feats["vision"], labels=labels, ids=ids,
                   text_lengths=np.full(n, feats["text"].shape[1], dtype=np.int64),
                   audio_lengths=np.full(n, feats["audio"].shape[1], dtype=np.int64),
                   vision_lengths=np.full(n, feats["vision"].shape[1], dtype=np.int64))
        splits[s] = sp
    name = name or path.stem
    all_labels = np.concatenate([sp.labels for sp in splits.values()])
    metric_family, label_range = _resolve_family(path, name, metric_family, label_range, all_labels)
    first = splits["train"]
    provenance = {
        "kind": "real",
        "source": str(path),
        "md5": file_md5(path),
        "layout": "multibench",
        "labelled": True,
        "sanitised": counts,
        "dims": {m: int(getattr(first, m).shape[-1]) for m in ("text", "audio", "vision")},
        "ids_generated": ids_generated,
        "lengths_note": "word-aligned layout without lengths: all frames treated as valid",
    }
    return _finish(path, name, splits, label_range, metric_family, provenance)


# --------------------------------------------------------------------------------------------------
# FIXTURE writers (tests and users: layout-exact small files; never real data)
# --------------------------------------------------------------------------------------------------
def _fixture_labels(rng, n, lo, hi):
    # MOSI-like: averaged annotator scores on a 1/5 grid
    return np.round(rng.uniform(lo, hi, size=n) * 5) / 5


def write_mmsa_like(path: str | Path, n: tuple[int, int, int] = (8, 4, 4), L: tuple[int, int, int] = (50, 50, 50),
                    dims: tuple[int, int, int] = (768, 5, 20), aligned: bool = False, seed: int = 0,
                    inject_nonfinite: bool = False, labels: Mapping[str, Any] | None = None, *,
                    label_range: tuple[float, float] = (-3.0, 3.0), unimodal_labels: bool = False) -> dict:
    """Write a random FIXTURE with exactly the MMSA key set and dtypes. It is NOT data.

    Use it to test loaders and pipelines without the real 0.3–10 GB files: ``text`` float32
    (N, Lt, dt), ``text_bert`` int64 (N, 3, Lt), ``audio`` float32 (N, La, da), ``vision`` float64 in the
    unaligned layout (as in the real files; float32 when aligned), ``id`` / ``raw_text`` arrays of str,
    ``regression_labels`` float32 (N,), ``classification_labels`` float32 (N,) in {0 neg, 1 neu, 2 pos},
    and ``audio_lengths`` / ``vision_lengths`` int64 (N,) in the unaligned layout only.

    ``n`` are the train/valid/test sizes, ``L`` the text/audio/vision sequence lengths (aligned
    files use ``L[0]`` for all three), ``dims`` the feature widths. ``labels`` maps a split name to a
    label array that replaces the random one (e.g. to write NaN or out-of-range labels).
    ``inject_nonfinite`` writes some ``-inf`` / ``NaN`` / ``+inf`` into audio and vision (train and test).
    ``unimodal_labels`` adds ``regression_labels_T/A/V`` (CH-SIMS).

    Returns ``{"path": Path, "nonfinite": {split: {modality: count}}, "sizes": {...}}``.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    lt, la, lv = (L[0], L[0], L[0]) if aligned else L
    dt, da, dv = dims
    out: dict[str, dict] = {}
    nonfinite: dict[str, dict[str, int]] = {}
    for s, ns in zip(SPLITS, n):
        ids_text = rng.integers(1000, 30000, size=(ns, lt))
        tlen = rng.integers(min(3, lt), lt + 1, size=ns)
        mask = (np.arange(lt)[None, :] < tlen[:, None]).astype(np.int64)
        ids_text = ids_text * mask
        ids_text[:, 0] = 101
        ids_text[np.arange(ns), np.maximum(tlen - 1, 1) if lt > 1 else 0] = 102
        text_bert = np.stack([ids_text, mask, np.zeros_like(mask)], axis=1).astype(np.int64)
        text = rng.normal(size=(ns, lt, dt)).astype(np.float32)
        audio = rng.normal(size=(ns, la, da)).astype(np.float32)
        vision = rng.normal(size=(ns, lv, dv)).astype(np.float32 if aligned else np.float64)
        reg = _fixture_labels(rng, ns, *label_range).astype(np.float32)
        if labels is not None and s in labels:
            reg = np.asarray(labels[s], dtype=np.float32)
        cls = np.where(reg < 0, 0, np.where(reg > 0, 2, 1)).astype(np.float32)
        d: dict[str, Any] = {
            "raw_text": np.array([f"fixture sentence {s} {i}" for i in range(ns)], dtype=str),
            "audio": audio,
            "vision": vision,
            "id": np.array([f"fixvid{i // 3:03d}$_${i % 3}" for i in range(ns)], dtype=str),
            "text": text,
            "text_bert": text_bert,
            "regression_labels": reg,
            "classification_labels": cls,
        }
        if not aligned:
            d["audio_lengths"] = rng.integers(1, la + 1, size=ns).astype(np.int64)
            d["vision_lengths"] = rng.integers(1, lv + 1, size=ns).astype(np.int64)
        if unimodal_labels:
            for m in "TAV":
                d[f"regression_labels_{m}"] = _fixture_labels(rng, ns, *label_range).astype(np.float32)
        nonfinite[s] = {"text": 0, "audio": 0, "vision": 0}
        if inject_nonfinite and s in ("train", "test") and ns > 0:
            k = 0
            for m, arr in (("audio", audio), ("vision", vision)):
                flat = arr.reshape(-1)
                pos = rng.choice(flat.size, size=min(6, flat.size), replace=False)
                vals = [-np.inf, np.nan, np.inf, -np.inf, np.nan, -np.inf][: pos.size]
                flat[pos] = vals
                nonfinite[s][m] = int(pos.size)
                k += pos.size
        out[s] = d
    with open(path, "wb") as fh:
        pickle.dump(out, fh, protocol=4)
    return {"path": path, "nonfinite": nonfinite, "sizes": dict(zip(SPLITS, n))}


def write_multibench_like(path: str | Path, n: tuple[int, int, int] = (8, 4, 4), L: int = 50,
                          dims: tuple[int, int, int] = (300, 5, 20), seed: int = 0,
                          inject_nonfinite: bool = False, labels: Mapping[str, Any] | None = None) -> dict:
    """Write a random FIXTURE in the MulT/MultiBench layout (``labels`` (N, 1, 1), ``id`` (N, 3) str).

    Arrays are float32 (``vision`` float64 is also accepted by the loader). It is NOT data.
    Returns ``{"path": Path, "nonfinite": {split: {modality: count}}, "sizes": {...}}``.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    dt, da, dv = dims
    out: dict[str, dict] = {}
    nonfinite: dict[str, dict[str, int]] = {}
    for s, ns in zip(SPLITS, n):
        audio = rng.normal(size=(ns, L, da)).astype(np.float32)
        reg = _fixture_labels(rng, ns, -3, 3).astype(np.float32)
        if labels is not None and s in labels:
            reg = np.asarray(labels[s], dtype=np.float32)
        nonfinite[s] = {"text": 0, "audio": 0, "vision": 0}
        if inject_nonfinite and ns > 0:
            flat = audio.reshape(-1)
            pos = rng.choice(flat.size, size=min(4, flat.size), replace=False)
            flat[pos] = [-np.inf, np.nan, -np.inf, np.nan][: pos.size]
            nonfinite[s]["audio"] = int(pos.size)
        out[s] = {
            "vision": rng.normal(size=(ns, L, dv)).astype(np.float32),
            "audio": audio,
            "text": rng.normal(size=(ns, L, dt)).astype(np.float32),
            "labels": reg.reshape(-1, 1, 1),
            "id": np.array([[f"fixvid{i // 3:03d}", f"{i}", f"{i + 1}"] for i in range(ns)], dtype=str).reshape(ns, 3),
        }
    with open(path, "wb") as fh:
        pickle.dump(out, fh, protocol=4)
    return {"path": path, "nonfinite": nonfinite, "sizes": dict(zip(SPLITS, n))}
