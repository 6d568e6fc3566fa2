"""Wall time of every chapter under a profile, cold, against the book's budgets (BOOK.md).

    python benchmarks/book_time.py                                  # default profile, every chapter
    python benchmarks/book_time.py --profile smoke --only 00        # one chapter, smoke profile
    python benchmarks/book_time.py --from-timings book/generated/timings.json --build-s 75
                                                                    # record a finished `make book` instead

Each chapter runs with papermill (`msa_lib.cli.run_notebook`, as `make book` does) into a fresh
temporary copy of the book, so no run record is cached and the time is a cold build (``--out`` reuses a
folder instead); the kernel's CPU seconds are recorded beside the wall time (on a shared machine the
wall time depends on the load, the CPU time much less). ``--build`` also times the jupyter-book build;
``--threads N`` sets OMP_NUM_THREADS for the kernels. Prints one row per chapter, the total and the
budget check (default: <= 360 s per chapter and <= 1800 s for the whole book; smoke: <= 60 s per
chapter), and writes benchmarks/results/book_time_<profile>.json with the machine's core count and
load. A partial run (``--only``) keeps the other chapters' last measurements in that file. The exit
status is 1 when a budget is exceeded.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from msa_lib.cli import ROOT, notebook_paths, run_notebook

#: seconds per chapter and for the whole book (chapters + build), per profile; None = no budget
CHAPTER_BUDGET_S = {"smoke": 60, "default": 360, "full": None}
BOOK_BUDGET_S = {"smoke": None, "default": 1800, "full": None}


def _row(seconds: float, profile: str) -> dict[str, Any]:
    budget = CHAPTER_BUDGET_S.get(profile)
    return {"seconds": round(float(seconds), 1), "budget_s": budget,
            "within_budget": None if budget is None else float(seconds) <= budget}


def from_timings(path: str | Path, profile: str) -> dict[str, dict[str, Any]]:
    """The chapters of ``profile`` in the timings.json that `msa-book run` writes."""
    timings = json.loads(Path(path).read_text())
    return {nb: _row(t["seconds"], profile) for nb, t in sorted(timings.items()) if t.get("profile") == profile}


def run_cold(profile: str, only: list[str] | None, out: str | None, build: bool) -> tuple[dict, float | None]:
    """Run the chapters into a fresh copy of the book (or ``out``); optionally time the HTML build."""
    work = Path(out) if out else Path(tempfile.mkdtemp(prefix="msa-book-time-"))
    work.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, work / name)
    shutil.copytree(ROOT / "book", work / "book", ignore=shutil.ignore_patterns("generated", "_build"),
                    dirs_exist_ok=True)
    dest = work / "book" / "generated"
    rows = {}
    for nb in notebook_paths(only):
        print(f"{nb.stem}: running ({profile}) ...", flush=True)
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        secs = run_notebook(nb, dest, profile)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernel is a child: its CPU time, robust to load
        cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        rows[nb.stem] = {**_row(secs, profile), "kernel_cpu_s": round(cpu, 1),
                         "loadavg_after": round(os.getloadavg()[0], 2)}
        print(f"{nb.stem}: {secs:.1f} s wall, {cpu:.1f} s kernel CPU", flush=True)
    build_s = None
    if build:
        t0 = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", "-W", "-n", "--keep-going",
                        str(work)], check=True, capture_output=True)
        build_s = round(time.perf_counter() - t0, 1)
    if not out:
        shutil.rmtree(work, ignore_errors=True)  # a temporary copy; pass --out to keep the executed chapters
    return rows, build_s


def report(profile: str, rows: dict[str, dict[str, Any]], build_s: float | None, source: str,
           dest: Path, partial: bool) -> dict[str, Any]:
    """Merge with the last measurements of the other chapters (partial runs), add totals and checks."""
    if partial and dest.exists():
        rows = {**json.loads(dest.read_text()).get("notebooks", {}), **rows}
    chapters = round(sum(r["seconds"] for r in rows.values()), 1)
    total = round(chapters + (build_s or 0.0), 1)
    book_budget = BOOK_BUDGET_S.get(profile)
    missing = [nb.stem for nb in notebook_paths() if nb.stem not in rows]  # the total is then a lower bound
    return {"profile": profile, "notebooks": dict(sorted(rows.items())), "missing_chapters": missing,
            "chapters_s": chapters, "book_build_s": build_s,
            "total_s": total, "chapter_budget_s": CHAPTER_BUDGET_S.get(profile), "book_budget_s": book_budget,
            "all_chapters_within_budget": all(r["within_budget"] is not False for r in rows.values()),
            "book_within_budget": None if book_budget is None else total <= book_budget,
            "cpu_count": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
            "machine": platform.platform(), "python": sys.version.split()[0], "date": time.strftime("%Y-%m-%d"),
            "source": source}


def print_table(rep: dict[str, Any]) -> None:
    print(f"\n{'chapter':<24}{'seconds':>9}{'budget':>8}  ok  {'kernel CPU s':>12}")
    for nb, r in rep["notebooks"].items():
        ok = {True: "yes", False: "NO", None: "-"}[r["within_budget"]]
        cpu = f"{r['kernel_cpu_s']:>12.1f}" if r.get("kernel_cpu_s") is not None else f"{'-':>12}"
        print(f"{nb:<24}{r['seconds']:>9.1f}{r['budget_s'] or '-':>8}  {ok:<3} {cpu}")
    if rep["book_build_s"] is not None:
        print(f"{'jupyter-book build':<24}{rep['book_build_s']:>9.1f}")
    budget = rep["book_budget_s"]
    verdict = "" if budget is None else (" within" if rep["book_within_budget"] else " OVER") + f" the {budget} s budget"
    print(f"{'total':<24}{rep['total_s']:>9.1f} s ({rep['total_s'] / 60:.1f} min){verdict}")
    if rep["missing_chapters"]:
        print(f"not measured (the total is a lower bound): {', '.join(rep['missing_chapters'])}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default", choices=["smoke", "default", "full"])
    ap.add_argument("--only", nargs="*", help="chapter stems or prefixes, e.g. 00 02_text")
    ap.add_argument("--out", default=None, help="output folder (default: a fresh temporary copy of the book)")
    ap.add_argument("--build", action="store_true", help="also time the jupyter-book build")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS / MKL_NUM_THREADS for the notebook kernels (torch's intra-op threads), to "
                         "try a thread count without editing the chapters; a chapter's own torch_threads still wins")
    ap.add_argument("--from-timings", default=None,
                    help="record the per-chapter times a finished `msa-book run` wrote (book/generated/timings.json "
                         "of a cold build) instead of running the chapters again")
    ap.add_argument("--build-s", type=float, default=None, help="with --from-timings: the measured book-build seconds")
    ap.add_argument("--save", default=None, help="result file (default benchmarks/results/book_time_<profile>.json)")
    args = ap.parse_args(argv)
    dest = Path(args.save) if args.save else ROOT / "benchmarks" / "results" / f"book_time_{args.profile}.json"
    if args.from_timings:
        rows, build_s, source = from_timings(args.from_timings, args.profile), args.build_s, str(args.from_timings)
        if args.only:
            rows = {k: v for k, v in rows.items() if any(k.startswith(o) for o in args.only)}
    else:
        if args.threads:  # inherited by the papermill kernels, read by torch when it starts
            os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
        rows, build_s = run_cold(args.profile, args.only, args.out, args.build)
        source = "benchmarks/book_time.py (cold, fresh output folder)" + (f", {args.threads} thread(s)" if args.threads else "")
    if not rows:
        raise SystemExit(f"no {args.profile} chapter timings to record")
    rep = report(args.profile, rows, build_s, source, dest, partial=bool(args.only))
    rep["kernel_threads"] = args.threads
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(rep, indent=1))
    print_table(rep)
    print(f"-> {dest}")
    return 0 if rep["all_chapters_within_budget"] and rep["book_within_budget"] is not False else 1


if __name__ == "__main__":
    sys.exit(main())
