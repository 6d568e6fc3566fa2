"""The cross-dataset domain-generalisation (DG) protocol (MIDG's T-DG and its shift curve).

Why a module: a DG run is more than a dataset name. Its train and valid splits come from the
sources and its test split from an unseen target. Feature widths and label scales differ per
dataset, and the discriminator needs domain ids. Building that once here, with the choices
written down, keeps the notebook free of data plumbing and keeps every choice in one place.

Choices (ours; the paper states none of them):

- **Per-dataset input projection** (the spec). MSADataset splits need one array per modality, so
  `project_to_shared` zero-pads each dataset's features to the widest width (and sequences to
  the longest length, which the masks hide). It records the dataset's id in ``Split.domain``
  (sources first, then the target) and its native widths in the provenance. The *model* then
  applies a learned ``Linear(d_k, width)`` to the first d_k columns of dataset k's samples
  (``source_dims`` of `msa_lib.models.midg`). So the padding never reaches a layer, and the
  projection is learned, which is more faithful than a fixed PCA or random projection.
  `dg_hparams` gives those hyper-parameters. `with_dg_hparams` refuses models without per-dataset
  projections, so padded features are never mixed column-wise by accident. With
  ``projection=None``, datasets whose widths differ raise a `DataError` that names the dataset,
  the modality and both widths.
- **Labels**: every dataset is rescaled to [-1, 1] (MOSI/MOSEI ÷ 3, SIMS ÷ 1). Each sample keeps
  its native label and its factor in ``Split.extras`` (``label_native``, ``label_scale``).
  `target_metrics` maps predictions back and scores them with the *target's* metric family.
  The metrics that `training.fit` / `experiments.run_one` compute in the loop are on the shared
  scale. Of those, only the scale-free keys (Has0/Non0 acc & F1, Mult_acc_2/F1 on SIMS, Corr)
  equal the target's; for MAE and Mult_acc_5/7 use `target_metrics` (``summarise_target`` is
  the ``run_one`` callback that stores them).
- **Protocols**: `single_source_pairs` (train on A, test on B, all ordered pairs) and
  `leave_one_out` (train on all others, test on one). The held-out target contributes only its
  test split; train and valid come from the sources.
- **SynthMSA**: the presets ``synth-mosi``/``synth-mosei``/``synth-sims`` stand in for the three
  datasets. They have different widths, lengths and label ranges. With one world seed, they
  share the 768-d text cue direction but not audio/vision. Domains *within* a preset at a
  controlled ``domain_shift`` (`synth_domains`, `shift_sweep`) give the accuracy-vs-shift curve.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

import numpy as np

from msa_lib.data.registry import get_datasets
from msa_lib.data.schema import DataError, MSADataset, Split
from msa_lib.data.synth import domain_split, make_synth
from msa_lib.experiments import Variant
from msa_lib.metrics import regression_metrics

__all__ = ["rescale_labels", "to_native", "target_metrics", "summarise_target", "project_to_shared",
           "cross_dataset", "single_source_pairs", "leave_one_out", "dg_hparams", "with_dg_hparams",
           "synth_domains", "shift_sweep", "PROJECTION_MODELS"]

#: Models with their own per-dataset input projections (``source_dims``); `msa_lib.models.build` wraps
#: every other model in `SourceProjected`, the same front end, so any model can consume padded features.
PROJECTION_MODELS = ("midg", "midg_erm")
_DOMAIN_MODELS = ("midg",)  # models that take ``n_domains`` (the discriminator's classes)


# ----------------------------------------------------------------------------------------------
# Labels
def rescale_labels(ds: MSADataset, bound: float = 1.0) -> MSADataset:
    """Labels divided by ``hi / bound`` so the range becomes [-bound, bound] (MOSI ÷ 3 → [-1, 1]).

    The native label and the factor are kept per sample in ``extras`` (``label_native``,
    ``label_scale``), so scores on the native scale stay exact. Rescaling twice composes.
    """
    if bound <= 0:
        raise ValueError(f"bound must be > 0; got {bound}")
    lo, hi = ds.label_range
    if not abs(lo + hi) < 1e-9:
        raise DataError(f"{ds.name}: label range {ds.label_range} is not symmetric; "
                        f"cannot rescale to [-{bound}, {bound}]")
    factor = float(hi) / bound
    new = {}
    for s, sp in ds.splits.items():
        if sp.labels is None:
            raise DataError(f"{ds.name} [{s}]: unlabelled split; cannot rescale labels")
        ex = dict(sp.extras or {})
        ex.setdefault("label_native", sp.labels.astype(np.float32))
        ex["label_scale"] = (ex.get("label_scale", np.ones(len(sp), np.float32)) * factor).astype(np.float32)
        labels = np.clip(sp.labels / np.float32(factor), -bound, bound).astype(np.float32)
        new[s] = replace(sp, labels=labels, extras=ex)
    previous = ds.provenance.get("label_rescaled", {}).get("factor", 1.0)
    prov = {**ds.provenance, "label_rescaled": {"from": list(ds.label_range), "to": [-bound, bound],
                                                "factor": factor * previous}}
    return replace(ds, label_range=(-bound, bound), provenance=prov, **new)


def to_native(preds: np.ndarray, ds: MSADataset, split: str = "test") -> np.ndarray:
    """Regression predictions on ``split`` mapped back to each sample's native label scale."""
    sp = ds.split(split)
    scale = (sp.extras or {}).get("label_scale")
    p = np.asarray(preds, dtype=np.float32)
    if p.shape[0] != len(sp):
        raise ValueError(f"{ds.name} [{split}]: {p.shape[0]} predictions for {len(sp)} samples")
    if scale is None:
        return p
    if p.ndim != 1:
        raise ValueError(f"to_native rescales regression scores (N,); got shape {p.shape} (logits need no rescaling)")
    return (p * scale).astype(np.float32)


