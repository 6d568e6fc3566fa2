"""Variant × seed grids, the resumable run cache, seed-paired effects and the paper registry.

Why: every claim in the book is a comparison between two variants over the same seeds. Running
them through one grid runner, caching each finished run as an atomic JSON record, and computing the
effect *paired by seed* with a bootstrap CI is what turns "our number is higher" into a verdict.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import subprocess
import time
import uuid
import warnings
from dataclasses import MISSING, asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import msa_lib
from msa_lib.io import atomic_write
from msa_lib.data.schema import MSADataset
from msa_lib.metrics import HIGHER_IS_BETTER
from msa_lib.models import build, count_parameters
from msa_lib.training import TrainConfig, config_dict, fit, make_optimizer, predict, set_seed

MMSA_SEEDS = [1111, 1112, 1113, 1114, 1115]


# ----------------------------------------------------------------------------------------------
# Provenance
@lru_cache(maxsize=1)
def git_commit() -> str:
    """Short commit of the msa_lib checkout, or 'unknown' outside a git tree."""
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """md5 of the library's training-relevant source (data, nn, models, metrics, training).

    Part of every run's parameter hash: a cached record is reused only if the code that produced
    it is unchanged, so an edit to a model can never be hidden behind a stale cache.
    """
    root = Path(__file__).resolve().parent
    files = sorted([*root.glob("data/*.py"), *root.glob("nn/*.py"), *root.glob("models/*.py"),
                    *root.glob("features/*.py"), root / "metrics.py", root / "training.py"])
    h = hashlib.md5()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def dataset_fingerprint(ds: MSADataset) -> str:
    """A short hash identifying the data a run saw (name, provenance, split sizes)."""
    prov = {k: v for k, v in ds.provenance.items() if k not in ("load_seconds",)}
    blob = json.dumps({"name": ds.name, "prov": prov, "sizes": ds.sizes, "dims": ds.dims}, sort_keys=True,
                      default=str)
    return hashlib.md5(blob.encode()).hexdigest()[:12]


def param_hash(obj: Any) -> str:
    return hashlib.md5(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------------
# Records and the cache
@dataclass
class RunRecord:
    """One finished training run: the unit every table and verdict is computed from."""

    dataset: str
    variant: str
    seed: int
    param_hash: str
    model: str
    params: dict[str, Any]
    val_metrics: dict[str, float]
    test_metrics: dict[str, float]
    best_epoch: int
    epochs_run: int
    train_seconds: float
    train_s_per_epoch: float
    infer_ms_per_sample: float
    n_params: int
    history: list[dict[str, float]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)  # small JSON-able summaries (e.g. mean expert weights)
    msa_lib_version: str = msa_lib.__version__
    commit: str = field(default_factory=git_commit)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RunRecord":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (`msa_lib.io.atomic_write`), so an interrupted build never leaves half a file."""
    atomic_write(path, lambda f: json.dump(obj, f, indent=1, default=_json_default, allow_nan=True), binary=False)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class CorruptRunWarning(UserWarning):
    """A cached run record could not be trusted; it was moved aside and the run is recomputed.

    A dedicated class so a notebook or test can count, escalate (``filterwarnings("error", ...)``)
    or silence exactly these reports without touching other warnings.
    """


#: Fields a record must carry to be trusted (the RunRecord fields without a default).
_REQUIRED_RECORD_FIELDS: tuple[str, ...] = tuple(
    f.name for f in RunRecord.__dataclass_fields__.values()
    if f.default is MISSING and f.default_factory is MISSING)


