"""The one data schema every loader produces and every model consumes.

Why a single schema: the four papers use four different pickle layouts. Converting each into
`MSADataset` once, at load time, lets every model, metric and notebook ignore where data came from.
Validation lives here too, so every loader raises the same clear errors (naming the source, the
field and the expected vs found shape) instead of failing later inside a model.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterator

import numpy as np
import torch

MODALITIES = ("text", "audio", "vision")
INTERACTION_TYPES = ("uniq_text", "uniq_audio", "uniq_vision", "synergy", "redundancy")
EMOTIONS = ("happy", "sad", "anger", "surprise", "disgust", "fear")
SPLITS = ("train", "valid", "test")


class DataError(ValueError):
    """Raised for any malformed input; the message names the source, the key and the problem."""


@dataclass
class Split:
    """One split (train / valid / test) as float32 arrays plus optional ground truth.

    Sequences are right-padded; ``<m>_lengths[i]`` counts the valid frames of sample i, so masks
    are derived, never stored twice. A modality that a dataset lacks is ``None``.
    """

    text: np.ndarray | None  # (N, Lt, dt) float32
    audio: np.ndarray | None  # (N, La, da)
    vision: np.ndarray | None  # (N, Lv, dv)
    labels: np.ndarray | None  # (N,) float32 regression score; None only for unlabelled files
    ids: np.ndarray  # (N,) str
    text_lengths: np.ndarray | None = None  # (N,) int64
    audio_lengths: np.ndarray | None = None
    vision_lengths: np.ndarray | None = None
    raw_text: np.ndarray | None = None  # (N,) str transcripts, when known
    emotions: np.ndarray | None = None  # (N, 6) intensities in [0, 3], EMOTIONS order
    interaction: np.ndarray | None = None  # (N,) int64 index into INTERACTION_TYPES
    domain: np.ndarray | None = None  # (N,) int64
    audio_clue: np.ndarray | None = None  # (N,) str explanation of the audio cue
    vision_clue: np.ndarray | None = None  # (N,) str explanation of the vision cue
    audio_clue_feats: np.ndarray | None = None  # (N, Lc, dc) encoded clue tokens (TEXT)
    vision_clue_feats: np.ndarray | None = None
    cue_time: np.ndarray | None = None  # (N, 3) cue positions (fraction of the sequence) t/a/v
    extras: dict[str, np.ndarray] | None = None  # other per-sample arrays a source carries (e.g. text_bert)

    def __len__(self) -> int:
        return int(len(self.ids))

    def subset(self, idx: np.ndarray | list[int] | slice) -> "Split":
        """Return a new split with the rows ``idx`` of every per-sample field."""
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, dict):
                kw[f.name] = {k: a[idx] for k, a in v.items()}
            else:
                kw[f.name] = None if v is None else v[idx]
        return Split(**kw)

    def mask(self, modality: str) -> np.ndarray | None:
        """Boolean (N, L) mask of valid frames, derived from the lengths."""
        x = getattr(self, modality)
        if x is None:
            return None
        lengths = getattr(self, f"{modality}_lengths")
        n, length = x.shape[:2]
        if lengths is None:
            return np.ones((n, length), dtype=bool)
        return np.arange(length)[None, :] < np.asarray(lengths)[:, None]

    def validate(self, source: str, split: str, label_range: tuple[float, float] | None) -> None:
        """Check shapes, dtypes, label sanity; raise DataError naming ``source`` and the field."""
        n = len(self)
        where = f"{source} [{split}]"
        if n == 0:
            raise DataError(f"{where}: split is empty (0 samples); every split needs at least one sample")
        for m in MODALITIES:
            x = getattr(self, m)
            if x is None:
                continue
            if x.ndim != 3:
                raise DataError(f"{where}: '{m}' must be 3-D (N, L, d); found shape {x.shape}")
            if x.shape[0] != n:
                raise DataError(f"{where}: '{m}' has {x.shape[0]} samples but 'ids' has {n}; expected ({n}, L, d)")
            if x.dtype != np.float32:
                raise DataError(f"{where}: '{m}' must be float32 after loading; found {x.dtype}")
            if not np.isfinite(x).all():
                raise DataError(f"{where}: '{m}' contains non-finite values; sanitise before building a Split")
            lengths = getattr(self, f"{m}_lengths")
            if lengths is not None:
                if lengths.shape != (n,):
                    raise DataError(f"{where}: '{m}_lengths' must have shape ({n},); found {lengths.shape}")
                if (lengths < 0).any() or (lengths > x.shape[1]).any():
                    raise DataError(f"{where}: '{m}_lengths' outside [0, {x.shape[1]}] (the sequence length)")
        if self.labels is not None:
            if self.labels.shape != (n,):
                raise DataError(f"{where}: 'labels' must have shape ({n},); found {self.labels.shape}")
            if np.isnan(self.labels).any():
                k = int(np.isnan(self.labels).sum())
                raise DataError(f"{where}: 'labels' contains {k} NaN value(s); labels are never sanitised")
            if label_range is not None:
                lo, hi = label_range
                bad = (self.labels < lo - 1e-6) | (self.labels > hi + 1e-6)
                if bad.any():
                    raise DataError(
                        f"{where}: {int(bad.sum())} label(s) outside the label range [{lo}, {hi}] "
                        f"(min {float(self.labels.min()):.3f}, max {float(self.labels.max()):.3f})"
                    )
        opt_shapes = {"emotions": (n, len(EMOTIONS)), "interaction": (n,), "domain": (n,), "cue_time": (n, 3),
                      "audio_clue": (n,), "vision_clue": (n,), "raw_text": (n,)}
        for k, v in (self.extras or {}).items():
            if len(v) != n:
                raise DataError(f"{where}: extra field '{k}' has {len(v)} rows; expected {n}")
        for name, shape in opt_shapes.items():
            v = getattr(self, name)
            if v is not None and v.shape != shape:
                raise DataError(f"{where}: '{name}' must have shape {shape}; found {v.shape}")


@dataclass
class Batch:
    """A mini-batch of tensors. Missing modalities / ground truth are ``None``."""

    text: torch.Tensor | None
    text_mask: torch.Tensor | None
    audio: torch.Tensor | None
    audio_mask: torch.Tensor | None
    vision: torch.Tensor | None
    vision_mask: torch.Tensor | None
    labels: torch.Tensor | None
    emotions: torch.Tensor | None = None
    domain: torch.Tensor | None = None
    interaction: torch.Tensor | None = None
    audio_clue: torch.Tensor | None = None  # encoded clue tokens (B, Lc, dc)
    vision_clue: torch.Tensor | None = None
    index: torch.Tensor | None = None  # row indices into the split, for bookkeeping

    def to(self, device: str | torch.device) -> "Batch":
        return replace(self, **{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).to(device))
                                for f in fields(self)})

    def __len__(self) -> int:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                return int(v.shape[0])
        return 0

    def require(self, *modalities: str) -> None:
        """Raise a clear error when a model needs a modality the dataset does not have."""
        missing = [m for m in modalities if getattr(self, m) is None]
        if missing:
            raise DataError(f"this model needs modalities {list(modalities)} but the batch has no {missing}; "
                            f"use a dataset that provides them (e.g. 'synth-mosi' or 'mosi-semi') or a text-only model")


@dataclass
class MSADataset:
    """A named dataset with train / valid / test splits, its label range and provenance."""

    name: str
    train: Split | None
    valid: Split | None
    test: Split | None
    label_range: tuple[float, float] = (-3.0, 3.0)
    metric_family: str = "mosi"  # which METRICS.md definitions apply: mosi | mosei | sims | simsv2
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for s in SPLITS:
            sp = getattr(self, s)
            if sp is not None:
                sp.validate(self.name, s, self.label_range)

    # -- convenience -------------------------------------------------------------------------
    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; expected one of {SPLITS}")
        sp = getattr(self, name)
        if sp is None:
            raise DataError(f"{self.name}: split {name!r} is not available in this dataset")
        return sp

    @property
    def splits(self) -> dict[str, Split]:
        return {s: getattr(self, s) for s in SPLITS if getattr(self, s) is not None}

    @property
    def modalities(self) -> tuple[str, ...]:
        ref = next(iter(self.splits.values()))
        return tuple(m for m in MODALITIES if getattr(ref, m) is not None)

    @property
    def dims(self) -> dict[str, int]:
        """Feature width per available modality, e.g. {'text': 768, 'audio': 5, 'vision': 20}."""
        ref = next(iter(self.splits.values()))
        return {m: int(getattr(ref, m).shape[-1]) for m in self.modalities}

    @property
    def seq_lens(self) -> dict[str, int]:
        ref = next(iter(self.splits.values()))
        return {m: int(getattr(ref, m).shape[1]) for m in self.modalities}

    @property
    def sizes(self) -> dict[str, int]:
        return {s: len(sp) for s, sp in self.splits.items()}

    @property
    def is_synthetic(self) -> bool:
        return self.provenance.get("kind") in ("synthetic", "semi-synthetic")

    def describe(self) -> str:
        kind = self.provenance.get("kind", "real")
        return (f"{self.name} ({kind}): sizes {self.sizes}, dims {self.dims}, "
                f"label range {self.label_range}, source {self.provenance.get('source', '?')}")

    def drop_modalities(self, *modalities: str, name: str | None = None) -> "MSADataset":
        """A view without ``modalities`` (e.g. a text-only version of a multimodal dataset)."""
        unknown = set(modalities) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; expected some of {MODALITIES}")
        blank = {m: None for m in modalities} | {f"{m}_lengths": None for m in modalities}
        new = {s: replace(sp, **blank) for s, sp in self.splits.items()}
        prov = {**self.provenance, "dropped_modalities": sorted(modalities)}
        return replace(self, name=name or self.name, provenance=prov, **new)

    def drop_annotations(self, *fields_: str, name: str | None = None) -> "MSADataset":
        """A view without optional per-sample annotations (e.g. ``"emotions"``), recorded in provenance.

        Why: SynthMSA draws emotions for every preset, but real CMU-MOSI has none; a chapter that
        mimics MOSI must not train on labels the real dataset lacks.
        """
        optional = {f.name for f in fields(Split)} - {"text", "audio", "vision", "labels", "ids", "text_lengths",
                                                      "audio_lengths", "vision_lengths"}
        unknown = set(fields_) - optional
        if unknown:
            raise ValueError(f"cannot drop {sorted(unknown)}; optional annotations are {sorted(optional)}")
        new = {s: replace(sp, **{f: None for f in fields_}) for s, sp in self.splits.items()}
        prov = {**self.provenance, "dropped_annotations": sorted(set(self.provenance.get("dropped_annotations", [])) | set(fields_))}
        return replace(self, name=name or self.name, provenance=prov, **new)

    def with_splits(self, **splits: Split) -> "MSADataset":
        return replace(self, **splits)

    # -- batching ------------------------------------------------------------------------------
    def loader(self, split: str, batch_size: int = 32, shuffle: bool = False, seed: int = 0,
               device: str | torch.device = "cpu", drop_last: bool = False) -> Iterator[Batch]:
        """Yield `Batch` objects. Shuffling uses its own generator, so it is reproducible per seed."""
        sp = self.split(split)
        n = len(sp)
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        stop = n - (n % batch_size) if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size]
            yield make_batch(sp, idx).to(device)

    def n_batches(self, split: str, batch_size: int) -> int:
        return -(-len(self.split(split)) // batch_size)


def _t(x: np.ndarray | None, idx: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
    return None if x is None else torch.as_tensor(np.ascontiguousarray(x[idx])).to(dtype)


def _batch_mask(sp: Split, modality: str, idx: np.ndarray) -> torch.Tensor | None:
    """``Split.mask(modality)[idx]`` built for the batch's rows only (not the whole split per batch)."""
    x = getattr(sp, modality)
    if x is None:
        return None
    lengths = getattr(sp, f"{modality}_lengths")
    if lengths is None:
        return torch.ones(len(idx), x.shape[1], dtype=torch.bool)
    return torch.from_numpy(np.arange(x.shape[1])[None, :] < np.asarray(lengths)[idx][:, None])


def make_batch(sp: Split, idx: np.ndarray) -> Batch:
    """Gather rows ``idx`` of a split into tensors (masks from lengths)."""
    idx = np.asarray(idx)
    return Batch(
        text=_t(sp.text, idx), text_mask=_batch_mask(sp, "text", idx),
        audio=_t(sp.audio, idx), audio_mask=_batch_mask(sp, "audio", idx),
        vision=_t(sp.vision, idx), vision_mask=_batch_mask(sp, "vision", idx),
        labels=_t(sp.labels, idx),
        emotions=_t(sp.emotions, idx),
        domain=_t(sp.domain, idx, torch.long),
        interaction=_t(sp.interaction, idx, torch.long),
        audio_clue=_t(sp.audio_clue_feats, idx),
        vision_clue=_t(sp.vision_clue_feats, idx),
        index=torch.as_tensor(idx, dtype=torch.long),
    )
