"""One seeded train / evaluate loop for every model in the book.

Why one loop: the papers differ in optimiser, schedule, loss and model-selection rule, and those
differences change results. Expressing each paper's protocol as a `TrainConfig` (instead of four
hand-written loops) makes the differences explicit and testable. Selection always uses the
validation split. With ``track_test`` the test split is also scored every epoch, only so that the
book can *show* how optimistic test-set selection would be (TEXT's official protocol), never to
pick a model.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from msa_lib.data.schema import MSADataset
from msa_lib.metrics import HIGHER_IS_BETTER, classification_metrics, regression_metrics
from msa_lib.models.base import ModelOutput


@dataclass
class TrainConfig:
    """Everything that defines a training protocol. Papermill YAML maps onto these fields."""

    epochs: int = 20  # maximum epochs
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"  # adam | adamw
    scheduler: str | None = None  # None | cosine | warmup_cosine (linear warm-up over warmup_frac, then cosine)
    warmup_frac: float = 0.1
    task: str = "regression"  # regression | binary (label <= 0 negative, I2MoE's convention)
    loss: str = "l1"  # l1 | mse | smooth_l1 | ce
    select_key: str = "loss"  # validation key for model selection: 'loss' (MMSA) or a metric name
    tie_break: str = "first"  # first | last: which epoch wins a tie on select_key (TEXT: last)
    patience: int | None = 8  # early stopping on select_key; None disables it
    grad_clip: float | None = None  # max grad norm, applied BEFORE optimizer.step()
    eval_batch_size: int = 256
    track_test: bool = False  # also score the test split every epoch (to *show* test-selection optimism)
    device: str = "cpu"
    progress: bool = True  # tqdm bar over epochs

    def __post_init__(self) -> None:
        choices = {"optimizer": ("adam", "adamw"), "scheduler": (None, "cosine", "warmup_cosine"),
                   "task": ("regression", "binary"), "loss": ("l1", "mse", "smooth_l1", "ce"),
                   "tie_break": ("first", "last")}
        for k, allowed in choices.items():
            if getattr(self, k) not in allowed:
                raise ValueError(f"TrainConfig.{k}={getattr(self, k)!r}; expected one of {allowed}")
        if (self.task == "binary") != (self.loss == "ce"):
            raise ValueError(f"task={self.task!r} needs loss='ce' for binary and a regression loss otherwise "
                             f"(got loss={self.loss!r})")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "TrainConfig":
        return config_from_dict(cls, d, "training")


def config_from_dict(cls: type, d: Any, what: str) -> Any:
    """Build the config dataclass ``cls`` from a (papermill YAML) dict, refusing unknown keys by name."""
    d = dict(d or {})
    unknown = set(d) - set(cls.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown {what} options {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
    return cls(**d)


@dataclass
class FitResult:
    model: nn.Module
    best_epoch: int
    epochs_run: int
    val_metrics: dict[str, float]
    test_metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch; make CPU kernels deterministic where torch allows."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)


def task_loss(out: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    if cfg.task == "binary":
        return nn.functional.cross_entropy(out, (labels > 0).long())
    fn = {"l1": nn.functional.l1_loss, "mse": nn.functional.mse_loss, "smooth_l1": nn.functional.smooth_l1_loss}
    return fn[cfg.loss](out, labels)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over the trainable parameters.

    ``foreach=True``: one multi-tensor update instead of a Python loop over ~100-250 parameter
    tensors (torch's default on CPU); the same arithmetic (bit-identical weights), ~25 % less
    optimiser time, which is ~20 % of a step for the smallest models (MIDG).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    if cfg.scheduler is None:
        return None
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = int(cfg.warmup_frac * total) if cfg.scheduler == "warmup_cosine" else 0

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def optimizer_step(loss: torch.Tensor, model: nn.Module, opt: torch.optim.Optimizer, sched=None,
                   grad_clip: float | None = None, where: str = "") -> float:
    """One update, as every training loop in the book does it; returns the loss as a float.

    A non-finite loss raises (``where`` says at which epoch and what to try) instead of silently
    corrupting the weights; gradients are clipped to ``grad_clip`` *before* the step.
    """
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite training loss at {where}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    if sched is not None:
        sched.step()
    return float(loss.detach())


@torch.no_grad()
def predict(model: nn.Module, ds: MSADataset, split: str, batch_size: int = 256, device: str = "cpu",
            return_extras: bool = False) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
    """Predictions for a whole split in order: (N,) scores, or (N, C) logits for classifiers.

    With ``return_extras`` the tensors in ``ModelOutput.extras`` are concatenated over batches too
    (expert weights, routing, gates), so notebooks can plot them per sample.
    """
    model.eval()
    preds, extras = [], {}
    for batch in ds.loader(split, batch_size, shuffle=False, device=device):
        out: ModelOutput = model(batch)
        preds.append(out.pred.float().cpu())
        if return_extras:
            for k, v in out.extras.items():
                if torch.is_tensor(v) and v.dim() >= 1 and v.shape[0] == len(batch):
                    extras.setdefault(k, []).append(v.detach().float().cpu())
    p = torch.cat(preds).numpy()
    if return_extras:
        return p, {k: torch.cat(v).numpy() for k, v in extras.items()}
    return p


def score(preds: np.ndarray, ds: MSADataset, split: str, cfg: TrainConfig) -> dict[str, float]:
    """Task metrics for predictions on a split (MMSA regression metrics, or classification metrics)."""
    labels = ds.split(split).labels
    if labels is None:
        raise ValueError(f"{ds.name} [{split}] is unlabelled; it cannot be scored")
    if cfg.task == "binary":
        probs = torch.softmax(torch.as_tensor(preds), -1).numpy()
        return classification_metrics((labels > 0).astype(int), probs)
    return regression_metrics(preds, labels, ds.metric_family)


@torch.no_grad()
def evaluate(model: nn.Module, ds: MSADataset, split: str, cfg: TrainConfig) -> dict[str, float]:
    """Metrics plus the task loss (key ``loss``) on a split."""
    preds = predict(model, ds, split, cfg.eval_batch_size, cfg.device)
    labels = torch.as_tensor(ds.split(split).labels)
    metrics = score(preds, ds, split, cfg)
    metrics["loss"] = float(task_loss(torch.as_tensor(preds), labels, cfg))
    return metrics


def _better(new: float, best: float | None, key: str, tie_break: str) -> bool:
    if best is None or (isinstance(best, float) and math.isnan(best)):
        return True
    if isinstance(new, float) and math.isnan(new):
        return False
    hib = HIGHER_IS_BETTER.get(key, key != "loss")
    if new == best:
        return tie_break == "last"
    return new > best if hib else new < best


def fit(model: nn.Module, ds: MSADataset, cfg: TrainConfig, seed: int = 0,
        desc: str | None = None) -> FitResult:
    """Train ``model`` on ``ds.train``, select on ``ds.valid`` by ``cfg.select_key``, score ``ds.test``.

    Returns the model restored to its best validation epoch. The caller seeds model initialisation
    (see `experiments.run_one`); ``seed`` here drives the shuffling order.
    """
    model.to(cfg.device)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, ds.n_batches("train", cfg.batch_size))
    best_val, best_state, best_epoch, best_metrics, since_best = None, None, -1, {}, 0
    history: list[dict[str, float]] = []
    t_train = 0.0
    bar = tqdm(range(cfg.epochs), desc=desc or type(model).__name__, disable=not cfg.progress, leave=False)
    total_steps, step = max(1, cfg.epochs * ds.n_batches("train", cfg.batch_size)), 0  # for set_progress
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        losses, scalars = [], {}
        for batch in ds.loader("train", cfg.batch_size, shuffle=True, seed=seed * 1000 + epoch, device=cfg.device):
            if hasattr(model, "set_progress"):  # schedules that follow training progress (MIDG's GRL ramp)
                model.set_progress(step / total_steps)
            step += 1
            out: ModelOutput = model(batch)
            loss = task_loss(out.pred, batch.labels, cfg) + out.aux_loss
            losses.append(optimizer_step(loss, model, opt, sched, cfg.grad_clip,
                                         where=f"epoch {epoch} ({type(model).__name__}); try a lower lr (now {cfg.lr})"))
            for k, v in out.extras.items():  # scalar internals (MI proxy, discriminator accuracy, ER loss, ...)
                if torch.is_tensor(v) and v.dim() == 0:
                    scalars.setdefault(k, []).append(float(v.detach()))
        t_train += time.perf_counter() - t0
        val = evaluate(model, ds, "valid", cfg)
        if cfg.select_key not in val:
            raise KeyError(f"select_key {cfg.select_key!r} is not a validation metric; available: {sorted(val)}")
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val["loss"],
               **{f"train_{k}": float(np.mean(v)) for k, v in scalars.items()},
               "val_select": val[cfg.select_key]}
        if cfg.track_test:
            test = evaluate(model, ds, "test", cfg)
            row.update(test_select=test.get(cfg.select_key, float("nan")), test_loss=test["loss"])
        history.append(row)
        if _better(val[cfg.select_key], best_val, cfg.select_key, cfg.tie_break):
            best_val, best_epoch, best_metrics, since_best = val[cfg.select_key], epoch, val, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            since_best += 1
        bar.set_postfix(train=f"{history[-1]['train_loss']:.3f}", val=f"{val[cfg.select_key]:.3f}")
        if cfg.patience is not None and since_best > cfg.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    test_metrics = evaluate(model, ds, "test", cfg)
    return FitResult(model, best_epoch, len(history), best_metrics, test_metrics, history, t_train)


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The protocol fields that change results (device and progress bar excluded)."""
    d = asdict(cfg)
    d.pop("progress")
    d.pop("device")
    return d