class RunCache:
    """Finished runs as ``<out_dir>/runs/<dataset>/<variant>/seed<seed>-<hash>.json``.

    Why records are checked on read: the cache is only as good as the claim "this file is the run
    these parameters produce". Writes are atomic (`atomic_write_json`), so a killed build never
    leaves half a record, but a file can still be damaged later (disk trouble, a hand edit, a bad
    copy or merge). `get` therefore refuses any record that does not parse, lacks a required field
    or names another run than the path it sits at, *reports* it (`CorruptRunWarning`), moves it to
    ``<name>.corrupt`` so nothing is silently destroyed, counts it in ``n_corrupt`` and returns
    None, so the run is recomputed and `put` writes a fresh record.
    """

    def __init__(self, out_dir: str | Path):
        self.root = Path(out_dir) / "runs"
        self.n_corrupt = 0  # corrupt records found (and moved aside) by this instance
        self.corrupt_paths: list[Path] = []  # where they were moved to, for a human to inspect

    def path(self, dataset: str, variant: str, seed: int, phash: str) -> Path:
        safe = lambda s: "".join(c if c.isalnum() or c in "-_.+" else "_" for c in s)  # noqa: E731
        return self.root / safe(dataset) / safe(variant) / f"seed{seed}-{phash}.json"

    def get(self, dataset: str, variant: str, seed: int, phash: str) -> RunRecord | None:
        """The cached record, or None when there is none or it is corrupt (then reported, moved aside)."""
        p = self.path(dataset, variant, seed, phash)
        if not p.exists():
            return None
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return self._reject(p, f"not valid JSON ({type(e).__name__}: {e})")
        reason = self._problem(d, dataset, variant, seed, phash)
        if reason is not None:
            return self._reject(p, reason)
        try:
            return RunRecord.from_json(d)
        except TypeError as e:
            return self._reject(p, f"not a run record ({e})")

    @staticmethod
    def _problem(d: Any, dataset: str, variant: str, seed: int, phash: str) -> str | None:
        """Why ``d`` cannot be the record of (dataset, variant, seed, phash), or None if it can."""
        if not isinstance(d, dict):
            return f"expected a JSON object, found {type(d).__name__}"
        missing = [k for k in _REQUIRED_RECORD_FIELDS if k not in d]
        if missing:
            return f"missing required field(s) {missing}"
        for k in ("params", "val_metrics", "test_metrics"):
            if not isinstance(d[k], dict):
                return f"field {k!r} must be an object, found {type(d[k]).__name__}"
        # The path encodes the run's identity; a record claiming another one was copied or edited.
        expected = {"param_hash": phash, "dataset": dataset, "variant": variant, "seed": int(seed)}
        wrong = [f"{k}={d[k]!r} (path says {v!r})" for k, v in expected.items()
                 if d[k] != v or isinstance(d[k], bool)]
        if wrong:
            return "record does not match its path: " + ", ".join(wrong)
        return None

    def _reject(self, p: Path, reason: str) -> None:
        """Report the corrupt record ``p``, move it to ``<name>.corrupt`` and count it."""
        self.n_corrupt += 1
        dest = p.with_name(p.name + ".corrupt")
        k = 1
        while dest.exists():  # never overwrite an earlier corrupt copy
            k += 1
            dest = p.with_name(f"{p.name}.{k}.corrupt")
        try:
            p.replace(dest)
            self.corrupt_paths.append(dest)
            where = f"moved to {dest.name}"
        except OSError as e:  # e.g. read-only cache or another process moved it first
            where = f"could not be moved aside ({type(e).__name__}: {e})"
        warnings.warn(f"corrupt run record {p}: {reason}; {where}; the run will be recomputed",
                      CorruptRunWarning, stacklevel=3)
        return None

    def put(self, rec: RunRecord) -> Path:
        p = self.path(rec.dataset, rec.variant, rec.seed, rec.param_hash)
        atomic_write_json(p, asdict(rec))
        return p


# ----------------------------------------------------------------------------------------------
# Running
@dataclass
class Variant:
    """A named model configuration: registry name, model hparams and training overrides."""

    model: str
    hparams: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def coerce(cls, v: "Variant | dict[str, Any] | str") -> "Variant":
        if isinstance(v, Variant):
            return v
        if isinstance(v, str):
            return cls(model=v)
        return cls(model=v["model"], hparams=dict(v.get("hparams", {})), train=dict(v.get("train", {})))


def measure_inference_ms(model, ds: MSADataset, split: str = "test", batch_size: int = 256,
                         device: str = "cpu") -> float:
    """Wall-clock milliseconds per sample for a full pass over ``split``."""
    t0 = time.perf_counter()
    predict(model, ds, split, batch_size, device)
    return 1000 * (time.perf_counter() - t0) / len(ds.split(split))