def target_metrics(preds: np.ndarray, ds: MSADataset, split: str = "test",
                   family: str | None = None) -> dict[str, float]:
    """MMSA metrics of ``preds`` on the native scale with the target's definitions (``ds.metric_family``).

    For a DG dataset the test split is the target's, so these are the numbers to compare with
    the target's literature; the loop's own metrics are on the shared [-1, 1] scale.
    """
    sp = ds.split(split)
    truth = (sp.extras or {}).get("label_native", sp.labels)
    if truth is None:
        raise DataError(f"{ds.name} [{split}]: unlabelled split; cannot score")
    return regression_metrics(to_native(preds, ds, split), truth, family or ds.metric_family)


def summarise_target(model: Any, ds: MSADataset, test_preds: np.ndarray | None = None) -> dict[str, Any]:
    """`experiments.run_one` callback: target-scale test metrics (and untrained projections, if any).

    ``test_preds``: the test predictions, when the caller already has them (no second pass).
    """
    from msa_lib.training import predict
    preds = predict(model, ds, "test") if test_preds is None else test_preds
    out: dict[str, Any] = {"target_test_metrics": target_metrics(preds, ds, "test")}
    dg = ds.provenance.get("dg")
    if dg is not None and hasattr(model, "untrained_projections"):
        out["untrained_projections"] = model.untrained_projections(list(dg["train_domains"]))
    return out


# ----------------------------------------------------------------------------------------------
# Shared widths
def _pad(x: np.ndarray, length: int, width: int) -> np.ndarray:
    n, L, d = x.shape
    if (L, d) == (length, width):
        return x
    out = np.zeros((n, length, width), dtype=x.dtype)
    out[:, :L, :d] = x
    return out


