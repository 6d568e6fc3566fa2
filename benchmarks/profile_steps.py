"""Where a default-profile training run of each paper model spends its time (torch.profiler + phase timers).

    python benchmarks/profile_steps.py                          # all four models, 1 torch thread
    python benchmarks/profile_steps.py --models i2moe --top 15 --threads 2
    python benchmarks/profile_steps.py --base HEAD --save ""    # the same profile of an old revision's msa_lib

Two views, written to benchmarks/results/profile_steps_cpu.json:

1. **One training step** (forward + loss + backward + optimiser, as `training.fit` does it) under
   ``torch.profiler`` (CPU activities, ``record_shapes``): the top ops by self CPU time with their share of
   the step's total self CPU time, the same grouped by input shape, and the step split into forward /
   backward / optimiser by CPU-time timers without the profiler (its per-op overhead inflates small ops).
2. **One whole run** (`experiments.run_one`'s work: build, `fit` with per-epoch validation, the final test
   pass, `measure_inference_ms`, the chapter's summary callback): seconds per phase and its share, from
   timers wrapped around the library functions (nothing in the library is changed).

CPU time (``thread_time``) is the main measure because the machine may be shared; shares are ratios within
one process. The model sizes, data and protocols are the chapters' (see `default_specs.py`).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_specs import ROOT, Spec, default_specs, step_setup, train_batches, train_step_fn  # noqa: E402


def _packages(base: str | None) -> tuple[Any, Any, Any]:
    """(models, training, experiments) modules of msa_lib, or of ``base``'s msa_lib (see speed_ab.py)."""
    import importlib
    name = "msa_lib"
    if base:
        from speed_ab import load_base
        load_base(base)
        name = "msa_lib_base"
    return tuple(importlib.import_module(f"{name}.{m}") for m in ("models", "training", "experiments"))


def _step(training: Any, spec: Spec, model: torch.nn.Module) -> tuple[Callable, Callable]:
    """(full step, instrumented step returning (fwd, bwd, opt) CPU seconds)."""
    cfg, opt = step_setup(spec, model, training)

    def timed(b) -> tuple[float, float, float]:
        t0 = time.thread_time()
        out = model(b)
        loss = training.task_loss(out.pred, b.labels, cfg) + out.aux_loss
        t1 = time.thread_time()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.thread_time()
        opt.step()
        return t1 - t0, t2 - t1, time.thread_time() - t2
    return train_step_fn(spec, model, opt, training), timed


def _ops(events: Any, top: int, total_us: float, by_shape: bool = False) -> list[dict[str, Any]]:
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    out = []
    for e in rows:
        r = {"op": e.key, "self_cpu_ms": round(e.self_cpu_time_total / 1000, 3),
             "share": round(e.self_cpu_time_total / total_us, 4), "calls": int(e.count)}
        if by_shape:
            r["input_shapes"] = str(e.input_shapes)[:160]
        out.append(r)
    return out


def profile_step(spec: Spec, models: Any, training: Any, top: int, n_steps: int) -> dict[str, Any]:
    """Top ops of ``n_steps`` training steps (after warm-up) and the fwd/bwd/opt split."""
    training.set_seed(0)
    model = models.build(spec.model, spec.dataset.dims, n_out=spec.n_out, **spec.hparams).train()
    step, timed = _step(training, spec, model)
    batches = train_batches(spec, n_steps)
    for b in batches[:2]:
        step(b)
    split = [timed(b) for _ in range(3) for b in batches]
    phases = {k: round(1000 * statistics.median(x[i] for x in split), 2) for i, k in enumerate(("forward", "backward", "optimizer"))}
    phases["step"] = round(sum(phases.values()), 2)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for b in batches:
            step(b)
    ev = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ev)
    return {"batch": spec.batch_size, "hparams": spec.hparams, "n_params": sum(p.numel() for p in model.parameters()),
            "cpu_ms_per_step": phases, "profiled_steps": len(batches),
            "profiler_self_cpu_ms_per_step": round(total / 1000 / len(batches), 2),
            "top_ops": _ops(ev, top, total),
            "top_ops_by_shape": _ops(prof.key_averages(group_by_input_shape=True), top, total, by_shape=True)}


