"""Fine-tune a local text encoder (default all-MiniLM-L6-v2) end to end for sentiment regression.

The papers fine-tune BERT on the transcripts; the frozen-feature path (`msa_lib.features.text` +
a small model on cached features) does not. `finetune_text` does, on any dataset whose splits carry
``raw_text`` (real MOSI: ``get_dataset("mosi-text")``) or on plain ``{split: (texts, labels)}``:

* model (`TextRegressor`): the Hugging Face encoder (``AutoModel``, ``local_files_only=True``, never
  downloads) → masked mean over its token states (the sentence-transformers pooling of
  all-MiniLM-L6-v2) → dropout → a small MLP head → one score;
* optimiser: AdamW with two learning rates, a low one for the pre-trained encoder (``lr_encoder``) and a
  higher one for the freshly initialised head (``lr_head``); no weight decay on biases and LayerNorm
  weights (the BERT convention); a linear warm-up over ``warmup_frac`` of the steps, then linear decay to
  zero; gradient clipping at ``grad_clip``; L1 loss (MMSA's loss for MOSI regression);
* batches: texts are tokenised once, truncated to ``max_len`` tokens; each epoch shuffles (seeded), sorts
  the texts by length inside chunks of 8 batches and shuffles the batch order, so batches are padded to
  their own longest text (MOSI sentences average ~15 tokens: about 2x faster than padding to 40);
* selection: the epoch with the lowest validation loss (MMSA's rule); its weights score the test split
  once, with MMSA's metrics (`msa_lib.metrics.regression_metrics`);
* determinism: `msa_lib.training.set_seed` before the head is built and training starts, dropout and
  shuffling driven by that seed, so a rerun on the same CPU build and thread count gives identical
  predictions.

The result is a `msa_lib.experiments.RunRecord` (like every other run in the book), written to and
read back from the run cache (``<out_dir>/runs/<dataset>/<variant>/seed<seed>-<hash>.json``): a rerun
with the same parameters returns the stored record without training. The parameter hash covers the
config, the seed, the md5 of the texts and labels of every split, the md5 of the encoder weights, the
transformers version and the md5 of the code that defines the result (this module, ``metrics.py``,
``training.py``). It deliberately leaves out `experiments.code_fingerprint` (models, nn, data
loaders), which does not touch this path, so an edit to a paper's model does not redo three
fine-tuning runs. The record's ``extras`` keep the test predictions (for figures after a cached rerun).
"""
from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__all__ = ["FinetuneConfig", "TextRegressor", "finetune_text", "finetune_param_hash", "text_splits",
           "DEFAULT_VARIANT"]

DEFAULT_VARIANT = "minilm_finetuned"
_SPLITS = ("train", "valid", "test")