def project_to_shared(datasets: Mapping[str, MSADataset], projection: str | None = "pad") -> dict[str, MSADataset]:
    """Prepare datasets to be concatenated: domain id = position in ``datasets``; equal shapes.

    ``projection='pad'`` zero-pads features to the widest width per modality (and sequences to
    the longest length; lengths keep the padding masked). The model's per-dataset projection
    (``source_dims``) reads only each dataset's own first d_k columns. ``projection=None``
    requires equal widths and raises a `DataError` naming the dataset, the modality and the widths.
    The original ``domain`` (e.g. a SynthMSA domain) moves to ``extras['orig_domain']`` and the
    dataset name to ``extras['source_dataset']``.
    """
    if projection not in (None, "pad"):
        raise ValueError(f"projection={projection!r}; expected 'pad' or None")
    if not datasets:
        raise ValueError("project_to_shared needs at least one dataset")
    names = list(datasets)
    first = datasets[names[0]]
    for nm in names[1:]:
        if datasets[nm].modalities != first.modalities:
            raise DataError(f"cannot combine {names[0]!r} (modalities {list(first.modalities)}) with {nm!r} "
                            f"(modalities {list(datasets[nm].modalities)}); use drop_modalities first")
    mods = first.modalities
    if projection is None:
        for m in mods:
            for nm in names[1:]:
                d0, d1 = first.dims[m], datasets[nm].dims[m]
                if d0 != d1:
                    raise DataError(
                        f"cannot combine datasets without an input projection: modality {m!r} has width {d0} in "
                        f"{names[0]!r} but {d1} in {nm!r}; pass projection='pad' (zero-padding + the model's "
                        f"per-dataset projection, see dg_hparams)")
    width = {m: max(datasets[nm].dims[m] for nm in names) for m in mods}
    length = {m: max(datasets[nm].seq_lens[m] for nm in names) for m in mods}
    source_dims = {k: dict(datasets[nm].dims) for k, nm in enumerate(names)}
    out = {}
    for k, nm in enumerate(names):
        ds = datasets[nm]
        new = {}
        for s, sp in ds.splits.items():
            kw: dict[str, Any] = {}
            for m in mods:
                x = getattr(sp, m)
                lengths = getattr(sp, f"{m}_lengths")
                kw[f"{m}_lengths"] = (np.full(len(sp), x.shape[1], np.int64) if lengths is None
                                      else np.asarray(lengths, np.int64))
                kw[m] = _pad(x, length[m], width[m])
            ex = dict(sp.extras or {})
            if sp.domain is not None:
                ex["orig_domain"] = sp.domain
            ex["source_dataset"] = np.full(len(sp), nm)
            if sp.audio_clue_feats is not None or sp.vision_clue_feats is not None:
                kw.update(audio_clue_feats=None, vision_clue_feats=None)  # encoded clues differ per dataset
            new[s] = replace(sp, domain=np.full(len(sp), k, np.int64), extras=ex, **kw)
        prov = {**ds.provenance, "shared": {"domain_id": k, "datasets": names, "projection": projection,
                                            "source_dims": source_dims, "padded_dims": width,
                                            "padded_seq_lens": length}}
        out[nm] = replace(ds, provenance=prov, **new)
    return out


def _concat(parts: list[Split]) -> tuple[Split, list[str]]:
    """Row-wise concatenation; a field missing in some parts (or shaped differently) is dropped."""
    kw, dropped = {}, []
    for f in fields(Split):
        vals = [getattr(p, f.name) for p in parts]
        if f.name == "extras":
            keys = set.intersection(*[set(v or {}) for v in vals])
            dropped += sorted(set().union(*[set(v or {}) for v in vals]) - keys)
            kw["extras"] = {k: np.concatenate([v[k] for v in vals]) for k in sorted(keys)} or None
        elif all(v is None for v in vals):
            kw[f.name] = None
        elif any(v is None for v in vals) or len({v.shape[1:] for v in vals}) > 1:
            kw[f.name] = None
            dropped.append(f.name)
        else:
            kw[f.name] = np.concatenate(vals)
    return Split(**kw), dropped


def _kind(dss: list[MSADataset]) -> str:
    kinds = {d.provenance.get("kind", "real") for d in dss}
    if kinds == {"synthetic"}:
        return "synthetic"
    return "semi-synthetic" if kinds & {"synthetic", "semi-synthetic"} else "real"


