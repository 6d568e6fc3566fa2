"""TEXT: capacity dropping, per-sample routing, deterministic vs official evaluation, parameter count."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from msa_lib.data.schema import make_batch
from msa_lib.models import build, count_parameters
from msa_lib.models.text import TEXT, CrossGatedTemporalBlock, official_parameter_count
from msa_lib.nn.moe import NoisyTopKRouter, SampleRoutedMoE

SMALL = dict(dim=16, heads=2, dim_head=8, mlp_dim=16, depth=1, max_frames=12, explanations=False)


@pytest.fixture
def batch(tiny_ds):
    return make_batch(tiny_ds.train, list(range(8)))


# ---------------------------------------------------------------------------------------------- routing
def test_router_keeps_top_k_and_renormalises():
    torch.manual_seed(0)
    r = NoisyTopKRouter(4, n_experts=5, k=3)
    w, idx = r(torch.randn(6, 7, 4), noisy=False)
    assert w.shape == (6, 5) and idx.shape == (6, 3)
    assert ((w > 0).sum(1) == 3).all()
    torch.testing.assert_close(w.sum(1), torch.ones(6))


def test_capacity_drops_samples_beyond_capacity_in_batch_order():
    torch.manual_seed(0)
    moe = SampleRoutedMoE(4, 8, n_experts=4, k=1, capacity_factor=1.0)
    assert moe.capacity(8) == 2 and moe.capacity(1) == 1  # int(8·1/4·1.0) = 2; at least 1
    with torch.no_grad():  # route every sample to expert 0
        moe.router.route.weight.zero_()
        moe.router.route.bias.copy_(torch.tensor([5.0, 0.0, 0.0, 0.0]))
    x = torch.randn(8, 3, 4)
    out = moe(torch.randn(8, 3, 4), x, noisy=False, capacity=True)
    assert moe.last_dropped == 6
    kept = out.abs().sum((1, 2)) > 0
    assert kept.tolist() == [True, True] + [False] * 6  # the first two samples in the batch keep expert 0
    w = torch.softmax(torch.tensor([5.0, float("-inf"), float("-inf"), float("-inf")]), 0)[0]
    torch.testing.assert_close(out[:2], w * moe.experts[0](x[:2]))
    out_nocap = moe(torch.randn(8, 3, 4), x, noisy=False, capacity=False)
    assert moe.last_dropped == 0 and (out_nocap.abs().sum((1, 2)) > 0).all()


def test_routing_is_per_sample_not_per_token():
    torch.manual_seed(0)
    moe = SampleRoutedMoE(4, 8, n_experts=5, k=3)
    route = torch.randn(6, 9, 4)
    moe(route, torch.randn(6, 9, 4), noisy=False, capacity=False)
    w1 = moe.last_weights.clone()
    assert w1.shape == (6, 5)  # one weight vector per sample
    # permuting the routing tokens within a sample (mean-pooled) does not change its routing
    moe(route[:, torch.randperm(9)], torch.randn(6, 9, 4), noisy=False, capacity=False)
    torch.testing.assert_close(moe.last_weights, w1)


# ---------------------------------------------------------------------------------------------- evaluation
def test_deterministic_evaluation_is_batch_independent(tiny_ds):
    torch.manual_seed(0)
    model = build("text", tiny_ds.dims, **SMALL).eval()
    full = model(make_batch(tiny_ds.test, list(range(len(tiny_ds.test))))).pred
    ones = torch.cat([model(make_batch(tiny_ds.test, [i])).pred for i in range(len(tiny_ds.test))])
    torch.testing.assert_close(full, ones, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(make_batch(tiny_ds.test, [0, 1, 2])).pred, full[:3], rtol=1e-5, atol=1e-5)


def test_official_evaluation_is_stochastic(tiny_ds):
    torch.manual_seed(0)
    model = build("text", tiny_ds.dims, official_eval=True, **SMALL).eval()
    b = make_batch(tiny_ds.test, list(range(len(tiny_ds.test))))
    with torch.no_grad():
        model.fusion.moe[0].router.noise.bias.fill_(2.0)  # make the noise scale visible
    p1, p2 = model(b).pred, model(b).pred
    assert not torch.allclose(p1, p2)


# ---------------------------------------------------------------------------------------------- variants
@pytest.mark.parametrize("hp", [dict(temporal="mamba"), dict(temporal="tca"), dict(temporal="concat"),
                                dict(routing="av"), dict(routing="dense"), dict(routing="ffn"), dict(fusion="mean"),
                                dict(modalities=["text"]), dict(modalities=["audio", "vision"], routing="av"),
                                dict(modalities=["text", "vision"])])
def test_variants_train_a_step(tiny_ds, batch, hp):
    torch.manual_seed(0)
    model = build("text", tiny_ds.dims, **{**SMALL, **hp}).train()
    out = model(batch)
    out.pred.pow(2).mean().backward()
    assert out.pred.shape == (len(batch),)
    n_streams = len(hp.get("modalities", ["text", "audio", "vision"]))
    assert out.extras["stream_gates"].shape == (len(batch), n_streams)
    if hp.get("routing") != "ffn":
        assert out.extras["routing"].shape[:2] == (len(batch), 1)


def test_explanations_need_clue_tokens(tiny_ds, batch):
    with pytest.raises(ValueError, match="clue_dim"):
        build("text", tiny_ds.dims, **{**SMALL, "explanations": True})
    model = build("text", tiny_ds.dims, **{**SMALL, "explanations": True, "clue_dim": 6, "clue_len": 5})
    with pytest.raises(ValueError, match="audio_clue"):
        model(batch)
    batch.audio_clue = torch.randn(len(batch), 5, 6)
    batch.vision_clue = torch.randn(len(batch), 5, 6)
    out = model(batch)
    assert out.pred.shape == (len(batch),)


@pytest.mark.parametrize("bad, match", [(dict(temporal="lstm"), "temporal"), (dict(routing="audio"), "routing"),
                                        (dict(modalities=["audio", "vision"]), "routing='av'")])
def test_bad_hparams(tiny_ds, bad, match):
    with pytest.raises(ValueError, match=match):
        build("text", tiny_ds.dims, **{**SMALL, **bad})


def test_temporal_block_is_causal_in_time():
    torch.manual_seed(0)
    blk = CrossGatedTemporalBlock(8, inner=16, d_conv=4)
    a, v = torch.randn(2, 10, 8), torch.randn(2, 10, 8)
    out = blk(a, v)
    a2 = a.clone()
    a2[:, 6:] += 1.0
    out2 = blk(a2, v)
    assert out.shape == (2, 20, 8)
    torch.testing.assert_close(out[:, :6], out2[:, :6])  # audio frames before 6 unchanged
    torch.testing.assert_close(out[:, 10:16], out2[:, 10:16])  # vision frames before 6 unchanged


# ---------------------------------------------------------------------------------------------- size
def test_parameter_count_matches_the_official_architecture_at_mosi_dims():
    dims = {"text": 768, "audio": 5, "vision": 20}
    model = TEXT(dims, clue_dim=768, clue_len=50, depth=3, n_experts=5, top_k=3)
    ours = count_parameters(model)
    assert ours == official_parameter_count(dims, clue_dim=768, depth=3, n_experts=5)
    assert ours == 3_949_986  # worked out by hand from fip-lab/TEXT's modules (see the chapter)


def test_parameter_formula_tracks_depth_and_experts():
    dims = {"text": 768, "audio": 74, "vision": 35}
    for depth, e in ((2, 5), (1, 4)):
        m = TEXT(dims, clue_dim=768, clue_len=50, depth=depth, n_experts=e, top_k=min(3, e))
        assert count_parameters(m) == official_parameter_count(dims, 768, depth, e)


def test_almt_baseline_shapes(tiny_ds, batch):
    out = build("almt", tiny_ds.dims, dim=16, heads=2, dim_head=8, mlp_dim=16, n_tokens=4, max_frames=12)(batch)
    assert out.pred.shape == (len(batch),) and np.isfinite(out.pred.detach().numpy()).all()


def test_evaluation_spread_and_routing_summary(tiny_ds):
    from msa_lib.expert_analysis import evaluation_spread, routing_summary
    torch.manual_seed(0)
    model = build("text", tiny_ds.dims, **SMALL).eval()
    with torch.no_grad():
        model.fusion.moe[0].router.noise.bias.fill_(3.0)
    es = evaluation_spread(model, tiny_ds, ("Has0_acc_2", "MAE"), repeats=3, batch_sizes=(1, None))
    assert len(es["repeats"]) == 3 and set(es["by_batch_size"]) == {"1", "full"}
    assert model.official_eval is False  # restored
    maes = [r["MAE"] for r in es["repeats"]]
    assert max(maes) > min(maes)  # official evaluation moves the numbers
    det = evaluation_spread(model, tiny_ds, ("MAE",), repeats=1, batch_sizes=(1,))["deterministic"]["MAE"]
    assert det == es["deterministic"]["MAE"]  # ours does not
    rs = routing_summary(model, tiny_ds)
    assert len(rs["load"]) == 1 and len(rs["load"][0]) == 5
    assert abs(sum(rs["load"][0]) - 1) < 1e-5 and sum(rs["bin_counts"].values()) == len(tiny_ds.test)


def test_dense_variant_is_routed_by_the_text(tiny_ds, batch):
    """The dense-MoE ablation changes only k (all experts), not what the router reads."""
    torch.manual_seed(0)
    model = build("text", tiny_ds.dims, routing="dense", **SMALL).eval()
    w1 = model(batch).extras["routing"]
    batch.audio = batch.audio + 5.0
    batch.vision = batch.vision + 5.0
    torch.testing.assert_close(model(batch).extras["routing"], w1)  # audio/vision do not move the router
    assert (w1 > 0).all()  # every expert is used
