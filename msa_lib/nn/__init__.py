"""Shared neural building blocks. Each is written once here and composed by the paper models."""
from msa_lib.nn.blocks import (MLP, CrossAttentionBlock, GRUEncoder, LearnedPositionalEmbedding, PatchEmbeddings,
                               SinusoidalPositionalEmbedding, SummaryEncoder, TransformerBlock, TransformerEncoder,
                               masked_mean)
from msa_lib.nn.grl import GradReverse, dann_lambda, grad_reverse
from msa_lib.nn.lowrank import LowRankTensorFusion
from msa_lib.nn.moe import NoisyTopKRouter, SampleRoutedMoE, SparseMoEFFN, collect_aux_loss
from msa_lib.nn.ssm import MambaBlock, selective_scan
from msa_lib.nn.vit import Attention, CrossTokenTransformer, PreNormAttention, TokenTransformer

__all__ = ["Attention", "CrossTokenTransformer", "MambaBlock", "NoisyTopKRouter", "PreNormAttention",
           "SampleRoutedMoE", "TokenTransformer", "selective_scan", "MLP", "CrossAttentionBlock", "GRUEncoder", "LearnedPositionalEmbedding", "LowRankTensorFusion",
           "PatchEmbeddings", "SinusoidalPositionalEmbedding", "SparseMoEFFN", "SummaryEncoder", "TransformerBlock",
           "TransformerEncoder", "collect_aux_loss", "masked_mean", "GradReverse", "grad_reverse", "dann_lambda"]
