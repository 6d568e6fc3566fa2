"""Datasets: one schema (`MSADataset`), loaders for the community formats, SynthMSA, and a registry."""
from msa_lib.data.mmsa import load_mmsa, load_multibench
from msa_lib.data.real import load_mosi_text, mosei_label_table, mosi_label_table
from msa_lib.data.registry import (NAMES, describe_available, get_dataset, get_dataset_or_fallback, get_datasets,
                                   mosi_semi)
from msa_lib.data.sanitise import sanitise_features
from msa_lib.data.schema import EMOTIONS, INTERACTION_TYPES, MODALITIES, Batch, DataError, MSADataset, Split
from msa_lib.data.synth import SynthConfig, domain_split, make_synth, preset

__all__ = ["load_mmsa", "load_multibench", "load_mosi_text", "mosei_label_table", "mosi_label_table", "NAMES",
           "describe_available", "get_dataset", "get_dataset_or_fallback", "get_datasets", "mosi_semi", "sanitise_features", "EMOTIONS",
           "INTERACTION_TYPES", "MODALITIES", "Batch", "DataError", "MSADataset", "Split", "SynthConfig",
           "domain_split", "make_synth", "preset"]