def cross_dataset(datasets: Mapping[str, MSADataset], sources: Sequence[str], target: str, *,
                  rescale: bool = True, projection: str | None = "pad", protocol: str = "custom") -> MSADataset:
    """One DG task: train/valid = the sources' train/valid, test = the target's test split.

    Domain ids: sources 0..S−1 (what the discriminator learns), target S (unseen in training).
    The name is ``"A+B->C"``; the provenance records sources, target, ids, native widths, label
    scales and every component's own provenance (so it says "synthetic" when they are).
    """
    sources = list(sources)
    if not sources:
        raise ValueError("cross_dataset needs at least one source")
    missing = [n for n in [*sources, target] if n not in datasets]
    if missing:
        raise KeyError(f"datasets {missing} not given; have {sorted(datasets)}")
    if target in sources or len(set(sources)) != len(sources):
        raise ValueError(f"sources {sources} must be distinct and exclude the target {target!r}")
    ordered = {n: datasets[n] for n in [*sources, target]}
    if rescale:
        ordered = {n: rescale_labels(d) for n, d in ordered.items()}
    elif len({d.label_range for d in ordered.values()}) > 1:
        raise DataError(f"label ranges differ ({ {n: d.label_range for n, d in ordered.items()} }); "
                        "pass rescale=True to train on a shared [-1, 1] scale")
    shared = project_to_shared(ordered, projection)
    train, drop_tr = _concat([shared[n].train for n in sources])
    valid, drop_va = _concat([shared[n].valid for n in sources])
    test = shared[target].test
    tgt = datasets[target]
    ids = {n: k for k, n in enumerate(ordered)}
    info = shared[target].provenance["shared"]
    dg = {"protocol": protocol, "sources": sources, "target": target, "domain_ids": ids,
          "train_domains": list(range(len(sources))), "target_domain": len(sources),
          "source_dims": info["source_dims"] if projection == "pad" else None, "projection": projection,
          "padded_dims": info["padded_dims"], "rescaled": rescale,
          "label_scale": {n: float(max(abs(v) for v in datasets[n].label_range)) if rescale else 1.0 for n in ordered},
          "dropped_fields": sorted(set(drop_tr) | set(drop_va)),
          "metrics_note": ("in-loop metrics are on the shared label scale; target-scale metrics: "
                           "msa_lib.domains.target_metrics / summarise_target")}
    prov = {"kind": _kind(list(ordered.values())),
            "source": f"cross-dataset DG ({protocol}): train/valid from {', '.join(sources)}; test from {target}",
            "dg": dg, "components": {n: d.provenance for n, d in datasets.items() if n in ordered}}
    return MSADataset(name=f"{'+'.join(sources)}->{target}", train=train, valid=valid, test=test,
                      label_range=(-1.0, 1.0) if rescale else tgt.label_range, metric_family=tgt.metric_family,
                      provenance=prov)


def _resolve(datasets: Mapping[str, MSADataset] | Sequence[str], seed: int,
             synth_kw: dict[str, Any] | None) -> dict[str, MSADataset]:
    if isinstance(datasets, Mapping):
        return dict(datasets)
    names = list(datasets)
    if len(names) < 2:
        raise ValueError(f"a DG protocol needs at least two datasets; got {names}")
    return get_datasets(names, seed=seed, synth_kw=synth_kw)


def single_source_pairs(datasets: Mapping[str, MSADataset] | Sequence[str], *, seed: int = 0,
                        synth_kw: dict[str, Any] | None = None, **kw: Any) -> dict[str, MSADataset]:
    """Every ordered pair (A → B, A ≠ B): train on A, test on B. ``datasets`` are built datasets or
    registry names (built with ``seed`` and ``synth_kw``, e.g. ``{"scale": 0.05}``)."""
    dss = _resolve(datasets, seed, synth_kw)
    return {f"{a}->{b}": cross_dataset(dss, [a], b, protocol="single-source", **kw)
            for a in dss for b in dss if a != b}


