"""Train the baselines on a given device (e.g. a GPU) and record metrics and timings.

    python benchmarks/device_check.py --device cuda --seeds 1111 1112 1113 --epochs 100 --patience 15

Checks that the whole train / evaluate path runs on that device (no hidden `.cuda()` or CPU-only
ops) and measures seconds per epoch there. Writes benchmarks/results/device_check_<device>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from msa_lib.data import get_dataset
from msa_lib.experiments import run_grid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dataset", default="synth-mosi")
    ap.add_argument("--models", default="early_fusion,late_fusion,mult")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1111, 1112, 1113])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    ds = get_dataset(args.dataset, seed=0)
    t0 = time.perf_counter()
    recs = run_grid([ds], {m: m for m in args.models.split(",")}, args.seeds, out_dir=None, device=args.device,
                    train={"epochs": args.epochs, "patience": args.patience, "batch_size": args.batch_size, "lr": 1e-3})
    wall = time.perf_counter() - t0
    rows = [{"model": r.variant, "seed": r.seed, "epochs_run": r.epochs_run, "best_epoch": r.best_epoch,
             "train_s_per_epoch": r.train_s_per_epoch, "Has0_acc_2": r.test_metrics["Has0_acc_2"],
             "MAE": r.test_metrics["MAE"], "Corr": r.test_metrics["Corr"]} for r in recs]
    info = {"device": args.device, "device_name": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(), "wall_s": round(wall, 1),
            "train": {"epochs": args.epochs, "patience": args.patience, "batch_size": args.batch_size}, "rows": rows}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    dest = Path(args.out) / f"device_check_{args.device.split(':')[0]}.json"
    dest.write_text(json.dumps(info, indent=1))
    for r in rows:
        print(r)
    print(f"wall {wall:.1f} s -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