class _Timer:
    """Accumulates wall and CPU seconds per phase name."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        w, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - w
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c

    def wrap(self, name: str, fn: Callable) -> Callable:
        def inner(*a: Any, **k: Any) -> Any:
            with self(name):
                return fn(*a, **k)
        return inner


def profile_run(spec: Spec, models: Any, training: Any, experiments: Any, seed: int = 1111) -> dict[str, Any]:
    """Phase times of one run as `experiments.run_one` does it (build, fit, inference timing, summary).

    `fit`'s parts are timed by wrapping the functions it calls (``training.evaluate`` — split into its
    ``predict`` and ``score`` —, ``training.optimizer_step``, the dataset's ``loader``, the model's
    forward); what remains of ``fit`` is its own loop overhead (extras loop, best-state copies, bar).
    """
    T = _Timer()
    saved = {k: getattr(training, k) for k in ("evaluate", "optimizer_step", "predict", "score")}
    ds = spec.dataset
    loader = type(ds).loader

    def timed_loader(self, split, *a, **k):
        it = loader(self, split, *a, **k)
        while True:
            with T(f"loader[{split}]"):
                try:
                    b = next(it)
                except StopIteration:
                    return
            yield b
    try:
        training.optimizer_step = T.wrap("fit: backward + optimizer", saved["optimizer_step"])
        training.predict = T.wrap("fit: evaluate: predict", saved["predict"])
        training.score = T.wrap("fit: evaluate: metrics (score)", saved["score"])
        training.evaluate = T.wrap("fit: evaluate (valid each epoch + final test)", saved["evaluate"])
        type(ds).loader = timed_loader
        cfg = training.TrainConfig.from_dict({**spec.train, "progress": False})
        with T("total"):
            with T("build model"):
                training.set_seed(seed)
                model = models.build(spec.model, ds.dims, n_out=spec.n_out, **spec.hparams)
            fwd = model.register_forward_pre_hook(lambda m, a: T.cpu.__setitem__("_f0", time.process_time()) or
                                                  T.wall.__setitem__("_f0", time.perf_counter()))

            def post(m, a, o):
                if m.training:
                    T.cpu["fit: forward (train)"] = T.cpu.get("fit: forward (train)", 0.0) + time.process_time() - T.cpu["_f0"]
                    T.wall["fit: forward (train)"] = T.wall.get("fit: forward (train)", 0.0) + time.perf_counter() - T.wall["_f0"]
            hook = model.register_forward_hook(post)
            with T("fit"):
                res = training.fit(model, ds, cfg, seed=seed)
            fwd.remove()
            hook.remove()
            with T("measure_inference_ms"):
                experiments.measure_inference_ms(res.model, ds)
            if spec.summarise is not None:
                with T(f"summarise ({getattr(spec.summarise, '__qualname__', 'callback')})"):
                    spec.summarise(res.model, ds)
    finally:
        for k, v in saved.items():
            setattr(training, k, v)
        type(ds).loader = loader
    for d in (T.cpu, T.wall):
        d.pop("_f0", None)
    inner = ("fit: forward (train)", "fit: backward + optimizer", "fit: evaluate (valid each epoch + final test)",
             "loader[train]")
    for d in (T.cpu, T.wall):
        d["fit: loop overhead (rest of fit)"] = d["fit"] - sum(d.get(k, 0.0) for k in inner)
    total = T.cpu["total"]
    phases = {k: {"cpu_s": round(v, 3), "wall_s": round(T.wall[k], 3), "share_cpu": round(v / total, 4)}
              for k, v in sorted(T.cpu.items(), key=lambda kv: -kv[1])}
    return {"epochs_run": res.epochs_run, "train_steps": res.epochs_run * ds.n_batches("train", spec.batch_size),
            "sizes": ds.sizes, "phases": phases}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="i2moe,text,mmolre,midg")
    ap.add_argument("--profile", default="default", help="book profile whose sizes are used")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--top", type=int, default=12, help="ops listed per model")
    ap.add_argument("--steps", type=int, default=6, help="profiled training steps")
    ap.add_argument("--no-run", action="store_true", help="skip the whole-run phase timing")
    ap.add_argument("--base", default=None, help="profile this git revision's msa_lib instead (see speed_ab.py)")
    ap.add_argument("--save", default=str(ROOT / "benchmarks" / "results" / "profile_steps_cpu.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    models, training, experiments = _packages(args.base)
    report: dict[str, Any] = {"profile": args.profile, "torch_threads": args.threads, "cpu_count": os.cpu_count(),
                              "base": args.base, "torch": torch.__version__, "machine": platform.platform(),
                              "loadavg_start": [round(x, 2) for x in os.getloadavg()],
                              "date": time.strftime("%Y-%m-%d %H:%M"), "models": {}}
    for name, spec in default_specs(args.models.split(","), args.profile).items():
        entry = {"step": profile_step(spec, models, training, args.top, args.steps)}
        st = entry["step"]
        print(f"\n== {name} (batch {spec.batch_size}): {st['cpu_ms_per_step']} CPU ms per step", flush=True)
        for r in st["top_ops"]:
            print(f"   {r['share']:6.1%}  {r['self_cpu_ms']:9.2f} ms  {r['calls']:5d}x  {r['op']}")
        if not args.no_run:
            entry["run"] = profile_run(spec, models, training, experiments)
            print(f"   one run ({entry['run']['train_steps']} steps, {entry['run']['epochs_run']} epochs):")
            for k, v in entry["run"]["phases"].items():
                print(f"   {v['share_cpu']:6.1%}  {v['cpu_s']:7.2f} s cpu  {v['wall_s']:7.2f} s wall  {k}")
        report["models"][name] = entry
    report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text(json.dumps(report, indent=1, default=str))
        print(f"\n-> {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
