"""The cross-paper harness: one roster of methods, one protocol, and the views that compare them.

Why a module of its own: no single paper's code can say "which method, at what cost, and which of
its claims hold". This module puts I2MoE, TEXT, MMoLRE, MIDG and the baselines on identical data,
splits, seeds and metrics (`roster`), ranks them with a seed-paired significance marker against the
best (`leaderboard`), measures cost against the machine's matmul peak (`peak_gflops`, `cost_table`),
and gathers every chapter's claims into one dashboard (`claims_dashboard`, `plot_claims_forest`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from msa_lib.data.schema import MSADataset
from msa_lib.experiments import RunRecord, Variant, model_cost, paired_effect, per_seed
from msa_lib.metrics import HIGHER_IS_BETTER, MOSI_KEYS, SIMS_KEYS
from msa_lib.reporting import cost_summary, display_scale, extras_per_seed, load_results

__all__ = ["PAPER_METHODS", "BASELINES", "TEXT_ONLY", "roster", "text_roster", "metric_keys", "accuracy_key",
           "leaderboard", "leaderboard_wide", "beats_best_baseline", "vs_best_baseline", "dg_vs_best_baseline", "claims_long", "peak_gflops", "cost_table",
           "claims_dashboard", "plot_claims_forest", "plot_leaderboard"]

#: The four papers' methods, by the name the tables use.
PAPER_METHODS = ("I2MoE", "TEXT", "MMoLRE", "MIDG")
#: Baselines run under the same protocol (the chapters' own baselines).
BASELINES = ("EF", "LF", "MulT", "LRTF", "ALMT")
#: Text-only models for the real transcripts (``mosi-text``); the multimodal methods need ≥ 2 modalities.
TEXT_ONLY = ("MLP (text)", "GRU (text)", "Transformer (text)", "MIDG (text)", "ERM (text)")


def metric_keys(ds: MSADataset) -> list[str]:
    """MMSA's metric keys for the dataset's label family (METRICS.md)."""
    return list(SIMS_KEYS if ds.metric_family == "sims" else MOSI_KEYS)


def accuracy_key(ds: MSADataset) -> str:
    """The binary accuracy MMSA reports first: ``Mult_acc_2`` on SIMS, ``Has0_acc_2`` on MOSI/MOSEI."""
    return "Mult_acc_2" if ds.metric_family == "sims" else "Has0_acc_2"


def roster(ds: MSADataset, width: int = 32, methods: Sequence[str] | None = None) -> dict[str, Variant]:
    """Every method at one CPU-sized width for ``ds``: the comparison's shared configuration.

    Each method keeps its paper's structure (I2MoE's official regression overrides, TEXT's
    explanation tokens, MMoLRE's text + audio input and SA head, MIDG's 4 experts with top-2 routing);
    only the widths are tied to ``width`` so the methods differ in design, not in size class.
    TEXT is included only when ``ds`` carries explanation tokens (`attach_explanations`).
    """
    w = int(width)
    if w < 8 or w % 4:
        raise ValueError(f"width must be a multiple of 4 and >= 8; got {width}")
    frames = max(ds.seq_lens.values())
    d_mm = (3 * w // 2) // 6 * 6  # MMoLRE: width 1.5·w, rank d/6 (the paper's r/d = 128/768)
    feats = getattr(ds.train, "audio_clue_feats", None)
    out = {
        "EF": Variant("early_fusion", {"hidden": 2 * w, "proj": w}),
        "LF": Variant("late_fusion", {"hidden": 2 * w}),
        "MulT": Variant("mult", {"hidden": w, "heads": 2}),
        "LRTF": Variant("lrtf", {"encoder": "mean", "gru_hidden": 2 * w, "fusion_dim": 2 * w}),
        "ALMT": Variant("almt", {"dim": w, "heads": 4, "dim_head": w // 4, "mlp_dim": w, "max_frames": frames}),
        "I2MoE": Variant("i2moe", {"encoder": "mean", "gru_hidden": 2 * w, "hidden": w, "hidden_rw": 2 * w,
                                   "lambda_int": 0.001, "num_layer_rw": 3}),
        "MMoLRE": Variant("mmolre", {"d": d_mm, "rank": d_mm // 6, "n_experts": 15, "heads": 4, "tasks": ["sa"],
                                     "modalities": ["text", "audio"]}),
        "MIDG": Variant("midg", {"hidden": w, "d_latent": w // 2, "n_experts": 4, "top_k": 2, "heads": 2}),
        "ERM": Variant("midg_erm", {"hidden": w}),
    }
    if feats is not None:
        out["TEXT"] = Variant("text", {"dim": w, "heads": 4, "dim_head": w // 4, "mlp_dim": w, "depth": 2,
                                       "n_experts": 5, "top_k": 3, "max_frames": max(ds.seq_lens["audio"], ds.seq_lens["vision"]),
                                       "text_frames": ds.seq_lens["text"], "explanations": True,
                                       "clue_dim": int(feats.shape[2]), "clue_len": int(feats.shape[1])})
    order = [*PAPER_METHODS, "ERM", *BASELINES]
    out = {k: out[k] for k in order if k in out}
    if methods is not None:
        unknown = [m for m in methods if m not in out and m != "TEXT"]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; the roster has {list(out)}")
        out = {k: v for k, v in out.items() if k in methods}
    return out


def text_roster(width: int = 32) -> dict[str, Variant]:
    """Text-only models for real transcripts: the baselines' text branches and MIDG's text-only form."""
    w = int(width)
    return {"MLP (text)": Variant("text_mlp", {"hidden": 2 * w}),
            "GRU (text)": Variant("text_gru", {"hidden": 2 * w}),
            "Transformer (text)": Variant("text_transformer", {"hidden": 2 * w, "heads": 4}),
            "MIDG (text)": Variant("midg", {"hidden": w, "d_latent": w // 2, "n_experts": 4, "top_k": 2, "heads": 2,
                                            "modalities": ["text"]}),
            "ERM (text)": Variant("midg_erm", {"hidden": w, "modalities": ["text"]})}


# ----------------------------------------------------------------------------------------------
# Leaderboard
def _per_seed(records: Sequence[RunRecord], dataset: str, method: str, metric: str,
              source: str | None) -> dict[int, float]:
    """``{seed: value}`` from ``test_metrics`` (or ``extras[source]``); empty when the method has no such value."""
    try:
        if source:
            return extras_per_seed(records, dataset, method, source, metric)
        return per_seed(records, dataset, method, metric)
    except KeyError:
        return {}


def leaderboard(records: Iterable[RunRecord], metrics: dict[str, list[str]], source: str | None = None,
                n_boot: int = 10000) -> pd.DataFrame:
    """Long table (dataset, method, metric, reported, mean, std, n_seeds) plus the comparison with the best.

    Per dataset and metric, ``best`` marks the method with the best mean (direction from
    METRICS.md), and ``vs_best_*`` is the seed-paired effect of the best over each other method with
    its 95 % bootstrap CI. ``worse_than_best`` is True when that CI lies above 0: the method is
    significantly worse than the best at n seeds. ``source`` reads metrics from ``extras[source]``
    (e.g. the DG tasks' ``target_test_metrics``) instead of ``test_metrics``.
    """
    recs = list(records)
    rows = []
    for ds, keys in metrics.items():
        methods = list(dict.fromkeys(r.variant for r in recs if r.dataset == ds))
        for k in keys:
            vals = {m: _per_seed(recs, ds, m, k, source) for m in methods}
            vals = {m: v for m, v in vals.items() if v}
            if not vals:
                continue
            hib = HIGHER_IS_BETTER.get(k, True)
            means = {m: float(np.mean(list(v.values()))) for m, v in vals.items()}
            best = (max if hib else min)(means, key=means.get)
            for m, v in vals.items():
                arr = np.array(list(v.values()))
                row = {"dataset": ds, "method": m, "metric": k, "reported": None, "mean": round(means[m], 6),
                       "std": round(float(arr.std(ddof=1)), 6) if len(arr) > 1 else 0.0, "n_seeds": len(arr),
                       "best": m == best, "vs_best_effect": None, "vs_best_ci_low": None, "vs_best_ci_high": None,
                       "worse_than_best": False}
                if m != best:
                    e = paired_effect(vals[best], v, id="vs-best", claim=f"{best} beats {m}", dataset=ds, metric=k,
                                      n_boot=n_boot)
                    row.update(vs_best_effect=e.effect, vs_best_ci_low=e.ci_low, vs_best_ci_high=e.ci_high,
                               worse_than_best=bool(e.n_seeds >= 2 and e.ci_low > 0))
                rows.append(row)
    return pd.DataFrame(rows)


def leaderboard_wide(lb: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """Methods × (dataset, metric) cells "mean ± std", ★ on the best, ▼ where significantly worse."""
    if lb.empty:
        return pd.DataFrame()

    def cell(r: pd.Series) -> str:
        s = display_scale(r["metric"])
        dg = digits if s != 1 else 3
        mark = " ★" if r["best"] else (" ▼" if r["worse_than_best"] else "")
        return f"{r['mean'] * s:.{dg}f} ± {r['std'] * s:.{dg}f}{mark}"
    cells = lb.assign(cell=lb.apply(cell, axis=1))
    wide = cells.pivot_table(index="method", columns=["dataset", "metric"], values="cell", aggfunc="first", sort=False)
    order = list(dict.fromkeys(lb["method"]))
    return wide.reindex(order).fillna("n/a")


def beats_best_baseline(values: dict[str, dict[int, float]], *, dataset: str, metric: str, methods: Sequence[str],
                        baselines: Sequence[str], claim_id: str, note: str = "") -> list:
    """Each paper method against the baseline with the best mean, from ``{method: {seed: value}}``.

    This is every paper's headline claim, "our method beats the baselines", tested under one harness.
    """
    sign = 1 if HIGHER_IS_BETTER.get(metric, True) else -1
    base = {b: values[b] for b in baselines if values.get(b)}
    if not base:
        return []
    best = max(base, key=lambda b: sign * np.mean(list(base[b].values())))
    return [paired_effect(values[m], base[best], id=claim_id, claim=f"{m} beats the best baseline ({best})",
                          dataset=dataset, metric=metric, note="; ".join(filter(None, [f"best baseline by mean: {best}", note])))
            for m in methods if values.get(m)]


def vs_best_baseline(records: Iterable[RunRecord], dataset: str, metric: str, methods: Sequence[str],
                     baselines: Sequence[str], claim_id: str = "X1", source: str | None = None) -> list:
    """`beats_best_baseline` on one dataset, read from run records."""
    recs = list(records)
    values = {m: _per_seed(recs, dataset, m, metric, source) for m in [*methods, *baselines]}
    return beats_best_baseline(values, dataset=dataset, metric=metric, methods=methods, baselines=baselines,
                               claim_id=claim_id)


def dg_vs_best_baseline(records: Iterable[RunRecord], tasks: Sequence[MSADataset], methods: Sequence[str],
                        baselines: Sequence[str], claim_id: str = "X3") -> list:
    """`beats_best_baseline` over the DG matrix: each target's acc-2, averaged over the tasks per seed."""
    recs = list(records)

    def mean_over(method: str) -> dict[int, float]:
        per = [_per_seed(recs, t.name, method, accuracy_key(t), "target_test_metrics") for t in tasks]
        common = set.intersection(*(set(p) for p in per)) if per and all(per) else set()
        return {s: float(np.mean([p[s] for p in per])) for s in sorted(common)}
    values = {m: mean_over(m) for m in [*methods, *baselines]}
    return beats_best_baseline(values, dataset=f"DG matrix, mean of {len(tasks)} tasks", metric="Has0_acc_2",
                               methods=methods, baselines=baselines, claim_id=claim_id,
                               note="acc-2 of each target's family, averaged over the DG tasks")


def plot_leaderboard(lb: pd.DataFrame, metric_of: dict[str, str], ax=None, title: str = ""):
    """Dot-and-whisker plot, one panel per dataset: mean ± std over seeds, best first."""
    import matplotlib.pyplot as plt
    sets = [d for d in metric_of if not lb[(lb.dataset == d) & (lb.metric == metric_of[d])].empty]
    if ax is None:
        fig, ax = plt.subplots(1, len(sets), figsize=(4.3 * len(sets), 0.32 * lb["method"].nunique() + 1.8),
                               squeeze=False)
        ax = ax[0]
    for a, d in zip(np.atleast_1d(ax), sets):
        k = metric_of[d]
        s = display_scale(k)
        g = lb[(lb.dataset == d) & (lb.metric == k)].sort_values("mean", ascending=not HIGHER_IS_BETTER.get(k, True))
        colors = ["#2a9d8f" if b else ("#e76f51" if w else "#577590") for b, w in zip(g["best"], g["worse_than_best"])]
        a.errorbar(g["mean"] * s, range(len(g)), xerr=g["std"] * s, fmt="none", ecolor="grey", capsize=2)
        a.scatter(g["mean"] * s, range(len(g)), c=colors, zorder=3)
        a.set_yticks(range(len(g)), g["method"])
        a.invert_yaxis()
        a.set(title=d, xlabel=f"{k}" + (" ×100" if s != 1 else ""))
    if title:
        plt.gcf().suptitle(title)
    return ax


# ----------------------------------------------------------------------------------------------
# Cost
def peak_gflops(n: int = 1024, repeats: int = 5) -> dict[str, float]:
    """The CPU's practical peak: GFLOP/s of the best of ``repeats`` float32 n×n matmuls (2n³ FLOPs).

    Why a measured peak: the nominal peak of a shared cloud core is unknown; a large matmul is the
    best-case kernel, so "achieved / peak" says how far a small model is from what the core can do.
    """
    import torch
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return {"n": n, "seconds": best, "gflops": 2 * n ** 3 / best / 1e9, "threads": torch.get_num_threads()}


def cost_table(records: Iterable[RunRecord], variants: dict[str, Variant], ds: MSADataset, peak: float,
               extra_inputs: dict[str, tuple[int, ...]] | None = None) -> pd.DataFrame:
    """Per method: parameters, forward FLOPs per sample, train s/epoch, inference ms/sample, and the
    achieved inference GFLOP/s with its share of the measured matmul ``peak``.

    FLOPs are counted by `model_cost` on one sample at ``ds``'s longest stream; time comes from the
    method's run records on ``ds`` (mean over seeds).
    """
    recs = [r for r in records if r.dataset == ds.name and r.variant in variants]
    timed = cost_summary(recs)  # parameters, train s/epoch, inference ms/sample: as every chapter's cost section
    frames = max(ds.seq_lens.values())
    rows = []
    for name, v in variants.items():
        if name not in timed:
            continue
        c = model_cost(v.model, ds.dims, seq_len=frames, extra_inputs=extra_inputs if v.model == "text" else None,
                       **v.hparams)
        t = timed[name]
        achieved = c["flops"] / (t["infer_ms_per_sample"] / 1e3) / 1e9 if t["infer_ms_per_sample"] > 0 else float("nan")
        rows.append({"method": name, **t, "flops_per_sample": c["flops"], "achieved_gflops": achieved,
                     "pct_of_peak": 100 * achieved / peak, "n_seeds": sum(r.variant == name for r in recs)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# Claims dashboard
def claims_dashboard(out_dir: str | Path, chapters: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Every claim of every chapter's ``results.json``, one row each, and the chapters not found.

    Columns: chapter, id, claim, dataset, metric, effect, ci_low, ci_high, verdict, n_seeds, note,
    profile. A chapter whose results.json is missing is listed, never silently dropped.
    """
    rows, missing = [], []
    for ch in chapters:
        p = Path(out_dir) / ch / "results.json"
        if not p.exists():
            missing.append(ch)
            continue
        d = load_results(p)
        for c in d["claims"]:
            rows.append({"chapter": ch, "id": c["id"], "claim": c["claim"], "dataset": c["dataset"],
                         "metric": c.get("metric"), "effect": c["effect"], "ci_low": c["ci_low"], "ci_high": c["ci_high"],
                         "verdict": c["verdict"], "n_seeds": c.get("n_seeds"), "note": c.get("note", ""),
                         "profile": d["profile"]})
    cols = ["chapter", "id", "claim", "dataset", "metric", "effect", "ci_low", "ci_high", "verdict", "n_seeds", "note",
            "profile"]
    return pd.DataFrame(rows, columns=cols), missing


def claims_long(frame: pd.DataFrame) -> pd.DataFrame:
    """The dashboard in the results-contract long format (dataset, method, metric, reported, mean, std, n_seeds)."""
    out = frame.assign(method=frame["chapter"] + " " + frame["id"], reported=None, mean=frame["effect"], std=None)
    return out[["dataset", "method", "metric", "reported", "mean", "std", "n_seeds", "chapter", "id", "claim",
                "ci_low", "ci_high", "verdict"]]


def plot_claims_forest(frame: pd.DataFrame, title: str = "Every claim: seed-paired effect with its 95 % CI"):
    """Forest plot, one panel per chapter: effect (positive = the claim's direction) and 95 % CI.

    Accuracy-type effects are shown ×100 (points) and the rest in their own units, as in the tables;
    colour is the verdict. Panels have their own x scale because units differ between chapters.
    """
    import matplotlib.pyplot as plt
    colors = {"supported": "#2a9d8f", "not supported": "#e76f51", "inconclusive": "#e9c46a"}
    chapters = list(dict.fromkeys(frame["chapter"]))
    heights = [max(1.0, 0.24 * (frame["chapter"] == c).sum()) for c in chapters]
    fig, axes = plt.subplots(len(chapters), 1, figsize=(9, sum(heights) + 0.8 * len(chapters)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, ch in zip(axes[:, 0], chapters):
        g = frame[frame["chapter"] == ch].reset_index(drop=True)
        s = np.array([display_scale(m) if isinstance(m, str) else 1.0 for m in g["metric"]])
        y = np.arange(len(g))
        for i, r in g.iterrows():
            ax.plot([r["ci_low"] * s[i], r["ci_high"] * s[i]], [i, i], color=colors.get(r["verdict"], "grey"), lw=2)
        ax.scatter(g["effect"] * s, y, c=[colors.get(v, "grey") for v in g["verdict"]], zorder=3, s=18)
        ax.axvline(0, color="k", lw=0.8)
        labels = [f"{r['id']} {r['dataset']}"[:58] for _, r in g.iterrows()]
        ax.set_yticks(y, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(ch, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("effect (accuracy-type ×100; MAE and other units as is)")
    handles = [plt.Line2D([], [], color=c, marker="o", lw=2, label=v) for v, c in colors.items()]
    fig.legend(handles=handles, loc="upper right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
