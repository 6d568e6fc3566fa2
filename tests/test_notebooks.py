"""Notebook hygiene, papermill smoke runs of every chapter, the results contract and a book build.

The smoke outputs go to a temporary copy of the book sources, so `make test` never overwrites the
default-profile outputs that `make book` produced.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest
import yaml

from msa_lib.cli import load_profile, notebook_paths, run_notebook
from msa_lib.reporting import load_results

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = notebook_paths()
IDS = [p.stem for p in NOTEBOOKS]
REAL_DATA_DIR = ROOT.parent / "shared" / "data"
#: Chapters whose claims are about real data only: without ../shared/data they run, say so, and claim nothing.
REAL_ONLY = {"06_real_media"}


def real_data() -> bool:
    from msa_lib.data.real import data_available
    return data_available(str(REAL_DATA_DIR))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_hygiene(nb):
    book = nbformat.read(nb, as_version=4)
    assert book.metadata.kernelspec.name == "python3"
    code = [c for c in book.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{nb.name}: outputs committed"
    tagged = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{nb.name}: needs exactly one cell tagged 'parameters'"
    src = "\n".join(c.source for c in code)
    assert ".cuda()" not in src and "/work/" not in src, f"{nb.name}: hard-coded device or path"
    import re
    assert not re.search(r"^\s*class \w+|nn\.Module|\.backward\(", src, re.M), f"{nb.name}: model code belongs in msa_lib"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
@pytest.mark.parametrize("profile", ["smoke", "default", "full"])
def test_profiles_declare_only_known_parameters(nb, profile):
    params = load_profile(nb, profile)
    declared = set(pm.inspect_notebook(str(nb)))
    assert set(params) <= declared, f"{nb.name}/{profile}: unknown {set(params) - declared}"
    if profile != "smoke":
        assert len(params.get("seeds", [])) >= 3, f"{profile} profile needs >= 3 seeds"


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    """Copy the book sources into a temp dir and execute every notebook there with smoke parameters."""
    root = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("generated", "_build"))
    out = root / "book" / "generated"
    timings = {nb.stem: run_notebook(nb, out, "smoke", data_root=str(REAL_DATA_DIR))
               for nb in NOTEBOOKS}
    return root, out, timings


@pytest.mark.notebook
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_smoke_results_contract(smoke_book, nb):
    _, out, timings = smoke_book
    res = load_results(out / nb.stem / "results.json")  # validates the schema
    assert res["profile"] == "smoke"
    assert res["tables"], "no tables"
    unbounded = {"MAE", "loss", "ms_per_step", "train_time_ratio", "train_s_per_epoch", "infer_ms_per_sample",
                 "parameters (M)", "GFLOPs / sample", "n_params", "flops_per_sample", "achieved_gflops", "pct_of_peak"}
    for tid, rows in res["tables"].items():
        if tid == "T-claims":  # effects (differences), bounded by the claims' own checks below
            continue
        for row in rows:
            if row["mean"] is not None and row["metric"] not in unbounded:
                assert -1.0 <= row["mean"] <= 1.0 + 1e-9, f"{tid}: {row}"
            if row["metric"] == "MAE" and row["mean"] is not None:
                assert 0.0 <= row["mean"] < 10.0
            if row["metric"] in unbounded - {"MAE"} and row["mean"] is not None:
                assert row["mean"] >= 0.0, f"{tid}: {row}"
    if nb.stem in REAL_ONLY and not real_data():
        assert not res["claims"], "a real-data chapter made claims without the real data"
    else:
        assert res["claims"]
    assert all(c["verdict"] in ("supported", "not supported", "inconclusive") for c in res["claims"])
    # One smoke seed can never support a claim: the verdict rule needs >= 3 seeds.
    assert all(c["verdict"] == "inconclusive" for c in res["claims"] if c.get("n_seeds", 0) < 3)
    assert timings[nb.stem] < 120, f"smoke run took {timings[nb.stem]:.0f} s"


@pytest.mark.notebook
def test_i2moe_chapter_contract(smoke_book):
    """The I2MoE chapter's results hold every table, both datasets, >= 6 claim ids and a cost section."""
    _, out, _ = smoke_book
    res = load_results(out / "01_i2moe" / "results.json")
    assert {"T-main", "T-ablation", "T-disagree", "T-cost", "T-recovery"} <= set(res["tables"])
    semi = "mosi-semi" if real_data() else "synth-mosi (synthetic fallback for mosi-semi)"
    assert {"synth-mosi", semi} <= set(res["datasets"])
    main = res["tables"]["T-main"]
    assert {r["dataset"] for r in main} >= {"synth-mosi", semi}
    assert {"Transformer", "I2MoE-Transformer", "EF", "LF", "LRTF"} <= {r["method"] for r in main}
    assert all(r["reported"] is None for t in res["tables"].values() for r in t)  # no per-row paper numbers exist
    ablations = {r["method"] for r in res["tables"]["T-ablation"]}
    assert len(ablations) >= 12 and "no interaction loss" in ablations
    ids = {c["id"] for c in res["claims"]}
    assert {"C1", "C2", "C3", "C4", "C5a", "C5b", "C6", "C7"} <= ids
    assert "I2MoE-Transformer" in res["cost"] and res["cost"]["I2MoE-Transformer"]["n_params"] > 0
    assert {r["metric"] for r in res["tables"]["T-recovery"]} >= {"spearman", "top1_match"}


