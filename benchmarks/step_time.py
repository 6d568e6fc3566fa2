"""Training-step time per model, measured in one process so ratios between models are meaningful.

    python benchmarks/step_time.py --models early_fusion,mult --batch 32 --dataset synth-mosi --json

A model may carry hyper-parameters in brackets, ``name[key=value;key=value]`` (values are YAML), e.g.
``--models "fusion_backbone,i2moe,i2moe[batched=false]"``.

Prints a JSON list of {"model", "batch", "ms_per_step", "samples_per_s", "n_params"}; ms_per_step is
the median of --steps (>= 20) timed optimiser steps after --warmup untimed ones. Text-only models
are given the text modality only.
"""
from __future__ import annotations

import argparse
import json
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="early_fusion,late_fusion,mult")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dataset", default="synth-mosi")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true", help="print only the JSON list")
    ap.add_argument("--explanations", action="store_true",
                    help="attach SynthMSA template explanations (encoded, cached) for models that read them (text)")
    ap.add_argument("--seq-len", type=int, default=None, help="SynthMSA frames per stream (default: the preset's)")
    ap.add_argument("--save", default=None, help="also write the JSON list (with machine facts) to this file")
    args = ap.parse_args(argv)
    if args.steps < 20:
        ap.error("--steps must be >= 20 (the median of at least 20 timed steps)")
    ds = get_dataset(args.dataset, seed=0, **({"seq_len": args.seq_len} if args.seq_len else {}))
    if args.explanations:
        from msa_lib.features.explanations import attach_explanations, get_provider
        ds = attach_explanations(ds, get_provider("synth"))
    specs = [parse_spec(m) for m in split_specs(args.models)]
    rows = [measure_step_time(name, ds, args.batch, args.steps, args.warmup, args.device, hp) for name, hp in specs]
    if args.save:
        import os
        import platform
        from pathlib import Path
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text(json.dumps({"dataset": args.dataset, "seq_len": args.seq_len,
                                               "explanations": args.explanations, "device": args.device, "cpu_count": os.cpu_count(),
                                               "torch_threads": torch.get_num_threads(), "machine": platform.platform(),
                                               "rows": rows}, indent=1))
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['model']:>18}: {r['ms_per_step']:8.2f} ms/step  {r['samples_per_s']:8.1f} samples/s  "
                  f"{r['n_params']:>9,} params")
    return 0


if __name__ == "__main__":
    sys.exit(main())
