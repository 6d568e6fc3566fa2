"""`get_dataset(name, ...)`: one entry point for every dataset the book uses.

Names (DATA.md):
- ``synth-mosi``, ``synth-mosei``, ``synth-sims``: SynthMSA presets with the real dims and split sizes;
- ``mosi-text``: real CMU-MOSI transcripts and labels, text only;
- ``mosi-semi``: real MOSI text + SynthMSA audio/vision generated from each real label (semi-synthetic);
- ``mmsa:<path>``: an MMSA feature pickle (aligned_50 / unaligned_50 / unaligned_39);
- ``multibench:<path>``: a MulT / MultiBench pickle (mosi_data.pkl, mosei_senti_data.pkl).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from msa_lib.data.mmsa import load_multibench, load_mmsa
from msa_lib.data.real import data_available, default_data_root, load_mosi_text
from msa_lib.data.schema import SPLITS, DataError, MSADataset
from msa_lib.data.synth import make_synth, synth_modalities_for_labels

SYNTH_PRESETS = {"synth-mosi": "mosi", "synth-mosei": "mosei", "synth-sims": "sims"}
NAMES = (*SYNTH_PRESETS, "mosi-text", "mosi-semi", "mmsa:<path>", "multibench:<path>")


def get_dataset(name: str, seed: int = 0, *, data_root: str | Path | None = None, **kw: Any) -> MSADataset:
    """Load or generate dataset ``name``.

    ``seed`` drives synthetic generation and any subsampling (real data itself never changes).
    Extra keywords go to the underlying loader: SynthMSA knobs (e.g. ``scale``, ``domain_shift``,
    ``clue_noise``) for synthetic names; ``max_samples``, ``encoder``, ``cache_dir`` for MOSI text.
    """
    if name in SYNTH_PRESETS:
        return make_synth(SYNTH_PRESETS[name], seed=seed, **kw)
    if name == "mosi-text":
        return load_mosi_text(data_root, seed=seed, **kw)
    if name == "mosi-semi":
        return mosi_semi(data_root, seed=seed, **kw)
    if name.startswith("mmsa:"):
        return load_mmsa(name.split(":", 1)[1], **kw)
    if name.startswith("multibench:"):
        return load_multibench(name.split(":", 1)[1], **kw)
    raise KeyError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")


def get_dataset_or_fallback(name: str, fallback: str = "synth-mosi", seed: int = 0, *,
                            data_root: str | Path | None = None, text_only: bool = False,
                            fallback_kw: dict[str, Any] | None = None, **kw: Any) -> MSADataset:
    """`get_dataset(name)`, or — when its real files are missing — the synthetic ``fallback``.

    Chapters must run without ``../shared/data``. The fallback is announced with a warning and
    recorded in provenance (``fallback_from``, ``fallback_reason``) and in the dataset name, so a
    synthetic number can never pass for a real one. ``text_only`` drops audio and vision from the
    fallback (for text-only sections).
    """
    import warnings
    try:
        return get_dataset(name, seed=seed, data_root=data_root, **kw)
    except DataError as e:
        if "not found" not in str(e).lower() and "missing" not in str(e).lower() and "no such" not in str(e).lower():
            raise
        reason = str(e).splitlines()[0]
    warnings.warn(f"{name}: real data unavailable ({reason}); falling back to {fallback} (SYNTHETIC)", stacklevel=2)
    ds = get_dataset(fallback, seed=seed, **(fallback_kw or {}))
    label = f"{fallback} (synthetic fallback for {name})"
    if text_only:
        ds = ds.drop_modalities("audio", "vision", name=label)
    ds = replace(ds, name=label)
    ds.provenance.update({"fallback_from": name, "fallback_reason": reason})
    return ds


def get_datasets(names: list[str], seed: int = 0, *, data_root: str | Path | None = None,
                 synth_kw: dict[str, Any] | None = None, real_kw: dict[str, Any] | None = None) -> dict[str, MSADataset]:
    """Several datasets at once, each loaded once, as chapters need them: ``{requested name: dataset}``.

    Synthetic names get ``synth_kw`` (e.g. ``scale``); real ones get ``real_kw`` (``max_samples``,
    ``encoder``, ``cache_dir``) and fall back to synthetic data, clearly renamed, when their files
    are missing (`get_dataset_or_fallback`).
    """
    out: dict[str, MSADataset] = {}
    for name in dict.fromkeys(names):
        if name in SYNTH_PRESETS:
            out[name] = get_dataset(name, seed=seed, **(synth_kw or {}))
        else:
            kw = {k: v for k, v in (real_kw or {}).items() if v is not None} if name in ("mosi-text", "mosi-semi") else {}
            if name == "mosi-semi":  # its synthetic audio/vision follow the SynthMSA knobs too (e.g. seq_len)
                kw["synth_overrides"] = {k: v for k, v in (synth_kw or {}).items() if k != "scale"}
            out[name] = get_dataset_or_fallback(name, seed=seed, data_root=data_root, fallback_kw=synth_kw, **kw)
    return out


def mosi_semi(data_root: str | Path | None = None, seed: int = 0, *, synth_overrides: dict | None = None,
              **text_kw: Any) -> MSADataset:
    """Real MOSI transcripts + SynthMSA audio/vision generated from each sample's *real* label.

    Always labelled semi-synthetic: the text is real, the audio and vision are not. It lets the
    multimodal models run on real language while the non-verbal ground truth stays known.
    """
    text = load_mosi_text(data_root, seed=seed, **text_kw)
    splits, gen_prov = {}, {}
    for split in SPLITS:
        sp = text.split(split)
        g = synth_modalities_for_labels(sp.labels, "mosi", seed=seed, split=split, **(synth_overrides or {}))
        gen_prov[split] = g.pop("provenance")
        splits[split] = replace(sp, audio=g["audio"], vision=g["vision"], audio_lengths=g["audio_lengths"],
                                vision_lengths=g["vision_lengths"], interaction=g["interaction"], domain=g["domain"],
                                cue_time=g["cue_time"], audio_clue=g["audio_clue"], vision_clue=g["vision_clue"],
                                emotions=g["emotions"])
    prov = {**text.provenance, "kind": "semi-synthetic",
            "source": f"real MOSI transcripts ({text.provenance['source']}) + SynthMSA audio/vision",
            "label": "SEMI-SYNTHETIC: real text and labels, synthetic audio and vision",
            "synthetic_modalities": ["audio", "vision"], "synth": gen_prov[SPLITS[0]]["config"], "seed": seed}
    return replace(text, name="mosi-semi", provenance=prov, **splits)


def describe_available(data_root: str | Path | None = None) -> dict[str, str]:
    """Which named datasets can be built here, with the reason when one cannot."""
    root = Path(data_root) if data_root else default_data_root()
    real_ok = data_available(root)
    out = {n: "available (synthetic)" for n in SYNTH_PRESETS}
    for n in ("mosi-text", "mosi-semi"):
        out[n] = "available (real transcripts)" if real_ok else f"missing: no MOSI transcripts under {root}"
    out["mmsa:<path>"] = "needs an MMSA feature pickle (see the appendix)"
    out["multibench:<path>"] = "needs a MultiBench pickle"
    return out


__all__ = ["get_dataset", "get_dataset_or_fallback", "mosi_semi", "describe_available", "NAMES"]