@pytest.mark.notebook
def test_text_chapter_contract(smoke_book):
    """The TEXT chapter's results: every table, both synthetic presets, >= 6 claim ids, the size check."""
    _, out, _ = smoke_book
    res = load_results(out / "02_text" / "results.json")
    assert {"T-main", "T-explain", "T-temporal", "T-modality", "T-routing", "T-clue-noise", "T-eval"} <= set(res["tables"])
    assert {"synth-mosi", "synth-sims"} <= set(res["datasets"])
    assert {"C1", "C2", "C3", "C4", "C5", "C6"} <= {c["id"] for c in res["claims"]}
    pc = res["provenance"]["parameter_count"]
    assert pc["official_mosi"] == pc["ours_mosi"] == 3_949_986
    sims = [r for r in res["tables"]["T-main"] if r["dataset"] == "synth-sims" and r["method"] == "TEXT" and r["metric"] == "MAE"]
    assert sims and sims[0]["reported"] == 0.353  # the paper's CH-SIMS number, shown as non-comparable context
    assert all(r["reported"] is None for r in res["tables"]["T-main"] if r["dataset"] != "synth-sims")
    temporal = {r["method"]: r["reported"] for r in res["tables"]["T-temporal"] if r["metric"] == "MAE"}
    assert temporal == {"TEXT": 0.528, "Mamba": 0.562, "TCA": 0.565, "concatenation": 0.58}
    assert "TEXT" in res["cost"]


@pytest.mark.notebook
def test_mmolre_chapter_contract(smoke_book):
    """The MMoLRE chapter: every table, the emotion set plus SA-only MOSI-like sets, >= 5 claim ids, no paper numbers."""
    _, out, _ = smoke_book
    res = load_results(out / "03_mmolre" / "results.json")
    assert {"T-main-SA", "T-main-ER", "T-ablation", "T-params", "T-sensitivity", "T-conflict"} <= set(res["tables"])
    assert "synth-mosei" in res["datasets"] and "synth-mosi" in res["datasets"]
    assert all(r["reported"] is None for t in res["tables"].values() for r in t)  # no sourced paper numbers exist
    assert len({c["id"] for c in res["claims"]} & {"C1", "C2", "C3", "C4", "C5", "C6", "C7"}) >= 6
    er = res["tables"]["T-main-ER"]
    assert {"WA_avg", "F1_avg", "WA_happy"} <= {r["metric"] for r in er}
    assert {r["dataset"] for r in er} == {"synth-mosei"}  # emotions only where the data has them
    # MOSI-like sets train SA only, so their MMoLRE runs carry no ER metrics
    assert not [r for r in er if r["dataset"] != "synth-mosei"]
    params = {(r["method"], r["metric"]): r["mean"] for r in res["tables"]["T-params"]}
    assert params[("low-rank, N = 15", "parameters (M)")] < params[("full-rank, N = 15", "parameters (M)")]
    assert {r["method"] for r in res["tables"]["T-conflict"]} >= {"MMoLRE", "without task-specific experts"}
    assert all(-1 <= r["mean"] <= 1 for r in res["tables"]["T-conflict"] if r["metric"] == "cosine")
    assert "MMoLRE" in res["cost"]


