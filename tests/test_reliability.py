"""Reliability of the run cache: corrupt records, resuming after a kill, determinism, atomic puts.

Why these tests: the book's contract is that an interrupted ``make book`` resumes without redoing
finished runs, that a cached record is only reused when it is exactly the run asked for, and that the
same seed gives the same tables. Each test below breaks one of those promises on purpose (a corrupt
file, a SIGKILL mid-write, a crash inside ``json.dump``) and checks what the library does about it.
Everything runs on a tiny SynthMSA draw with 1 epoch, so the file takes a few seconds.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import msa_lib.experiments as E
from msa_lib.data import get_dataset
from msa_lib.data.schema import MSADataset
from msa_lib.experiments import CorruptRunWarning, RunCache, RunRecord, run_grid
from msa_lib.reporting import summary_table

ROOT = Path(__file__).resolve().parent.parent
#: The smallest SynthMSA draw that still has every split: 26 / 5 / 14 samples, 8 frames, narrow features.
DS_KW: dict[str, Any] = {"scale": 0.02, "seq_len": 8, "dims": (16, 5, 8)}
TRAIN: dict[str, Any] = {"epochs": 1, "batch_size": 16, "lr": 3e-3, "progress": False}
VARIANTS: dict[str, Any] = {"ef": "early_fusion", "lf": {"model": "late_fusion"}}
SEEDS = [1, 2, 3]  # 2 variants x 3 seeds = 6 runs


def tiny_dataset() -> MSADataset:
    return get_dataset("synth-mosi", seed=0, **DS_KW)


def grid(out_dir: Path | None, variants: dict[str, Any] = VARIANTS, seeds: list[int] = SEEDS) -> list[RunRecord]:
    """The one grid every test (and the killed subprocess) runs, so cache keys agree."""
    return run_grid([tiny_dataset()], variants, seeds, out_dir, train=TRAIN, progress=False)


def run_files(out_dir: Path) -> list[Path]:
    """Finished records only: temp files are ``.<name>.*.tmp`` and moved-aside ones ``*.corrupt``."""
    return sorted((out_dir / "runs").rglob("*.json"))


@pytest.fixture
def count_fits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the runs that are actually trained (`run_one` calls ``msa_lib.experiments.fit``)."""
    calls: list[str] = []
    real = E.fit

    def counting_fit(model, ds, cfg, seed=0, desc=None):
        calls.append(str(desc))
        return real(model, ds, cfg, seed=seed, desc=desc)

    monkeypatch.setattr(E, "fit", counting_fit)
    return calls


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One finished run (ef, seed 1) in a module-level cache: (its file, its JSON)."""
    out = tmp_path_factory.mktemp("original")
    grid(out, {"ef": "early_fusion"}, [1])
    (f,) = run_files(out)
    return f.relative_to(out), json.loads(f.read_text())


# ------------------------------------------------------------------------------------------ corruption
def _truncate(text: str, rec: dict) -> str:
    return text[: len(text) // 2]


def _garbage(text: str, rec: dict) -> bytes:
    return b"\xff\xfe\x00garbage{{{"  # not even UTF-8


def _wrong_hash(text: str, rec: dict) -> str:
    return json.dumps({**rec, "param_hash": "0123456789ab"})


def _wrong_seed(text: str, rec: dict) -> str:
    return json.dumps({**rec, "seed": rec["seed"] + 1})


def _not_a_dict(text: str, rec: dict) -> str:
    return json.dumps([rec])


def _missing_field(text: str, rec: dict) -> str:
    return json.dumps({k: v for k, v in rec.items() if k != "test_metrics"})


CORRUPTIONS = {"truncated": (_truncate, "not valid JSON"), "garbage": (_garbage, "not valid JSON"),
               "wrong_param_hash": (_wrong_hash, "param_hash='0123456789ab'"),
               "wrong_seed": (_wrong_seed, "seed=2"), "not_a_dict": (_not_a_dict, "found list"),
               "missing_field": (_missing_field, "test_metrics")}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_record_is_reported_moved_aside_and_recomputed(kind, original, tmp_path, count_fits):
    rel, rec = original
    f = tmp_path / rel
    f.parent.mkdir(parents=True)
    corrupt_fn, reason = CORRUPTIONS[kind]
    bad = corrupt_fn(json.dumps(rec, indent=1), rec)
    bad = bad if isinstance(bad, bytes) else bad.encode()
    f.write_bytes(bad)

    with pytest.warns(CorruptRunWarning) as caught:
        (again,) = grid(tmp_path, {"ef": "early_fusion"}, [1])
    msgs = [str(w.message) for w in caught if issubclass(w.category, CorruptRunWarning)]
    assert len(msgs) == 1 and str(f) in msgs[0] and reason in msgs[0], msgs
    assert len(count_fits) == 1  # recomputed, not trusted
    moved = f.with_name(f.name + ".corrupt")
    assert moved.read_bytes() == bad  # kept for a human, byte for byte
    fresh = json.loads(f.read_text())
    assert fresh["param_hash"] == rec["param_hash"] == f.stem.split("-")[1]
    # Determinism: the recomputed run is the original run.
    assert again.test_metrics == fresh["test_metrics"] == rec["test_metrics"]
    assert fresh["val_metrics"] == rec["val_metrics"] and fresh["history"] == rec["history"]


def test_cache_counts_corrupt_records_and_keeps_every_copy(original, tmp_path):
    rel, rec = original
    f = tmp_path / rel
    f.parent.mkdir(parents=True)
    key = (rec["dataset"], rec["variant"], rec["seed"], rec["param_hash"])
    cache = RunCache(tmp_path)
    assert cache.path(*key) == f

    f.write_text(json.dumps(rec))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptRunWarning)  # a good record raises no report
        assert cache.get(*key).test_metrics == rec["test_metrics"]
    assert cache.n_corrupt == 0

    for i, text in enumerate(["{", "[]"]):
        f.write_text(text)
        with pytest.warns(CorruptRunWarning, match=re.escape(str(f))):
            assert cache.get(*key) is None
        assert cache.n_corrupt == i + 1 and not f.exists()
    # the second corrupt copy does not overwrite the first
    assert [p.read_text() for p in cache.corrupt_paths] == ["{", "[]"]
    assert sorted(p.name for p in f.parent.iterdir()) == [f.name + ".2.corrupt", f.name + ".corrupt"]
    assert cache.get(*key) is None and cache.n_corrupt == 2  # nothing left to report


# ------------------------------------------------------------------------------------- kill and resume
_WORKER = r"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
out, ready, code = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
real_dump, n = json.dump, [0]

def dump(obj, fh, **kw):
    # The 3rd record is killed mid-write: half its JSON is in the temp file when SIGKILL arrives.
    if isinstance(obj, dict) and "param_hash" in obj:
        n[0] += 1
        if n[0] == 3:
            text = json.dumps(obj, **kw)
            fh.write(text[: len(text) // 2])
            fh.flush()
            os.fsync(fh.fileno())
            ready.touch()
            time.sleep(600)
    return real_dump(obj, fh, **kw)

json.dump = dump
import msa_lib.experiments
msa_lib.experiments.code_fingerprint = lambda: code  # the parent's, see the test's docstring
from tests.test_reliability import grid
grid(out)
"""


