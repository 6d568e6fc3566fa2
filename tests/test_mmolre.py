"""MMoLRE (specification-level reconstruction): expert sizes, routers, both heads learning, ablation switches."""
from __future__ import annotations

import pytest
import torch

from msa_lib.data import get_dataset
from msa_lib.data.schema import make_batch
from msa_lib.models import build, count_parameters
from msa_lib.models.mmolre import LowRankExpert, UniTSEBlock

SMALL = dict(d=16, n_experts=3, rank=4, heads=2)


@pytest.fixture(scope="module")
def emo_ds():
    return get_dataset("synth-mosei", seed=0, scale=0.01, seq_len=12)


@pytest.mark.parametrize("d, r, k", [(16, 4, 3), (768, 128, 3), (32, 32, 1), (8, 2, 5)])
def test_low_rank_expert_parameter_count_is_the_closed_form(d, r, k):
    e = LowRankExpert(d, r, k)
    assert count_parameters(e) == d * r * k + r + r * d * k + d == LowRankExpert.n_params(d, r, k)
    assert e(torch.randn(2, 7, d)).shape == (2, 7, d)


@pytest.mark.parametrize("routing", ["sample", "token"])
def test_router_weights_sum_to_one_per_task(routing):
    torch.manual_seed(0)
    blk = UniTSEBlock(8, [2, 3, 4], routing=routing)
    x = torch.randn(5, 6, 8)
    out, w = blk({"sa": x, "er": x.clone()}, None)
    assert set(out) == set(w) == {"sa", "er"}
    for t in w:
        assert w[t].shape == (5, 4)  # 3 shared + 1 task-specific
        torch.testing.assert_close(w[t].sum(-1), torch.ones(5))
    assert blk.router["sa"] is not blk.router["er"]


def test_shared_router_is_one_module_for_both_tasks():
    blk = UniTSEBlock(8, [2, 2], shared_router=True)
    assert blk.router["sa"] is blk.router["er"]