@pytest.mark.notebook
def test_midg_chapter_contract(smoke_book):
    """The MIDG chapter: every table, >= 2 source->target pairs and a leave-one-out task in T-DG, >= 5 claim ids."""
    _, out, _ = smoke_book
    res = load_results(out / "04_midg" / "results.json")
    assert {"T-DG", "T-standard", "T-ablation", "T-modality", "T-shift"} <= set(res["tables"])
    tasks = res["provenance"]["dg_tasks"]
    dg = res["tables"]["T-DG"]
    assert {r["dataset"] for r in dg} == set(tasks)
    assert sum(t["protocol"] == "single-source" and len(t["sources"]) == 1 for t in tasks.values()) >= 2
    assert any(t["protocol"] == "leave-one-out" and len(t["sources"]) >= 2 for t in tasks.values())
    assert {"MIDG", "ERM", "MoIE only", "CM-Adapter only"} <= {r["method"] for r in dg}
    for name, t in tasks.items():  # scored on the target's scale and metric family
        metrics = {r["metric"] for r in dg if r["dataset"] == name}
        assert "MAE" in metrics and ("Mult_acc_2" if "sims" in t["target"] else "Has0_acc_2") in metrics, name
    assert all(r["reported"] is None for t in res["tables"].values() for r in t)  # paper numbers are context only
    assert res["provenance"]["paper_reported_context"]["rows"]
    ablations = {r["method"] for r in res["tables"]["T-ablation"]}
    assert {"MIDG", "ERM", "without decoupling", "without MoIE, dense FFN", "without GRL and discriminator",
            "MoIE only", "CM-Adapter only", "without gate"} <= ablations
    assert {"T", "A", "V", "T+A", "T+V", "A+V"} <= {r["method"] for r in res["tables"]["T-modality"]}
    assert len({r["dataset"] for r in res["tables"]["T-shift"]}) >= 2
    assert len({c["id"] for c in res["claims"]} & {"C1", "C2", "C3", "C4", "C5", "C6"}) >= 5
    assert "MIDG" in res["cost"] and res["cost"]["MIDG"]["n_params"] > 0


@pytest.mark.notebook
def test_real_media_chapter_contract(smoke_book):
    """The real-media chapter: the MMSA-FET feature check (221 x 70, median r >= 0.95), frozen and fine-tuned
    MiniLM on real MOSI text, and a prediction for the real MOSI clip."""
    _, out, _ = smoke_book
    res = load_results(out / "06_real_media" / "results.json")
    if not real_data():  # the chapter still runs: text on the labelled synthetic fallback, no clip sections
        assert res["provenance"]["feature_check"] is None and res["provenance"]["prediction"] is None
        assert all("synthetic fallback" in d for d in res["provenance"]["data"])
        pytest.skip(f"the real-media checks need {REAL_DATA_DIR}")
    fc = res["provenance"]["feature_check"]
    assert fc["shape_ours"] == fc["shape_reference"] == [221, 70] and fc["same_shape_221x70"]
    check = {(r["method"], r["metric"]): r["mean"] for r in res["tables"]["T-feature-check"]}
    assert check[("ours, kaiser_best resampler (default)", "median_r")] >= 0.95 and fc["median_r"] >= 0.95
    assert set(fc["dims_below_threshold"]) == {d for d, r in fc["per_dim_r"].items() if r < fc["r_threshold"]}
    text = res["tables"]["T-mosi-text"]
    assert {r["dataset"] for r in text} == {"mosi-text"}
    assert {"MiniLM frozen + MLP", "MiniLM fine-tuned end to end"} <= {r["method"] for r in text}
    assert {"Has0_acc_2", "Non0_acc_2", "Mult_acc_7", "MAE", "Corr"} <= {r["metric"] for r in text}
    assert {c["id"] for c in res["claims"]} >= {"C1", "C2"}
    pred = res["provenance"]["prediction"]
    assert pred["clip"] == "mosi_clip_label_2.6.mp4" and pred["true_label"] == 2.6
    assert isinstance(pred["score"], float) and -10 < pred["score"] < 10 and pred["seconds"] > 0


