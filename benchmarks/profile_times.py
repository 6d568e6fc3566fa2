"""Wall time of every notebook under a profile, plus the book build: the budgets in BOOK.md.

    python benchmarks/profile_times.py --profile smoke            # each notebook < 60 s on 2 cores
    python benchmarks/profile_times.py --profile default          # whole book <= 30 min, chapter <= 6 min
    python benchmarks/profile_times.py --profile default --from-timings book/generated/timings.json --build-s 75
                                                                   # record a cold `make book` instead of rerunning

Runs in a fresh output folder (no cached runs, so the time is a cold build) unless --out is given,
and writes benchmarks/results/profile_times_<profile>.json with the machine's core count.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from msa_lib.cli import ROOT, notebook_paths, run_notebook

BUDGET_S = {"smoke": 60, "default": 360}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="smoke", choices=["smoke", "default", "full"])
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--out", default=None, help="output folder (default: a fresh temp copy of the book)")
    ap.add_argument("--no-build", action="store_true", help="skip the jupyter-book build")
    ap.add_argument("--from-timings", default=None,
                    help="record the per-notebook times that `msa-book run` wrote (timings.json of a cold build) "
                         "instead of running the notebooks again")
    ap.add_argument("--build-s", type=float, default=None, help="with --from-timings: the measured book-build seconds")
    args = ap.parse_args(argv)
    if args.from_timings:
        timings = json.loads(Path(args.from_timings).read_text())
        budget = BUDGET_S.get(args.profile)
        rows = {nb: {"seconds": round(float(t["seconds"]), 1), "budget_s": budget}
                for nb, t in sorted(timings.items()) if t.get("profile") == args.profile}
        for r in rows.values():
            r["within_budget"] = None if budget is None else r["seconds"] <= budget
        return _write(args, rows, args.build_s, source=str(args.from_timings))
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="msa-times-"))
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, work / name)
    shutil.copytree(ROOT / "book", work / "book", ignore=shutil.ignore_patterns("generated", "_build"),
                    dirs_exist_ok=True)
    out = work / "book" / "generated"
    rows = {}
    for nb in notebook_paths(args.only):
        secs = run_notebook(nb, out, args.profile)
        budget = BUDGET_S.get(args.profile)
        rows[nb.stem] = {"seconds": round(secs, 1), "budget_s": budget,
                         "within_budget": None if budget is None else secs <= budget}
        print(f"{nb.stem}: {secs:.1f} s (budget {budget} s)", flush=True)
    build_s = None
    if not args.no_build:
        t0 = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", "-W", "-n", "--keep-going",
                        str(work)], check=True, capture_output=True)
        build_s = round(time.perf_counter() - t0, 1)
        print(f"jupyter-book build: {build_s} s")
    return _write(args, rows, build_s)


def _write(args: argparse.Namespace, rows: dict, build_s: float | None, source: str = "profile_times.py") -> int:
    dest = ROOT / "benchmarks" / "results" / f"profile_times_{args.profile}.json"
    if args.only and dest.exists():  # a partial rerun keeps the other chapters' last measurements
        rows = {**json.loads(dest.read_text()).get("notebooks", {}), **rows}
    total = sum(r["seconds"] for r in rows.values()) + (build_s or 0)
    report = {"profile": args.profile, "notebooks": rows, "book_build_s": build_s, "total_s": round(total, 1),
              "cpu_count": os.cpu_count(), "machine": platform.platform(), "python": sys.version.split()[0],
              "date": time.strftime("%Y-%m-%d"), "source": source}
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(report, indent=1))
    print(f"total {total:.1f} s -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