def measure_step_time(model_name: str, ds: MSADataset, batch: int = 32, steps: int = 20, warmup: int = 5,
                      device: str = "cpu", hparams: dict[str, Any] | None = None, n_out: int = 1) -> dict[str, Any]:
    """Median wall-clock ms of ``steps`` training steps (forward, backward, AdamW) after ``warmup``.

    Models are timed one after another in the calling process, so ratios between them (I2MoE vs its
    vanilla backbone) are measured under the same conditions. Text-only models get the text only.
    """
    import statistics

    import torch

    from msa_lib.data.schema import make_batch
    if steps < 20:
        raise ValueError(f"steps={steps}: use >= 20 timed steps (the median is reported)")
    set_seed(0)
    dims = {"text": ds.dims["text"]} if model_name.startswith("text_") else ds.dims
    model = build(model_name, dims, n_out=n_out, **(hparams or {})).to(device).train()
    opt = make_optimizer(model, TrainConfig(lr=1e-4))  # the optimiser `fit` uses (AdamW, foreach)
    n = len(ds.train)
    batches = [make_batch(ds.train, [(i * batch + j) % n for j in range(batch)]).to(device)
               for i in range(warmup + steps)]
    times = []
    for i, b in enumerate(batches):
        t0 = time.perf_counter()
        out = model(b)
        if n_out == 1:
            loss = torch.nn.functional.l1_loss(out.pred, b.labels) + out.aux_loss
        else:
            loss = torch.nn.functional.cross_entropy(out.pred, (b.labels > 0).long()) + out.aux_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    ms = 1000 * statistics.median(times)
    label = model_name + (f"[{';'.join(f'{k}={v}' for k, v in hparams.items())}]" if hparams else "")
    return {"model": label, "batch": batch, "ms_per_step": round(ms, 3), "samples_per_s": round(batch / (ms / 1000), 1),
            "n_params": count_parameters(model)}