@pytest.mark.notebook
def test_i2moe_chapter_on_an_mmsa_pickle_without_real_text(tmp_path):
    """Researchers' path: their MMSA pickle as a dataset; no real MOSI text (mosi-semi falls back, labelled)."""
    from msa_lib.data.mmsa import write_mmsa_like
    pkl = tmp_path / "unaligned_50.pkl"
    write_mmsa_like(pkl, n=(40, 12, 12), L=(50, 60, 40), seed=0)
    nb = ROOT / "notebooks" / "01_i2moe.ipynb"
    run_notebook(nb, tmp_path / "out", "smoke", overrides={
        "data_root": str(tmp_path / "no-data"), "datasets": [f"mmsa:{pkl}", "mosi-semi"],
        "regression_datasets": [f"mmsa:{pkl}"], "switchgate_datasets": []})
    res = load_results(tmp_path / "out" / nb.stem / "results.json")
    assert "unaligned_50" in res["datasets"] and res["provenance"]["data"]["unaligned_50"] == "real"
    assert any("synthetic fallback for mosi-semi" in d for d in res["datasets"])
    assert {r["dataset"] for r in res["tables"]["T-main"]} >= {"unaligned_50"}
    assert not any(r["method"].endswith("SwitchGate") for r in res["tables"]["T-main"])


@pytest.mark.notebook
def test_parameters_change_what_runs(smoke_book, tmp_path):
    """A papermill parameter must reach the run: different seeds and models show up in results.json."""
    nb = ROOT / "notebooks" / "00_data_and_protocol.ipynb"
    run_notebook(nb, tmp_path, "smoke", overrides={"seeds": [7], "text_models": ["text_mlp"],
                                                   "fusion_models": ["early_fusion", "late_fusion"]})
    res = load_results(tmp_path / nb.stem / "results.json")
    assert res["provenance"]["seeds"] == [7]
    assert res["provenance"]["parameters"]["seeds"] == [7] and res["provenance"]["parameters"]["profile"] == "smoke"
    assert res["provenance"]["parameters"]["text_models"] == ["text_mlp"]
    methods = {r["method"] for r in res["tables"]["T-mosi-text"]}
    assert methods == {"MiniLM mean-pool + MLP"}
    assert {r["method"] for r in res["tables"]["T-baselines"]} == {"Early fusion (EF)", "Late fusion (LF)"}
    runs = list((tmp_path / "runs").rglob("seed7-*.json"))
    assert len(runs) == 3


def test_unknown_parameter_is_refused(tmp_path):
    nb = ROOT / "notebooks" / "00_data_and_protocol.ipynb"
    with pytest.raises(SystemExit, match="not declared"):
        run_notebook(nb, tmp_path, "smoke", overrides={"sedes": [1]})


@pytest.mark.book
def test_book_builds_from_smoke_outputs(smoke_book):
    root, _, _ = smoke_book
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jb), "build", "-W", "-n", "--keep-going", str(root)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    html = root / "_build" / "html"
    assert (html / "index.html").exists()
    for name in ("00_data_and_protocol", "01_i2moe", "02_text", "03_mmolre", "04_midg", "06_real_media"):
        chapter = (html / "book" / "generated" / f"{name}.html").read_text()
        assert "Claims and verdicts" in chapter and "<table" in chapter and "<img" in chapter, name


