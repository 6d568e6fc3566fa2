"""`run_grid(..., scheduler=...)` on Dask ``distributed`` gives exactly the serial records (issue #8).

One module-scoped `LocalCluster` of 2 single-threaded worker processes serves every test. The grid
tests run torch with 1 intra-op thread (several threads per worker on a small shared machine only
slow things down); `test_worker_uses_the_client_thread_count` checks that a client with 2 threads
gets the same bits from workers that Dask started with ``OMP_NUM_THREADS=1``.
"""
from __future__ import annotations

import ast
import json
import logging
import socket
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

distributed = pytest.importorskip("distributed")

from msa_lib import experiments  # noqa: E402
from msa_lib.data import get_dataset  # noqa: E402
from msa_lib.experiments import RunCache, RunRecord, run_grid  # noqa: E402
from msa_lib.expert_analysis import summarise_experts  # noqa: E402

TRAIN = {"epochs": 2, "batch_size": 16, "lr": 3e-3, "patience": None}
VARIANTS = {"early_fusion": "early_fusion", "late_fusion": "late_fusion"}
SEEDS = [1111, 1112]
TIMING = ("train_seconds", "train_s_per_epoch", "infer_ms_per_sample")


def comparable(rec: RunRecord) -> str:
    """A record without its wall-clock fields, as exact JSON (floats round-trip, NaN compares equal)."""
    return json.dumps({k: v for k, v in asdict(rec).items() if k not in TIMING}, sort_keys=True)


@pytest.fixture(scope="module")
def threads():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield 1
    torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def client(threads):
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def datasets():
    a = get_dataset("synth-mosi", seed=0, scale=0.03, seq_len=8)
    b = replace(get_dataset("synth-mosi", seed=1, scale=0.03, seq_len=8), name="synth-mosi-b")
    return {"a": a, "b": b}


def test_distributed_grid_is_identical_to_serial_and_resumes(client, datasets, tmp_path):
    serial = run_grid(datasets, VARIANTS, SEEDS, tmp_path / "serial", train=TRAIN, progress=False)
    dist = run_grid(datasets, VARIANTS, SEEDS, tmp_path / "dask", train=TRAIN, progress=False, scheduler=client)
    assert len(dist) == len(serial) == 8
    assert [(r.dataset, r.variant, r.seed, r.param_hash) for r in dist] == \
           [(r.dataset, r.variant, r.seed, r.param_hash) for r in serial]
    for s, d in zip(serial, dist):
        assert d.test_metrics == s.test_metrics and d.val_metrics == s.val_metrics
        assert d.history == s.history
        assert comparable(d) == comparable(s)

    # the client wrote every record; a rerun is all cache hits and never even contacts a scheduler
    cache = RunCache(tmp_path / "dask")
    files = [cache.path(r.dataset, r.variant, r.seed, r.param_hash) for r in dist]
    stamps = [f.stat().st_mtime_ns for f in files]
    again = run_grid(datasets, VARIANTS, SEEDS, tmp_path / "dask", train=TRAIN, progress=False,
                     scheduler="tcp://127.0.0.1:9")  # nothing listens there: connecting would fail
    assert [comparable(r) for r in again] == [comparable(r) for r in dist]
    assert [f.stat().st_mtime_ns for f in files] == stamps

    # an interrupted run (one record missing) retrains only that run, with the same result
    files[5].unlink()
    resumed = run_grid(datasets, VARIANTS, SEEDS, tmp_path / "dask", train=TRAIN, progress=False, scheduler=client)
    assert files[5].exists()
    assert [f.stat().st_mtime_ns for i, f in enumerate(files) if i != 5] == stamps[:5] + stamps[6:]
    assert [comparable(r) for r in resumed] == [comparable(r) for r in serial]


def test_worker_uses_the_client_thread_count(client, datasets):
    # early_fusion's losses differ in the last bits between 1 and 2 torch threads at this size
    assert set(client.run(torch.get_num_threads).values()) == {1}  # Dask's nanny sets OMP_NUM_THREADS=1
    torch.set_num_threads(2)
    try:
        args = ([datasets["a"]], {"ef": "early_fusion"}, SEEDS[:1], None)
        serial = run_grid(*args, train=TRAIN, progress=False)
        dist = run_grid(*args, train=TRAIN, progress=False, scheduler=client)
    finally:
        torch.set_num_threads(1)
    assert comparable(dist[0]) == comparable(serial[0])


def test_summarise_closure_runs_on_workers(client, datasets, tmp_path):
    summ = summarise_experts(classification=False)  # an inner function: shipped by cloudpickle
    ds = [datasets["a"]]
    serial = run_grid(ds, {"ef": "early_fusion"}, SEEDS, None, train=TRAIN, summarise=summ, progress=False)
    dist = run_grid(ds, {"ef": "early_fusion"}, SEEDS, tmp_path, train=TRAIN, summarise=summ, progress=False,
                    scheduler=client)
    assert all("acc_by_interaction" in r.extras for r in dist)
    assert [comparable(r) for r in dist] == [comparable(r) for r in serial]


def test_local_cluster_is_started_once_and_reused(datasets, threads):
    args = ([datasets["a"]], {"lf": "late_fusion"}, SEEDS[:1], None)
    try:
        first = run_grid(*args, train=TRAIN, progress=False, scheduler="local:1")
        client = experiments._LOCAL_CLUSTERS[1][0]
        second = run_grid(*args, train=TRAIN, progress=False, scheduler="local:1")
        assert experiments._LOCAL_CLUSTERS[1][0] is client and len(experiments._LOCAL_CLUSTERS) == 1
    finally:
        experiments._close_local_clusters()
    assert comparable(first[0]) == comparable(second[0]) == comparable(run_grid(*args, train=TRAIN, progress=False)[0])


def test_failing_run_is_named(client, datasets):
    bad = {"model": "early_fusion", "hparams": {"no_such_option": 1}}
    with pytest.raises(RuntimeError, match=r"synth-mosi/broken/seed 1111 failed on the Dask cluster"):
        run_grid([datasets["a"]], {"broken": bad}, SEEDS[:1], None, train=TRAIN, progress=False, scheduler=client)


def test_unreachable_scheduler_names_the_address(datasets, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(experiments, "DASK_CONNECT_TIMEOUT", "1s")
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(ConnectionError, match=f"Dask scheduler at '{address}'"):
        run_grid([datasets["a"]], VARIANTS, SEEDS[:1], None, train=TRAIN, progress=False, scheduler=address)


def test_scheduler_argument_checks(datasets):
    with pytest.raises(ValueError, match="local:N"):
        run_grid([datasets["a"]], VARIANTS, SEEDS[:1], None, train=TRAIN, progress=False, scheduler="local:0")
    with pytest.raises(TypeError, match="scheduler"):
        run_grid([datasets["a"]], VARIANTS, SEEDS[:1], None, train=TRAIN, progress=False, scheduler=2)


def test_serial_path_does_not_import_dask():
    """``distributed`` is imported inside the scheduler branch only (it costs ~1 s and is optional)."""
    tree = ast.parse(Path(experiments.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"dask", "distributed"}