def leave_one_out(datasets: Mapping[str, MSADataset] | Sequence[str], *, seed: int = 0,
                  synth_kw: dict[str, Any] | None = None, **kw: Any) -> dict[str, MSADataset]:
    """For each dataset as the target: train on all the others, test on it."""
    dss = _resolve(datasets, seed, synth_kw)
    out = {}
    for t in dss:
        task = cross_dataset(dss, [n for n in dss if n != t], t, protocol="leave-one-out", **kw)
        out[task.name] = task
    return out


# ----------------------------------------------------------------------------------------------
# Model hyper-parameters that depend on the dataset
def _train_domains(ds: MSADataset) -> list[int]:
    dg = ds.provenance.get("dg")
    if dg is not None:
        return list(dg["train_domains"])
    split = ds.provenance.get("domain_split")
    if split is not None:
        return sorted(int(d) for d in split["train_domains"])
    dom = ds.train.domain if ds.train is not None else None
    return [] if dom is None else sorted(int(d) for d in np.unique(dom))


def dg_hparams(ds: MSADataset, model: str = "midg") -> dict[str, Any]:
    """Hyper-parameters ``model`` needs for ``ds``: ``source_dims`` (per-dataset projections, padded
    DG datasets) and, for MIDG, ``n_domains`` (discriminator classes: max training id + 1 when there
    are ≥ 2 training domains, else 1 → the im-vs-om labels)."""
    dg = ds.provenance.get("dg")
    source_dims = dg.get("source_dims") if dg is not None else None
    hp: dict[str, Any] = {}
    if source_dims is not None:
        hp["source_dims"] = {int(k): dict(v) for k, v in source_dims.items()}
    if model in _DOMAIN_MODELS:
        doms = _train_domains(ds)
        hp["n_domains"] = max(doms) + 1 if len(doms) >= 2 else 1
    return hp


def with_dg_hparams(variants: Mapping[str, Variant | dict | str], ds: MSADataset) -> dict[str, Variant]:
    """``variants`` with `dg_hparams` merged in for ``ds`` (a variant's own hparams win)."""
    out = {}
    for name, v in variants.items():
        v = Variant.coerce(v)
        out[name] = Variant(v.model, {**dg_hparams(ds, v.model), **v.hparams}, dict(v.train))
    return out


# ----------------------------------------------------------------------------------------------
# Domains within one SynthMSA preset
def synth_domains(preset: str = "mosi", *, n_domains: int = 4, domain_shift: float = 1.0,
                  train_domains: Sequence[int] | None = None, test_domains: Sequence[int] | None = None,
                  seed: int = 0, **overrides: Any) -> MSADataset:
    """A SynthMSA preset with ``n_domains`` domains at ``domain_shift``, split for DG.

    Default: train/valid on domains 0..n−2 (0 is the clean reference), test on domain n−1.
    ``overrides`` go to the generator (e.g. ``scale``, ``seq_len``). The name carries the
    shift, so runs at different shifts never share a cache entry or a table row.
    """
    if n_domains < 2:
        raise ValueError(f"synth_domains needs n_domains >= 2; got {n_domains}")
    train = list(train_domains) if train_domains is not None else list(range(n_domains - 1))
    test = list(test_domains) if test_domains is not None else [n_domains - 1]
    bad = [d for d in [*train, *test] if not 0 <= int(d) < n_domains]
    if bad or set(train) & set(test):
        raise ValueError(f"domains must lie in [0, {n_domains}) and train/test must be disjoint; "
                         f"got train={train}, test={test}")
    ds = make_synth(preset, seed=seed, n_domains=n_domains, domain_shift=domain_shift, **overrides)
    ds = domain_split(ds, train, test)
    return replace(ds, name=f"synth-{preset}@shift{domain_shift:g}[domains {train}->{test}]")


def shift_sweep(shifts: Sequence[float], preset: str = "mosi", **kw: Any) -> dict[float, MSADataset]:
    """`synth_domains` at each shift (same world and samples otherwise): the accuracy-vs-shift curve."""
    return {float(s): synth_domains(preset, domain_shift=float(s), **kw) for s in shifts}
