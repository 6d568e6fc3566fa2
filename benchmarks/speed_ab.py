"""Before/after: the default-profile training step of the four paper models, an old revision vs this tree.

    python benchmarks/speed_ab.py                       # HEAD's msa_lib vs the working tree, 1 torch thread
    python benchmarks/speed_ab.py --base 287257e --threads 2 --models i2moe,midg   # 287257e: before the #8 speed work

Why one process: on a shared machine two separate runs see different loads. Here the old package
(``git archive <rev> msa_lib``, imported as ``msa_lib_base``) and the current one build the same models
from the same seed and time their steps interleaved on the same batches; the medians of CPU time
(``thread_time``, robust to other processes) and wall time are reported with the ratio. It also checks
that both compute the same function: identical initial weights and eval-mode predictions within float
rounding. Writes benchmarks/results/speed_ab_cpu.json (``--save``).
"""
from __future__ import annotations

import argparse
import atexit
import importlib
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_specs import ROOT, default_specs, train_batches, train_step_fn  # noqa: E402


def load_base(rev: str) -> object:
    """``msa_lib`` at ``rev`` as the package ``msa_lib_base`` (a renamed copy in a temp folder)."""
    blob = subprocess.run(["git", "archive", rev, "msa_lib"], cwd=ROOT, capture_output=True, check=True).stdout
    dest = Path(tempfile.mkdtemp(prefix="msa-base-"))
    atexit.register(shutil.rmtree, dest, True)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    (dest / "msa_lib").rename(dest / "msa_lib_base")
    for f in (dest / "msa_lib_base").rglob("*.py"):
        f.write_text(re.sub(r"\bmsa_lib\b", "msa_lib_base", f.read_text()))
    sys.path.insert(0, str(dest))
    return importlib.import_module("msa_lib_base")


def compare(spec, base, n_batches: int, reps: int) -> dict:
    """Equivalence checks, then interleaved step timings (old, new) on the same batches."""
    import msa_lib.models
    import msa_lib.training
    bmods = importlib.import_module("msa_lib_base.models")
    btrain = importlib.import_module("msa_lib_base.training")
    models = {}
    for tag, build, training in (("old", bmods.build, btrain), ("new", msa_lib.models.build, msa_lib.training)):
        training.set_seed(0)
        models[tag] = build(spec.model, spec.dataset.dims, n_out=spec.n_out, **spec.hparams)
    old_sd, new_sd = models["old"].state_dict(), models["new"].state_dict()
    same_keys = list(old_sd) == list(new_sd)
    same_init = same_keys and all(torch.equal(old_sd[k], new_sd[k]) for k in old_sd)
    batches = train_batches(spec, n_batches)
    with torch.no_grad():
        outs = [m.eval()(batches[0]).pred for m in models.values()]
    pred_diff = float((outs[0] - outs[1]).abs().max())
    steps = {}
    for tag, training in (("old", btrain), ("new", msa_lib.training)):
        models[tag].train()
        steps[tag] = train_step_fn(spec, models[tag], training=training)
    for tag in steps:  # warm-up
        steps[tag](batches[0])
    cpu = {t: [] for t in steps}
    wall = {t: [] for t in steps}
    for _ in range(reps):
        for tag, step in steps.items():
            for b in batches:
                w0, c0 = time.perf_counter(), time.thread_time()
                step(b)
                cpu[tag].append(time.thread_time() - c0)
                wall[tag].append(time.perf_counter() - w0)
    med = lambda v: round(1000 * statistics.median(v), 2)  # noqa: E731
    row = {"model": spec.name, "batch": spec.batch_size, "same_state_dict_keys": same_keys, "same_init": same_init,
           "eval_pred_max_abs_diff": pred_diff,
           "cpu_ms_old": med(cpu["old"]), "cpu_ms_new": med(cpu["new"]),
           "wall_ms_old": med(wall["old"]), "wall_ms_new": med(wall["new"])}
    row["cpu_speedup"] = round(row["cpu_ms_old"] / row["cpu_ms_new"], 3)
    row["wall_speedup"] = round(row["wall_ms_old"] / row["wall_ms_new"], 3)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="HEAD", help="git revision whose msa_lib is the 'old' side")
    ap.add_argument("--models", default="i2moe,text,mmolre,midg")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", type=int, default=4, help="distinct batches per repetition")
    ap.add_argument("--reps", type=int, default=6, help="interleaved repetitions (median over batches x reps)")
    ap.add_argument("--save", default=str(ROOT / "benchmarks" / "results" / "speed_ab_cpu.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = load_base(args.base)
    specs = default_specs(args.models.split(","), args.profile)
    rows = []
    for spec in specs.values():
        rows.append(compare(spec, base, args.batches, args.reps))
        r = rows[-1]
        print(f"{r['model']:>7}: cpu {r['cpu_ms_old']:8.2f} -> {r['cpu_ms_new']:8.2f} ms/step (x{r['cpu_speedup']:.2f}), "
              f"wall {r['wall_ms_old']:8.2f} -> {r['wall_ms_new']:8.2f} (x{r['wall_speedup']:.2f}); same init "
              f"{r['same_init']}, eval pred diff {r['eval_pred_max_abs_diff']:.2g}", flush=True)
    if args.save:
        rev = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text(json.dumps({
            "base": rev, "new": "working tree", "profile": args.profile, "torch_threads": args.threads,
            "cpu_count": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
            "machine": platform.platform(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
            "note": "cpu = thread CPU time (robust to other processes), wall = perf_counter; medians over steps",
            "rows": rows}, indent=1))
        print(f"-> {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