def model_cost(model_name: str, dims: dict[str, int], seq_len: int = 50, device: str = "meta",
               extra_inputs: dict[str, tuple[int, ...]] | None = None, **hparams: Any) -> dict[str, Any]:
    """Parameters and forward FLOPs per sample of a registered model, without training it.

    Why ``device="meta"``: paper-sized variants (MMoLRE with 20 full-rank 768-d experts has ~280 M
    parameters) are built as shapes only, so their cost is counted in milliseconds and no memory.
    Models with data-dependent ops (top-k routing through ``nonzero``) cannot run on meta tensors;
    they are counted on the CPU instead, and ``device`` in the result says where.
    FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts 2) on a
    one-sample batch with every stream ``seq_len`` frames long; element-wise ops are not counted.
    ``extra_inputs`` gives per-sample shapes of further `Batch` fields a model needs, e.g. TEXT's
    explanation tokens ``{"audio_clue": (24, 384), "vision_clue": (24, 384)}``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from msa_lib.data.schema import Batch

    def count(dev: str) -> dict[str, Any]:
        with torch.device(dev):
            model = build(model_name, dims, **hparams).eval()
            feats = {m: torch.zeros(1, seq_len, d) for m, d in dims.items()}
            extra = {k: torch.zeros(1, *shape) for k, shape in (extra_inputs or {}).items()}
        # no masks: every frame is valid, and data-dependent mask checks cannot run on meta tensors
        names = ("text", "audio", "vision")
        batch = Batch(**{m: feats.get(m) for m in names}, **{f"{m}_mask": None for m in names}, labels=None, **extra)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(batch)
        return {"n_params": count_parameters(model), "flops": int(counter.get_total_flops()), "device": dev}

    try:
        return count(device)
    except NotImplementedError:
        if device != "meta":
            raise
        return count("cpu")


def accuracy_by_group(hit: np.ndarray, groups: np.ndarray, names: tuple[str, ...] | None = None) -> dict[str, float]:
    """Mean of the boolean ``hit`` per value of ``groups`` (named by ``names[g]`` when given)."""
    return {(names[int(g)] if names is not None else str(g)): round(float(hit[groups == g].mean()), 6)
            for g in np.unique(groups)}


def polarity_by_group(model, ds: MSADataset, split: str = "test", field: str = "interaction",
                      names: tuple[str, ...] | None = None, device: str = "cpu") -> dict[str, float]:
    """Has0-style polarity accuracy per ground-truth group (e.g. per interaction type).

    Used as a ``summarise`` callback so cached records keep the breakdown. Empty if the split has
    no such field (real data).
    """
    sp = ds.split(split)
    groups = getattr(sp, field, None)
    if groups is None or sp.labels is None:
        return {}
    preds = predict(model, ds, split, device=device)
    pos = preds.argmax(-1) == 1 if preds.ndim == 2 else preds >= 0
    hit = pos == (sp.labels >= 0) if preds.ndim == 1 else pos == (sp.labels > 0)
    return accuracy_by_group(hit, groups, names)


def summarise_by_interaction(model, ds: MSADataset) -> dict[str, Any]:
    """`run_one` summarise callback: test polarity accuracy per true interaction type."""
    from msa_lib.data.schema import INTERACTION_TYPES
    return {"acc_by_interaction": polarity_by_group(model, ds, "test", "interaction", INTERACTION_TYPES)}


def run_params(ds: MSADataset, variant: Variant | dict | str, seed: int, train: dict[str, Any] | None = None,
               device: str = "cpu", summarise: Callable | None = None,
               progress: bool = False) -> tuple[Variant, TrainConfig, dict[str, Any], str]:
    """A run's variant, training config, result-defining parameters and their hash (its cache key).

    Split from `run_one` so that `run_grid` can tell cache hits from misses without training.
    """
    v = Variant.coerce(variant)
    cfg = TrainConfig.from_dict({**(train or {}), **v.train, "device": device, "progress": progress})
    params = {"model": v.model, "hparams": v.hparams, "train": config_dict(cfg), "data": dataset_fingerprint(ds),
              "seed": seed, "version": msa_lib.__version__, "code": code_fingerprint(),
              # a record without the summary a caller now wants must not be reused
              "summarise": getattr(summarise, "__qualname__", None)}
    return v, cfg, params, param_hash(params)


def run_one(ds: MSADataset, variant_name: str, variant: Variant | dict | str, seed: int,
            train: dict[str, Any] | None = None, cache: RunCache | None = None, device: str = "cpu",
            summarise: Callable[[Any, MSADataset], dict[str, Any]] | None = None,
            progress: bool = False) -> RunRecord:
    """Train one (dataset, variant, seed), or return its cached record if the parameters match.

    ``summarise(model, ds)`` may return small JSON-able extras (e.g. mean expert weights per
    interaction type) that are stored in the record so cached reruns can still draw figures.
    """
    v, cfg, params, phash = run_params(ds, variant, seed, train, device, summarise, progress)
    if cache is not None:
        hit = cache.get(ds.name, variant_name, seed, phash)
        if hit is not None:
            return hit
    set_seed(seed)
    model = build(v.model, ds.dims, n_out=2 if cfg.task == "binary" else 1, **v.hparams)
    res = fit(model, ds, cfg, seed=seed, desc=f"{ds.name}/{variant_name}/s{seed}")
    rec = RunRecord(
        dataset=ds.name, variant=variant_name, seed=seed, param_hash=phash, model=v.model, params=params,
        val_metrics=res.val_metrics, test_metrics=res.test_metrics, best_epoch=res.best_epoch,
        epochs_run=res.epochs_run, train_seconds=round(res.train_seconds, 3),
        train_s_per_epoch=round(res.train_seconds / max(1, res.epochs_run), 4),
        infer_ms_per_sample=round(measure_inference_ms(res.model, ds, device=device), 5),
        n_params=count_parameters(res.model), history=res.history,
        extras=summarise(res.model, ds) if summarise else {},
    )
    if cache is not None:
        cache.put(rec)
    return rec


#: How long `run_grid` waits for a Dask scheduler before it gives up with a `ConnectionError`.
DASK_CONNECT_TIMEOUT = "10s"


def run_grid(datasets: dict[str, MSADataset] | Iterable[MSADataset], variants: dict[str, Variant | dict | str],
             seeds: Iterable[int], out_dir: str | Path | None = None, train: dict[str, Any] | None = None,
             device: str = "cpu", summarise: Callable | None = None, progress: bool = True,
             scheduler: Any = None) -> list[RunRecord]:
    """Run every dataset × variant × seed (cached under ``out_dir``) with one progress bar.

    The grid is embarrassingly parallel, so ``scheduler`` can run it on Dask ``distributed``: a
    scheduler address (``"tcp://host:8786"``), ``"local"`` / ``"local:N"`` for a `LocalCluster` of
    N single-threaded worker processes (started on first use, reused by later calls, closed when
    the process exits), or a `distributed.Client`. None or ``""`` trains here, one run after the
    other. The records are identical either way, in the same order (`_run_grid_dask` says why).
    """
    dss = list(datasets.values()) if isinstance(datasets, dict) else list(datasets)
    seeds = [int(s) for s in seeds]
    cache = RunCache(out_dir) if out_dir is not None else None
    jobs = [(ds, name, v, s) for ds in dss for name, v in variants.items() for s in seeds]
    if scheduler is not None and not (isinstance(scheduler, str) and not scheduler.strip()):
        return _run_grid_dask(jobs, scheduler, cache, train, device, summarise, progress)
    records = []
    bar = tqdm(jobs, desc="runs", disable=not progress)
    for ds, name, v, s in bar:
        bar.set_postfix_str(f"{ds.name}/{name}/seed {s}")
        records.append(run_one(ds, name, v, s, train=train, cache=cache, device=device, summarise=summarise))
    return records


def _run_grid_dask(jobs: list[tuple[MSADataset, str, Any, int]], scheduler: Any, cache: RunCache | None,
                   train: dict[str, Any] | None, device: str, summarise: Callable | None,
                   progress: bool) -> list[RunRecord]:
    """`run_grid` on a Dask cluster: this process reads and writes the cache, workers only train.

    Why client-side caching: workers need not share this filesystem, and every record is written
    the moment it arrives, so an interrupted distributed run resumes exactly like a serial one.
    Only cache misses are submitted; each dataset is scattered once, not shipped with every task.
    Identical results: each run is seeded by `run_one` as in the serial loop, and the worker uses
    this process's torch thread count (`_train_on_worker`).
    """
    import torch
    from distributed import as_completed

    records: list[RunRecord | None] = [None] * len(jobs)
    todo: dict[tuple[str, str, int, str], list[int]] = {}  # cache key -> job indices; each key trains once
    params: dict[str, dict[str, Any]] = {}  # phash -> what it hashes, for the worker's check
    for i, (ds, name, v, s) in enumerate(jobs):
        _, _, params_i, phash = run_params(ds, v, s, train, device, summarise)
        hit = cache.get(ds.name, name, s, phash) if cache is not None else None
        if hit is not None:
            records[i] = hit
        else:
            todo.setdefault((ds.name, name, s, phash), []).append(i)
            params[phash] = params_i
    bar = tqdm(total=len(jobs), initial=len(jobs) - sum(map(len, todo.values())), desc="runs", disable=not progress)
    if not todo:
        bar.close()
        return records  # type: ignore[return-value]
    client, close = _dask_client(scheduler)
    futures: dict[Any, tuple[str, str, int, list[int]]] = {}
    try:
        threads = torch.get_num_threads()
        shipped: dict[int, Any] = {}  # id(dataset) -> its future on the cluster
        for (dname, name, s, phash), idx in todo.items():
            ds, _, v, _ = jobs[idx[0]]
            if id(ds) not in shipped:
                shipped[id(ds)] = client.scatter([ds], broadcast=False, hash=False)[0]
            fut = client.submit(_train_on_worker, shipped[id(ds)], name, v, s, train, device, summarise,
                                params[phash], threads, key=f"msa-run-{phash}-{uuid.uuid4().hex[:8]}")
            futures[fut] = (dname, name, s, idx)
        for fut in as_completed(list(futures), loop=client.loop):  # our client need not be the default
            dname, name, s, idx = futures[fut]
            try:
                rec = fut.result()
            except Exception as e:
                raise RuntimeError(f"run {dname}/{name}/seed {s} failed on the Dask cluster: "
                                   f"{type(e).__name__}: {e}") from e
            if cache is not None:
                cache.put(rec)
            for i in idx:
                records[i] = rec
            bar.update(len(idx))
            bar.set_postfix_str(f"{dname}/{name}/seed {s}")
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
        bar.close()
        if close is not None:
            close()
    return records  # type: ignore[return-value]


#: ``"local:N"`` clusters by N, started on first use and kept until the process exits: a chapter calls
#: `run_grid` several times, and each new cluster costs seconds (worker processes, importing torch).
_LOCAL_CLUSTERS: dict[int | None, tuple[Any, Any]] = {}


def _close_local_clusters() -> None:
    while _LOCAL_CLUSTERS:
        client, cluster = _LOCAL_CLUSTERS.popitem()[1]
        client.close()
        cluster.close()


def _dask_client(scheduler: Any) -> tuple[Any, Callable[[], None] | None]:
    """A `distributed.Client` for ``scheduler`` and how to close it after the grid (None: keep it open)."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        return scheduler, None
    if not isinstance(scheduler, str):
        raise TypeError(f"scheduler must be an address, 'local[:N]' or a distributed.Client; "
                        f"got {type(scheduler).__name__}")
    if scheduler == "local" or scheduler.startswith("local:"):
        n = scheduler.partition(":")[2]
        if n and (not n.isdigit() or int(n) < 1):
            raise ValueError(f"scheduler {scheduler!r}: expected 'local' or 'local:N' with N >= 1 workers")
        n_workers = int(n) if n else None
        client, _ = _LOCAL_CLUSTERS.get(n_workers, (None, None))
        if client is None or client.status != "running":
            if not _LOCAL_CLUSTERS:
                atexit.register(_close_local_clusters)
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0")
            client = Client(cluster, set_as_default=False)
            _LOCAL_CLUSTERS[n_workers] = (client, cluster)
        return client, None
    try:
        client = Client(scheduler, timeout=DASK_CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler!r} within {DASK_CONNECT_TIMEOUT} "
                              f"(is `dask scheduler` running there?): {e}") from e
    return client, client.close


