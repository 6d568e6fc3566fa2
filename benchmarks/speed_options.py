"""Which speed settings pay off for the default-profile runs on a small CPU: threads, batch size, torch.compile.

    python benchmarks/speed_options.py                               # all sections, all four models
    python benchmarks/speed_options.py --sections threads,batch --models midg
    python benchmarks/speed_options.py --sections compile --compile-modes default,reduce-overhead,static

Sections (each model is the chapter's main model at its default-profile size, see `default_specs.py`):

- ``threads``: wall ms per training step with ``torch.set_num_threads(1)`` vs 2, interleaved in one
  process (medians), plus one validation pass (eval batch 256). On a shared machine 2 threads can be
  far slower (a thread that is descheduled stalls the other at every op); the load average is recorded.
- ``batch``: ms per step and samples/s at batch 32 / 64 / 128 (1 thread). A larger batch changes the
  training protocol (fewer, larger steps), so this is information, not a drop-in setting.
- ``compile``: ``torch.compile`` of the model (``default``; ``reduce-overhead``; ``static`` =
  ``dynamic=False``), each in a fresh subprocess with an empty inductor cache: the first step (compile),
  the partial last batch and the eval pass (recompiles), a second model instance (what the next seed of
  the same variant pays, warm caches), and the steady-state step vs eager. From these: the steps needed
  to repay the compile cost, against the steps a default-profile run actually has.

Writes benchmarks/results/speed_options_cpu.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_specs import ROOT, default_specs, train_batches, train_step_fn  # noqa: E402

MODES = {"default": {}, "reduce-overhead": {"mode": "reduce-overhead"}, "static": {"dynamic": False}}


def _med_ms(v: list[float]) -> float:
    return round(1000 * statistics.median(v), 3)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def threads_section(specs: dict, reps: int, n_batches: int) -> list[dict[str, Any]]:
    """1 vs 2 torch threads, interleaved on the same model and batches (wall time, medians)."""
    from msa_lib.training import predict, set_seed
    rows = []
    for name, spec in specs.items():
        set_seed(0)
        model = spec.build().train()
        step = train_step_fn(spec, model)
        batches = train_batches(spec, n_batches)
        step(batches[0])
        wall = {1: [], 2: []}
        evals = {1: [], 2: []}
        load0 = _load()
        for _ in range(reps):
            for t in (1, 2):
                torch.set_num_threads(t)
                for b in batches:
                    w = time.perf_counter()
                    step(b)
                    wall[t].append(time.perf_counter() - w)
                w = time.perf_counter()
                predict(model, spec.dataset, "valid", 256)
                evals[t].append(time.perf_counter() - w)
                model.train()
        torch.set_num_threads(1)
        r = {"model": name, "batch": spec.batch_size, "ms_per_step_1_thread": _med_ms(wall[1]),
             "ms_per_step_2_threads": _med_ms(wall[2]), "valid_pass_ms_1_thread": _med_ms(evals[1]),
             "valid_pass_ms_2_threads": _med_ms(evals[2]), "loadavg": [load0, _load()],
             "chapter_torch_threads": spec.torch_threads}
        r["step_ratio_2_over_1"] = round(r["ms_per_step_2_threads"] / r["ms_per_step_1_thread"], 3)
        rows.append(r)
        print(f"threads {name:>6}: 1 thread {r['ms_per_step_1_thread']:8.2f} ms, 2 threads {r['ms_per_step_2_threads']:8.2f} ms "
              f"(x{r['step_ratio_2_over_1']:.2f}); valid pass {r['valid_pass_ms_1_thread']:.1f} vs "
              f"{r['valid_pass_ms_2_threads']:.1f} ms; load {r['loadavg']}", flush=True)
    return rows


def batch_section(specs: dict, reps: int, sizes: list[int]) -> list[dict[str, Any]]:
    """ms per step and samples/s per batch size, interleaved (1 thread)."""
    from msa_lib.training import set_seed
    rows = []
    torch.set_num_threads(1)
    for name, spec in specs.items():
        set_seed(0)
        model = spec.build().train()
        step = train_step_fn(spec, model)
        n_train = len(spec.dataset.train)
        usable = [b for b in sizes if b <= n_train]
        batches = {b: train_batches(spec, 3, batch_size=b) for b in usable}
        for b in usable:
            step(batches[b][0])
        wall = {b: [] for b in usable}
        for _ in range(reps):
            for b in usable:
                for x in batches[b]:
                    w = time.perf_counter()
                    step(x)
                    wall[b].append(time.perf_counter() - w)
        for b in usable:
            ms = _med_ms(wall[b])
            rows.append({"model": name, "batch": b, "ms_per_step": ms, "samples_per_s": round(b / (ms / 1000), 1),
                         "epoch_s": round(-(-n_train // b) * ms / 1000, 3), "protocol_batch": spec.batch_size,
                         "loadavg": _load()})
            print(f"batch {name:>6} {b:4d}: {ms:8.2f} ms/step {rows[-1]['samples_per_s']:8.1f} samples/s "
                  f"epoch {rows[-1]['epoch_s']:.2f} s", flush=True)
    return rows


def _compile_child(name: str, mode: str, profile: str, steps: int) -> dict[str, Any]:
    """One compile measurement (run in a fresh process with its own empty inductor cache)."""
    from msa_lib.training import predict, set_seed
    torch.set_num_threads(1)
    spec = default_specs([name], profile)[name]
    kw = MODES[mode]
    batches = train_batches(spec, steps)
    n = len(spec.dataset.train)
    rest = n % spec.batch_size
    partial = next(b for b in spec.dataset.loader("train", spec.batch_size, shuffle=True, seed=0) if len(b) == rest) if rest else None
    out: dict[str, Any] = {"model": name, "mode": mode, "compile_kwargs": kw, "batch": spec.batch_size,
                           "steps_per_run": spec.steps_per_run(), "epochs": spec.train["epochs"]}
    set_seed(0)
    eager = spec.build().train()
    set_seed(0)
    cm = torch.compile(spec.build().train(), **kw)
    e_step, c_step = train_step_fn(spec, eager), train_step_fn(spec, cm)
    t = time.perf_counter()
    c_step(batches[0])
    out["first_step_s"] = round(time.perf_counter() - t, 2)
    if partial is not None:
        t = time.perf_counter()
        c_step(partial)
        out["partial_batch_step_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    predict(cm, spec.dataset, "valid", 256)
    out["first_eval_pass_s"] = round(time.perf_counter() - t, 2)
    cm.train()
    e_step(batches[0])
    we, wc = [], []
    for _ in range(3):
        for b in batches[1:]:
            t = time.perf_counter()
            e_step(b)
            we.append(time.perf_counter() - t)
            t = time.perf_counter()
            c_step(b)
            wc.append(time.perf_counter() - t)
    out["eager_ms_per_step"], out["compiled_ms_per_step"] = _med_ms(we), _med_ms(wc)
    te, tc = [], []
    for _ in range(3):
        t = time.perf_counter()
        predict(eager, spec.dataset, "valid", 256)
        te.append(time.perf_counter() - t)
        t = time.perf_counter()
        predict(cm, spec.dataset, "valid", 256)
        tc.append(time.perf_counter() - t)
    out["eager_valid_pass_ms"], out["compiled_valid_pass_ms"] = _med_ms(te), _med_ms(tc)
    set_seed(1)
    cm2 = torch.compile(spec.build().train(), **kw)  # the next seed of the same variant: warm caches
    s2 = train_step_fn(spec, cm2)
    t = time.perf_counter()
    s2(batches[0])
    out["second_instance_first_step_s"] = round(time.perf_counter() - t, 2)
    try:
        import torch._dynamo as dynamo
        out["graph_breaks"] = int(sum(dynamo.utils.counters["graph_break"].values()))
    except Exception:  # noqa: BLE001 - informational only
        out["graph_breaks"] = None
    saving = (out["eager_ms_per_step"] - out["compiled_ms_per_step"]) / 1000
    cost = out["first_step_s"] + out.get("partial_batch_step_s", 0.0) + out["first_eval_pass_s"]
    out["compile_cost_first_run_s"] = round(cost, 2)
    out["saving_per_step_ms"] = round(1000 * saving, 3)
    out["break_even_steps"] = round(cost / saving) if saving > 0 else None
    run_eager = spec.steps_per_run() * out["eager_ms_per_step"] / 1000
    run_comp = spec.steps_per_run() * out["compiled_ms_per_step"] / 1000 + cost
    out["run_train_s_eager"], out["run_train_s_compiled_first_run"] = round(run_eager, 2), round(run_comp, 2)
    out["pays_off_within_one_run"] = bool(run_comp < run_eager)
    return out


def compile_section(names: list[str], modes: list[str], profile: str, steps: int, timeout: int) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        for mode in modes:
            with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
                env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
                cmd = [sys.executable, __file__, "--compile-child", f"{name}:{mode}", "--profile", profile,
                       "--steps", str(steps)]
                t = time.perf_counter()
                try:
                    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
                    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
                    row = json.loads(lines[-1]) if p.returncode == 0 and lines else {
                        "model": name, "mode": mode, "error": (p.stderr or p.stdout).strip().splitlines()[-3:]}
                except subprocess.TimeoutExpired:
                    row = {"model": name, "mode": mode, "error": f"timed out after {timeout} s"}
                row["wall_s_total"], row["loadavg"] = round(time.perf_counter() - t, 1), _load()
            rows.append(row)
            if "error" in row:
                print(f"compile {name:>6} {mode:>15}: ERROR {row['error']}", flush=True)
            else:
                print(f"compile {name:>6} {mode:>15}: first step {row['first_step_s']:.1f} s, eager "
                      f"{row['eager_ms_per_step']:.2f} vs compiled {row['compiled_ms_per_step']:.2f} ms/step, "
                      f"break-even {row['break_even_steps']} steps (a run has {row['steps_per_run']}); second "
                      f"instance {row['second_instance_first_step_s']:.1f} s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="i2moe,text,mmolre,midg")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--sections", default="threads,batch,compile")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=6, help="distinct batches per repetition")
    ap.add_argument("--batch-sizes", default="32,64,128")
    ap.add_argument("--compile-modes", default="default,reduce-overhead,static")
    ap.add_argument("--compile-timeout", type=int, default=900)
    ap.add_argument("--compile-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--save", default=str(ROOT / "benchmarks" / "results" / "speed_options_cpu.json"))
    args = ap.parse_args(argv)
    if args.compile_child:
        name, mode = args.compile_child.split(":")
        print(json.dumps(_compile_child(name, mode, args.profile, args.steps)))
        return 0
    names, sections = args.models.split(","), args.sections.split(",")
    dest = Path(args.save) if args.save else None
    report: dict[str, Any] = json.loads(dest.read_text()) if dest and dest.exists() else {}
    report.update({"profile": args.profile, "cpu_count": os.cpu_count(), "torch": torch.__version__,
                   "machine": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M"),
                   "note": "wall-clock medians on a possibly shared machine; compare within a section only"})
    specs = default_specs(names, args.profile) if {"threads", "batch"} & set(sections) else {}
    if "threads" in sections:
        report["threads"] = threads_section(specs, args.reps, args.steps)
    if "batch" in sections:
        report["batch"] = batch_section(specs, args.reps, [int(b) for b in args.batch_sizes.split(",")])
    if "compile" in sections:
        new = compile_section(names, args.compile_modes.split(","), args.profile, args.steps, args.compile_timeout)
        done = {(r["model"], r["mode"]) for r in new}  # a partial rerun keeps the other (model, mode) rows
        report["compile"] = [r for r in report.get("compile", []) if (r["model"], r["mode"]) not in done] + new
    if dest:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(report, indent=1, default=str))
        print(f"-> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
