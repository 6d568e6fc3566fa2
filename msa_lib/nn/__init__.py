"""Shared neural building blocks. Each is written once here and composed by the paper models."""
from msa_lib.nn.blocks import (MLP, CrossAttentionBlock, GRUEncoder, LearnedPositionalEmbedding,
                               SinusoidalPositionalEmbedding, TransformerBlock,
                               TransformerEncoder, masked_mean)

__all__ = ["MLP", "CrossAttentionBlock", "GRUEncoder", "LearnedPositionalEmbedding", "SinusoidalPositionalEmbedding",
           "TransformerBlock",
           "TransformerEncoder", "masked_mean"]