def _train_on_worker(ds: MSADataset, variant_name: str, variant: Variant | dict | str, seed: int,
                     train: dict[str, Any] | None, device: str, summarise: Callable | None,
                     client_params: dict[str, Any], threads: int) -> RunRecord:
    """One `run_one` on a Dask worker, with the client's torch thread count and run parameters.

    Why the thread count: Dask's nanny starts workers with ``OMP_NUM_THREADS=1``, and torch splits
    large reductions over its intra-op threads, so float summation order (hence the last bits of
    every loss and metric) depends on that count; `set_seed`'s deterministic algorithms do not fix
    it. Why the hash check: a worker with other msa_lib code would train something the client's
    cache key does not describe (this includes library files edited after the client hashed them).
    """
    import torch

    torch.set_num_threads(threads)
    here = run_params(ds, variant, seed, train, device, summarise)[2]
    if here != client_params:
        diff = {k: (client_params.get(k), here.get(k)) for k in {*here, *client_params}
                if here.get(k) != client_params.get(k)}
        raise RuntimeError(f"this worker's run parameters differ from the client's, as (client, worker): {diff}; "
                           f"'code' differs when the worker runs other msa_lib sources: give every worker the "
                           f"client's checkout, and restart the client after editing the library")
    return run_one(ds, variant_name, variant, seed, train=train, device=device, summarise=summarise)


