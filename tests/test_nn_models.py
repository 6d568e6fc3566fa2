"""Shapes, gradients, masks and parameter counts of the shared blocks and the baseline models."""
import numpy as np
import pytest
import torch

from msa_lib.data.schema import DataError
from msa_lib.models import available, build, count_parameters
from msa_lib.nn import MLP, CrossAttentionBlock, GRUEncoder, TransformerBlock, masked_mean

BASELINES = ["early_fusion", "late_fusion", "mult", "text_mlp", "text_gru", "text_transformer"]


def test_masked_mean_golden():
    x = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert masked_mean(x, mask).squeeze(-1).tolist() == [2.0, 4.0]
    empty = torch.zeros(1, 3, dtype=torch.bool)
    assert masked_mean(x[:1], empty).tolist() == [[0.0]]  # no NaN on an all-padded row


def test_mlp_parameter_count():
    assert count_parameters(MLP(10, 20, 3, n_layers=2)) == 10 * 20 + 20 + 20 * 3 + 3
    with pytest.raises(ValueError):
        MLP(4, 4, 1, n_layers=0)


def test_gru_ignores_padding():
    torch.manual_seed(0)
    enc = GRUEncoder(3, 8)
    x = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    h1 = enc(x, mask)
    x2 = x.clone()
    x2[0, 3:] = 99.0  # change padded frames only
    assert torch.allclose(h1, enc(x2, mask))
    assert torch.allclose(h1[0], enc(x[:1, :3]))


def test_attention_blocks_ignore_padded_keys():
    torch.manual_seed(0)
    blk = CrossAttentionBlock(8, heads=2).eval()
    q, kv = torch.randn(2, 4, 8), torch.randn(2, 6, 8)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[:, 4:] = False
    kv2 = kv.clone()
    kv2[:, 4:] = 50.0
    assert torch.allclose(blk(q, kv, mask), blk(q, kv2, mask), atol=1e-6)
    sa = TransformerBlock(8, heads=2).eval()
    assert torch.isfinite(sa(kv, torch.zeros(2, 6, dtype=torch.bool))).all()  # fully padded rows stay finite


@pytest.mark.parametrize("name", BASELINES)
def test_baselines_forward_backward(name, tiny_ds):
    torch.manual_seed(0)
    dims = tiny_ds.dims if not name.startswith("text") else {"text": tiny_ds.dims["text"]}
    model = build(name, dims)
    batch = next(tiny_ds.loader("train", 8))
    out = model(batch)
    assert out.pred.shape == (8,)
    assert out.aux_loss.shape == ()
    (out.pred.pow(2).mean() + out.aux_loss).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), f"{name}: some parameters get no gradient"
    assert count_parameters(model) > 0


def test_classifier_head(tiny_ds):
    model = build("early_fusion", tiny_ds.dims, n_out=2)
    assert model(next(tiny_ds.loader("train", 5))).pred.shape == (5, 2)


def test_registry_errors(tiny_ds):
    assert set(BASELINES) <= set(available())
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        build("nope", tiny_ds.dims)
    with pytest.raises(ValueError, match="requested but the dataset only has"):
        build("early_fusion", {"text": 4}, modalities=("text", "audio"))
    with pytest.raises(ValueError, match="at least two modalities"):
        build("mult", {"text": 4})


def test_missing_modality_in_batch_is_a_clear_error(tiny_ds):
    model = build("early_fusion", tiny_ds.dims)
    batch = next(tiny_ds.loader("train", 4))
    batch.audio = None
    with pytest.raises(DataError, match="no \\['audio'\\]"):
        model(batch)


def test_modality_subset(tiny_ds):
    model = build("late_fusion", tiny_ds.dims, modalities=("text", "vision"))
    out = model(next(tiny_ds.loader("train", 4)))
    assert out.extras["modality_weights"].shape == (4, 2)
    np.testing.assert_allclose(out.extras["modality_weights"].sum(-1).numpy(), 1.0, rtol=1e-6)


def test_sinusoidal_positions_golden():
    from msa_lib.nn import SinusoidalPositionalEmbedding
    pe = SinusoidalPositionalEmbedding(4)(torch.zeros(1, 3, 4))[0]
    # position 0: sin 0 = 0, cos 0 = 1; dims (sin f0, cos f0, sin f1, cos f1) with f0 = 1, f1 = 1e-4
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(pe[1], torch.tensor([np.sin(1.0), np.cos(1.0), np.sin(1e-4), np.cos(1e-4)], dtype=torch.float32))
    assert count_parameters(SinusoidalPositionalEmbedding(8)) == 0
