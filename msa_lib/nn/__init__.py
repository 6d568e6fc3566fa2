"""Shared neural building blocks. Each is written once here and composed by the paper models."""
from msa_lib.nn.blocks import (MLP, CrossAttentionBlock, GRUEncoder, LearnedPositionalEmbedding, PatchEmbeddings,
                               SinusoidalPositionalEmbedding, SummaryEncoder, TransformerBlock, TransformerEncoder,
                               masked_mean)
from msa_lib.nn.lowrank import LowRankTensorFusion
from msa_lib.nn.moe import SparseMoEFFN, collect_aux_loss

__all__ = ["MLP", "CrossAttentionBlock", "GRUEncoder", "LearnedPositionalEmbedding", "LowRankTensorFusion",
           "PatchEmbeddings", "SinusoidalPositionalEmbedding", "SparseMoEFFN", "SummaryEncoder", "TransformerBlock",
           "TransformerEncoder", "collect_aux_loss", "masked_mean"]
