"""Gradient reversal (Ganin & Lempitsky, 2015, "DANN") and its standard λ ramp.

Why here: adversarial domain-invariance (MIDG's MoIE → discriminator) needs a layer that is the
identity going forward and multiplies the gradient by −λ going back, so one loss trains the
discriminator to tell domains apart while pushing the features *before* the layer to make that
impossible. It is a building block, not a MIDG detail, so it lives in ``msa_lib.nn``.
"""
from __future__ import annotations

import math

import torch


class GradReverse(torch.autograd.Function):
    """Forward: identity. Backward: ``−lam · grad`` (``lam`` receives no gradient)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:  # type: ignore[override]
        ctx.lam = float(lam)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """Identity on ``x`` whose gradient is multiplied by ``−lam`` on the way back."""
    if not math.isfinite(float(lam)) or lam < 0:
        raise ValueError(f"grad_reverse needs a finite lam >= 0; got {lam}")
    return GradReverse.apply(x, float(lam))


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """DANN's schedule ``2 / (1 + exp(−gamma·p)) − 1`` for training progress ``p`` in [0, 1].

    It starts at 0 (the discriminator is random early on, so its reversed gradient is only
    noise) and saturates near 1; ``p`` outside [0, 1] is clipped.
    """
    p = min(1.0, max(0.0, float(progress)))
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0