@dataclass
class FinetuneConfig:
    """Everything that defines a fine-tuning run (papermill YAML maps onto these fields)."""

    epochs: int = 2  # passes over the training texts
    batch_size: int = 32
    lr_encoder: float = 5e-5  # AdamW learning rate of the pre-trained encoder
    lr_head: float = 1e-3  # AdamW learning rate of the regression head
    weight_decay: float = 0.01  # on weight matrices only (not biases / LayerNorm)
    warmup_frac: float = 0.1  # linear warm-up over this fraction of all steps, then linear decay to 0
    max_len: int = 40  # tokens per text incl. [CLS] / [SEP]; longer texts are truncated
    head_hidden: int = 128  # hidden width of the head; 0 gives a single linear layer
    dropout: float = 0.1  # on the pooled sentence vector (the encoder keeps its own dropout)
    grad_clip: float | None = 1.0  # max gradient norm
    loss: str = "l1"  # l1 | mse | smooth_l1
    freeze_embeddings: bool = False  # keep the token-embedding table fixed (cheaper; the papers train it)
    max_train_samples: int | None = None  # seeded subset of the training texts (smoke runs)
    eval_batch_size: int = 128
    encoder_path: str | None = None  # local Hugging Face model folder; None: the bundled all-MiniLM-L6-v2
    device: str = "cpu"
    progress: bool = True  # tqdm bars over the steps of each epoch

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.max_len < 3:
            raise ValueError(f"need epochs >= 1, batch_size >= 1 and max_len >= 3; got {self.epochs}, "
                             f"{self.batch_size}, {self.max_len}")
        if self.loss not in ("l1", "mse", "smooth_l1"):
            raise ValueError(f"FinetuneConfig.loss={self.loss!r}; expected 'l1', 'mse' or 'smooth_l1'")
        if not 0.0 <= self.warmup_frac < 1.0:
            raise ValueError(f"warmup_frac must be in [0, 1); got {self.warmup_frac}")
        if self.max_train_samples is not None and self.max_train_samples < 2:
            raise ValueError(f"max_train_samples must be >= 2 or None; got {self.max_train_samples}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "FinetuneConfig":
        from msa_lib.training import config_from_dict
        return config_from_dict(cls, d, "fine-tuning")

    def protocol(self) -> dict[str, Any]:
        """The fields that change results (device and progress bar excluded), for the parameter hash."""
        d = asdict(self)
        for k in ("device", "progress", "encoder_path", "eval_batch_size"):
            d.pop(k)
        return d


def _resolve_encoder(path: str | Path | None) -> Path:
    from msa_lib.features.text import default_text_encoder_path

    p = Path(path) if path else default_text_encoder_path()
    if not p.is_dir():
        raise FileNotFoundError(f"text encoder folder not found: {p}; pass a local Hugging Face model directory "
                                f"(config.json, tokenizer files and weights) as encoder_path; nothing is downloaded")
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"{p} has no config.json: not a Hugging Face model directory")
    return p


class TextRegressor(nn.Module):
    """Hugging Face encoder → masked mean over tokens → dropout → MLP head → one score per text."""

    def __init__(self, encoder_path: str | Path, head_hidden: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        from transformers import AutoModel

        self.encoder = AutoModel.from_pretrained(str(encoder_path), local_files_only=True)
        d = int(self.encoder.config.hidden_size)
        self.dim = d
        self.dropout = nn.Dropout(dropout)
        if head_hidden:
            self.head = nn.Sequential(nn.Linear(d, head_hidden), nn.GELU(), nn.Linear(head_hidden, 1))
        else:
            self.head = nn.Linear(d, 1)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.to(h.dtype).unsqueeze(-1)
        return (h * m).sum(1) / m.sum(1).clamp_min(1e-9)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.pooled(input_ids, attention_mask))).squeeze(-1)


# ----------------------------------------------------------------------------------------------
# Data
def text_splits(ds_or_texts: Any) -> tuple[str, dict[str, tuple[list[str], np.ndarray]], str]:
    """→ (dataset name, ``{split: (texts, labels float32)}``, metric family) from an `MSADataset` whose
    splits carry ``raw_text``, or from a mapping ``{split: (texts, labels)}`` with train / valid / test."""
    from msa_lib.data.schema import MSADataset

    if isinstance(ds_or_texts, MSADataset):
        out = {}
        for s in _SPLITS:
            sp = ds_or_texts.split(s)
            if sp.raw_text is None:
                raise ValueError(f"{ds_or_texts.name} [{s}] has no raw_text: fine-tuning needs the transcripts "
                                 f"(real MOSI: get_dataset('mosi-text'))")
            if sp.labels is None:
                raise ValueError(f"{ds_or_texts.name} [{s}] is unlabelled; it cannot be fine-tuned on or scored")
            out[s] = ([str(t) for t in sp.raw_text], np.asarray(sp.labels, dtype=np.float32))
        return ds_or_texts.name, out, ds_or_texts.metric_family
    if isinstance(ds_or_texts, Mapping):
        missing = [s for s in _SPLITS if s not in ds_or_texts]
        if missing:
            raise ValueError(f"a texts mapping needs the splits {list(_SPLITS)}; missing {missing}")
        out = {}
        for s in _SPLITS:
            texts, labels = ds_or_texts[s]
            texts, labels = [str(t) for t in texts], np.asarray(labels, dtype=np.float32).reshape(-1)
            if len(texts) != len(labels) or not texts:
                raise ValueError(f"split {s!r}: {len(texts)} texts but {len(labels)} labels (need equal, > 0)")
            if not np.isfinite(labels).all():
                raise ValueError(f"split {s!r}: labels contain non-finite values")
            out[s] = (texts, labels)
        return "texts", out, "mosi"
    raise TypeError(f"expected an MSADataset with raw_text or a {{split: (texts, labels)}} mapping; "
                    f"got {type(ds_or_texts).__name__}")


