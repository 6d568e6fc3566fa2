"""The speed changes compute what the old code computed: each fast path against the computation it replaced."""
import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from msa_lib.data import get_dataset
from msa_lib.data.schema import MODALITIES, make_batch
from msa_lib.models import available, build
from msa_lib.nn.blocks import Dropout, MultiheadAttention, causal_depthwise_conv1d, dropout, masked_mean
from msa_lib.training import TrainConfig, make_optimizer, set_seed

from .conftest import ROOT


@pytest.fixture(autouse=True)
def one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _old_masked_mean(x, mask, dim=1):
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim) / m.sum(dim).clamp_min(1.0)


def test_masked_mean_matches_the_elementwise_form():
    torch.manual_seed(0)
    x = torch.randn(5, 7, 9, requires_grad=True)
    mask = torch.rand(5, 7) < 0.6
    mask[0] = False  # an all-padded row stays 0
    new, old = masked_mean(x, mask), _old_masked_mean(x, mask)
    torch.testing.assert_close(new, old)
    assert new[0].abs().max() == 0
    g_new, = torch.autograd.grad(new.pow(2).sum(), x)
    g_old, = torch.autograd.grad(old.pow(2).sum(), x)
    torch.testing.assert_close(g_new, g_old)
    x4 = torch.randn(2, 3, 4, 5)  # other ranks keep the old path
    m4 = torch.rand(2, 3, 4) < 0.5
    torch.testing.assert_close(masked_mean(x4, m4), _old_masked_mean(x4, m4))


@pytest.mark.parametrize("kind", ["self", "cross", "separate"])
@pytest.mark.parametrize("with_mask", [False, True])
def test_multihead_attention_matches_torch(kind, with_mask):
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(16, 4, batch_first=True)
    torch.manual_seed(0)
    new = MultiheadAttention(16, 4, batch_first=True)
    assert list(ref.state_dict()) == list(new.state_dict())  # same keys, same initialisation
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), new.state_dict().values()))
    q = torch.randn(3, 5, 16, requires_grad=True)
    kv = q if kind == "self" else torch.randn(3, 6, 16, requires_grad=True)
    v = kv if kind != "separate" else torch.randn(3, 6, 16, requires_grad=True)
    pad = None
    if with_mask:
        pad = torch.zeros(3, kv.shape[1], dtype=torch.bool)
        pad[0, 2:] = True
        pad[2, -1] = True
    for train in (True, False):
        ref.train(train)
        new.train(train)
        a = ref(q, kv, v, key_padding_mask=pad, need_weights=False)[0]
        b, w = new(q, kv, v, key_padding_mask=pad, need_weights=False)
        assert w is None
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    ga = torch.autograd.grad(ref(q, kv, v, key_padding_mask=pad, need_weights=False)[0].pow(2).sum(),
                             [q, ref.in_proj_weight, ref.out_proj.weight])
    gb = torch.autograd.grad(new(q, kv, v, key_padding_mask=pad, need_weights=False)[0].pow(2).sum(),
                             [q, new.in_proj_weight, new.out_proj.weight])
    for x, y in zip(ga, gb):
        torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-5)
    _, weights = new(q, kv, v, key_padding_mask=pad)  # need_weights=True: torch's own path
    assert weights is not None and weights.shape == (3, 5, kv.shape[1])


def test_dropout_other_p_is_torch_dropout():
    x = torch.randn(4, 50)
    for p in (0.1, 0.3):
        torch.manual_seed(3)
        a = F.dropout(x, p, True)
        torch.manual_seed(3)
        b = dropout(x, p, True)
        assert torch.equal(a, b)
    assert dropout(x, 0.5, training=False) is x and dropout(x, 0.0) is x


@pytest.mark.parametrize("p", [0.5, 0.25])
def test_dropout_fast_mask_has_the_same_distribution(p):
    x = torch.ones(200_000, requires_grad=True)
    torch.manual_seed(0)
    y = dropout(x, p)
    kept = y != 0
    n, frac = x.numel(), float(kept.float().mean())
    assert abs(frac - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)  # Bernoulli(1 - p) within 5 sigma
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    g, = torch.autograd.grad(y.sum(), x)
    assert torch.equal(g, y.detach())  # gradient = mask / (1 - p)
    torch.manual_seed(0)
    assert torch.equal(dropout(x, p), y)  # same seed, same mask
    # no correlation between neighbouring elements (8 mask bytes come from one random integer)
    k = kept.float().view(-1, 8)
    c = np.corrcoef(k.T.numpy())
    assert np.abs(c[np.triu_indices(8, 1)]).max() < 0.02
    m = Dropout(p).eval()
    assert torch.equal(m(x), x)