@pytest.mark.notebook
def test_runs_without_real_data(tmp_path):
    """Without ../shared/data the chapter falls back to SynthMSA and labels it synthetic."""
    nb = ROOT / "notebooks" / "00_data_and_protocol.ipynb"
    run_notebook(nb, tmp_path, "smoke", overrides={"data_root": str(tmp_path / "no-data"), "fusion_models": ["early_fusion"],
                                                   "text_models": ["text_mlp"]})
    res = load_results(tmp_path / nb.stem / "results.json")
    names = {r["dataset"] for r in res["tables"]["T-mosi-text"]}
    assert names and all("synthetic fallback" in n for n in names)
    assert not any("MMSA" in r["method"] for r in res["tables"]["T-mosi-text"])


@pytest.mark.notebook
def test_chapter_runs_on_an_mmsa_pickle(tmp_path):
    """Pointing the chapter at a real-layout MMSA pickle: the baselines train and report on it."""
    from msa_lib.data.mmsa import write_mmsa_like
    pkl = tmp_path / "unaligned_50.pkl"
    write_mmsa_like(pkl, n=(40, 12, 12), L=(50, 60, 40), seed=0)
    nb = ROOT / "notebooks" / "00_data_and_protocol.ipynb"
    run_notebook(nb, tmp_path / "out", "smoke", overrides={"fusion_datasets": ["synth-mosi", f"mmsa:{pkl}"],
                                                          "fusion_models": ["early_fusion", "late_fusion"],
                                                          "text_models": ["text_mlp"]})
    res = load_results(tmp_path / "out" / nb.stem / "results.json")
    assert "unaligned_50" in res["datasets"]
    rows = [r for r in res["tables"]["T-baselines"] if r["dataset"] == "unaligned_50"]
    assert {r["method"] for r in rows} == {"Early fusion (EF)", "Late fusion (LF)"}
    assert res["provenance"]["data"]["unaligned_50"] == "real"


@pytest.mark.notebook
def test_comparison_chapter_contract(smoke_book):
    """The cross-paper chapter: the four tables, every method of its roster on every leaderboard dataset and DG task,
    and a T-claims row for every claim of every other chapter's results.json (it runs after them)."""
    _, out, _ = smoke_book
    res = load_results(out / "05_comparison" / "results.json")
    assert {"T-leaderboard", "T-DG", "T-cost", "T-claims"} <= set(res["tables"])
    params = res["provenance"]["parameters"]
    lb = res["tables"]["T-leaderboard"]
    for d in res["datasets"]:
        if "->" in d:
            continue
        methods = {r["method"] for r in lb if r["dataset"] == d}
        assert methods, d
    paper = {"I2MoE", "TEXT", "MMoLRE", "MIDG"} & set(params["methods"] or ["I2MoE", "TEXT", "MMoLRE", "MIDG"])
    assert paper <= {r["method"] for r in lb}
    assert sum(r["best"] for r in lb if r["metric"] == "MAE") == len({r["dataset"] for r in lb})  # one best per set
    dg = res["tables"]["T-DG"]
    assert {r["dataset"] for r in dg} == {d for d in res["datasets"] if "->" in d}
    assert {r["method"] for r in dg} >= paper | {"EF"}  # every method, not only MIDG, runs the DG protocol
    cost = {(r["method"], r["metric"]): r["mean"] for r in res["tables"]["T-cost"]}
    for m in paper:
        assert cost[(m, "flops_per_sample")] > 0 and cost[(m, "achieved_gflops")] > 0
    others = [nb for nb in NOTEBOOKS if nb.stem != "05_comparison"]
    expected = sum(len(load_results(out / nb.stem / "results.json")["claims"]) for nb in others)
    assert len(res["tables"]["T-claims"]) == expected > 0
    assert res["provenance"]["claims_missing_chapters"] == []
