"""The four paper models exactly as a book profile trains them, for the speed benchmarks.

Why a module: `profile_steps.py`, `speed_options.py` and `speed_ab.py` must time the *same* training
runs the chapters do. The parameters are read, not copied: the notebook's parameter-cell defaults
(papermill's parser) overlaid with ``configs/<chapter>/<profile>.yaml``. What the chapter then does with
them (which dataset, which hyper-parameter dict, which `TrainConfig`, which summary callback) is
repeated here from the notebook cells named in each builder; keep the two in step.
"""
from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
#: paper model -> its chapter (notebook stem)
CHAPTERS = {"i2moe": "01_i2moe", "text": "02_text", "mmolre": "03_mmolre", "midg": "04_midg"}


@lru_cache(maxsize=None)
def chapter_params(stem: str, profile: str = "default") -> dict[str, Any]:
    """The notebook's parameter values under ``profile``: cell defaults, then the profile's YAML."""
    import papermill as pm
    params = {k: ast.literal_eval(v["default"]) for k, v in pm.inspect_notebook(str(ROOT / "notebooks" / f"{stem}.ipynb")).items()}
    cfg = ROOT / "configs" / stem / f"{profile}.yaml"
    params.update(yaml.safe_load(cfg.read_text()) or {})
    return params


@dataclass
class Spec:
    """One chapter's main training run: data, registry name, hyper-parameters, protocol, summary."""

    name: str
    chapter: str
    dataset: Any  # MSADataset
    model: str
    hparams: dict[str, Any]
    train: dict[str, Any]
    n_out: int
    summarise: Callable | None
    torch_threads: int | None  # the chapter's own torch_threads parameter, if it has one

    @property
    def batch_size(self) -> int:
        return int(self.train["batch_size"])

    def build(self, **over: Any):
        from msa_lib.models import build
        return build(self.model, self.dataset.dims, n_out=self.n_out, **{**self.hparams, **over})

    def steps_per_run(self) -> int:
        return self.dataset.n_batches("train", self.batch_size) * int(self.train["epochs"])


def _scaled(p: dict[str, Any], key: str, scale: float | None) -> float:
    return float(p[key]) * (scale if scale is not None else 1.0)


def i2moe_spec(profile: str = "default", scale: float | None = None) -> Spec:
    """01_i2moe: the I2MoE-Transformer of the ablation table (cells 2 and 9), binary, on synth-mosi."""
    from msa_lib.data import get_dataset
    from msa_lib.expert_analysis import summarise_experts
    p = chapter_params(CHAPTERS["i2moe"], profile)
    ds = get_dataset(p["ablation_dataset"], seed=p["data_seed"], scale=_scaled(p, "synth_scale", scale))
    base = {k: p[k] for k in ("encoder", "gru_hidden", "hidden", "num_patches", "heads", "dropout", "attn_dropout")}
    hp = {**base, **{k: p[k] for k in ("lambda_int", "temperature_rw", "num_layer_rw", "hidden_rw", "synergy_margin")}}
    train = {"epochs": p["epochs"], "patience": p["patience"] or None, "batch_size": p["batch_size"], "lr": p["lr"],
             "optimizer": "adam", "task": "binary", "loss": "ce", "select_key": "Acc"}
    return Spec("i2moe", CHAPTERS["i2moe"], ds, "i2moe", hp, train, 2, summarise_experts(classification=True),
                p.get("torch_threads"))


def text_spec(profile: str = "default", scale: float | None = None) -> Spec:
    """02_text: TEXT on the ablation dataset with explanations (cell 2's ``text_hparams``/``train_cfg``)."""
    from msa_lib.data import get_dataset
    from msa_lib.expert_analysis import summarise_text
    from msa_lib.features.explanations import attach_explanations, get_provider
    from msa_lib.metrics import MOSI_KEYS, SIMS_KEYS
    p = chapter_params(CHAPTERS["text"], profile)
    raw = get_dataset(p["ablation_dataset"], seed=p["data_seed"], scale=_scaled(p, "synth_scale", scale),
                      seq_len=p["seq_len"])
    ds = attach_explanations(raw, get_provider(p["explanation_provider"]), p["encoder_path"] or None, p["cache_dir"],
                             p["clue_max_len"])
    feats = ds.train.audio_clue_feats
    hp = {k: p[k] for k in ("dim", "heads", "dim_head", "mlp_dim", "depth", "n_experts", "top_k", "capacity_factor",
                            "d_state")}
    hp.update(max_frames=max(ds.seq_lens[m] for m in ("audio", "vision")), text_frames=ds.seq_lens["text"],
              explanations=feats is not None, clue_dim=feats.shape[2] if feats is not None else None,
              clue_len=feats.shape[1] if feats is not None else 1)
    sel = "Mult_acc_2" if ds.metric_family == "sims" else "Has0_acc_2"
    train = {"epochs": p["epochs"], "patience": p["patience"] or None, "batch_size": p["batch_size"], "lr": p["lr"],
             "optimizer": "adamw", "weight_decay": p["weight_decay"], "scheduler": "warmup_cosine", "loss": "mse",
             "select_key": sel, "tie_break": "last"}
    keys = list(SIMS_KEYS if ds.metric_family == "sims" else MOSI_KEYS)
    return Spec("text", CHAPTERS["text"], ds, "text", hp, train, 1,
                summarise_text(tuple(keys[:1] + ["MAE"]), p["eval_repeats"]), p.get("torch_threads"))


