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
