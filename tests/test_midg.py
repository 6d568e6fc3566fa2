"""MIDG (specification-level reconstruction) and the cross-dataset DG protocol (`msa_lib.domains`).

The issue's required checks: the GRL flips and scales the gradient, the MI term falls on a toy
problem, the CM-Adapter's gate bounds the injected knowledge, and per-dataset width mismatches fail
clearly. Plus the DANN ramp, routing, every ablation switch, training, determinism, label
rescaling and the protocol builders.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from msa_lib import domains as D
from msa_lib.data import get_dataset
from msa_lib.data.schema import DataError, make_batch
from msa_lib.experiments import Variant, run_one
from msa_lib.metrics import MOSI_KEYS, regression_metrics
from msa_lib.models import build
from msa_lib.models.midg import (CrossModalAdapter, InformationDecoupling, MixtureOfInvariantExperts, jeffreys,
                                 posterior_overlap)
from msa_lib.nn import dann_lambda, grad_reverse
from msa_lib.training import TrainConfig, fit, predict, set_seed

SMALL = dict(hidden=16, d_latent=8, heads=2, n_experts=3, top_k=1, dropout=0.0)
SYNTH = dict(scale=0.01, seq_len=8)


@pytest.fixture(scope="module")
def mosi():
    return get_dataset("synth-mosi", seed=0, scale=0.05, seq_len=8)  # 64 / 11 / 34 samples


@pytest.fixture(scope="module")
def trio():
    return {n: get_dataset(n, seed=0, **SYNTH) for n in ("synth-mosi", "synth-sims", "synth-mosei")}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster on a shared 2-core machine."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _batch(ds, n=8, split="train"):
    return make_batch(ds.split(split), np.arange(n))


# ----------------------------------------------------------------------------------------------
# Gradient reversal and its ramp
def test_grl_is_identity_forward_and_flips_and_scales_the_gradient():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = grad_reverse(x, 0.5)
    assert torch.equal(y, x)
    (y * torch.tensor([1.0, 2.0, 4.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([-0.5, -1.0, -2.0]))
    x.grad = None
    grad_reverse(x, 0.0).sum().backward()
    assert torch.equal(x.grad.abs(), torch.zeros(3))
    # only what lies *below* the layer is reversed: the discriminator's own weight learns normally
    w, v = torch.tensor(2.0, requires_grad=True), torch.tensor(3.0, requires_grad=True)
    (w * grad_reverse(v, 1.0)).backward()
    assert float(w.grad) == 3.0 and float(v.grad) == -2.0
    with pytest.raises(ValueError, match="lam"):
        grad_reverse(x, -1.0)


def test_dann_ramp_values():
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1) and dann_lambda(1.0) > 0.9999
    assert dann_lambda(0.5) == pytest.approx(0.9866142981514305)
    ps = np.linspace(0, 1, 11)
    assert np.all(np.diff([dann_lambda(p) for p in ps]) > 0)
    assert dann_lambda(-0.3) == 0.0 and dann_lambda(2.0) == dann_lambda(1.0)  # clipped to [0, 1]


def test_grl_coefficient_follows_set_progress_or_the_step_counter(mosi):
    b = _batch(mosi)
    m = build("midg", mosi.dims, **SMALL, expected_steps=4).train()
    assert float(m(b).extras["grl_lambda"]) == 0.0  # step 0
    m(b), m(b)
    assert float(m(b).extras["grl_lambda"]) == pytest.approx(dann_lambda(3 / 4))  # no hook: counter / expected_steps
    m.set_progress(0.2)
    assert float(m(b).extras["grl_lambda"]) == pytest.approx(dann_lambda(0.2))


def test_fit_reports_progress_every_step(mosi):
    seen: list[float] = []
    m = build("midg", mosi.dims, **SMALL)
    m.set_progress = seen.append  # the hook fit looks for
    fit(m, mosi, TrainConfig(epochs=2, batch_size=32, patience=None, progress=False))
    steps = 2 * mosi.n_batches("train", 32)
    assert seen == [i / steps for i in range(steps)]


# ----------------------------------------------------------------------------------------------
# Information-entropy decoupling
def test_jeffreys_and_overlap_golden_values():
    z = torch.zeros(1, 1)
    assert float(jeffreys(z, z, z + 1, z)) == pytest.approx(1.0)  # unit variances, means 1 apart
    assert float(jeffreys(z, z, z, z + math.log(2))) == pytest.approx(0.25)  # variances 1 vs 2
    assert float(posterior_overlap(z, z, z + 1, z)) == pytest.approx(math.exp(-1))
    mu, lv = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(posterior_overlap(mu, lv, mu, lv), torch.ones(3))


def test_decoupling_drives_the_mi_proxy_down_on_a_toy_problem():
    torch.manual_seed(0)
    dec = InformationDecoupling(("text", "audio"), d_in=8, d_z=4)
    with torch.no_grad():  # A^om starts as a near copy of A^im: the two carry the same information
        for m in ("text", "audio"):
            dec.om[m].load_state_dict(dec.im[m].state_dict())
            for p in dec.om[m].parameters():
                p.add_(0.05 * torch.randn_like(p))
    h = {"text": torch.randn(16, 8), "audio": torch.randn(16, 8)}

    def mi() -> torch.Tensor:
        return torch.stack(list(dec(h)[2].values())).mean()

    def value() -> float:
        return float(mi().detach())

    start = value()
    opt = torch.optim.Adam(dec.parameters(), lr=1e-2)
    for _ in range(40):
        loss = mi()
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = value()
    assert start > 0.9
    assert end < 0.3 * start


def test_decoupling_samples_in_training_and_uses_means_in_eval():
    torch.manual_seed(0)
    dec = InformationDecoupling(("text",), 6, 3)
    h = {"text": torch.randn(4, 6)}
    dec.eval()
    a, b = dec(h)[0]["text"], dec(h)[0]["text"]
    assert torch.equal(a, b) and torch.equal(a, dec.im["text"](h["text"])[0])
    dec.train()
    assert not torch.equal(dec(h)[0]["text"], dec(h)[0]["text"])
    single = InformationDecoupling(("text",), 6, 3, decouple=False).eval()
    z_im, z_om, overlap = single(h)
    assert z_om["text"] is z_im["text"] and overlap is None


# ----------------------------------------------------------------------------------------------
# MoIE and the CM-Adapter
def test_router_weights_sum_to_one_and_balance_loss_endpoints():
    torch.manual_seed(0)
    moie = MixtureOfInvariantExperts(6, 8, n_experts=4, top_k=2)
    c = torch.rand(10, 6) + 0.1
    f, probs, lb, top1 = moie(c)
    assert f.shape == (10, 6) and probs.shape == (10, 4) and top1.shape == (10,)
    torch.testing.assert_close(probs.sum(-1), torch.ones(10))
    assert 0 < float(lb.detach()) <= 4
    with torch.no_grad():
        moie.moe.router.weight.zero_()  # uniform router: the balanced value E·Σ f·P = 1
    assert float(moie(c)[2].detach()) == pytest.approx(1.0)
    with torch.no_grad():
        moie.moe.router.weight[2] = 50.0  # collapsed: expert 2 takes every sample → E
    _, probs, lb, top1 = moie(c)
    assert float(lb.detach()) == pytest.approx(4.0, abs=1e-3) and bool((top1 == 2).all())
    dense = MixtureOfInvariantExperts(6, 8, use_moe=False)
    out = dense(c)
    assert out[0].shape == (10, 6) and out[1:] == (None, None, None)


def test_cm_adapter_gate_bounds_the_injected_knowledge():
    torch.manual_seed(0)
    ad = CrossModalAdapter(8, heads=2)
    x, others = torch.randn(5, 8), torch.randn(5, 2, 8)
    out, g, inj = ad(x, others)
    assert bool(((g > 0) & (g < 1)).all())
    assert bool(((out - x).abs() <= inj.abs() + 1e-6).all())
    assert float(inj.detach().abs().max()) > 1e-2  # the attention does inject something
    assert not torch.allclose(ad(x, torch.randn(5, 2, 8))[2], inj)  # ... and it comes from the other modalities
    with torch.no_grad():
        ad.gate.weight.zero_()
        ad.gate.bias.fill_(-1e4)  # gate → 0: nothing is injected
    out0, g0, _ = ad(x, others)
    assert torch.equal(g0, torch.zeros_like(g0)) and torch.equal(out0, x)
    with torch.no_grad():
        ad.gate.bias.fill_(1e4)  # gate → 1: the whole update
    out1, _, inj1 = ad(x, others)
    torch.testing.assert_close(out1, x + inj1)
    ungated = CrossModalAdapter(8, 2, use_gate=False)
    o, g_none, i = ungated(x, others)
    assert g_none is None
    torch.testing.assert_close(o, x + i)
    o1, g1, i1 = ad(x, others[:, :0])  # no other modality: identity
    assert torch.equal(o1, x) and g1 is None and torch.equal(i1, torch.zeros_like(x))


# ----------------------------------------------------------------------------------------------
# Widths, projections and domain labels
def test_width_mismatch_without_projection_fails_clearly(mosi, trio):
    sims = trio["synth-sims"]
    model = build("midg", mosi.dims, **SMALL)
    with pytest.raises(DataError) as e:
        model(_batch(sims, 2))
    msg = str(e.value)
    assert "modality 'audio': model built for width 5, batch has 33" in msg
    assert "modality 'vision': model built for width 20, batch has 709" in msg and "'text'" not in msg
    with pytest.raises(DataError, match="modality 'audio' has width 5 in 'synth-mosi' but 33 in 'synth-sims'"):
        D.project_to_shared({"synth-mosi": mosi, "synth-sims": sims}, projection=None)
    with pytest.raises(DataError, match="width 5 in 'synth-mosi' but 33 in 'synth-sims'"):
        D.cross_dataset({"synth-mosi": mosi, "synth-sims": sims}, ["synth-mosi"], "synth-sims", projection=None)
    with pytest.raises(ValueError, match="source_dims"):
        build("midg_erm", {"text": 768, "audio": 33, "vision": 709},
              source_dims={0: {"text": 768, "audio": 74, "vision": 20}})


def test_per_dataset_projection_reads_only_the_native_columns(mosi, trio):
    task = D.single_source_pairs({"synth-mosi": mosi, "synth-sims": trio["synth-sims"]})["synth-mosi->synth-sims"]
    model = build("midg_erm", task.dims, hidden=16, dropout=0.0, **D.dg_hparams(task, "midg_erm")).eval()
    b = _batch(task, 6)  # synth-mosi samples: audio 5 of 33 columns, vision 20 of 709
    ref = model(b).pred
    b.audio[..., 5:] = torch.randn_like(b.audio[..., 5:])
    b.vision[..., 20:] = torch.randn_like(b.vision[..., 20:])
    assert torch.equal(model(b).pred, ref)  # padding columns never reach the model
    b.audio[..., :5] += 1.0
    assert not torch.allclose(model(b).pred, ref)
    with pytest.raises(DataError, match="domain id 7"):
        model(replace(b, domain=torch.full_like(b.domain, 7)))
    with pytest.raises(DataError, match="batch.domain"):
        model(replace(b, domain=None))
    # 'width' shares the text projection with the held-out target (same 768-d space); 'dataset' does not
    assert model.untrained_projections([0]) == {"audio": [1], "vision": [1]}
    strict = build("midg_erm", task.dims, projection="dataset", **D.dg_hparams(task, "midg_erm"))
    assert strict.untrained_projections([0]) == {"text": [1], "audio": [1], "vision": [1]}


def test_domain_label_modes(mosi):
    b = _batch(mosi)
    single = build("midg", mosi.dims, **SMALL).train()
    assert single.domain_label_mode == "im_vs_om" and single(b).extras["domain_logits"].shape == (8, 2)
    multi = build("midg", mosi.dims, **SMALL, n_domains=3).train()
    out = multi(b)
    assert multi.domain_label_mode == out.extras["domain_labels"] == "source"
    assert out.extras["domain_logits"].shape == (8, 3)
    assert build("midg", mosi.dims, **SMALL, use_grl=False).domain_label_mode == "none"
    with pytest.raises(ValueError, match="n_domains >= 2"):
        build("midg", mosi.dims, domain_labels="source")
    with pytest.raises(DataError, match="batch.domain"):
        multi(replace(b, domain=None))
    unseen = replace(b, domain=torch.full_like(b.domain, 5))
    with pytest.raises(DataError, match=r"domain id\(s\) \[5\]"):
        multi(unseen)
    multi.eval()  # at evaluation a held-out target's id is simply not scored
    assert math.isnan(float(multi(unseen).extras["disc_acc"]))


# ----------------------------------------------------------------------------------------------
# Ablations, modalities, training, determinism
ABLATIONS = {"full": {}, "no decoupling": dict(use_decoupling=False), "no MoIE": dict(use_moie=False),
             "no GRL": dict(use_grl=False), "no adapter": dict(use_adapter=False), "no gate": dict(use_gate=False),
             "adapter only": dict(alpha=0.0), "alpha/beta": dict(alpha=0.7, beta=0.3),
             "source labels": dict(domain_labels="source", n_domains=2), "gru": dict(encoder="gru"),
             "binary": dict(n_out=2)}
ABSENT = {"no decoupling": ("mi",), "no MoIE": ("router", "lb_loss"), "no GRL": ("domain_logits", "disc_acc"),
          "no adapter": ("y2", "gate:text"), "no gate": ("gate:text",),
          "adapter only": ("y1", "router", "domain_logits")}


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_every_ablation_switch_runs_forward_and_backward(mosi, name):
    torch.manual_seed(0)
    b = _batch(mosi)
    model = build("midg", mosi.dims, **{**SMALL, **ABLATIONS[name]}).train()
    out = model(b)
    binary = name == "binary"
    assert out.pred.shape == ((8, 2) if binary else (8,))
    task = (torch.nn.functional.cross_entropy(out.pred, (b.labels > 0).long()) if binary
            else torch.nn.functional.l1_loss(out.pred, b.labels))
    (task + out.aux_loss).backward()
    assert torch.isfinite(out.aux_loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    for key in ABSENT.get(name, ()):
        assert key not in out.extras, key
    if name == "full":
        assert {"mi", "router", "domain_logits", "invariant", "gate:text", "disc_acc", "y1", "y2"} <= set(out.extras)
        assert out.extras["mi"].shape == (8,) and out.extras["invariant"].shape == (8, 24)
    model.eval()
    ev = model(b).extras
    if name == "alpha/beta":
        torch.testing.assert_close(model(b).pred, 0.7 * ev["y1"] + 0.3 * ev["y2"])
    if name == "no adapter":
        torch.testing.assert_close(model(b).pred, ev["y1"])
    if name == "adapter only":
        torch.testing.assert_close(model(b).pred, ev["y2"])


@pytest.mark.parametrize("mods", [("text",), ("audio",), ("text", "vision"), ("text", "audio", "vision")])
def test_any_modality_subset(mosi, mods):
    b = _batch(mosi)
    out = build("midg", mosi.dims, modalities=mods, **SMALL).train()(b)
    assert out.pred.shape == (8,) and torch.isfinite(out.pred).all()
    gates = {k for k in out.extras if k.startswith("gate:")}
    assert gates == (set() if len(mods) == 1 else {f"gate:{m}" for m in mods})  # one modality: adapter = identity
    assert out.extras["invariant"].shape == (8, SMALL["d_latent"] * len(mods))


def test_invalid_hparams_fail_clearly(mosi):
    for bad, match in [(dict(alpha=0.0, beta=0.0), "at least one branch"), (dict(d_latent=9), "divisible"),
                       (dict(domain_labels="dataset"), "domain_labels"), (dict(alpha=-1.0), "alpha"),
                       (dict(projection="pca", source_dims={0: mosi.dims}), "projection")]:
        with pytest.raises(ValueError, match=match):
            build("midg", mosi.dims, **{**SMALL, **bad})


@pytest.mark.parametrize("name", ["midg", "midg_erm"])
def test_trains_with_falling_loss(mosi, name):
    set_seed(0)
    hp = SMALL if name == "midg" else dict(hidden=16, dropout=0.0)
    model = build(name, mosi.dims, **hp)
    res = fit(model, mosi, TrainConfig(epochs=10, batch_size=16, lr=3e-3, patience=None, progress=False))
    losses = [r["train_loss"] for r in res.history]
    assert losses[-1] < 0.8 * losses[0], losses


def test_same_seed_gives_identical_predictions(mosi):
    def run() -> np.ndarray:
        set_seed(1)
        m = build("midg", mosi.dims, **SMALL)
        fit(m, mosi, TrainConfig(epochs=1, batch_size=16, patience=None, progress=False), seed=1)
        return predict(m, mosi, "test")

    a, b = run(), run()
    assert np.array_equal(a, b)


def test_predict_collects_per_sample_extras(mosi):
    set_seed(0)
    m = build("midg", mosi.dims, **SMALL)
    _, ex = predict(m, mosi, "test", batch_size=16, return_extras=True)
    n = len(mosi.test)
    assert ex["router"].shape == (n, 3) and ex["mi"].shape == (n,) and ex["invariant"].shape == (n, 24)
    assert ex["domain_logits"].shape == (n, 2) and ex["gate:audio"].shape == (n,)
    assert np.allclose(ex["router"].sum(1), 1, atol=1e-5) and ((ex["mi"] > 0) & (ex["mi"] <= 1)).all()


# ----------------------------------------------------------------------------------------------
# The DG protocol
def test_label_rescaling_round_trip(mosi, trio):
    r = D.rescale_labels(mosi)
    assert r.label_range == (-1.0, 1.0) and r.metric_family == "mosi"
    np.testing.assert_allclose(r.test.labels * 3, mosi.test.labels, atol=1e-5)
    np.testing.assert_allclose(D.to_native(r.test.labels, r), mosi.test.labels, atol=1e-5)
    rng = np.random.default_rng(0)
    p = np.clip(mosi.test.labels + rng.normal(0, 0.8, len(mosi.test)), -3, 3).astype(np.float32)
    got, want = D.target_metrics(p / 3, r), regression_metrics(p, mosi.test.labels, "mosi")
    assert set(got) == set(MOSI_KEYS)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=2e-4), k
    twice = D.rescale_labels(r, 0.5)  # rescaling composes; the native labels survive
    np.testing.assert_allclose(D.to_native(twice.test.labels, twice), mosi.test.labels, atol=1e-5)
    sims = D.rescale_labels(trio["synth-sims"])
    np.testing.assert_array_equal(sims.test.labels, trio["synth-sims"].test.labels)  # already in [-1, 1]


def test_single_source_pairs_train_and_test_on_the_requested_datasets(trio):
    pairs = D.single_source_pairs(trio)
    assert set(pairs) == {f"{a}->{b}" for a in trio for b in trio if a != b}
    for name, t in pairs.items():
        a, b = name.split("->")
        assert set(t.train.extras["source_dataset"]) == set(t.valid.extras["source_dataset"]) == {a}
        assert set(t.test.extras["source_dataset"]) == {b}
        assert set(np.unique(t.train.domain)) == {0} and set(np.unique(t.test.domain)) == {1}
        assert len(t.train) == len(trio[a].train) and len(t.test) == len(trio[b].test)
        assert t.metric_family == trio[b].metric_family and t.label_range == (-1.0, 1.0)
        assert np.abs(t.train.labels).max() <= 1 and np.abs(t.test.labels).max() <= 1
        assert t.dims == {m: max(trio[a].dims[m], trio[b].dims[m]) for m in t.dims}
        dg = t.provenance["dg"]
        assert t.is_synthetic and dg["sources"] == [a] and dg["target"] == b and dg["protocol"] == "single-source"
        assert D.dg_hparams(t) == {"source_dims": {0: trio[a].dims, 1: trio[b].dims}, "n_domains": 1}


def test_leave_one_out_trains_on_the_others(trio):
    loo = D.leave_one_out(trio)
    assert len(loo) == 3
    for name, t in loo.items():
        target = t.provenance["dg"]["target"]
        others = [n for n in trio if n != target]
        assert name == f"{'+'.join(others)}->{target}"
        assert set(t.train.extras["source_dataset"]) == set(others) and set(t.test.extras["source_dataset"]) == {target}
        assert set(np.unique(t.train.domain)) == {0, 1} and set(np.unique(t.test.domain)) == {2}
        assert len(t.train) == sum(len(trio[n].train) for n in others)
        assert D.dg_hparams(t)["n_domains"] == 2 and D.dg_hparams(t, "midg_erm").keys() == {"source_dims"}
        np.testing.assert_allclose(D.to_native(t.train.labels, t, "train"), t.train.extras["label_native"], atol=1e-5)
    task = loo["synth-mosi+synth-sims->synth-mosei"]  # the discriminator learns the 2 source ids ...
    set_seed(0)
    model = build("midg", task.dims, **SMALL, **D.dg_hparams(task))
    assert model.domain_label_mode == "source"
    fit(model, task, TrainConfig(epochs=1, batch_size=16, patience=None, progress=False))
    _, ex = predict(model, task, "test", return_extras=True)  # ... and the unseen target (id 2) is only scored
    assert ex["domain_logits"].shape == (len(task.test), 2) and np.isfinite(ex["domain_logits"]).all()


def test_dg_hparams_and_run_one_with_target_metrics(trio):
    task = D.cross_dataset(trio, ["synth-sims"], "synth-mosi")
    v = D.with_dg_hparams({"erm": Variant("midg_erm", {"hidden": 16}), "midg": "midg"}, task)
    assert v["erm"].hparams["hidden"] == 16 and "source_dims" in v["erm"].hparams
    assert v["midg"].hparams["n_domains"] == 1
    ef = D.with_dg_hparams({"ef": "early_fusion"}, task)["ef"]  # any model: build() wraps it in SourceProjected
    assert "source_dims" in ef.hparams and "n_domains" not in ef.hparams
    assert D.dg_hparams(trio["synth-mosi"]) == {"n_domains": 1} and D.dg_hparams(trio["synth-mosi"], "mult") == {}
    rec = run_one(task, "erm", v["erm"], seed=0, train=dict(epochs=1, batch_size=16, patience=None),
                  summarise=D.summarise_target)
    tm = rec.extras["target_test_metrics"]
    assert set(tm) == set(MOSI_KEYS)
    assert tm["Has0_acc_2"] == rec.test_metrics["Has0_acc_2"]  # scale-free keys agree ...
    assert tm["MAE"] == pytest.approx(3 * rec.test_metrics["MAE"], abs=1e-3)  # ... MAE is back on MOSI's scale
    assert rec.extras["untrained_projections"] == {"audio": [1], "vision": [1]}


def test_synth_domains_and_shift_sweep():
    ds = D.synth_domains("mosi", n_domains=3, domain_shift=1.5, scale=0.05, seq_len=8)
    assert set(np.unique(ds.train.domain)) == {0, 1} and set(np.unique(ds.test.domain)) == {2}
    assert "shift1.5" in ds.name and ds.provenance["config"]["domain_shift"] == 1.5
    assert D.dg_hparams(ds) == {"n_domains": 2}
    sweep = D.shift_sweep([0.0, 2.0], n_domains=3, scale=0.05, seq_len=8)
    assert list(sweep) == [0.0, 2.0] and sweep[0.0].name != sweep[2.0].name
    np.testing.assert_array_equal(sweep[0.0].test.labels, sweep[2.0].test.labels)  # same samples ...
    assert not np.allclose(sweep[0.0].test.audio, sweep[2.0].test.audio)  # ... shifted features
    with pytest.raises(ValueError, match="disjoint"):
        D.synth_domains("mosi", n_domains=3, train_domains=[0, 2], test_domains=[2], scale=0.05)


# ---- dg_analysis: the MIDG chapter's summaries ----------------------------------------------------------------
def test_routing_shares_and_domain_predictability():
    import numpy as np

    from msa_lib.dg_analysis import domain_predictability, routing_shares
    top = np.array([0, 0, 1, 2, 2, 2])
    shares = routing_shares(top, 4, {"a": np.array([1, 1, 1, 0, 0, 0], bool), "b": ~np.array([1, 1, 1, 0, 0, 0], bool),
                                     "empty": np.zeros(6, bool)})
    assert shares == {"a": [0.6667, 0.3333, 0.0, 0.0], "b": [0.0, 0.0, 1.0, 0.0]}  # empty groups are left out
    rng = np.random.default_rng(0)
    dom = np.repeat([0, 1], 60)
    separable = rng.standard_normal((120, 4)) + 4.0 * dom[:, None]
    noise = rng.standard_normal((120, 4))
    assert domain_predictability(separable, dom)["probe_acc"] > 0.95
    p = domain_predictability(noise, dom)
    assert p["probe_chance"] == 0.5 and abs(p["probe_acc"] - 0.5) < 0.2