def mmolre_spec(profile: str = "default", scale: float | None = None) -> Spec:
    """03_mmolre: multi-task MMoLRE on the emotion dataset (cells 2 and 7)."""
    from msa_lib.data import get_dataset
    from msa_lib.multitask import summarise_mmolre
    p = chapter_params(CHAPTERS["mmolre"], profile)
    ds = get_dataset(p["emotion_dataset"], seed=p["data_seed"], scale=_scaled(p, "emotion_scale", scale),
                     seq_len=p["seq_len"])
    hp = {"d": p["d"], "rank": p["rank"], "n_experts": p["n_experts"], "heads": p["heads"], "lambda_er": p["lambda_er"],
          "modalities": ["text", "audio"]}
    train = {"epochs": p["epochs"], "patience": p["patience"] or None, "batch_size": p["batch_size"], "lr": p["lr"],
             "optimizer": "adamw", "loss": p["loss"], "select_key": "loss"}
    return Spec("mmolre", CHAPTERS["mmolre"], ds, "mmolre", hp, train, 1,
                summarise_mmolre(p["loss"], p["conflict_batches"]), p.get("torch_threads"))


def midg_spec(profile: str = "default", scale: float | None = None) -> Spec:
    """04_midg: MIDG on the within-preset DG setting of the ablations (cells 2 and 13), with its DG hparams."""
    from msa_lib import dg_analysis
    from msa_lib import domains as D
    p = chapter_params(CHAPTERS["midg"], profile)
    k = int(p["n_train_domains"])
    test_kw = {"n_test": p["synth_n_test"]} if p["synth_n_test"] else {}
    sweep = D.shift_sweep([float(p["ablation_shift"])], p["shift_preset"], n_domains=p["n_domains"],
                          train_domains=list(range(k)), test_domains=list(range(k, p["n_domains"])),
                          seed=p["data_seed"], scale=_scaled(p, "shift_scale", scale), seq_len=p["seq_len"], **test_kw)
    ds = sweep[float(p["ablation_shift"])]
    hp = {k_: p[k_] for k_ in ("hidden", "d_latent", "n_experts", "top_k", "heads", "dropout", "lambda_dis",
                               "lambda_adv", "lambda_lb")}
    hp = {**D.dg_hparams(ds, "midg"), **hp}
    train = {"epochs": p["epochs"], "patience": p["patience"] or None, "batch_size": p["batch_size"], "lr": p["lr"],
             "optimizer": "adamw", "loss": "l1", "select_key": "loss"}
    return Spec("midg", CHAPTERS["midg"], ds, "midg", hp, train, 1,
                dg_analysis.summarise_midg(p["embed_points"], p["device"]), p.get("torch_threads"))


BUILDERS: dict[str, Callable[..., Spec]] = {"i2moe": i2moe_spec, "text": text_spec, "mmolre": mmolre_spec,
                                            "midg": midg_spec}


def default_specs(names: list[str] | None = None, profile: str = "default", scale: float | None = None) -> dict[str, Spec]:
    """``{model: Spec}`` for the chapters' main models (all four unless ``names``)."""
    return {n: BUILDERS[n](profile, scale) for n in (names or list(BUILDERS))}


def step_setup(spec: Spec, model, training: Any = None, opt: Any = None) -> tuple[Any, Any]:
    """(TrainConfig, optimiser) as `fit` builds them (``opt`` if given); ``training`` is `msa_lib.training`
    or an older copy."""
    if training is None:
        import msa_lib.training as training
    cfg = training.TrainConfig.from_dict({**spec.train, "progress": False})
    if hasattr(model, "set_progress"):
        model.set_progress(0.5)
    return cfg, opt or training.make_optimizer(model, cfg)


def train_step_fn(spec: Spec, model, opt=None, training: Any = None) -> Callable:
    """One optimiser update as `msa_lib.training.fit` does it (loss + aux, `optimizer_step`, GRL progress).

    ``training``: the module to take it from (speed_ab.py passes a base commit's copy).
    """
    if training is None:
        import msa_lib.training as training
    cfg, opt = step_setup(spec, model, training, opt)

    def step(batch) -> float:
        out = model(batch)
        return training.optimizer_step(training.task_loss(out.pred, batch.labels, cfg) + out.aux_loss, model, opt)
    return step


def train_batches(spec: Spec, n: int | None = None, batch_size: int | None = None, seed: int = 0) -> list:
    """The first ``n`` full shuffled training batches (the loader's own order for ``seed``)."""
    bs = batch_size or spec.batch_size
    out = [b for b in spec.dataset.loader("train", bs, shuffle=True, seed=seed) if len(b) == bs]
    while n is not None and len(out) < n:  # small datasets: cycle (only timing is affected)
        out += out[: n - len(out)]
    return out[:n] if n is not None else out
