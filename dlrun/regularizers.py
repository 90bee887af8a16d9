"""Regularization terms Omega(theta), added to the data loss: L = data loss + Omega."""

from __future__ import annotations

import torch
from torch import nn

from dlrun.registry import Registry

REGULARIZERS: Registry = Registry("regularizer")


def weights(model: nn.Module) -> list[nn.Parameter]:
    """The weight matrices and kernels (ndim > 1): biases and norm-layer scales/shifts are left out."""
    return [p for p in model.parameters() if p.ndim > 1 and p.requires_grad]


@REGULARIZERS.register("none")
def none(ws: list[torch.Tensor], strength: float) -> torch.Tensor | None:
    """No regularization."""
    return None


@REGULARIZERS.register("l2")
def l2(ws: list[torch.Tensor], strength: float) -> torch.Tensor:
    """lambda/2 sum ||W||^2 over weights only; its gradient adds lambda W (decay (1 - eta lambda) W)."""
    return 0.5 * strength * sum(w.pow(2).sum() for w in ws)


@REGULARIZERS.register("l1")
def l1(ws: list[torch.Tensor], strength: float) -> torch.Tensor:
    """lambda sum |W| over weights only; its gradient is lambda sign(W)."""
    return strength * sum(w.abs().sum() for w in ws)


def build(cfg, model: nn.Module):
    """A function () -> Omega (a scalar tensor) or None when there is no term."""
    fn = REGULARIZERS.get(cfg.name)
    ws = weights(model)
    if cfg.name == "none" or not ws:
        return None
    return lambda: fn(ws, cfg.strength)