def records_frame(records: Iterable[RunRecord], split: str = "test") -> pd.DataFrame:
    """Long table: one row per (dataset, variant, seed, metric)."""
    rows = []
    for r in records:
        metrics = r.test_metrics if split == "test" else r.val_metrics
        for k, val in metrics.items():
            rows.append({"dataset": r.dataset, "variant": r.variant, "seed": r.seed, "metric": k, "value": val})
    return pd.DataFrame(rows, columns=["dataset", "variant", "seed", "metric", "value"])


# ----------------------------------------------------------------------------------------------
# Seed-paired effects and verdicts
@dataclass
class Effect:
    """A claim's evidence: mean paired difference (positive = the claim's direction) with a CI."""

    id: str
    claim: str
    dataset: str
    metric: str
    effect: float
    ci_low: float
    ci_high: float
    verdict: str
    n_seeds: int
    diffs: list[float] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_ci(diffs: np.ndarray, n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``diffs`` (seeded, so the book is reproducible)."""
    diffs = np.asarray(diffs, dtype=float)
    if len(diffs) == 0:
        return float("nan"), float("nan")
    if len(diffs) == 1:
        return float(diffs[0]), float(diffs[0])
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(n_boot, len(diffs)))].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def verdict_from_ci(ci_low: float, ci_high: float, n: int, min_seeds: int = 3) -> str:
    """supported: CI above 0; not supported: CI at or below 0; otherwise (or too few seeds) inconclusive."""
    if n < min_seeds or np.isnan(ci_low) or np.isnan(ci_high):
        return "inconclusive"
    if ci_low > 0:
        return "supported"
    if ci_high <= 0:
        return "not supported"
    return "inconclusive"


def paired_effect(a: dict[int, float], b: dict[int, float], *, id: str, claim: str, dataset: str, metric: str,
                  higher_is_better: bool | None = None, n_boot: int = 10000, note: str = "",
                  margin: float = 0.0) -> Effect:
    """Effect of A over B from per-seed values ``{seed: value}``, paired on the common seeds.

    The sign is flipped for lower-is-better metrics (MAE), so a positive effect always means "A is
    better", i.e. the claim holds. ``margin > 0`` turns it into a non-inferiority test for claims
    such as "matches" or "is competitive with": the effect is (A − B) + margin, so the claim holds
    when A is no worse than B by more than ``margin`` (metric units). The margin goes in the note.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0; found {margin}")
    hib = HIGHER_IS_BETTER.get(metric, True) if higher_is_better is None else higher_is_better
    common = sorted(set(a) & set(b))
    diffs = np.array([(a[s] - b[s]) * (1 if hib else -1) + margin for s in common], dtype=float)
    if margin:
        note = f"non-inferiority margin {margin:g} {metric}" + (f"; {note}" if note else "")
    diffs = diffs[~np.isnan(diffs)]
    lo, hi = bootstrap_ci(diffs, n_boot)
    eff = float(diffs.mean()) if len(diffs) else float("nan")
    return Effect(id, claim, dataset, metric, round(eff, 6), round(lo, 6), round(hi, 6),
                  verdict_from_ci(lo, hi, len(diffs)), len(diffs), [round(float(d), 6) for d in diffs], note)


def per_seed(records: Iterable[RunRecord], dataset: str, variant: str, metric: str,
             split: str = "test") -> dict[int, float]:
    """``{seed: metric}`` for one (dataset, variant)."""
    out = {}
    for r in records:
        if r.dataset == dataset and r.variant == variant:
            m = r.test_metrics if split == "test" else r.val_metrics
            if metric not in m:
                raise KeyError(f"metric {metric!r} not in {dataset}/{variant} records; available: {sorted(m)}")
            out[r.seed] = float(m[metric])
    if not out:
        raise KeyError(f"no records for dataset {dataset!r}, variant {variant!r}")
    return out


def compare_variants(records: Iterable[RunRecord], a: str, b: str, *, id: str, claim: str, dataset: str,
                     metric: str, split: str = "test", **kw) -> Effect:
    """`paired_effect` of variant ``a`` over ``b`` read straight from run records."""
    records = list(records)
    return paired_effect(per_seed(records, dataset, a, metric, split), per_seed(records, dataset, b, metric, split),
                         id=id, claim=claim, dataset=dataset, metric=metric, **kw)


# ----------------------------------------------------------------------------------------------
# The paper registry of reported numbers
@dataclass(frozen=True)
class Reported:
    paper: str
    dataset: str
    method: str
    metric: str
    value: float  # raw units: accuracies as fractions, MAE as is
    source: str


def _mmsa_rows() -> list[Reported]:
    """MMSA's published baselines (METRICS.md, "Reference numbers"; thuiar/MMSA results/result-stat.md).

    Real features (BERT / COVAREP / Facet): context only, never a target for our inputs.
    """
    src = "thuiar/MMSA results/result-stat.md (via specs/METRICS.md)"
    cols = ["Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score", "Mult_acc_5", "Mult_acc_7", "MAE", "Corr"]
    table = {
        "mosi": {"MulT": [79.71, 79.63, 80.98, 80.95, 42.68, 36.91, 87.99, 70.22],
                 "MISA": [81.84, 81.82, 83.54, 83.58, 47.08, 41.37, 77.65, 77.81],
                 "Self-MM": [83.44, 83.36, 85.46, 85.43, 53.47, 46.67, 70.80, 79.63],
                 "TETFN": [83.24, 83.13, 85.37, 85.33, 53.64, 45.77, 70.84, 79.84],
                 "CENet": [83.53, 83.49, 85.21, 85.22, 50.87, 44.90, 72.54, 79.53]},
        "mosei": {"MulT": [81.15, 81.56, 84.63, 84.52, 54.18, 52.84, 55.93, 73.31],
                  "Self-MM": [83.76, 83.82, 85.15, 84.90, 55.53, 53.87, 53.09, 76.49],
                  "TETFN": [84.12, 84.35, 86.21, 86.11, 55.78, 53.90, 53.73, 76.96],
                  "CENet": [83.52, 83.85, 86.38, 86.32, 56.15, 54.26, 52.59, 77.75]},
    }
    rows = [Reported("MMSA", ds, m, c, round(v / 100, 6), src)
            for ds, models in table.items() for m, vals in models.items() for c, v in zip(cols, vals)]
    sims_cols = ["Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr"]
    sims = {"MulT": [78.56, 64.77, 37.94, 79.66, 45.32, 56.41], "Self-MM": [80.04, 65.47, 41.53, 80.44, 42.50, 59.52],
            "TETFN": [81.18, 63.24, 41.79, 80.24, 42.00, 57.65]}
    rows += [Reported("MMSA", "sims", m, c, round(v / 100, 6), src) for m, vals in sims.items()
             for c, v in zip(sims_cols, vals)]
    return rows


def _text_rows() -> list[Reported]:
    """TEXT's numbers that a source here gives (specs/TEXT.md, from the paper summary and abstract).

    They are on the paper's *real* data (CH-SIMS; CMU-MOSEI for the temporal-block comparison) and
    appear beside synthetic reproductions only as context, marked as not comparable.
    """
    src = "TEXT paper (arXiv 2512.22741) via papers/text_2512.22741.md and specs/TEXT.md"
    return [Reported("TEXT", "sims", "TEXT", "MAE", 0.353, src),
            Reported("TEXT", "mosei", "TEXT", "MAE", 0.528, src),
            Reported("TEXT", "mosei", "Mamba", "MAE", 0.562, src),
            Reported("TEXT", "mosei", "TCA", "MAE", 0.565, src),
            Reported("TEXT", "mosei", "concatenation", "MAE", 0.580, src)]


REPORTED: list[Reported] = _mmsa_rows() + _text_rows()


def reported_value(paper: str, dataset: str, method: str, metric: str) -> float | None:
    """The sourced number, or None ("n/a") when no source gives it. Never a guess."""
    for r in REPORTED:
        if (r.paper, r.dataset, r.method, r.metric) == (paper, dataset, method, metric):
            return r.value
    return None


def reported_frame(paper: str | None = None, dataset: str | None = None) -> pd.DataFrame:
    rows = [asdict(r) for r in REPORTED if (paper is None or r.paper == paper) and (dataset is None or r.dataset == dataset)]
    return pd.DataFrame(rows, columns=list(Reported.__dataclass_fields__))