def _data_md5(splits: Mapping[str, tuple[list[str], np.ndarray]]) -> str:
    h = hashlib.md5()
    for s in _SPLITS:
        texts, labels = splits[s]
        h.update(f"|{s}|{len(texts)}|".encode())
        for t in texts:
            h.update(t.encode("utf-8") + b"\x1f")
        h.update(np.ascontiguousarray(labels, dtype=np.float32).tobytes())
    return h.hexdigest()[:12]


def _code_md5() -> str:
    root = Path(__file__).resolve().parent
    h = hashlib.md5()
    for f in (Path(__file__).resolve(), root / "metrics.py", root / "training.py"):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def finetune_param_hash(ds_or_texts: Any, seed: int, cfg: FinetuneConfig | Mapping[str, Any] | None = None
                        ) -> tuple[str, dict[str, Any]]:
    """The run's parameter hash and the parameters it hashes (without training or loading a model)."""
    import transformers

    import msa_lib
    from msa_lib.experiments import param_hash
    from msa_lib.features.text import _encoder_name, encoder_identity

    cfg = cfg if isinstance(cfg, FinetuneConfig) else FinetuneConfig.from_dict(cfg)
    enc = _resolve_encoder(cfg.encoder_path)
    name, splits, family = text_splits(ds_or_texts)
    params = {"model": "finetuned_text_encoder", "encoder": _encoder_name(enc), "encoder_md5": encoder_identity(enc),
              "finetune": cfg.protocol(), "data": _data_md5(splits), "metric_family": family,
              "sizes": {s: len(splits[s][0]) for s in _SPLITS}, "seed": int(seed), "version": msa_lib.__version__,
              "transformers": transformers.__version__, "code": _code_md5()}
    return param_hash(params), params