def test_resume_after_sigkill_redoes_only_unfinished_runs(tmp_path, count_fits):
    """SIGKILL a grid mid-write of its 3rd record; the rerun trains only the 4 unfinished runs.

    The worker uses this process's `code_fingerprint` (part of every cache key): it is computed once
    per process, so a concurrent edit of the library between the two processes (a shared working
    tree) would otherwise turn the resume into a fresh grid. That an edit *does* invalidate the
    cache is by design and not what this test is about.
    """
    out, ready = tmp_path / "out", tmp_path / "ready"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    argv = [sys.executable, "-c", _WORKER.format(root=str(ROOT)), str(out), str(ready), E.code_fingerprint()]
    proc = subprocess.Popen(argv,
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not (ready.exists() and len(run_files(out)) >= 2):
            if proc.poll() is not None:
                pytest.fail(f"worker exited early (rc {proc.returncode}):\n{proc.stdout.read().decode()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("worker did not reach the third run within 90 s")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    finished = {p: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in run_files(out)}
    assert len(finished) == 2
    stale = sorted((out / "runs").rglob(".*.tmp"))
    assert len(stale) == 1 and re.fullmatch(r"\.seed\d+-[0-9a-f]{12}\.json\..+\.tmp", stale[0].name)
    half = stale[0].read_text()
    with pytest.raises(json.JSONDecodeError):
        json.loads(half)  # a partial record, which must never be trusted

    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptRunWarning)  # the temp file is not even looked at
        recs = grid(out)

    assert len(count_fits) == 6 - len(finished)
    assert {(r.variant, r.seed) for r in recs} == {(v, s) for v in VARIANTS for s in SEEDS}
    for p, (ino, mtime, content) in finished.items():  # untouched: same inode, mtime and bytes
        assert (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) == (ino, mtime, content)
    files = run_files(out)
    assert len(files) == 6 and not list((out / "runs").rglob("*.corrupt"))
    by_path = {RunCache(out).path(r.dataset, r.variant, r.seed, r.param_hash): r for r in recs}
    assert set(by_path) == set(files)
    for p in files:
        d = json.loads(p.read_text())
        assert d["test_metrics"] == by_path[p].test_metrics
    # The run that was killed mid-write was recomputed in full, where its temp file pointed.
    killed = stale[0].parent / re.match(r"\.(.+\.json)\.", stale[0].name).group(1)
    assert killed in set(files) - set(finished)
    assert json.loads(killed.read_text())["test_metrics"] == by_path[killed].test_metrics


# ----------------------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_tables(tmp_path, count_fits):
    seeds = [1, 2]
    a = grid(tmp_path / "a", seeds=seeds)
    b = grid(tmp_path / "b", seeds=seeds)
    assert len(count_fits) == 8  # two separate caches: every run trained twice
    assert [r.test_metrics for r in a] == [r.test_metrics for r in b]
    assert [r.val_metrics for r in a] == [r.val_metrics for r in b]
    metrics = ["Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Mult_acc_7", "MAE", "Corr"]
    ta, tb = summary_table(a, metrics), summary_table(b, metrics)
    assert len(ta) == 2 * len(metrics) and (ta["n_seeds"] == 2).all() and ta["mean"].notna().all()
    pd.testing.assert_frame_equal(ta, tb, check_exact=True)
    # and a different seed set is a different table (the comparison above can fail)
    tc = summary_table(grid(tmp_path / "c", seeds=[3, 4]), metrics)
    assert not ta["mean"].equals(tc["mean"])


# ------------------------------------------------------------------------------------------ atomic put
def test_put_interrupted_mid_write_keeps_the_previous_record(original, tmp_path, monkeypatch):
    _, d = original
    rec = RunRecord.from_json(d)
    key = (rec.dataset, rec.variant, rec.seed, rec.param_hash)
    cache = RunCache(tmp_path)
    p = cache.put(rec)
    before = p.read_bytes()
    real_dump = json.dump

    def dies_half_way(obj, fh, **kw):
        text = json.dumps(obj, **kw)
        fh.write(text[: len(text) // 2])
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(json, "dump", dies_half_way)
    changed = RunRecord.from_json({**d, "test_metrics": {**d["test_metrics"], "MAE": -1.0}})
    with pytest.raises(KeyboardInterrupt):
        cache.put(changed)
    other = RunRecord.from_json({**d, "seed": 99})  # a record that did not exist yet
    with pytest.raises(KeyboardInterrupt):
        cache.put(other)
    monkeypatch.setattr(json, "dump", real_dump)

    assert p.read_bytes() == before
    assert sorted(x.name for x in p.parent.iterdir()) == [p.name]  # no temp file, no half record
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptRunWarning)
        assert cache.get(*key).test_metrics == d["test_metrics"]
        assert cache.get(other.dataset, other.variant, 99, other.param_hash) is None
    assert cache.n_corrupt == 0


def test_stale_temp_file_is_never_read_as_a_record(original, tmp_path):
    """What SIGKILL leaves (the cleanup in `atomic_write` cannot run): a temp file, no record."""
    rel, d = original
    f = tmp_path / rel
    f.parent.mkdir(parents=True)
    tmp = f.parent / f".{f.name}.abc123.tmp"
    tmp.write_text(json.dumps(d))  # even a complete temp file is not a finished record
    cache = RunCache(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptRunWarning)
        assert cache.get(d["dataset"], d["variant"], d["seed"], d["param_hash"]) is None
    assert tmp.exists() and cache.n_corrupt == 0

