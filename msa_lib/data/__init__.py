"""Datasets: schema, loaders, SynthMSA, registry."""