# ----------------------------------------------------------------------------------------------
# Training
def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length: shuffle, sort inside chunks of 8 batches, shuffle the batches."""
    perm = rng.permutation(len(lengths))
    chunk = batch_size * 8
    out = []
    for start in range(0, len(perm), chunk):
        part = perm[start:start + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        out += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def _collate(ids: list[list[int]], idx: np.ndarray, pad_id: int, device: torch.device
             ) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids[i]) for i in idx)
    x = torch.full((len(idx), width), pad_id, dtype=torch.long)
    m = torch.zeros((len(idx), width), dtype=torch.long)
    for r, i in enumerate(idx):
        x[r, :len(ids[i])] = torch.as_tensor(ids[i])
        m[r, :len(ids[i])] = 1
    return x.to(device), m.to(device)


def _loss_fn(name: str):
    return {"l1": nn.functional.l1_loss, "mse": nn.functional.mse_loss,
            "smooth_l1": nn.functional.smooth_l1_loss}[name]


@torch.no_grad()
def _predict(model: TextRegressor, ids: list[list[int]], pad_id: int, batch_size: int,
             device: torch.device) -> np.ndarray:
    """Scores in input order; batches are formed by length (less padding), then put back in order."""
    model.eval()
    lengths = np.array([len(t) for t in ids])
    order = np.argsort(lengths, kind="stable")
    out = np.zeros(len(ids), dtype=np.float32)
    for start in range(0, len(ids), batch_size):
        idx = order[start:start + batch_size]
        x, m = _collate(ids, idx, pad_id, device)
        out[idx] = model(x, m).float().cpu().numpy()
    return out


def _param_groups(model: TextRegressor, cfg: FinetuneConfig) -> list[dict[str, Any]]:
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        part = "encoder" if name.startswith("encoder.") else "head"
        no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        groups.setdefault((part, no_decay), []).append(p)
    return [{"params": ps, "lr": cfg.lr_encoder if part == "encoder" else cfg.lr_head,
             "weight_decay": 0.0 if no_decay else cfg.weight_decay}
            for (part, no_decay), ps in groups.items()]


def _train(splits: dict[str, tuple[list[str], np.ndarray]], family: str, seed: int, cfg: FinetuneConfig,
           enc_path: Path, desc: str) -> dict[str, Any]:
    """Fine-tune and evaluate one seed → metrics, history, timings and test predictions."""
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from msa_lib.metrics import regression_metrics
    from msa_lib.training import optimizer_step, set_seed

    device = torch.device(cfg.device)
    tok = AutoTokenizer.from_pretrained(str(enc_path), local_files_only=True)
    pad_id = int(tok.pad_token_id if tok.pad_token_id is not None else 0)
    ids = {s: tok(splits[s][0], truncation=True, max_length=cfg.max_len)["input_ids"] for s in _SPLITS}
    labels = {s: splits[s][1] for s in _SPLITS}
    train_rows = np.arange(len(ids["train"]))
    if cfg.max_train_samples is not None and cfg.max_train_samples < len(train_rows):
        train_rows = np.sort(np.random.default_rng(0).choice(len(train_rows), cfg.max_train_samples, replace=False))
    tr_ids = [ids["train"][i] for i in train_rows]
    tr_y = torch.as_tensor(labels["train"][train_rows])
    tr_len = np.array([len(t) for t in tr_ids])

    set_seed(seed)
    was_verbosity, was_bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model = TextRegressor(enc_path, cfg.head_hidden, cfg.dropout).to(device)
    finally:  # restore the caller's logging settings
        hf_logging.set_verbosity(was_verbosity)
        if was_bar:
            hf_logging.enable_progress_bar()
    if cfg.freeze_embeddings:
        for p in model.encoder.get_input_embeddings().parameters():
            p.requires_grad_(False)
    opt = torch.optim.AdamW(_param_groups(model, cfg))
    steps_per_epoch = -(-len(tr_ids) // cfg.batch_size)
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = int(cfg.warmup_frac * total)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(1, total - warm))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    loss_fn = _loss_fn(cfg.loss)
    history: list[dict[str, float]] = []
    best = {"loss": math.inf, "epoch": -1, "state": None, "val": None}
    t_train = 0.0
    for epoch in range(cfg.epochs):
        model.train()
        rng = np.random.default_rng(seed * 1000 + epoch)
        losses = []
        t0 = time.perf_counter()
        bar = tqdm(_batches(tr_len, cfg.batch_size, rng), desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}",
                   disable=not cfg.progress, leave=False)
        for idx in bar:
            x, m = _collate(tr_ids, idx, pad_id, device)
            loss = loss_fn(model(x, m), tr_y[idx].to(device))
            losses.append(optimizer_step(loss, model, opt, sched, cfg.grad_clip,
                                         where=f"fine-tuning epoch {epoch}; try a lower lr "
                                               f"(now encoder {cfg.lr_encoder}, head {cfg.lr_head})"))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        t_train += time.perf_counter() - t0
        val_pred = _predict(model, ids["valid"], pad_id, cfg.eval_batch_size, device)
        val_loss = float(loss_fn(torch.as_tensor(val_pred), torch.as_tensor(labels["valid"])))
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val_loss,
                        "val_select": val_loss})
        if val_loss < best["loss"]:
            best.update(loss=val_loss, epoch=epoch, val=val_pred,
                        state=None if epoch == cfg.epochs - 1 else copy.deepcopy(model.state_dict()))
    if best["state"] is not None:  # the best epoch was not the last: restore its weights
        model.load_state_dict(best["state"])
    t0 = time.perf_counter()
    test_pred = _predict(model, ids["test"], pad_id, cfg.eval_batch_size, device)
    infer_ms = 1000 * (time.perf_counter() - t0) / len(ids["test"])
    val_metrics = regression_metrics(best["val"], labels["valid"], family)
    val_metrics["loss"] = round(best["loss"], 6)
    test_metrics = regression_metrics(test_pred, labels["test"], family)
    test_metrics["loss"] = round(float(loss_fn(torch.as_tensor(test_pred), torch.as_tensor(labels["test"]))), 6)
    # a text that fills max_len was (almost surely) truncated
    truncated = {s: round(float(np.mean([len(t) >= cfg.max_len for t in ids[s]])), 4) for s in _SPLITS}
    return {"val_metrics": val_metrics, "test_metrics": test_metrics, "best_epoch": best["epoch"],
            "epochs_run": len(history), "history": history, "train_seconds": t_train, "infer_ms": infer_ms,
            "n_params": int(sum(p.numel() for p in model.parameters())),
            "n_trainable": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
            "test_pred": test_pred, "n_train": len(tr_ids), "truncated_frac": truncated,
            "threads": torch.get_num_threads()}


def finetune_text(ds_or_texts: Any, seed: int, cfg: FinetuneConfig | Mapping[str, Any] | None = None, *,
                  out_dir: str | Path | None = None, variant: str = DEFAULT_VARIANT):
    """Fine-tune the encoder + head on ``ds_or_texts`` with ``seed`` → a `RunRecord` (cached under ``out_dir``).

    ``ds_or_texts``: an `MSADataset` with ``raw_text`` (e.g. ``get_dataset("mosi-text")``), or
    ``{"train": (texts, labels), "valid": ..., "test": ...}``. ``cfg``: a `FinetuneConfig` or a dict of
    its fields. With ``out_dir`` the record is looked up first and stored after training (atomic JSON),
    exactly like `experiments.run_one`. Raises FileNotFoundError when the encoder folder does not exist.
    """
    from msa_lib.experiments import RunCache, RunRecord

    cfg = cfg if isinstance(cfg, FinetuneConfig) else FinetuneConfig.from_dict(cfg)
    enc_path = _resolve_encoder(cfg.encoder_path)
    phash, params = finetune_param_hash(ds_or_texts, seed, cfg)
    name, splits, family = text_splits(ds_or_texts)
    cache = RunCache(out_dir) if out_dir is not None else None
    if cache is not None:
        hit = cache.get(name, variant, int(seed), phash)
        if hit is not None:
            return hit
    res = _train(splits, family, int(seed), cfg, enc_path, desc=f"{name}/{variant}/s{seed}")
    rec = RunRecord(
        dataset=name, variant=variant, seed=int(seed), param_hash=phash, model=params["model"], params=params,
        val_metrics=res["val_metrics"], test_metrics=res["test_metrics"], best_epoch=res["best_epoch"],
        epochs_run=res["epochs_run"], train_seconds=round(res["train_seconds"], 3),
        train_s_per_epoch=round(res["train_seconds"] / max(1, res["epochs_run"]), 4),
        infer_ms_per_sample=round(res["infer_ms"], 5), n_params=res["n_trainable"], history=res["history"],
        extras={"test_pred": [round(float(v), 5) for v in res["test_pred"]], "n_train": res["n_train"],
                "n_params_total": res["n_params"], "truncated_frac": res["truncated_frac"],
                "torch_threads": res["threads"], "device": cfg.device},
    )
    if cache is not None:
        cache.put(rec)
    return rec
