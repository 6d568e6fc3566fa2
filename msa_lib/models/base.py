"""The model contract and the registry (MMSA-style): ``build(name, dims, **hparams)``.

Every model takes a `Batch` and returns `ModelOutput(pred, aux_loss, extras)`:
``pred`` is (B,) for regression or (B, C) logits for classification, ``aux_loss`` is a scalar tensor
added to the task loss (zero for plain models), and ``extras`` carries interpretable internals
(expert weights, routing, gates) that the notebooks plot.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
from torch import nn

from msa_lib.data.schema import MODALITIES, Batch

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


@dataclass
class ModelOutput:
    pred: torch.Tensor
    aux_loss: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)


def register(name: str) -> Callable:
    """Class decorator adding a model to the registry under a lower_snake ``name``."""
    def deco(cls):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls
    return deco


def available() -> list[str]:
    return sorted(_REGISTRY)


def build(name: str, dims: dict[str, int], **hparams: Any) -> nn.Module:
    """Instantiate registered model ``name`` for feature widths ``dims`` (e.g. ``ds.dims``).

    With ``source_dims`` (zero-padded cross-dataset features, `msa_lib.domains.dg_hparams`) a model
    without its own per-dataset front end is wrapped in `SourceProjected`, so every model can take
    part in the domain-generalisation protocol.
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(available())}")
    cls = _REGISTRY[name]
    if hparams.get("source_dims") is not None and "source_dims" not in inspect.signature(cls).parameters:
        return SourceProjected(cls, dict(dims), **hparams)
    hparams.pop("source_width", None)  # only the wrapper reads it
    if hparams.get("source_dims", 0) is None:
        hparams.pop("source_dims")
    return cls(dims=dict(dims), **hparams)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))


class MSAModel(nn.Module):
    """Base class: resolves which modalities to use and checks the batch has them."""

    def __init__(self, dims: dict[str, int], modalities: tuple[str, ...] | list[str] | None = None, n_out: int = 1):
        super().__init__()
        mods = tuple(modalities) if modalities is not None else tuple(m for m in MODALITIES if m in dims)
        unknown = [m for m in mods if m not in MODALITIES]
        if unknown:
            raise ValueError(f"unknown modalities {unknown}; expected a subset of {MODALITIES}")
        missing = [m for m in mods if m not in dims]
        if missing:
            raise ValueError(f"{type(self).__name__}: modalities {missing} requested but the dataset only has "
                             f"{sorted(dims)} (dims={dims})")
        if not mods:
            raise ValueError(f"{type(self).__name__}: no modality to use (dims={dims})")
        self.modalities = mods
        self.dims = {m: dims[m] for m in mods}
        self.n_out = n_out

    def inputs(self, batch: Batch) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        """(features, mask) per used modality, with a clear error if the batch lacks one."""
        batch.require(*self.modalities)
        return {m: (getattr(batch, m), getattr(batch, f"{m}_mask")) for m in self.modalities}

    def head_output(self, y: torch.Tensor) -> torch.Tensor:
        return y.squeeze(-1) if self.n_out == 1 else y

    @staticmethod
    def zero(ref: torch.Tensor) -> torch.Tensor:
        return ref.new_zeros(())


class SourceProjected(nn.Module):
    """A registered model behind per-dataset input projections (`msa_lib.nn.sources.SourceProjection`).

    Why: in cross-dataset DG the datasets' features are zero-padded to one width; feeding the padding
    column-wise would mix unrelated features. Each modality is first mapped from its dataset's native
    columns to ``min(source_width, widest native width)``, frame by frame, and the wrapped model is
    built for those widths. MIDG has the same front end built in; this gives it to every baseline.
    """

    def __init__(self, cls: Callable[..., nn.Module], dims: dict[str, int], source_dims: dict,
                 source_width: int = 64, projection: str = "width", **hparams: Any):
        super().__init__()
        from msa_lib.nn.sources import SourceProjection, normalise_source_dims
        mods = tuple(hparams.get("modalities") or [m for m in MODALITIES if m in dims])
        used = {m: dims[m] for m in mods if m in dims}
        owner = getattr(cls, "registry_name", cls.__name__)
        sd = normalise_source_dims(source_dims, used, owner)
        width = {m: min(int(source_width), max(s[m] for s in sd.values())) for m in used}
        self.sources = SourceProjection(used, width, sd, projection, owner)
        self.model = cls(dims=width, **hparams)
        self.registry_name = owner
        self.modalities = tuple(used)

    def untrained_projections(self, train_domains: list[int]) -> dict[str, list[int]]:
        return self.sources.untrained(train_domains)

    def forward(self, batch: Batch) -> "ModelOutput":
        batch.require(*self.modalities)
        return self.model(replace(batch, **{m: self.sources(m, getattr(batch, m), batch.domain)
                                            for m in self.modalities}))
