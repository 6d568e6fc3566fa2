"""Explanations of the audio and visual cues ("clues") for TEXT, and their text-encoder features.

Why this module exists
----------------------
TEXT (AAAI 2026) asks a multimodal LLM to *describe* each clip's audio and visual cues in words
("the speaker's voice rises sharply", "the speaker frowns"), then feeds those sentences through the
text encoder as two extra token streams next to the transcript. No MLLM runs offline here, so the
sentences come from an `ExplanationProvider` instead, and the rest of the pipeline stays the same:

* ``"synth"`` (`SynthTemplateProvider`): SynthMSA's own template clues. They are noise-free readings
  of the cue in each stream; their quality is set when the data are generated (``clue_noise``).
* ``"file"`` (`FileProvider`): precomputed strings, e.g. exported from the TEXT authors' files or
  from an MLLM run elsewhere (format below).
* ``"prosody"`` (`ProsodyTemplateProvider`): a deterministic sentence built from the level and the
  variation of each clip's audio features, for real data without explanations.
* ``"none"`` (`NoExplanations`): the ablation without explanations.

`attach_explanations` turns a dataset plus a provider into a new dataset whose splits carry the
strings (``audio_clue`` / ``vision_clue``) and their frozen encoder tokens (``audio_clue_feats`` /
``vision_clue_feats``, (N, Lc, d)), which `make_batch` delivers as ``batch.audio_clue`` /
``batch.vision_clue``. Template clues repeat a lot (SynthMSA has 45 distinct sentences per
modality), so only the **unique** strings of all splits and both modalities are encoded, once, and
the rows are gathered back by index: same features, a tiny fraction of the encoder time.

File format (`FileProvider`)
----------------------------
JSON, one object per split, holding two lists of strings in the split's row order::

    {"train": {"audio": ["the voice rises ...", ...], "vision": ["the speaker smiles ...", ...]},
     "valid": {...}, "test": {...}}

A split object may add ``"ids": [...]`` (the sample ids, any order, the same set as the split's);
the strings are then matched by id instead of by position. CSV is accepted too, with a header
``split,index,audio,vision`` and one row per sample (``index`` = row in the split, 0..N-1).
`FileProvider.write` produces either format.
"""
from __future__ import annotations

import csv
import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from msa_lib.data.schema import DataError, MSADataset, Split

__all__ = [
    "ExplanationProvider", "SynthTemplateProvider", "FileProvider", "ProsodyTemplateProvider",
    "NoExplanations", "PROVIDERS", "get_provider", "attach_explanations", "NEUTRAL_VISION_CLUE",
]

Clues = tuple[np.ndarray, np.ndarray]
NEUTRAL_VISION_CLUE = "no visual description is available"
_FORMAT_HINT = ('JSON {"train": {"audio": [str, ...], "vision": [str, ...]}, "valid": {...}, "test": {...}} '
                '(optional "ids" list per split), or CSV with header split,index,audio,vision')


