"""Model registry: ``build(name, dims, **hparams)``. Each paper module registers its models on import."""
from msa_lib.models import baselines, i2moe, midg, mmolre, text  # noqa: F401  (registers the models)
from msa_lib.models.base import ModelOutput, MSAModel, available, build, count_parameters, register

__all__ = ["ModelOutput", "MSAModel", "available", "build", "count_parameters", "register"]
