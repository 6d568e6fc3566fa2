"""Per-dataset input projections: how one model reads several datasets whose feature widths differ.

Why: cross-dataset domain generalisation concatenates datasets whose audio and vision features have
different widths (MOSI 5/20, SIMS 33/709, ...). `msa_lib.domains.project_to_shared` zero-pads every
dataset to the widest width and records each one's native widths as ``source_dims``
({domain id: {modality: width}}). A `SourceProjection` then maps sample i's *native* columns with the
projection of its dataset ``batch.domain[i]``, so the zero padding never reaches a layer.

With ``projection="width"`` datasets of equal native width share one projection (so a held-out
target can reuse a trained one); ``"dataset"`` gives every dataset its own.
"""
from __future__ import annotations

import torch
from torch import nn

from msa_lib.data.schema import DataError

PROJECTIONS = ("width", "dataset")


def normalise_source_dims(source_dims: dict | None, dims: dict[str, int],
                          owner: str) -> dict[int, dict[str, int]] | None:
    """``{domain id: {modality: native width}}`` with int keys (YAML/JSON may give str keys), checked
    against the padded widths ``dims``."""
    if source_dims is None:
        return None
    out: dict[int, dict[str, int]] = {}
    for dom, sd in dict(source_dims).items():
        sd = {str(m): int(d) for m, d in dict(sd).items()}
        for m, d_pad in dims.items():
            if m not in sd:
                raise ValueError(f"{owner}: source_dims[{dom}] has no width for modality {m!r} (has {sorted(sd)})")
            if not 1 <= sd[m] <= d_pad:
                raise ValueError(f"{owner}: source_dims[{dom}][{m!r}] = {sd[m]} must lie in [1, {d_pad}] "
                                 f"(the padded width of the dataset)")
        out[int(dom)] = {m: sd[m] for m in dims}
    if not out:
        raise ValueError(f"{owner}: source_dims is empty")
    return out


class SourceProjection(nn.Module):
    """Linear maps to ``width`` per modality, chosen per sample by its dataset id.

    ``forward(m, x, domain)`` takes padded features ``x`` (B, ..., d_pad) and returns (B, ..., width).
    """

    def __init__(self, dims: dict[str, int], width: int | dict[str, int], source_dims: dict,
                 projection: str = "width", owner: str = "model"):
        super().__init__()
        if projection not in PROJECTIONS:
            raise ValueError(f"projection={projection!r}; expected one of {PROJECTIONS}")
        self.owner = owner
        self.width = {m: width for m in dims} if isinstance(width, int) else {m: int(width[m]) for m in dims}
        self.source_dims = normalise_source_dims(source_dims, dict(dims), owner)
        self.route: dict[str, dict[int, str]] = {}
        self.native: dict[str, int] = {}
        layers: dict[str, nn.Module] = {}
        for m in dims:
            self.route[m] = {}
            for dom, sd in sorted(self.source_dims.items()):
                key = f"{m}:w{sd[m]}" if projection == "width" else f"{m}:d{dom}"
                self.route[m][dom] = key
                if key not in layers:
                    layers[key] = nn.Linear(sd[m], self.width[m])
                    self.native[key] = sd[m]
        self.proj = nn.ModuleDict(layers)

    def untrained(self, train_domains: list[int]) -> dict[str, list[int]]:
        """Per modality, the domain ids whose projection no training domain shares (random init)."""
        out = {}
        for m, r in self.route.items():
            trained = {r[d] for d in train_domains if d in r}
            bad = [d for d, key in r.items() if key not in trained]
            if bad:
                out[m] = bad
        return out

    def forward(self, m: str, x: torch.Tensor, domain: torch.Tensor | None) -> torch.Tensor:
        if domain is None:
            raise DataError(f"{self.owner}: per-dataset projections (source_dims) need batch.domain (the dataset id "
                            f"of each sample); this batch has none")
        out = x.new_zeros(*x.shape[:-1], self.width[m])
        for dom in domain.unique().tolist():
            key = self.route[m].get(int(dom))
            if key is None:
                raise DataError(f"{self.owner}: domain id {dom} has no input projection for modality {m!r}; "
                                f"source_dims covers ids {sorted(self.route[m])}")
            idx = (domain == dom).nonzero(as_tuple=True)[0]
            out = out.index_copy(0, idx, self.proj[key](x[idx, ..., : self.native[key]]))
        return out