def test_both_heads_learn_on_a_small_synthetic_set(emo_ds):
    torch.manual_seed(0)
    model = build("mmolre", emo_ds.dims, **SMALL).train()
    batch = make_batch(emo_ds.train, list(range(32)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sa_losses, er_losses = [], []
    for _ in range(40):
        out = model(batch)
        sa = torch.nn.functional.mse_loss(out.pred, batch.labels)
        loss = sa + out.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sa_losses.append(float(sa.detach()))
        er_losses.append(float(out.extras["er_loss"]))
    assert sa_losses[-1] < 0.5 * sa_losses[0]
    assert er_losses[-1] < 0.8 * er_losses[0]


def test_variants_and_sizes(emo_ds):
    b = make_batch(emo_ds.train, list(range(4)))
    low = build("mmolre", emo_ds.dims, **SMALL)
    full = build("mmolre", emo_ds.dims, **{**SMALL, "full_rank": True})
    assert count_parameters(full) > count_parameters(low)
    for hp in (dict(use_shared=False), dict(use_task_specific=False), dict(shared_router=True), dict(n_blocks=1),
               dict(routing="token"), dict(tasks=("sa",)), dict(rank=[2, 4, 8])):
        out = build("mmolre", emo_ds.dims, **{**SMALL, **hp})(b)
        assert out.pred.shape == (4,) and torch.isfinite(out.aux_loss)
    sa_only = build("mmolre", emo_ds.dims, **{**SMALL, "tasks": ("sa",)})(b)
    assert float(sa_only.aux_loss.detach()) == 0.0 and "emotion_logits" not in sa_only.extras
    hs = build("mtl_hard_sharing", emo_ds.dims, d=16, heads=2)(b)
    assert hs.extras["emotion_logits"].shape == (4, 6) and float(hs.aux_loss.detach()) > 0


@pytest.mark.parametrize("bad, match", [(dict(tasks=("pos",)), "tasks"), (dict(use_shared=False, use_task_specific=False), "shared"),
                                        (dict(rank=[2, 2]), "ranks"), (dict(routing="global"), "routing"),
                                        (dict(modalities=("audio", "vision")), "text")])
def test_bad_hparams(emo_ds, bad, match):
    with pytest.raises(ValueError, match=match):
        build("mmolre", emo_ds.dims, **{**SMALL, **bad})


def test_expert_bank_is_exactly_the_separate_experts():
    """The bank (two wide convolutions) computes the same function, with the same parameter count,
    as N separate LowRankExperts of ranks r_n."""
    from msa_lib.models.mmolre import LowRankExpertBank
    torch.manual_seed(0)
    ranks = [2, 3, 5]
    bank = LowRankExpertBank(8, ranks)
    assert count_parameters(bank) == sum(LowRankExpert.n_params(8, r) for r in ranks)
    x = torch.randn(4, 7, 8)
    w = torch.softmax(torch.randn(4, 2, 3), -1)
    experts = [bank.expert(n) for n in range(3)]
    per = torch.stack([e(x) for e in experts], -1)  # (B, L, d, N)
    torch.testing.assert_close(bank.all(x), per)
    want = torch.stack([(per * w[:, k, None, None, :]).sum(-1) for k in range(2)], 1)
    torch.testing.assert_close(bank.mix(x, w), want)


def test_unitse_shared_input_shortcut_matches_separate_inputs():
    torch.manual_seed(0)
    blk = UniTSEBlock(8, [2, 3]).eval()
    x = torch.randn(3, 5, 8)
    same, w_same = blk({"sa": x, "er": x}, None)
    sep, w_sep = blk({"sa": x.clone(), "er": x.clone()}, None)
    for t in ("sa", "er"):
        torch.testing.assert_close(same[t], sep[t])
        torch.testing.assert_close(w_same[t], w_sep[t])
    # and the mix is the router-weighted sum of the experts (shared + task-specific), plus the residual
    w = w_same["sa"]
    experts = [blk.shared.expert(n) for n in range(2)] + [blk.specific["sa"]]
    mix = sum(w[:, n, None, None] * e(x) for n, e in enumerate(experts))
    torch.testing.assert_close(same["sa"], blk.norm["sa"](x + mix))


# ---- multi-task analyses (msa_lib.multitask) and the cost counter -------------------------------------------
from msa_lib.experiments import dataset_fingerprint, model_cost  # noqa: E402
from msa_lib.multitask import emotion_scores, gradient_conflict, routing_divergence, task_routing  # noqa: E402


def test_gradient_conflict_uses_exactly_the_shared_parameters(emo_ds):
    torch.manual_seed(0)
    for hp, extra in ((dict(), ()), (dict(shared_router=True), ("router",))):
        model = build("mmolre", emo_ds.dims, **{**SMALL, **hp})
        c = gradient_conflict(model, emo_ds, "train", n_batches=2, batch_size=16)
        shared = sum(p.numel() for n, p in model.named_parameters()
                     if n.startswith("proj.") or ".shared." in n or any(f".{e}." in n for e in extra))
        assert c["n_shared_params"] == shared  # projections + shared experts (+ the router when both tasks share it)
        assert -1.0 <= c["cosine"] <= 1.0 and c["n_batches"] == 2 and set(c["by_module"]) == {"proj", "unitse"}
        assert model.training  # the mode is restored


def test_gradient_conflict_matches_a_manual_computation(emo_ds):
    torch.manual_seed(1)
    model = build("mmolre", emo_ds.dims, **SMALL).eval()
    batch = next(emo_ds.loader("train", 16))
    out = model(batch)
    shared = [p for n, p in model.named_parameters() if n.startswith("proj.") or ".shared." in n]
    ga = torch.autograd.grad(torch.nn.functional.l1_loss(out.pred, batch.labels), shared, retain_graph=True)
    gb = torch.autograd.grad(out.aux_loss, shared)
    want = torch.nn.functional.cosine_similarity(torch.cat([g.flatten() for g in ga]), torch.cat([g.flatten() for g in gb]), 0)
    got = gradient_conflict(model, emo_ds, "train", n_batches=1, batch_size=16)["cosine"]
    assert got == pytest.approx(float(want), abs=1e-5)


def test_single_task_models_have_no_conflict_or_emotion_scores(emo_ds):
    sa_only = build("mmolre", emo_ds.dims, **{**SMALL, "tasks": ("sa",)})
    er_only = build("mmolre", emo_ds.dims, **{**SMALL, "tasks": ("er",)})
    assert gradient_conflict(sa_only, emo_ds) == {} and gradient_conflict(er_only, emo_ds) == {}
    assert emotion_scores(sa_only, emo_ds) == {}
    no_emo = emo_ds.drop_annotations("emotions")
    assert emotion_scores(build("mmolre", emo_ds.dims, **SMALL), no_emo) == {}
    scores = emotion_scores(er_only, emo_ds)
    assert {"WA_avg", "F1_avg", "WA_happy", "F1_fear"} <= set(scores) and all(0 <= v <= 1 for v in scores.values())


def test_drop_annotations_is_recorded_and_changes_the_fingerprint(emo_ds):
    no_emo = emo_ds.drop_annotations("emotions")
    assert all(sp.emotions is None for sp in no_emo.splits.values()) and emo_ds.train.emotions is not None
    assert no_emo.provenance["dropped_annotations"] == ["emotions"]
    assert dataset_fingerprint(no_emo) != dataset_fingerprint(emo_ds)  # cached runs cannot be mixed up
    with pytest.raises(ValueError, match="labels"):
        emo_ds.drop_annotations("labels")


def test_routing_summary_and_divergence(emo_ds):
    torch.manual_seed(0)
    r = task_routing(build("mmolre", emo_ds.dims, **SMALL), emo_ds)
    assert set(r) == {f"{m}/block{b}/{t}" for m in ("text", "audio") for b in (0, 1) for t in ("sa", "er")}
    assert all(len(w) == 4 and sum(w) == pytest.approx(1, abs=1e-4) for w in r.values())
    js = routing_divergence({"a/sa": [0.5, 0.5], "a/er": [0.5, 0.5], "b/sa": [1.0, 0.0], "b/er": [0.0, 1.0]})
    assert js == {"a": 0.0, "b": 1.0}


def test_model_cost_counts_parameters_and_flops_without_memory(emo_ds):
    dims = {"text": 32, "audio": 16}
    cpu = build("mmolre", dims, **SMALL)
    low = model_cost("mmolre", dims, seq_len=10, **SMALL)
    assert low["n_params"] == count_parameters(cpu)
    full = model_cost("mmolre", dims, seq_len=10, **{**SMALL, "full_rank": True})
    assert full["flops"] > low["flops"] > 0 and full["n_params"] > low["n_params"]
    # FLOPs grow linearly with the sequence length for the convolutional / linear parts (attention is quadratic)
    assert model_cost("mmolre", dims, seq_len=20, **SMALL)["flops"] > 1.9 * low["flops"]
    # a paper-sized model (about 250 M parameters) is counted on the meta device, with no memory
    big = model_cost("mmolre", {"text": 768, "audio": 768}, d=768, rank=128, n_experts=15, full_rank=True)
    assert big["n_params"] > 2e8


def test_fit_records_the_models_scalar_internals_per_epoch(emo_ds):
    """training.fit keeps the epoch mean of every scalar in ModelOutput.extras (here MMoLRE's ER loss)."""
    from msa_lib.training import TrainConfig, fit
    torch.manual_seed(0)
    res = fit(build("mmolre", emo_ds.dims, **SMALL), emo_ds, TrainConfig(epochs=3, batch_size=32, lr=3e-3, progress=False))
    er = [h["train_er_loss"] for h in res.history]
    assert len(er) == 3 and all(0 < v < 2 for v in er) and er[-1] < er[0]
