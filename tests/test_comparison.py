"""The cross-paper harness (`msa_lib.comparison`), the per-dataset input projection every model can
wear for DG (`SourceProjected`), `model_cost`'s fallbacks and the chapter run order."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from msa_lib import comparison as C
from msa_lib import domains as D
from msa_lib.data import get_dataset
from msa_lib.data.schema import Batch, DataError
from msa_lib.experiments import RunRecord, Variant, model_cost, paired_effect
from msa_lib.models import build
from msa_lib.models.base import SourceProjected
from msa_lib.reporting import validate_results, write_results


def rec(dataset: str, variant: str, seed: int, **metrics: float) -> RunRecord:
    return RunRecord(dataset=dataset, variant=variant, seed=seed, param_hash="h", model="m", params={},
                     val_metrics={}, test_metrics=dict(metrics), best_epoch=1, epochs_run=1, train_seconds=1.0,
                     train_s_per_epoch=0.5, infer_ms_per_sample=0.01, n_params=10)


@pytest.fixture(scope="module")
def tiny():
    return get_dataset("synth-mosi", seed=0, scale=0.05, seq_len=6)


def test_roster_ties_widths_and_needs_clues_for_text(tiny):
    r = C.roster(tiny, width=16)
    assert "TEXT" not in r  # no explanation tokens attached
    assert list(r)[:3] == ["I2MoE", "MMoLRE", "MIDG"] and {"EF", "LF", "MulT", "LRTF", "ALMT", "ERM"} <= set(r)
    assert r["MIDG"].hparams["hidden"] == 16 and r["I2MoE"].hparams["hidden"] == 16
    assert r["MMoLRE"].hparams["d"] % 6 == 0 and r["MMoLRE"].hparams["rank"] == r["MMoLRE"].hparams["d"] // 6
    for name, v in r.items():  # every roster entry builds for the dataset
        assert build(v.model, tiny.dims, **v.hparams) is not None, name
    assert list(C.roster(tiny, 16, ["EF", "MIDG"])) == ["MIDG", "EF"]
    with pytest.raises(ValueError, match="unknown methods"):
        C.roster(tiny, 16, ["EF", "nope"])
    with pytest.raises(ValueError, match="multiple of 4"):
        C.roster(tiny, 10)


def _padded_batch(n: int = 6) -> tuple[Batch, dict]:
    g = torch.Generator().manual_seed(0)
    source_dims = {0: {"text": 8, "audio": 3, "vision": 4}, 1: {"text": 8, "audio": 5, "vision": 2}}
    x = {m: torch.randn(n, 4, w, generator=g) for m, w in (("text", 8), ("audio", 5), ("vision", 4))}
    domain = torch.tensor([0, 1] * (n // 2))
    for m in ("audio", "vision"):  # zero padding beyond each dataset's native width
        for i, dom in enumerate(domain.tolist()):
            x[m][i, :, source_dims[dom][m]:] = 0
    b = Batch(**x, text_mask=None, audio_mask=None, vision_mask=None, labels=torch.zeros(n), domain=domain)
    return b, source_dims


def test_source_projected_reads_only_native_columns_and_trains_its_projections():
    b, sd = _padded_batch()
    dims = {"text": 8, "audio": 5, "vision": 4}
    torch.manual_seed(0)
    m = build("early_fusion", dims, source_dims=sd, source_width=6)
    assert isinstance(m, SourceProjected)
    assert m.sources.width == {"text": 6, "audio": 5, "vision": 4}  # min(source_width, widest native width)
    m.eval()  # no dropout: the two passes must be comparable
    out = m(b).pred
    # garbage in the padding of dataset 0's audio (native width 3) must not change anything
    noisy = b.audio.clone()
    noisy[b.domain == 0, :, 3:] = 99.0
    from dataclasses import replace
    assert torch.equal(m(replace(b, audio=noisy)).pred, out)
    out.sum().backward()
    assert all(p.grad is not None for p in m.sources.parameters())
    assert m.untrained_projections([0]) == {"audio": [1], "vision": [1]}  # widths 5 and 2 only in dataset 1
    with pytest.raises(DataError, match="batch.domain"):
        m(replace(b, domain=None))


def test_dg_hparams_give_every_model_the_projection():
    sets = {n: get_dataset(n, seed=0, scale=0.03, seq_len=4) for n in ("synth-mosi", "synth-sims")}
    t = D.cross_dataset(sets, ["synth-mosi"], "synth-sims", protocol="single-source")
    v = D.with_dg_hparams({"EF": "early_fusion", "MIDG": Variant("midg", {"hidden": 8})}, t)
    assert "source_dims" in v["EF"].hparams and "n_domains" not in v["EF"].hparams
    assert isinstance(build("early_fusion", t.dims, **v["EF"].hparams), SourceProjected)
    assert not isinstance(build("midg", t.dims, **v["MIDG"].hparams), SourceProjected)  # MIDG has its own front end
    assert not isinstance(build("early_fusion", t.dims, source_dims=None), SourceProjected)


def test_leaderboard_marks_best_and_significantly_worse():
    recs = []
    for s, (a, b, c) in zip((1, 2, 3), ((0.80, 0.70, 0.79), (0.82, 0.71, 0.84), (0.81, 0.69, 0.80))):
        recs += [rec("d", "A", s, Has0_acc_2=a, MAE=1 - a), rec("d", "B", s, Has0_acc_2=b, MAE=1 - b),
                 rec("d", "Cc", s, Has0_acc_2=c, MAE=1 - c)]
    lb = C.leaderboard(recs, {"d": ["Has0_acc_2", "MAE"]}, n_boot=2000)
    acc = lb[lb.metric == "Has0_acc_2"].set_index("method")
    assert acc.loc["A", "best"] and not acc.loc["B", "best"]
    assert acc.loc["A", "mean"] == pytest.approx(0.81)
    assert acc.loc["B", "worse_than_best"]  # 0.11 worse on every seed
    assert not acc.loc["Cc", "worse_than_best"]  # -0.01, +0.02, +0.01: the CI spans 0
    assert acc.loc["B", "vs_best_effect"] == pytest.approx(0.11)
    mae = lb[lb.metric == "MAE"].set_index("method")
    assert mae.loc["A", "best"] and mae.loc["B", "vs_best_effect"] == pytest.approx(0.11)  # lower is better
    wide = C.leaderboard_wide(lb)
    assert wide.loc["A", ("d", "Has0_acc_2")].endswith("★") and wide.loc["B", ("d", "Has0_acc_2")].endswith("▼")
    assert wide.loc["A", ("d", "MAE")] == "0.190 ± 0.010 ★"


def test_beats_best_baseline_picks_the_best_baseline_by_mean():
    vals = {"M": {1: 0.9, 2: 0.91, 3: 0.92}, "B1": {1: 0.5, 2: 0.5, 3: 0.5}, "B2": {1: 0.8, 2: 0.81, 3: 0.8}}
    (e,) = C.beats_best_baseline(vals, dataset="d", metric="Has0_acc_2", methods=["M"], baselines=["B1", "B2"],
                                 claim_id="X1")
    assert "B2" in e.claim and e.effect == pytest.approx(np.mean([0.1, 0.1, 0.12]), abs=1e-6)  # effects are rounded to 6 places
    (m,) = C.beats_best_baseline({k: v for k, v in vals.items()}, dataset="d", metric="MAE", methods=["M"],
                                 baselines=["B1", "B2"], claim_id="X2")
    assert "B1" in m.claim  # for MAE the lowest mean is the best baseline


def test_claims_dashboard_gathers_every_chapter_and_names_the_missing(tmp_path):
    e = paired_effect({1: 0.8, 2: 0.9, 3: 0.85}, {1: 0.7, 2: 0.8, 3: 0.8}, id="C1", claim="a beats b", dataset="d",
                      metric="Has0_acc_2")
    table = pd.DataFrame([{"dataset": "d", "method": "a", "metric": "MAE", "reported": None, "mean": 1.0, "std": 0.1,
                           "n_seeds": 3}])
    for ch in ("01_x", "02_y"):
        write_results(tmp_path, ch, profile="smoke", datasets=["d"], tables={"T": table}, claims=[e, e], cost={},
                      seeds=[1, 2, 3])
    dash, missing = C.claims_dashboard(tmp_path, ["01_x", "02_y", "03_z"])
    assert missing == ["03_z"] and len(dash) == 4
    assert set(dash["chapter"]) == {"01_x", "02_y"} and (dash["effect"] == e.effect).all()
    long = C.claims_long(dash)
    validate_results({"notebook": "n", "profile": "p", "datasets": [], "tables": {"T-claims": long.to_dict("records")},
                      "claims": [], "cost": {}, "provenance": {"msa_lib": "0", "commit": "c", "seeds": []}})
    fig = C.plot_claims_forest(dash)
    assert len(fig.axes) == 2


def test_peak_and_cost_table(tiny):
    pk = C.peak_gflops(128, repeats=2)
    assert pk["gflops"] > 0 and pk["n"] == 128
    v = {"EF": Variant("early_fusion", {"hidden": 16, "proj": 8})}
    recs = [rec(tiny.name, "EF", s) for s in (1, 2)]
    t = C.cost_table(recs, v, tiny, peak=10.0)
    row = t.iloc[0]
    flops = model_cost("early_fusion", tiny.dims, seq_len=max(tiny.seq_lens.values()), hidden=16, proj=8)["flops"]
    assert row["flops_per_sample"] == flops and row["n_seeds"] == 2
    assert row["achieved_gflops"] == pytest.approx(flops / 1e-5 / 1e9)
    assert row["pct_of_peak"] == pytest.approx(10 * row["achieved_gflops"])


def test_model_cost_falls_back_to_cpu_for_data_dependent_routing_and_takes_extra_inputs():
    dims = {"text": 16, "audio": 4, "vision": 6}
    c = model_cost("midg", dims, seq_len=5, hidden=8, d_latent=4)  # top-k routing cannot run on meta tensors
    assert c["device"] == "cpu" and c["flops"] > 0
    assert model_cost("early_fusion", dims, seq_len=5)["device"] == "meta"
    hp = dict(dim=16, heads=2, dim_head=8, mlp_dim=16, depth=1, max_frames=5, text_frames=5, explanations=True,
              clue_dim=12, clue_len=3)
    with pytest.raises(ValueError, match="audio_clue"):
        model_cost("text", dims, seq_len=5, **hp)
    assert model_cost("text", dims, seq_len=5, extra_inputs={"audio_clue": (3, 12), "vision_clue": (3, 12)}, **hp)["flops"] > 0


def test_chapters_that_read_the_others_run_last(tmp_path):
    from msa_lib.cli import notebook_paths
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    for name, meta in (("00_a", {}), ("05_cmp", {"msa_book": {"reads_other_chapters": True}}), ("06_b", {})):
        (nbs / f"{name}.ipynb").write_text(json.dumps({"cells": [], "metadata": meta, "nbformat": 4, "nbformat_minor": 5}))
    assert [p.stem for p in notebook_paths(root=tmp_path)] == ["00_a", "06_b", "05_cmp"]
