"""Tables (reported vs reproduced), claim verdicts, seaborn figures, glue and `results.json`.

Why: the reader's question is always "does our number match the paper's, and does the claim
hold?". Every chapter answers it with the same three artefacts: a summary table with reported /
mean ± std / Δ, a verdict table with paired CIs, and a `results.json` that tests and outside checks
read. Values are stored in raw units (accuracy 0.812, MAE 0.71); accuracies, F1 and Corr are shown
×100 as in the papers.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

import msa_lib
from msa_lib.experiments import Effect, RunRecord, atomic_write_json, git_commit
from msa_lib.metrics import HIGHER_IS_BETTER

VERDICTS = ("supported", "not supported", "inconclusive")
_RAW_UNIT_METRICS = {"MAE", "loss"}


def display_scale(metric: str) -> float:
    """×100 for accuracies / F1 / Corr / AUROC (as papers print them); raw for MAE and losses."""
    return 1.0 if metric in _RAW_UNIT_METRICS else 100.0


# ----------------------------------------------------------------------------------------------
# Tables
def summary_table(records: Iterable[RunRecord], metrics: list[str], split: str = "test",
                  method_names: dict[str, str] | None = None,
                  reported: Callable[[str, str, str], float | None] | None = None) -> pd.DataFrame:
    """Long table (dataset, method, metric, reported, mean, std, n_seeds) in raw units.

    ``reported(dataset, method, metric)`` returns a sourced paper number or None (shown "n/a").
    """
    rows = []
    recs = list(records)
    first_seen = list(dict.fromkeys((r.dataset, r.variant) for r in recs))
    keys = sorted(first_seen, key=lambda k: k[0])  # stable: variants keep their run order per dataset
    for ds, var in keys:
        group = [r for r in recs if r.dataset == ds and r.variant == var]
        name = (method_names or {}).get(var, var)
        for m in metrics:
            vals = np.array([(r.test_metrics if split == "test" else r.val_metrics).get(m, np.nan) for r in group],
                            dtype=float)
            vals = vals[~np.isnan(vals)]
            rep = reported(ds, name, m) if reported else None
            rows.append({"dataset": ds, "method": name, "metric": m, "reported": rep,
                         "mean": round(float(vals.mean()), 6) if len(vals) else None,
                         "std": round(float(vals.std(ddof=1)), 6) if len(vals) > 1 else (0.0 if len(vals) else None),
                         "n_seeds": int(len(vals))})
    return pd.DataFrame(rows, columns=["dataset", "method", "metric", "reported", "mean", "std", "n_seeds"])


def context_rows(rows: Iterable[Any], label: str) -> pd.DataFrame:
    """Reported-only rows (e.g. MMSA's published baselines) in the summary-table layout."""
    out = [{"dataset": r.dataset, "method": f"{r.method} [{label}]", "metric": r.metric, "reported": r.value,
            "mean": None, "std": None, "n_seeds": 0} for r in rows]
    return pd.DataFrame(out, columns=["dataset", "method", "metric", "reported", "mean", "std", "n_seeds"])


def _fmt(v: Any, metric: str, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    s = display_scale(metric)
    return f"{v * s:.{digits if s != 1 else 3}f}"


def format_cells(long: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """Wide table: rows (dataset, method), columns (metric, reported | reproduced | Δ), as strings."""
    cells = []
    for _, r in long.iterrows():
        m = r["metric"]
        s = display_scale(m)
        dg = digits if s != 1 else 3
        if r["mean"] is None or pd.isna(r["mean"]):
            rep_str = "—"
        else:
            rep_str = f"{r['mean'] * s:.{dg}f} ± {(r['std'] or 0) * s:.{dg}f}"
        delta = "n/a"
        if r["reported"] is not None and not pd.isna(r["reported"]) and r["mean"] is not None and not pd.isna(r["mean"]):
            delta = f"{(r['mean'] - r['reported']) * s:+.{dg}f}"
        cells.append({"dataset": r["dataset"], "method": r["method"], "metric": m,
                      "reported": _fmt(r["reported"], m, digits), "reproduced": rep_str, "Δ": delta})
    df = pd.DataFrame(cells)
    if df.empty:
        return df
    metrics = list(dict.fromkeys(long["metric"]))
    wide = df.pivot_table(index=["dataset", "method"], columns="metric", values=["reported", "reproduced", "Δ"],
                          aggfunc="first", sort=False)
    wide = wide.swaplevel(0, 1, axis=1)
    cols = [(m, k) for m in metrics for k in ("reported", "reproduced", "Δ") if (m, k) in wide.columns]
    wide = wide[cols]
    order = list(dict.fromkeys(zip(long["dataset"], long["method"])))
    return wide.reindex(pd.MultiIndex.from_tuples(order, names=["dataset", "method"]))


def styled_table(long: pd.DataFrame, caption: str = "", digits: int = 1, compact: bool = False):
    """A pandas Styler for HTML: reported | mean ± std | Δ per metric; best mean per dataset in bold.

    ``compact`` drops the reported and Δ columns (for tables where nothing is reported).
    """
    wide = format_cells(long, digits)
    if compact and not wide.empty:
        # One column per metric: our mean ± std, or the reported value marked "(reported)" for
        # context rows that have no run of ours.
        merged = pd.DataFrame(index=wide.index)
        for m in dict.fromkeys(c[0] for c in wide.columns):
            rep, ours = wide[(m, "reported")], wide[(m, "reproduced")]
            merged[m] = [o if o != "—" else (f"{r} (reported)" if r != "n/a" else "n/a") for r, o in zip(rep, ours)]
        wide = merged
    best = _best_mask(long, wide, compact)
    sty = wide.style.set_caption(caption).set_table_styles([
        {"selector": "caption", "props": "caption-side: top; font-weight: bold; text-align: left;"},
        {"selector": "th", "props": "text-align: center; padding: 2px 6px;"},
        {"selector": "td", "props": "text-align: right; padding: 2px 6px; white-space: nowrap;"},
    ])
    if best is not None:
        sty = sty.apply(lambda _: best.replace({True: "font-weight: bold", False: ""}), axis=None)
    return sty


def _best_mask(long: pd.DataFrame, wide: pd.DataFrame, compact: bool) -> pd.DataFrame | None:
    if wide.empty:
        return None
    mask = pd.DataFrame(False, index=wide.index, columns=wide.columns)
    for (ds, m), g in long.dropna(subset=["mean"]).groupby(["dataset", "metric"]):
        g = g[g["n_seeds"] > 0]
        if g.empty:
            continue
        hib = HIGHER_IS_BETTER.get(m, True)
        idx = g["mean"].astype(float).idxmax() if hib else g["mean"].astype(float).idxmin()
        col = m if compact else (m, "reproduced")
        if col in mask.columns:
            mask.loc[(ds, g.loc[idx, "method"]), col] = True
    return mask


def claims_frame(effects: Iterable[Effect]) -> pd.DataFrame:
    """One row per claim × dataset with effect, 95 % CI and verdict (display units)."""
    rows = []
    for e in effects:
        s = display_scale(e.metric)
        dg = 2 if s != 1 else 3
        rows.append({"id": e.id, "claim": e.claim, "dataset": e.dataset, "metric": e.metric,
                     "effect": f"{e.effect * s:+.{dg}f}", "95% CI": f"[{e.ci_low * s:.{dg}f}, {e.ci_high * s:.{dg}f}]",
                     "seeds": e.n_seeds, "verdict": e.verdict, "note": e.note})
    return pd.DataFrame(rows)


def styled_claims(effects: Iterable[Effect], caption: str = "Claims and verdicts"):
    colors = {"supported": "background-color: #d4edda", "not supported": "background-color: #f8d7da",
              "inconclusive": "background-color: #fff3cd"}
    df = claims_frame(effects)
    if not df.empty and (df["note"] == "").all():
        df = df.drop(columns="note")
    return (df.style.hide(axis="index").set_caption(caption)
            .map(lambda v: colors.get(v, ""), subset=["verdict"]))


# ----------------------------------------------------------------------------------------------
# results.json
def results_payload(notebook: str, profile: str, datasets: list[str], tables: dict[str, pd.DataFrame],
                    claims: Iterable[Effect], cost: dict[str, dict[str, float]], seeds: list[int],
                    extra_provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Assemble the results contract (BOOK.md) and validate it before anyone reads it."""
    def clean(v):
        if isinstance(v, (np.floating, float)):
            return None if np.isnan(v) else float(v)
        if isinstance(v, np.integer):
            return int(v)
        return v
    payload = {
        "notebook": notebook, "profile": profile, "datasets": list(datasets),
        "tables": {tid: [{k: clean(v) for k, v in row.items()} for row in df.to_dict("records")]
                   for tid, df in tables.items()},
        "claims": [{k: clean(v) for k, v in e.as_dict().items()} for e in claims],
        "cost": {m: {k: clean(v) for k, v in c.items()} for m, c in cost.items()},
        "provenance": {"msa_lib": msa_lib.__version__, "commit": git_commit(), "seeds": [int(s) for s in seeds],
                       **(extra_provenance or {})},
    }
    validate_results(payload)
    return payload


def write_results(out_dir: str | Path, notebook: str, **kw) -> Path:
    """Write ``<out_dir>/<notebook>/results.json`` atomically and return its path."""
    payload = results_payload(notebook, **kw)
    path = Path(out_dir) / notebook / "results.json"
    atomic_write_json(path, payload)
    return path


def validate_results(d: dict[str, Any]) -> None:
    """Raise ValueError if ``d`` breaks the results.json schema in BOOK.md."""
    for k in ("notebook", "profile", "datasets", "tables", "claims", "cost", "provenance"):
        if k not in d:
            raise ValueError(f"results.json: missing top-level key {k!r}")
    for tid, rows in d["tables"].items():
        for row in rows:
            for k in ("dataset", "method", "metric", "reported", "mean", "std", "n_seeds"):
                if k not in row:
                    raise ValueError(f"results.json: table {tid!r} row lacks {k!r}: {row}")
    for c in d["claims"]:
        for k in ("id", "claim", "dataset", "effect", "ci_low", "ci_high", "verdict"):
            if k not in c:
                raise ValueError(f"results.json: claim lacks {k!r}: {c}")
        if c["verdict"] not in VERDICTS:
            raise ValueError(f"results.json: verdict {c['verdict']!r} not in {VERDICTS}")
    for k in ("msa_lib", "commit", "seeds"):
        if k not in d["provenance"]:
            raise ValueError(f"results.json: provenance lacks {k!r}")


def parameters_snapshot(notebook: str, namespace: dict[str, Any], notebooks_dir: str | Path = "notebooks") -> dict[str, Any]:
    """The values the running notebook actually uses for each parameter its source declares.

    Recorded in results.json so that a rerun with ``-p seeds "[1,2]"`` is visible in its results.
    Empty when the source notebook cannot be found (e.g. run from another working directory).
    """
    src = Path(notebooks_dir) / f"{notebook}.ipynb"
    if not src.exists():
        return {}
    import papermill as pm
    names = pm.inspect_notebook(str(src))
    return {k: namespace[k] for k in names if k in namespace and isinstance(namespace[k], (str, int, float, bool, list, dict, type(None)))}


def load_results(path: str | Path) -> dict[str, Any]:
    d = json.loads(Path(path).read_text())
    validate_results(d)
    return d


def styled_cost(cost: dict[str, dict[str, float]], caption: str = "Cost (2 CPU cores unless noted)"):
    """The cost section as a readable table: parameters, train s/epoch, inference ms/sample."""
    df = pd.DataFrame(cost).T.rename(columns={"n_params": "parameters", "train_s_per_epoch": "train s / epoch",
                                              "infer_ms_per_sample": "inference ms / sample"})
    return df.style.set_caption(caption).format({"parameters": "{:,.0f}", "train s / epoch": "{:.2f}",
                                                 "inference ms / sample": "{:.3f}"})


def cost_summary(records: Iterable[RunRecord], method_names: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """Parameters, train seconds per epoch and inference ms per sample, averaged over seeds/datasets."""
    by: dict[str, list[RunRecord]] = {}
    for r in records:
        by.setdefault((method_names or {}).get(r.variant, r.variant), []).append(r)
    return {m: {"n_params": int(np.median([r.n_params for r in rs])),
                "train_s_per_epoch": round(float(np.mean([r.train_s_per_epoch for r in rs])), 4),
                "infer_ms_per_sample": round(float(np.mean([r.infer_ms_per_sample for r in rs])), 5)}
            for m, rs in by.items()}


# ----------------------------------------------------------------------------------------------
# Figures
def setup_plots() -> None:
    """Seaborn theme, and the inline backend inside a notebook kernel.

    A kernel started with ``MPLBACKEND=Agg`` in its environment would silently drop every figure
    from the executed notebook (and so from the book); forcing ``inline`` there prevents that.
    """
    try:
        from IPython import get_ipython
        ip = get_ipython()
        if ip is not None and getattr(ip, "kernel", None) is not None:
            ip.run_line_magic("matplotlib", "inline")
    except ImportError:
        pass
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 100, "savefig.bbox": "tight"})


def plot_metric_bars(long: pd.DataFrame, metric: str, ax=None, title: str | None = None):
    """Bar per method (mean ± std over seeds), one panel per call; reported values as black ticks."""
    d = long[(long["metric"] == metric) & long["mean"].notna()].copy()
    s = display_scale(metric)
    d["value"] = d["mean"].astype(float) * s
    d["err"] = d["std"].fillna(0).astype(float) * s
    ax = ax or plt.subplots(figsize=(6, 0.45 * max(3, len(d)) + 1))[1]
    labels = [f"{a} · {b}" if d["dataset"].nunique() > 1 else b for a, b in zip(d["dataset"], d["method"])]
    ax.barh(labels, d["value"], xerr=d["err"], color=sns.color_palette("colorblind", len(d)), alpha=0.85)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric}{' ×100' if s != 1 else ''} (mean ± std over seeds)")
    ax.set_title(title or metric)
    return ax


def plot_mosi_labels(table: pd.DataFrame):
    """Real MOSI label histogram per split, and the share of negative / zero / positive labels."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    for split in ("train", "valid", "test"):
        g = table[table["split"] == split]
        axes[0].hist(g["label"], bins=np.arange(-3.1, 3.2, 0.2), alpha=0.55, label=f"{split} (n={len(g)})", density=True)
    axes[0].set(xlabel="sentiment label", ylabel="density", title="CMU-MOSI labels per split (real)")
    axes[0].legend()
    classes = pd.cut(table["label"].round(6), [-3.01, -1e-4, 1e-4, 3.01], labels=["negative", "zero", "positive"])
    share = pd.crosstab(table["split"], classes, normalize="index").reindex(["train", "valid", "test"])
    share.plot.bar(stacked=True, ax=axes[1], title="share of negative / exactly-zero / positive labels", rot=0)
    axes[1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_mosei_labels(table: pd.DataFrame):
    """The coarse MOSEI label file: 7-class sentiment and strongest-emotion counts."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    table["label7"].value_counts().sort_index().plot.bar(ax=axes[0], rot=0, title="MOSEI 7-class sentiment (real label file)")
    table["emotion"].value_counts().plot.bar(ax=axes[1], rot=30, title="MOSEI strongest emotion (label6)")
    fig.tight_layout()
    return fig


def plot_training_curves(records: Iterable[RunRecord], key: str = "val_select", ax=None, title: str = ""):
    """A per-epoch history key (``val_select``, ``train_loss``, or a model's scalar internal such as
    ``train_mi_mean``) per variant: mean over seeds, band = min..max. Records without the key are skipped."""
    rows = [{"variant": r.variant, "dataset": r.dataset, "seed": r.seed, "epoch": h["epoch"], key: h[key]}
            for r in records for h in r.history if key in h]
    df = pd.DataFrame(rows)
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    if not df.empty:
        sns.lineplot(df, x="epoch", y=key, hue="variant", style="dataset" if df["dataset"].nunique() > 1 else None,
                     errorbar=("pi", 100), marker="o", ax=ax)
    ax.set_title(title or f"training curves ({key})")
    return ax


def plot_effects(effects: Iterable[Effect], ax=None, title: str = "Seed-paired effects (95 % bootstrap CI)"):
    """Forest plot of claim effects; the verdict is the colour."""
    es = list(effects)
    colors = {"supported": "#2ca02c", "not supported": "#d62728", "inconclusive": "#ff7f0e"}
    ax = ax or plt.subplots(figsize=(6.5, 0.45 * max(3, len(es)) + 1))[1]
    for i, e in enumerate(es):
        s = display_scale(e.metric)
        ax.errorbar(e.effect * s, i, xerr=[[max(0.0, (e.effect - e.ci_low) * s)], [max(0.0, (e.ci_high - e.effect) * s)]],
                    fmt="o", color=colors[e.verdict], capsize=3)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(es)), [f"{e.id} · {e.dataset} · {e.metric}" for e in es])
    ax.invert_yaxis()
    ax.set_xlabel("effect in the claim's direction (display units)")
    ax.set_title(title)
    return ax


def plot_sweep(frame: pd.DataFrame, x: str, y: str, ax=None, title: str = "", mark: float | None = None,
               logx: bool = False, hue: str | None = None):
    """A hyper-parameter sweep: mean over seeds with a ± std band, seeds as dots; ``mark`` draws a
    dashed vertical line (e.g. the paper's chosen value). ``frame`` has one row per (x, seed[, hue])."""
    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    s = display_scale(y)
    groups = [(None, frame)] if hue is None else list(frame.groupby(hue, sort=False))
    for i, (name, g) in enumerate(groups):
        stats = g.groupby(x)[y].agg(["mean", "std"]).sort_index() * s
        c = sns.color_palette("colorblind")[i]
        ax.plot(stats.index, stats["mean"], marker="o", color=c, label=name)
        ax.fill_between(stats.index, stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0),
                        color=c, alpha=0.2)
        ax.scatter(g[x], g[y] * s, color=c, s=10, alpha=0.5)
    if mark is not None:
        ax.axvline(mark, color="k", ls="--", lw=0.8)
    if logx:
        ax.set_xscale("log", base=2)
    ax.set(xlabel=x, ylabel=f"{y}{' ×100' if s != 1 else ''}", title=title)
    if hue is not None:
        ax.legend(fontsize=8)
    return ax


def heatmap(table: pd.DataFrame, title: str = "", fmt: str = ".2f", cmap: str = "viridis", center: float | None = None,
            vmin: float | None = None, vmax: float | None = None, ax=None, cbar_label: str = ""):
    """Annotated seaborn heat map of a (rows × columns) table."""
    ax = ax or plt.subplots(figsize=(1.1 * table.shape[1] + 2.5, 0.5 * table.shape[0] + 1.5))[1]
    sns.heatmap(table.astype(float), annot=True, fmt=fmt, cmap=cmap, center=center, vmin=vmin, vmax=vmax, ax=ax,
                cbar_kws={"label": cbar_label} if cbar_label else None)
    ax.set_title(title)
    return ax


def group_breakdown(records: Iterable[RunRecord], key: str = "acc_by_interaction") -> pd.DataFrame:
    """Mean over seeds of a per-group summary stored in ``RunRecord.extras[key]`` (variant × group)."""
    rows = [{"variant": r.variant, "dataset": r.dataset, "group": g, "value": v}
            for r in records for g, v in r.extras.get(key, {}).items()]
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).pivot_table(index="variant", columns="group", values="value", aggfunc="mean", sort=False)


# ----------------------------------------------------------------------------------------------
# Mixture-of-experts tables and figures (from the summaries `expert_analysis.summarise_experts` stores)
def extras_table(records: Iterable[RunRecord], key: str, method_names: dict[str, str] | None = None,
                 metrics: list[str] | None = None) -> pd.DataFrame:
    """Long results table (mean ± std over seeds) of the scalar dict ``RunRecord.extras[key]``."""
    vals: dict[tuple[str, str, str], list[float]] = {}
    for r in records:
        for m, v in (r.extras.get(key) or {}).items():
            if (metrics is None or m in metrics) and v is not None and not (isinstance(v, float) and np.isnan(v)):
                vals.setdefault((r.dataset, (method_names or {}).get(r.variant, r.variant), m), []).append(float(v))
    rows = [{"dataset": d, "method": meth, "metric": m, "reported": None, "mean": round(float(np.mean(v)), 6),
             "std": round(float(np.std(v, ddof=1)), 6) if len(v) > 1 else 0.0, "n_seeds": len(v)}
            for (d, meth, m), v in vals.items()]
    return pd.DataFrame(rows, columns=["dataset", "method", "metric", "reported", "mean", "std", "n_seeds"])


def extras_per_seed(records: Iterable[RunRecord], dataset: str, variant: str, key: str,
                    field: str | Callable[[dict], float]) -> dict[int, float]:
    """``{seed: value}`` of one field of ``extras[key]`` (or a function of it), for paired claims."""
    out = {}
    for r in records:
        if r.dataset == dataset and r.variant == variant and r.extras.get(key):
            d = r.extras[key]
            out[r.seed] = float(field(d) if callable(field) else d[field])
    if not out:
        raise KeyError(f"no extras[{key!r}] for dataset {dataset!r}, variant {variant!r}")
    return out


def weights_frame(records: Iterable[RunRecord], variant: str, type_names: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Per-sample expert weights kept in the records (long: dataset, seed, sample, expert, weight, type)."""
    rows = []
    for r in records:
        if r.variant != variant or "weights" not in r.extras:
            continue
        names, inter = r.extras["expert_names"], r.extras.get("interaction")
        w = np.asarray(r.extras["weights"], dtype=float)
        df = pd.DataFrame(w, columns=names).assign(sample=np.arange(len(w)), seed=r.seed, dataset=r.dataset)
        if inter is not None and type_names is not None:
            df["type"] = [type_names[i] for i in inter]
        rows.append(df.melt(id_vars=[c for c in ("dataset", "seed", "sample", "type") if c in df], var_name="expert",
                            value_name="weight"))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def plot_weight_distributions(wf: pd.DataFrame, title: str = "", ax=None):
    """Paper Fig. 4: the distribution of each expert's weight over the test set (all seeds pooled)."""
    ax = ax or plt.subplots(figsize=(7, 3.2))[1]
    sns.violinplot(wf, x="expert", y="weight", hue="dataset" if wf["dataset"].nunique() > 1 else None,
                   cut=0, density_norm="width", inner="quartile", ax=ax)
    ax.axhline(1 / wf["expert"].nunique(), color="k", lw=0.8, ls="--")
    ax.set_title(title or "expert weights over the test set (dashed: uniform)")
    return ax


def plot_sample_weights(wf: pd.DataFrame, n: int = 8, seed: int | None = None, ax=None, title: str = ""):
    """Per-sample interpretation: stacked expert weights of the first ``n`` test samples of one run."""
    d = wf[wf["seed"] == (seed if seed is not None else wf["seed"].min())]
    d = d[d["dataset"] == d["dataset"].iloc[0]]
    wide = d[d["sample"] < n].pivot_table(index="sample", columns="expert", values="weight", sort=False)
    if "type" in d:
        types = d.drop_duplicates("sample").set_index("sample")["type"]
        wide.index = [f"#{i} ({types[i]})" for i in wide.index]
    ax = ax or plt.subplots(figsize=(7, 3.2))[1]
    wide.plot.barh(stacked=True, ax=ax, width=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("weight")
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8)
    ax.set_title(title or "per-sample expert weights")
    return ax


def weights_by_type_table(records: Iterable[RunRecord], variant: str, dataset: str) -> pd.DataFrame:
    """Mean expert weight by true interaction type (types × experts), averaged over seeds."""
    tabs = [pd.DataFrame(r.extras["weights_by_type"]).T for r in records
            if r.variant == variant and r.dataset == dataset and r.extras.get("weights_by_type")]
    if not tabs:
        return pd.DataFrame()
    return sum(tabs) / len(tabs)


# ----------------------------------------------------------------------------------------------
# Glue and environment
def glue_numbers(values: dict[str, Any], display: bool = False) -> None:
    """`myst_nb.glue` each value as a plain float (numpy scalars break cross-document glue)."""
    from myst_nb import glue
    for k, v in values.items():
        glue(k, float(v) if isinstance(v, (int, float, np.number)) else v, display=display)


def environment_summary(device: str = "cpu") -> dict[str, Any]:
    import torch
    return {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
            "msa_lib": msa_lib.__version__, "commit": git_commit(), "device": device,
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
