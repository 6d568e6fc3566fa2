"""Training-step time per model, measured in one process so ratios between models are meaningful.

    python benchmarks/step_time.py                      # every registered model (--models all)
    python benchmarks/step_time.py --models early_fusion,mult --batch 32 --dataset synth-mosi --json

A model may carry hyper-parameters in brackets, ``name[key=value;key=value]`` (values are YAML), e.g.
``--models "fusion_backbone,i2moe,i2moe[batched=false]"``. ``all`` (the default) expands to
`msa_lib.models.available()`; ``all`` may be mixed with explicit specs.

Every model gets what it needs to run on the dataset (`auto_hparams`): text-only models the text only
(`measure_step_time`), ``max_frames`` = the longest stream for models with a frame table (ALMT, TEXT),
TEXT its explanation shape when the dataset carries encoded explanations (``--explanations``) and
``explanations=False`` otherwise, and MIDG / its ERM baseline `msa_lib.domains.dg_hparams` (on a plain
dataset: one domain, so MIDG's discriminator tells A^im from A^om). Explicit bracket values win.

Prints a JSON list of {"model", "batch", "ms_per_step", "samples_per_s", "n_params"}; ms_per_step is
the median of --steps (>= 20) timed optimiser steps after --warmup untimed ones.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import yaml

from msa_lib.data import get_dataset
from msa_lib.experiments import measure_step_time


def parse_spec(spec: str) -> tuple[str, dict]:
    """``"i2moe[batched=false;hidden=64]"`` → ("i2moe", {"batched": False, "hidden": 64})."""
    spec = spec.strip()
    if "[" not in spec:
        return spec, {}
    if not spec.endswith("]"):
        raise ValueError(f"bad model spec {spec!r}; expected name[key=value;...]")
    name, body = spec[:-1].split("[", 1)
    hp = {}
    for item in filter(None, (x.strip() for x in body.split(";"))):
        if "=" not in item:
            raise ValueError(f"bad hyper-parameter {item!r} in {spec!r}; expected key=value")
        k, v = item.split("=", 1)
        hp[k.strip()] = yaml.safe_load(v)
    return name.strip(), hp


def split_specs(models: str) -> list[str]:
    """Split on commas outside brackets."""
    out, depth, cur = [], 0, ""
    for ch in models:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [m.strip() for m in out + [cur] if m.strip()]


def auto_hparams(name: str, ds) -> dict:
    """Hyper-parameters model ``name`` needs to run on ``ds`` (see the module docstring)."""
    import inspect

    from msa_lib.domains import PROJECTION_MODELS, dg_hparams
    from msa_lib.models import base
    params = inspect.signature(base._REGISTRY[name].__init__).parameters  # the registered class's own arguments
    hp: dict = {}
    if name in PROJECTION_MODELS:
        hp.update(dg_hparams(ds, name))
    if "max_frames" in params:
        hp["max_frames"] = max(ds.seq_lens.values())
    if "clue_dim" in params:
        feats = ds.train.audio_clue_feats
        if feats is None:
            hp["explanations"] = False
        else:
            hp.update(clue_dim=int(feats.shape[2]), clue_len=int(feats.shape[1]))
    return hp


def resolve_specs(models: str, ds) -> list[tuple[str, dict, str]]:
    """``--models`` → [(registry name, hparams for the build, label)], ``all`` expanded in registry order.

    The label names only what was asked for (``i2moe[batched=False]``), not the automatic hparams.
    """
    from msa_lib.models import available
    out = []
    for spec in split_specs(models):
        names = [(n, {}) for n in available()] if spec == "all" else [parse_spec(spec)]
        for name, hp in names:
            if name not in available():
                raise SystemExit(f"unknown model {name!r}; registered: {', '.join(available())}")
            label = name + (f"[{';'.join(f'{k}={v}' for k, v in hp.items())}]" if hp else "")
            out.append((name, {**auto_hparams(name, ds), **hp}, label))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="all", help="comma-separated specs, or 'all' (every registered model)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dataset", default="synth-mosi")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true", help="print only the JSON list")
    ap.add_argument("--explanations", action="store_true",
                    help="attach SynthMSA template explanations (encoded, cached) for models that read them (text)")
    ap.add_argument("--seq-len", type=int, default=None, help="SynthMSA frames per stream (default: the preset's)")
    ap.add_argument("--scale", type=float, default=None, help="SynthMSA size as a fraction of the preset's (default 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--save", default=None, help="also write the JSON list (with machine facts) to this file")
    args = ap.parse_args(argv)
    if args.steps < 20:
        ap.error("--steps must be >= 20 (the median of at least 20 timed steps)")
    if args.threads:
        torch.set_num_threads(args.threads)
    kw = {k: v for k, v in (("seq_len", args.seq_len), ("scale", args.scale)) if v}
    ds = get_dataset(args.dataset, seed=0, **kw)
    if args.explanations:
        from msa_lib.features.explanations import attach_explanations, get_provider
        ds = attach_explanations(ds, get_provider("synth"))
    load0 = os.getloadavg()
    rows = []
    for name, hp, label in resolve_specs(args.models, ds):
        row = measure_step_time(name, ds, args.batch, args.steps, args.warmup, args.device, hp)
        rows.append({**row, "model": label})
        if not args.json:
            print(f"{label:>18}: {row['ms_per_step']:8.2f} ms/step  {row['samples_per_s']:8.1f} samples/s  "
                  f"{row['n_params']:>9,} params", flush=True)
    if args.save:
        import platform
        import time
        from pathlib import Path
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text(json.dumps({"dataset": args.dataset, "seq_len": args.seq_len, "scale": args.scale,
                                               "explanations": args.explanations, "device": args.device, "cpu_count": os.cpu_count(),
                                               "torch_threads": torch.get_num_threads(), "machine": platform.platform(),
                                               "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
                                               "loadavg_start": [round(x, 2) for x in load0],
                                               "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                                               "note": "auto hparams per model: see auto_hparams in step_time.py",
                                               "rows": rows}, indent=1))
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