def test_causal_depthwise_conv_matches_conv1d():
    torch.manual_seed(0)
    conv = nn.Conv1d(6, 6, 4, groups=6, padding=3)
    x = torch.randn(3, 9, 6, requires_grad=True)
    old = conv(x.transpose(1, 2))[..., :9].transpose(1, 2)
    new = causal_depthwise_conv1d(x, conv)
    torch.testing.assert_close(new, old)
    ga = torch.autograd.grad(old.pow(2).sum(), [x, conv.weight, conv.bias])
    gb = torch.autograd.grad(new.pow(2).sum(), [x, conv.weight, conv.bias])
    for a, b in zip(ga, gb):
        torch.testing.assert_close(b, a)
    with pytest.raises(ValueError, match="groups=C"):
        causal_depthwise_conv1d(x, nn.Conv1d(6, 6, 3, padding=1))


def test_text_temporal_block_unchanged():
    from msa_lib.models.text import CrossGatedTemporalBlock
    torch.manual_seed(0)
    blk = CrossGatedTemporalBlock(8, inner=12, d_conv=4)
    a, v = torch.randn(2, 7, 8), torch.randn(2, 7, 8)
    xs, ws = [], []
    for i, s in enumerate((a, v)):  # the pre-change computation, with the block's own weights
        x, w = blk.in_proj[i](blk.norm[i](s)).chunk(2, -1)
        xs.append(blk.conv[i](x.transpose(1, 2))[..., : s.shape[1]].transpose(1, 2))
        ws.append(F.silu(w))
    want = torch.cat([a + blk.out_proj[0](xs[0] * ws[1]), v + blk.out_proj[1](xs[1] * ws[0])], 1)
    torch.testing.assert_close(blk(a, v), want)


def test_batch_masks_equal_split_masks():
    ds = get_dataset("synth-mosi", seed=0, scale=0.02, seq_len=9)
    sp = ds.train
    idx = np.array([5, 0, 3, 3])
    for ix in (idx, list(idx)):
        b = make_batch(sp, ix)
        for m in MODALITIES:
            assert torch.equal(getattr(b, f"{m}_mask"), torch.as_tensor(sp.mask(m)[idx]))
        assert b.index.tolist() == list(idx)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_foreach_optimizer_is_bit_identical(tiny_ds, optimizer):
    cfg = TrainConfig(optimizer=optimizer, lr=3e-3, weight_decay=0.01, progress=False)
    params = []
    for foreach in (False, True):
        set_seed(0)
        model = build("mult", tiny_ds.dims, hidden=16)
        opt = make_optimizer(model, cfg) if foreach else (torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW)(
            [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)
        assert opt.defaults["foreach"] is foreach
        for i, b in enumerate(tiny_ds.loader("train", 16, shuffle=True, seed=1)):
            torch.manual_seed(i)
            out = model(b)
            loss = F.l1_loss(out.pred, b.labels) + out.aux_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(params[0], params[1])


def test_i2moe_same_seed_same_training_step(tiny_ds):
    """The new dropout draws from torch's seeded generator: same seed, same numbers."""
    hp = dict(hidden=16, gru_hidden=16, encoder="mean", dropout=0.5)
    losses = []
    for _ in range(2):
        set_seed(0)
        model = build("i2moe", tiny_ds.dims, n_out=2, **hp).train()
        opt = make_optimizer(model, TrainConfig(task="binary", loss="ce", progress=False))
        run = []
        for b in tiny_ds.loader("train", 16, shuffle=True, seed=0):
            out = model(b)
            loss = F.cross_entropy(out.pred, (b.labels > 0).long()) + out.aux_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.append(loss.item())
        losses.append(run)
    assert losses[0] == losses[1]


def _step_time_module():
    spec = importlib.util.spec_from_file_location("step_time", ROOT / "benchmarks" / "step_time.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_step_time_all_covers_every_registered_model():
    """``--models all`` resolves every registered name to hparams it can train with (one step each)."""
    st = _step_time_module()
    ds = get_dataset("synth-mosi", seed=0, scale=0.02, seq_len=6)
    specs = st.resolve_specs("all", ds)
    assert [s[0] for s in specs] == available() and [s[2] for s in specs] == available()
    hp = dict(specs[[s[0] for s in specs].index("text")][1])
    assert hp["explanations"] is False and hp["max_frames"] == 6
    assert st.resolve_specs("all,i2moe[batched=false]", ds)[-1][2] == "i2moe[batched=False]"
    for name, hparams, _ in specs:
        dims = {"text": ds.dims["text"]} if name.startswith("text_") else ds.dims
        set_seed(0)
        model = build(name, dims, **hparams).train()
        b = make_batch(ds.train, list(range(4)))
        out = model(b)
        (F.l1_loss(out.pred, b.labels) + out.aux_loss).backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None), name