class ExplanationProvider(ABC):
    """Source of per-sample explanation strings for the audio and vision cues."""

    name: str = "?"

    @abstractmethod
    def explain(self, ds: MSADataset, split: str) -> Clues | None:
        """(audio_clues, vision_clues), each (N,) str for ``split``; None means "no explanations"."""

    def describe(self, ds: MSADataset) -> dict[str, Any]:
        """Settings recorded in the dataset provenance by `attach_explanations`."""
        return {"provider": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ----------------------------------------------------------------------------------------------
class SynthTemplateProvider(ExplanationProvider):
    """The split's own ``audio_clue`` / ``vision_clue`` (SynthMSA templates, or ``mosi-semi``).

    Their noise level is fixed when the data are generated (``get_dataset(..., clue_noise=p)``).
    """

    name = "synth"

    def explain(self, ds: MSADataset, split: str) -> Clues:
        sp = ds.split(split)
        missing = [k for k in ("audio_clue", "vision_clue") if getattr(sp, k) is None]
        if missing:
            raise DataError(f"{ds.name} [{split}]: the split has no {' / '.join(missing)} strings; the 'synth' "
                            f"provider needs SynthMSA data (synth-*, mosi-semi). For other data use 'file', "
                            f"'prosody' or 'none'")
        return np.asarray(sp.audio_clue), np.asarray(sp.vision_clue)

    def describe(self, ds: MSADataset) -> dict[str, Any]:
        cfg = ds.provenance.get("config") or ds.provenance.get("synth") or {}
        out = {"provider": self.name}
        if isinstance(cfg, Mapping) and "clue_noise" in cfg:
            out["clue_noise"] = float(cfg["clue_noise"])
        return out


# ----------------------------------------------------------------------------------------------
class FileProvider(ExplanationProvider):
    """Precomputed explanation strings from a ``.json`` or ``.csv`` file (format: module docstring).

    The file is read once, at construction; every check that needs the dataset (split present,
    lengths, ids) happens in `explain` and raises `DataError` naming the file and the split.
    """

    name = "file"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"explanations file not found: {self.path}; expected {_FORMAT_HINT}")
        suffix = self.path.suffix.lower()
        if suffix not in (".json", ".csv"):
            raise DataError(f"{self.path}: unknown explanations file type {suffix!r}; expected {_FORMAT_HINT}")
        self.format = suffix[1:]
        self.md5 = hashlib.md5(self.path.read_bytes()).hexdigest()
        self._data = self._read_json() if self.format == "json" else self._read_csv()

    def __repr__(self) -> str:
        return f"FileProvider({str(self.path)!r})"

    # -- reading -----------------------------------------------------------------------------
    def _read_json(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{self.path}: not valid JSON ({e}); expected {_FORMAT_HINT}") from None
        if not isinstance(data, dict):
            raise DataError(f"{self.path}: top level must be an object keyed by split; found "
                            f"{type(data).__name__}; expected {_FORMAT_HINT}")
        for split, entry in data.items():
            if not isinstance(entry, dict):
                raise DataError(f"{self.path} [{split}]: must be an object with 'audio' and 'vision' lists; "
                                f"found {type(entry).__name__}")
            for key in ("audio", "vision"):
                if key not in entry:
                    raise DataError(f"{self.path} [{split}]: missing key '{key}'; keys found: {sorted(entry)}")
            for key in ("audio", "vision", "ids"):
                if key in entry and not isinstance(entry[key], list):
                    raise DataError(f"{self.path} [{split}]: '{key}' must be a list; found {type(entry[key]).__name__}")
        return data

    def _read_csv(self) -> dict[str, dict[str, Any]]:
        with open(self.path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            cols = set(reader.fieldnames or ())
            need = {"split", "index", "audio", "vision"}
            if not need <= cols:
                raise DataError(f"{self.path}: CSV is missing column(s) {sorted(need - cols)}; "
                                f"found {sorted(cols)}; expected header split,index,audio,vision")
            rows: dict[str, dict[int, tuple[str, str]]] = {}
            for line, r in enumerate(reader, start=2):
                try:
                    i = int(r["index"])
                except (TypeError, ValueError):
                    raise DataError(f"{self.path}: line {line}: 'index' must be an integer; found {r['index']!r}") from None
                per = rows.setdefault(r["split"], {})
                if i in per:
                    raise DataError(f"{self.path} [{r['split']}]: index {i} appears twice (line {line})")
                per[i] = (r["audio"], r["vision"])
        data = {}
        for split, per in rows.items():
            n = len(per)
            if sorted(per) != list(range(n)):
                gaps = sorted(set(range(max(per) + 1)) - set(per))[:5]
                raise DataError(f"{self.path} [{split}]: 'index' must run over 0..{n - 1} exactly once; "
                                f"missing e.g. {gaps}")
            data[split] = {"audio": [per[i][0] for i in range(n)], "vision": [per[i][1] for i in range(n)]}
        return data

    # -- provider ----------------------------------------------------------------------------
    def explain(self, ds: MSADataset, split: str) -> Clues:
        sp = ds.split(split)
        n = len(sp)
        if split not in self._data:
            raise DataError(f"{self.path}: no explanations for split '{split}' of {ds.name}; "
                            f"splits in the file: {sorted(self._data)}")
        entry = self._data[split]
        out = []
        for key in ("audio", "vision"):
            vals = entry[key]
            if len(vals) != n:
                raise DataError(f"{self.path} [{split}]: '{key}' has the wrong length: expected {n} "
                                f"(the samples in {ds.name} [{split}]), found {len(vals)}")
            for i, v in enumerate(vals):
                if not isinstance(v, str):
                    raise DataError(f"{self.path} [{split}]: '{key}'[{i}] must be a string; "
                                    f"found {type(v).__name__} {v!r:.60}")
            out.append(vals)
        if "ids" in entry:
            out = self._align(entry["ids"], sp, split, out)
        return np.array(out[0], dtype=str), np.array(out[1], dtype=str)

    def _align(self, ids: list, sp: Split, split: str, cols: list[list[str]]) -> list[list[str]]:
        file_ids = [str(i) for i in ids]
        if len(file_ids) != len(sp) or len(set(file_ids)) != len(file_ids):
            raise DataError(f"{self.path} [{split}]: 'ids' must list each of the split's {len(sp)} ids once; "
                            f"found {len(file_ids)} ids ({len(set(file_ids))} distinct)")
        pos = {k: j for j, k in enumerate(file_ids)}
        missing = [str(i) for i in sp.ids if str(i) not in pos]
        if missing:
            raise DataError(f"{self.path} [{split}]: {len(missing)} sample id(s) of the split are not in 'ids', "
                            f"e.g. {missing[:3]}")
        order = [pos[str(i)] for i in sp.ids]
        return [[c[j] for j in order] for c in cols]

    def describe(self, ds: MSADataset) -> dict[str, Any]:
        return {"provider": self.name, "path": str(self.path), "format": self.format, "md5": self.md5}

    @staticmethod
    def write(path: str | Path, clues: Mapping[str, tuple[Sequence[str], Sequence[str]]],
              ids: Mapping[str, Sequence[str]] | None = None) -> Path:
        """Write ``{split: (audio_clues, vision_clues)}`` as ``.json`` (with optional ids) or ``.csv``."""
        path = Path(path)
        if path.suffix.lower() == ".json":
            data = {}
            for split, (a, v) in clues.items():
                data[split] = {"audio": [str(s) for s in a], "vision": [str(s) for s in v]}
                if ids is not None and split in ids:
                    data[split]["ids"] = [str(i) for i in ids[split]]
            path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        elif path.suffix.lower() == ".csv":
            with open(path, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(["split", "index", "audio", "vision"])
                for split, (a, v) in clues.items():
                    for i, (sa, sv) in enumerate(zip(a, v, strict=True)):
                        w.writerow([split, i, str(sa), str(sv)])
        else:
            raise ValueError(f"{path}: use a .json or .csv suffix")
        return path


# ----------------------------------------------------------------------------------------------
class ProsodyTemplateProvider(ExplanationProvider):
    """One sentence per clip from the level and the variation of its audio features.

    What it reads: ``split.audio`` (N, L, d) over the valid frames (``audio_lengths``). Each column
    is standardised with the mean / std of all valid frames of the *reference* split (``train``
    when present, else the split itself). Per clip:

    * level = mean of the standardised ``energy_cols`` over its valid frames;
    * variation = mean over ``pitch_cols`` of the std over its valid frames.

    Each is binned into low / average / high: below mean - 0.5 std, above mean + 0.5 std of the
    reference split's clip scores (about 31 / 38 / 31 % of clips for a bell-shaped score), e.g. "the voice is louder than average and
    its pitch varies a lot". With ``energy_cols`` / ``pitch_cols`` left as None every column is
    used and the wording is generic ("more intense than average", "it changes a lot over time"),
    because an unnamed feature set has no known loudness or pitch column. `for_librosa` picks
    ``rms`` and ``f0_hz`` of `msa_lib.features.audio.audio_features`. Vision gets the constant
    `NEUTRAL_VISION_CLUE`. Clips with no valid audio frame get "no audio is available".
    Deterministic: no randomness, the same data give the same sentences.
    """

    name = "prosody"
    _LEVEL = {True: ("quieter than average", "about as loud as average", "louder than average"),
              False: ("less intense than average", "of average intensity", "more intense than average")}
    _VAR = {True: ("its pitch barely varies", "its pitch varies moderately", "its pitch varies a lot"),
            False: ("it stays steady over time", "it changes moderately over time", "it changes a lot over time")}
    _CHUNK = 1024  # clips per chunk, to bound memory on long unaligned sequences

    def __init__(self, energy_cols: Sequence[int] | None = None, pitch_cols: Sequence[int] | None = None,
                 reference: str = "train") -> None:
        self.energy_cols = None if energy_cols is None else [int(c) for c in energy_cols]
        self.pitch_cols = None if pitch_cols is None else [int(c) for c in pitch_cols]
        self.reference = reference

    @classmethod
    def for_librosa(cls, reference: str = "train") -> "ProsodyTemplateProvider":
        """Columns ``rms`` (loudness) and ``f0_hz`` (pitch) of the 33-d `audio_features` set."""
        from msa_lib.features.audio import AUDIO_FEATURE_NAMES
        return cls([AUDIO_FEATURE_NAMES.index("rms")], [AUDIO_FEATURE_NAMES.index("f0_hz")], reference)

    def __repr__(self) -> str:
        return f"ProsodyTemplateProvider(energy_cols={self.energy_cols}, pitch_cols={self.pitch_cols})"

    def _audio(self, ds: MSADataset, split: str) -> Split:
        sp = ds.split(split)
        if sp.audio is None:
            raise DataError(f"{ds.name} [{split}]: no audio features; the 'prosody' provider reads split.audio")
        d = sp.audio.shape[-1]
        for cols in (self.energy_cols, self.pitch_cols):
            if cols is not None and (not cols or min(cols) < -d or max(cols) >= d):
                raise DataError(f"{ds.name} [{split}]: audio columns {cols} out of range for width {d}")
        return sp

    @staticmethod
    def _col_stats(sp: Split, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean / std per column over all valid frames (float64 sums, chunked)."""
        d = sp.audio.shape[-1]
        s, s2, cnt = np.zeros(d), np.zeros(d), 0
        mask = sp.mask("audio")
        for a in range(0, len(sp), chunk):
            x = sp.audio[a:a + chunk][mask[a:a + chunk]].astype(np.float64)
            s += x.sum(0)
            s2 += (x * x).sum(0)
            cnt += len(x)
        if cnt == 0:
            return np.zeros(d), np.ones(d)
        mu = s / cnt
        sd = np.sqrt(np.maximum(s2 / cnt - mu * mu, 0.0))
        return mu, np.where(sd > 1e-8, sd, 1.0)

    def _scores(self, sp: Split, mu: np.ndarray, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per clip: (level, variation, number of valid frames)."""
        d = sp.audio.shape[-1]
        ecols = self.energy_cols if self.energy_cols is not None else list(range(d))
        pcols = self.pitch_cols if self.pitch_cols is not None else list(range(d))
        mask = sp.mask("audio")
        n = len(sp)
        level, var = np.zeros(n), np.zeros(n)
        cnt = mask.sum(1).astype(np.float64)
        for a in range(0, n, self._CHUNK):
            m = mask[a:a + self._CHUNK, :, None]
            c = np.maximum(cnt[a:a + self._CHUNK], 1.0)[:, None]
            z = (sp.audio[a:a + self._CHUNK].astype(np.float64) - mu) / sd * m  # padded frames -> 0
            level[a:a + self._CHUNK] = (z[..., ecols].sum(1) / c).mean(1)
            zp = z[..., pcols]
            mean_p = zp.sum(1) / c
            var_p = (zp * zp).sum(1) / c - mean_p ** 2
            var[a:a + self._CHUNK] = np.sqrt(np.maximum(var_p, 0.0)).mean(1)
        return level, var, cnt

    @staticmethod
    def _cuts(ref: np.ndarray) -> np.ndarray:
        """Bin edges mean -/+ 0.5 std of the reference clips' scores."""
        if len(ref) == 0:
            return np.zeros(2)
        return float(ref.mean()) + np.array([-0.5, 0.5]) * float(ref.std())

    def explain(self, ds: MSADataset, split: str) -> Clues:
        sp = self._audio(ds, split)
        ref_name = self.reference if getattr(ds, self.reference, None) is not None else split
        ref = self._audio(ds, ref_name)
        mu, sd = self._col_stats(ref, self._CHUNK)
        if ref.audio.shape[-1] != sp.audio.shape[-1]:
            raise DataError(f"{ds.name}: audio width differs between '{ref_name}' and '{split}'")
        rl, rv, rc = self._scores(ref, mu, sd)
        level, var, cnt = (rl, rv, rc) if ref is sp else self._scores(sp, mu, sd)
        has = rc > 0
        lq, vq = self._cuts(rl[has]), self._cuts(rv[has])
        lb = np.where(level < lq[0], 0, np.where(level > lq[1], 2, 1))
        vb = np.where(var < vq[0], 0, np.where(var > vq[1], 2, 1))
        named_l, named_v = self.energy_cols is not None, self.pitch_cols is not None
        lw, vw = self._LEVEL[named_l], self._VAR[named_v]
        audio = np.array([f"the voice is {lw[i]} and {vw[j]}" if c > 0 else "no audio is available"
                          for i, j, c in zip(lb, vb, cnt)], dtype=str)
        return audio, np.full(len(sp), NEUTRAL_VISION_CLUE)

    def describe(self, ds: MSADataset) -> dict[str, Any]:
        ref = self.reference if getattr(ds, self.reference, None) is not None else "each split itself"
        return {"provider": self.name, "energy_cols": self.energy_cols, "pitch_cols": self.pitch_cols,
                "reference_split": ref, "vision": NEUTRAL_VISION_CLUE}


# ----------------------------------------------------------------------------------------------
class NoExplanations(ExplanationProvider):
    """The ablation: no explanation streams at all."""

    name = "none"

    def explain(self, ds: MSADataset, split: str) -> None:
        return None


PROVIDERS: dict[str, type[ExplanationProvider]] = {
    "synth": SynthTemplateProvider, "file": FileProvider, "prosody": ProsodyTemplateProvider,
    "none": NoExplanations,
}


def get_provider(name: str, **kw: Any) -> ExplanationProvider:
    """Build the provider ``name`` ("synth", "file", "prosody", "none") with keywords ``kw``."""
    if name not in PROVIDERS:
        raise KeyError(f"unknown explanation provider {name!r}; known: {', '.join(PROVIDERS)}")
    return PROVIDERS[name](**kw)


# ----------------------------------------------------------------------------------------------
def _check_clues(clues: Any, n: int, where: str, key: str) -> np.ndarray:
    if not isinstance(clues, np.ndarray):  # np.asarray would silently turn [1, "a"] into strings
        clues = np.array(list(clues), dtype=object)
    arr = clues
    if arr.shape != (n,):
        raise DataError(f"{where}: '{key}' must have shape ({n},); found {arr.shape}")
    if arr.dtype.kind != "U":
        bad = next(((i, v) for i, v in enumerate(arr) if not isinstance(v, str)), None)
        if bad is not None:
            raise DataError(f"{where}: '{key}'[{bad[0]}] must be a string; found {type(bad[1]).__name__}")
        arr = arr.astype(str)
    return arr


def attach_explanations(ds: MSADataset, provider: ExplanationProvider, encoder_path: str | Path | None = None,
                        cache_dir: str | Path = ".cache/msa_lib", max_len: int = 24, device: str = "cpu", *,
                        encoder: Any = None) -> MSADataset:
    """A new dataset whose splits carry the provider's clues and their frozen text-encoder tokens.

    Sets ``audio_clue`` / ``vision_clue`` (N,) str and ``audio_clue_feats`` / ``vision_clue_feats``
    (N, Lc, d) float32, with Lc <= ``max_len`` the longest clue in tokens (padding is zero); the
    token masks go to ``split.extras["audio_clue_mask"]`` / ``["vision_clue_mask"]`` (N, Lc), since
    `Batch` has no slot for them. Only the unique strings of all splits and both modalities are
    encoded (one `encode_cached` call, cached on disk under ``cache_dir``), then gathered back.
    ``device`` other than "cpu" loads a `TextEncoder` there first (even when the cache would hit);
    ``encoder`` reuses an already loaded `TextEncoder`.

    Provider "none" gives clues, feats and masks all None. ``provenance["explanations"]`` records
    the provider and its settings, the encoder (name, path, weight md5), ``max_len`` and Lc.
    The input dataset is not modified.
    """
    results = {s: provider.explain(ds, s) for s in ds.splits}
    nones = [s for s, r in results.items() if r is None]
    info: dict[str, Any] = dict(provider.describe(ds))
    if len(nones) == len(results):
        new = {}
        for s, sp in ds.splits.items():
            extras = {k: v for k, v in (sp.extras or {}).items() if k not in ("audio_clue_mask", "vision_clue_mask")}
            new[s] = replace(sp, audio_clue=None, vision_clue=None, audio_clue_feats=None, vision_clue_feats=None,
                             extras=extras)
        info.update(encoded=False, note="no explanations: clue strings, clue feats and masks are None")
        return replace(ds, provenance={**ds.provenance, "explanations": info}, **new)
    if nones:
        raise DataError(f"{ds.name}: provider {provider.name!r} gave explanations for some splits but not for "
                        f"{nones}; a provider must cover every split or none")

    from msa_lib.features.text import TextEncoder, encode_cached

    clues: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for s, (a, v) in results.items():
        n = len(ds.split(s))
        where = f"{ds.name} [{s}] (provider {provider.name!r})"
        clues[s] = (_check_clues(a, n, where, "audio_clue"), _check_clues(v, n, where, "vision_clue"))
    everything = np.concatenate([c for pair in clues.values() for c in pair])
    uniq, inverse = np.unique(everything, return_inverse=True)
    if encoder is None and str(device) != "cpu":
        encoder = TextEncoder(encoder_path, device=str(device), progress=False)
    res = encode_cached(list(uniq), encoder_path, cache_dir=cache_dir, max_len=max_len, encoder=encoder)
    lc = max(1, int(res["mask"].sum(1).max())) if len(uniq) else 1
    tokens, mask = res["tokens"][:, :lc], res["mask"][:, :lc]

    new, start = {}, 0
    for s, sp in ds.splits.items():
        n = len(sp)
        ia, iv = inverse[start:start + n], inverse[start + n:start + 2 * n]
        start += 2 * n
        extras = {**(sp.extras or {}), "audio_clue_mask": mask[ia], "vision_clue_mask": mask[iv]}
        new[s] = replace(sp, audio_clue=clues[s][0], vision_clue=clues[s][1],
                         audio_clue_feats=np.ascontiguousarray(tokens[ia]),
                         vision_clue_feats=np.ascontiguousarray(tokens[iv]), extras=extras)
    info.update(encoded=True, encoder=res["encoder_name"], encoder_path=res["encoder_path"],
                encoder_identity=res["encoder_identity"], max_len=int(max_len), clue_len=lc,
                dim=int(tokens.shape[-1]), n_strings=int(len(everything)), n_unique=int(len(uniq)),
                cache_hit=bool(res["cache_hit"]))
    return replace(ds, provenance={**ds.provenance, "explanations": info}, **new)
