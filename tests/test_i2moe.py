"""I2MoE: loss signs, batched == sequential passes, weights, ablation switches, and the new nn blocks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from msa_lib.data.schema import make_batch
from msa_lib.expert_analysis import disagreement, expert_accuracies, recovery_scores, summarise_experts
from msa_lib.models import build
from msa_lib.models.i2moe import expert_names, redundancy_loss, synergy_loss, uniqueness_loss
from msa_lib.nn import LowRankTensorFusion, PatchEmbeddings, SparseMoEFFN, TransformerBlock

SMALL = dict(gru_hidden=16, hidden=8, num_patches=2, hidden_rw=8)


@pytest.fixture
def batch(tiny_ds):
    return make_batch(tiny_ds.train, list(range(6)))


def _spread(scale: float, n: int = 3, regression: bool = False):
    """An anchor and n perturbed outputs at distance ~scale from it (fixed directions)."""
    g = torch.Generator().manual_seed(0)
    shape = (16,) if regression else (16, 2)
    anchor = torch.randn(shape, generator=g)
    return anchor, [anchor + scale * torch.randn(shape, generator=g) for _ in range(n)]


# ---------------------------------------------------------------------------------------------- losses
@pytest.mark.parametrize("regression", [False, True])
def test_synergy_loss_decreases_as_perturbed_outputs_diverge(regression):
    vals = [float(synergy_loss(*_spread(s, regression=regression), regression=regression)) for s in (0.05, 0.5, 3.0)]
    assert vals[0] > vals[1] > vals[2], vals


@pytest.mark.parametrize("regression", [False, True])
def test_redundancy_loss_increases_as_perturbed_outputs_diverge(regression):
    vals = [float(redundancy_loss(*_spread(s, regression=regression), regression=regression)) for s in (0.05, 0.5, 3.0)]
    assert vals[0] < vals[1] < vals[2], vals


def test_official_regression_synergy_equals_redundancy_and_has_the_wrong_sign():
    a, negs = _spread(0.5, regression=True)
    official = synergy_loss(a, negs, regression=True, form="official")
    assert torch.allclose(official, redundancy_loss(a, negs, regression=True))  # the bug, reproduced
    far = synergy_loss(*_spread(3.0, regression=True), regression=True, form="official")
    assert far > official  # it *penalises* divergence: the opposite of what synergy needs


def test_corrected_regression_synergy_is_a_hinge_with_golden_value():
    a = torch.zeros(4)
    negs = [torch.full((4,), 0.5), torch.full((4,), 2.0)]
    # MSEs are 0.25 and 4.0 → mean(max(0, 1 - 0.25), max(0, 1 - 4)) = 0.375
    assert float(synergy_loss(a, negs, regression=True, margin=1.0)) == pytest.approx(0.375)


@pytest.mark.parametrize("regression", [False, True])
def test_uniqueness_loss_rewards_a_distant_negative_and_close_positives(regression):
    a, (p1, p2, _) = _spread(0.1, regression=regression)
    near_neg, far_neg = a + 0.1, a + 5.0
    assert uniqueness_loss(a, [p1, p2], far_neg, regression) < uniqueness_loss(a, [p1, p2], near_neg, regression)
    _, (q1, q2, _) = _spread(3.0, regression=regression)
    assert uniqueness_loss(a, [p1, p2], far_neg, regression) < uniqueness_loss(a, [q1, q2], far_neg, regression)


def test_cosine_losses_golden_values():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    same, orth = a.clone(), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert float(synergy_loss(a, [same])) == pytest.approx(1.0)
    assert float(synergy_loss(a, [orth])) == pytest.approx(0.0)
    assert float(redundancy_loss(a, [same, orth])) == pytest.approx(0.5)
    assert float(uniqueness_loss(a, [], a)) == 0.0


# ---------------------------------------------------------------------------------------------- model
def test_batched_forward_equals_sequential_forward(tiny_ds, batch):
    torch.manual_seed(0)
    model = build("i2moe", tiny_ds.dims, n_out=2, **SMALL).eval()
    tokens = model.encode(batch)
    idx = [0, 1, 2]
    torch.manual_seed(1)
    model.batched = True
    outs_b, lats_b, _ = model.run_experts(tokens, idx)
    torch.manual_seed(1)
    model.batched = False
    outs_s, lats_s, _ = model.run_experts(tokens, idx)
    assert len(outs_b) == 5 and outs_b[0].shape == (4, len(batch), 2)
    for ob, os_, lb, ls in zip(outs_b, outs_s, lats_b, lats_s):
        torch.testing.assert_close(ob, os_, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(lb, ls, rtol=1e-5, atol=1e-6)


def test_perturbed_stack_replaces_only_the_chosen_modality(tiny_ds, batch):
    model = build("i2moe", tiny_ds.dims, n_out=2, perturbation="zero", **SMALL)
    tokens = model.encode(batch)
    stack = model.perturbed_stack(tokens, [0, 2])
    assert stack.shape == (3, *tokens.shape)
    assert torch.equal(stack[0], tokens)
    assert torch.count_nonzero(stack[1][:, 0]) == 0 and torch.equal(stack[1][:, 1:], tokens[:, 1:])
    assert torch.count_nonzero(stack[2][:, 2]) == 0 and torch.equal(stack[2][:, :2], tokens[:, :2])


@pytest.mark.parametrize("reweighting", ["mlp", "global"])
def test_weights_sum_to_one_and_prediction_is_their_mixture(tiny_ds, batch, reweighting):
    torch.manual_seed(0)
    model = build("i2moe", tiny_ds.dims, n_out=2, reweighting=reweighting, temperature_rw=2.0, **SMALL).eval()
    out = model(batch)
    w, outs = out.extras["expert_weights"], out.extras["expert_outputs"]
    assert w.shape == (len(batch), 5) and outs.shape == (len(batch), 5, 2)
    torch.testing.assert_close(w.sum(1), torch.ones(len(batch)))
    assert (w >= 0).all()
    torch.testing.assert_close(out.pred, (outs * w[..., None]).sum(1))
    assert float(out.aux_loss) == 0.0  # inference: no perturbed passes, no interaction loss


def test_training_forward_has_interaction_losses_and_gradients_reach_every_expert(tiny_ds, batch):
    torch.manual_seed(0)
    model = build("i2moe", tiny_ds.dims, n_out=1, **SMALL).train()
    out = model(batch)
    assert {f"int_loss_{n}" for n in expert_names(model.modalities)} <= set(out.extras)
    (out.pred.pow(2).mean() + out.aux_loss).backward()
    for k, expert in enumerate(model.experts):
        assert expert.head.weight.grad is not None and expert.head.weight.grad.abs().sum() > 0, k
    assert all(p.grad is not None for p in model.encoders.parameters())


def test_experts_start_identical_as_in_the_official_deepcopy(tiny_ds):
    model = build("i2moe", tiny_ds.dims, n_out=2, **SMALL)
    a, b = model.experts[0].state_dict(), model.experts[-1].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_no_interaction_loss_skips_the_perturbed_passes(tiny_ds, batch):
    model = build("i2moe", tiny_ds.dims, n_out=2, interaction_loss=False, **SMALL).train()
    out = model(batch)
    assert float(out.aux_loss) == 0.0 and not any(k.startswith("int_loss") for k in out.extras)


def test_less_perturbed_forward_uses_a_subset(tiny_ds, batch):
    torch.manual_seed(0)
    model = build("i2moe", tiny_ds.dims, n_out=2, perturb_subset=2, **SMALL).train()
    assert len(model.perturbed_modalities()) == 2
    out = model(batch)
    uni = [k for k in out.extras if k.startswith("int_loss_uni_")]
    assert len(uni) == 2  # only the perturbed modalities' uniqueness experts get a loss


def test_mean_perturbation_tracks_a_running_mean(tiny_ds, batch):
    model = build("i2moe", tiny_ds.dims, n_out=2, perturbation="mean", **SMALL).train()
    model(batch)
    assert float(model.mean_count) == 1.0
    tokens = model.encode(batch).detach()
    torch.testing.assert_close(model.replacement(tokens, 1)[0], model.mean_sum[1])


@pytest.mark.parametrize("hp", [dict(experts=["synergy", "redundancy"]), dict(experts=["uni_text"]),
                                dict(latent_contrastive=True), dict(backbone="switchgate"),
                                dict(official_quirks=True), dict(synergy_loss="official"), dict(encoder="mean")])
def test_every_ablation_builds_and_trains_a_step(tiny_ds, batch, hp):
    torch.manual_seed(0)
    model = build("i2moe", tiny_ds.dims, n_out=1, **{**SMALL, **hp}).train()
    out = model(batch)
    (out.pred.pow(2).mean() + out.aux_loss).backward()
    assert torch.isfinite(out.aux_loss)
    n_exp = len(hp.get("experts", expert_names(model.modalities)))
    assert out.extras["expert_weights"].shape == (len(batch), n_exp)


@pytest.mark.parametrize("bad, match", [(dict(perturbation="noise"), "perturbation"), (dict(experts=["uni_smell"]), "experts"),
                                        (dict(reweighting="attention"), "reweighting"), (dict(backbone="moepp"), "backbone"),
                                        (dict(perturb_subset=4), "perturb_subset"), (dict(temperature_rw=0), "temperature")])
def test_bad_hparams_get_clear_errors(tiny_ds, bad, match):
    with pytest.raises(ValueError, match=match):
        build("i2moe", tiny_ds.dims, n_out=2, **{**SMALL, **bad})


def test_vanilla_backbone_and_lrtf_shapes(tiny_ds, batch):
    for name, hp in [("fusion_backbone", dict(gru_hidden=16, hidden=8, num_patches=2)),
                     ("fusion_backbone", dict(gru_hidden=16, hidden=8, backbone="switchgate")),
                     ("lrtf", dict(gru_hidden=8, fusion_dim=4, rank=2))]:
        out = build(name, tiny_ds.dims, n_out=2, **hp)(batch)
        assert out.pred.shape == (len(batch), 2)
    sg = build("fusion_backbone", tiny_ds.dims, n_out=2, gru_hidden=16, hidden=8, backbone="switchgate").train()
    assert float(sg(batch).aux_loss.detach()) > 0  # the load-balancing loss is on


# ---------------------------------------------------------------------------------------------- nn blocks
def test_patch_embeddings_pad_and_split():
    pe = PatchEmbeddings(10, 4, 6)
    assert pe.patch_size == 3 and pe.pad == 2
    assert pe(torch.randn(5, 10)).shape == (5, 4, 6)


def test_attention_block_without_residual_matches_the_official_formula():
    torch.manual_seed(0)
    blk = TransformerBlock(8, heads=2, attn_residual=False).eval()
    x = torch.randn(2, 5, 8)
    a, _ = blk.attn(blk.norm1(x), blk.norm1(x), blk.norm1(x), need_weights=False)
    h = 2 * a  # a + dropout(a) with dropout off
    torch.testing.assert_close(blk(x), h + blk.mlp(blk.norm2(h)))


def test_switch_ffn_routes_top1_and_balance_loss_bounds():
    torch.manual_seed(0)
    moe = SparseMoEFFN(6, 12, n_experts=4, k=1)
    x = torch.randn(3, 7, 6)
    y = moe(x)
    assert y.shape == x.shape and moe.last_routing.shape == (3, 7)
    assert 1.0 - 1e-6 <= float(moe.aux_loss.detach()) <= 4.0 + 1e-6
    # a router that sends every token to expert 0 with probability ~1 gives the maximal loss E
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0] = 100.0
    moe(torch.ones(2, 3, 6))
    assert float(moe.aux_loss.detach()) == pytest.approx(4.0, rel=1e-4)
    # token t routed to expert e: output = p_e · expert_e(t)
    t = torch.ones(1, 6)
    torch.testing.assert_close(moe(t), moe.experts[0](t) * torch.softmax(moe.router(t), -1)[:, :1])


def test_low_rank_fusion_matches_the_explicit_formula():
    torch.manual_seed(0)
    lmf = LowRankTensorFusion([3, 2], out_dim=4, rank=2)
    z1, z2 = torch.randn(5, 3), torch.randn(5, 2)
    one = torch.ones(5, 1)
    expect = sum(lmf.rank_weights[0, r] * (torch.cat([z1, one], 1) @ lmf.factors[0][r]) *
                 (torch.cat([z2, one], 1) @ lmf.factors[1][r]) for r in range(2)) + lmf.bias
    torch.testing.assert_close(lmf([z1, z2]), expect)
    assert sum(p.numel() for p in lmf.parameters()) == 2 * 4 * 4 + 2 * 3 * 4 + 2 + 4  # factors are trained


# ---------------------------------------------------------------------------------------------- analyses
def test_expert_analyses_golden_values():
    names = ["uni_text", "uni_audio", "uni_vision", "synergy", "redundancy"]
    # 4 samples, 5 experts, binary logits: experts agree on samples 0-1, disagree on 2-3
    outs = np.zeros((4, 5, 2))
    outs[:, :, 1] = [[1, 1, 1, 1, 1], [-1, -1, -1, -1, -1], [1, -1, 1, 1, 1], [-1, 1, -1, -1, -1]]
    pred = outs.mean(1)
    labels = np.array([1.0, -1.0, -1.0, -1.0])
    d = disagreement(outs, pred, labels, classification=True)
    assert d["disagree_frac"] == 0.5 and d["acc_agree"] == 1.0 and d["acc_disagree"] == 0.5
    acc = expert_accuracies(outs, pred, labels, names, classification=True)
    assert acc["uni_text"] == 0.75 and acc["uni_audio"] == 0.75 and acc["ensemble"] == 0.75
    w = np.eye(5)[[0, 3, 4, 1]]  # samples weighted onto uni_text, synergy, redundancy, uni_audio
    inter = np.array([0, 3, 4, 2])  # uniq_text, synergy, redundancy, uniq_vision (INTERACTION_TYPES order)
    rec = recovery_scores(w, inter, names)
    assert rec["top1_match"] == 0.75 and rec["chance"] == 0.2


def test_summarise_experts_on_a_trained_model(tiny_ds):
    torch.manual_seed(0)
    model = build("i2moe", tiny_ds.dims, n_out=2, **SMALL).eval()
    res = summarise_experts(classification=True)(model, tiny_ds)
    assert res["expert_names"] == expert_names(model.modalities)
    assert set(res["expert_acc"]) == {*res["expert_names"], "ensemble"}
    assert len(res["weights"]) == len(tiny_ds.test)
    if tiny_ds.test.interaction is not None:
        assert -1 <= res["recovery"]["spearman"] <= 1
    base = summarise_experts(classification=True)(build("early_fusion", tiny_ds.dims, n_out=2), tiny_ds)
    assert "expert_acc" not in base  # a baseline in the same grid only gets per-type accuracy


def test_reporting_extras_helpers_from_records():
    from msa_lib.experiments import RunRecord
    from msa_lib.reporting import extras_per_seed, extras_table, weights_by_type_table, weights_frame

    def rec(seed, frac, w):
        return RunRecord(dataset="synth-mosi", variant="I2MoE", seed=seed, param_hash="x", model="i2moe", params={},
                         val_metrics={}, test_metrics={}, best_epoch=0, epochs_run=1, train_seconds=1.0,
                         train_s_per_epoch=1.0, infer_ms_per_sample=0.1, n_params=1,
                         extras={"disagreement": {"disagree_frac": frac}, "expert_names": ["a", "b"],
                                 "weights": w, "interaction": [0, 1],
                                 "weights_by_type": {"uniq_text": {"a": w[0][0], "b": w[0][1]}}})
    recs = [rec(1, 0.8, [[0.9, 0.1], [0.2, 0.8]]), rec(2, 0.6, [[0.7, 0.3], [0.4, 0.6]])]
    t = extras_table(recs, "disagreement")
    assert t.iloc[0]["mean"] == pytest.approx(0.7) and t.iloc[0]["std"] == pytest.approx(np.std([0.8, 0.6], ddof=1), abs=1e-6)
    assert extras_per_seed(recs, "synth-mosi", "I2MoE", "disagreement", "disagree_frac") == {1: 0.8, 2: 0.6}
    wf = weights_frame(recs, "I2MoE", ("uniq_text", "uniq_audio"))
    assert len(wf) == 8 and set(wf["type"]) == {"uniq_text", "uniq_audio"}
    assert weights_by_type_table(recs, "I2MoE", "synth-mosi").loc["uniq_text", "a"] == pytest.approx(0.8)
    with pytest.raises(KeyError, match="no extras"):
        extras_per_seed(recs, "synth-mosi", "other", "disagreement", "disagree_frac")


def test_get_datasets_loads_each_once_and_falls_back_with_a_label(tmp_path):
    from msa_lib.data import get_datasets
    with pytest.warns(UserWarning, match="falling back"):
        sets = get_datasets(["synth-mosi", "synth-mosi", "mosi-semi"], data_root=tmp_path / "none",
                            synth_kw={"scale": 0.05})
    assert list(sets) == ["synth-mosi", "mosi-semi"]
    assert sets["synth-mosi"].name == "synth-mosi"
    assert "synthetic fallback for mosi-semi" in sets["mosi-semi"].name
