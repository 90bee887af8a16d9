"""Regularizers as the lectures write them, over the weights only (biases and normalization layers excluded).

l2            Omega = lambda/2 sum ||W||^2                       dOmega/dW = lambda W
l1            Omega = lambda sum |W_ij|                          dOmega/dW = lambda sign(W)
elastic       Omega = lambda (r sum |W_ij| + (1 - r)/2 sum ||W||^2)
weight_decay  no loss term: W <- W - lr lambda W at every step, decoupled from the gradient
dropout       no loss term: inverted dropout after every hidden activation of the model

The loss terms are added to the data loss (L = data loss + Omega); the trainer logs Omega apart from the
data loss as `train/reg_loss`. l1 and elastic also log `weights/sparsity`, the fraction of weights with
|w| < zero_threshold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dlrun import options
from dlrun.errors import ConfigError
from dlrun.registry import Registry

REGULARIZERS: Registry = Registry("regularizer")

# normalization layers rescale activations; their scale and shift are never regularized, whatever their shape
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, getattr(nn, "RMSNorm", nn.LayerNorm))


def weights(model: nn.Module) -> list[nn.Parameter]:
    """The weight matrices and kernels: every parameter with ndim > 1 outside normalization layers.

    Biases and norm-layer scales/shifts are left out. Linear and recurrent matrices and conv kernels are
    in. An nn.Embedding table is in too: it is a linear layer applied to one-hot inputs.
    """
    seen: set[int] = set()
    out = []
    for module in model.modules():
        if isinstance(module, NORM_LAYERS):
            continue
        for p in module.parameters(recurse=False):
            if p.ndim > 1 and p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


# ----------------------------------------------------------------------------- the formulas
def l2_penalty(ws: list[torch.Tensor], strength: float) -> torch.Tensor:
    """lambda/2 sum ||W||^2."""
    return 0.5 * strength * sum(w.pow(2).sum() for w in ws)


def l1_penalty(ws: list[torch.Tensor], strength: float) -> torch.Tensor:
    """lambda sum |W_ij|."""
    return strength * sum(w.abs().sum() for w in ws)


def elastic_penalty(ws: list[torch.Tensor], strength: float, l1_ratio: float) -> torch.Tensor:
    """lambda (r sum |W_ij| + (1 - r)/2 sum ||W||^2)."""
    return l1_penalty(ws, strength * l1_ratio) + l2_penalty(ws, strength * (1.0 - l1_ratio))


@torch.no_grad()
def sparsity(ws: list[torch.Tensor], zero_threshold: float) -> torch.Tensor:
    """The fraction of weights with |w| < zero_threshold (a scalar on the device, no host sync)."""
    zeros = sum((w.abs() < zero_threshold).sum() for w in ws)
    return zeros / sum(w.numel() for w in ws)


@torch.no_grad()
def decay_(ws: list[torch.Tensor], optimizer: torch.optim.Optimizer, strength: float) -> None:
    """W <- W - lr lambda W for every weight, lr the current learning rate of the weight's param group."""
    mine = {id(w) for w in ws}
    for group in optimizer.param_groups:
        factor = 1.0 - float(group["lr"]) * strength
        for p in group["params"]:
            if id(p) in mine:
                p.mul_(factor)


# ----------------------------------------------------------------------------- what the trainer uses
@dataclass
class Regularizer:
    """What the trainer calls, as functions of the list of weights `ws` (regularizers.weights of the model),
    so that a vectorized group runs the same functions on each member's slice of its stacked weights.

    penalty(ws, strength) is Omega, added to the data loss and logged as train/reg_loss (None: no loss term);
    decay: W <- W - lr strength W after the gradients and before optimizer.step(), lr that step's rate;
    stats(ws) are logged with train/loss (tensors on the device, read in the log step's one host sync).
    A plugin's regularizer is built the same way, and so trains alone and as a group member alike.
    """

    name: str
    ws: list[torch.Tensor]  # the model's weights
    strength: float = 0.0  # lambda
    penalty: Callable[[list[torch.Tensor], Any], torch.Tensor] | None = None
    decay: bool = False
    stats: Callable[[list[torch.Tensor]], dict[str, torch.Tensor]] | None = None

    @property
    def term(self) -> bool:
        """Whether the regularizer adds a loss term."""
        return self.penalty is not None

    def __call__(self) -> torch.Tensor | None:
        return self.penalty(self.ws, self.strength) if self.penalty is not None else None

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.decay:
            decay_(self.ws, optimizer, self.strength)

    def scalars(self) -> dict[str, torch.Tensor]:
        return self.stats(self.ws) if self.stats is not None else {}


@REGULARIZERS.register("none")
def none(cfg, model: nn.Module) -> Regularizer | None:
    """No regularization."""
    return None


@REGULARIZERS.register("l2")
def l2(cfg, model: nn.Module) -> Regularizer:
    """lambda/2 sum ||W||^2 over weights only; its gradient adds lambda W (decay (1 - eta lambda) W)."""
    return Regularizer("l2", weights(model), cfg.strength, penalty=l2_penalty)


def _sparsity(cfg) -> Callable[[list[torch.Tensor]], dict[str, torch.Tensor]]:
    return lambda ws: {"weights/sparsity": sparsity(ws, cfg.zero_threshold)}


@REGULARIZERS.register("l1")
def l1(cfg, model: nn.Module) -> Regularizer:
    """lambda sum |W| over weights only; its gradient is lambda sign(W); logs weights/sparsity."""
    return Regularizer("l1", weights(model), cfg.strength, penalty=l1_penalty, stats=_sparsity(cfg))


@REGULARIZERS.register("elastic")
def elastic(cfg, model: nn.Module) -> Regularizer:
    """lambda (r sum |W| + (1 - r)/2 sum ||W||^2) over weights only; logs weights/sparsity."""
    return Regularizer(
        "elastic",
        weights(model),
        cfg.strength,
        penalty=lambda ws, strength: elastic_penalty(ws, strength, cfg.l1_ratio),
        stats=_sparsity(cfg),
    )


@REGULARIZERS.register("weight_decay")
def weight_decay(cfg, model: nn.Module) -> Regularizer:
    """Decoupled weight decay: W <- W - lr lambda W at every step, weights only (not a loss term).

    Applied to W_t before optimizer.step() (after backward), so one step is exactly
    W_{t+1} = W_t - lr (update_t + lambda W_t): for SGD (1 - lr lambda) W - lr grad, for Adam the
    update of torch.optim.AdamW (Loshchilov & Hutter) restricted to the weights.
    """
    return Regularizer("weight_decay", weights(model), cfg.strength, decay=True)


@REGULARIZERS.register("dropout")
def dropout(cfg, model: nn.Module) -> Regularizer | None:
    """Inverted dropout after every hidden activation: built into the model (see model_config)."""
    return None


def build(cfg, model: nn.Module) -> Regularizer | None:
    """The regularizer the loop uses, or None when there is nothing to do during training."""
    reg = REGULARIZERS.get(cfg.name)(cfg, model)
    if reg is not None and not weights(model):
        return None  # a model without weight matrices has nothing to regularize
    return reg


# ----------------------------------------------------------------------------- dropout
def model_config(model_cfg, cfg):
    """The model config to build: regularizer=dropout sets the model's own `dropout` key to p.

    mlp: an InvertedDropout after every hidden activation (drop1, drop2, ...); cnn: after every hidden
    activation of the fully connected head (fc_drop1, ...), not on the conv feature maps. rnn and resnet
    are refused: a recurrent cell's activations are inside the cell, and the CIFAR ResNets use none.
    """
    if cfg.name != "dropout":
        return model_cfg
    name = model_cfg.name
    caps = options.caps("model", name)
    where = caps.dropout
    if not where:
        with_dropout = ", ".join(f"model={n}" for n in options.with_cap("model", "dropout"))
        reason = caps.no_dropout or f"model={name} has no dropout"
        raise ConfigError(f"regularizer=dropout: {reason} (dropout is supported by {with_dropout})")
    if not model_cfg.hidden:
        raise ConfigError(f"regularizer=dropout: model.hidden=[] leaves model={name} no {where} to drop units of")
    if model_cfg.dropout not in (0.0, cfg.p):
        raise ConfigError(
            f"regularizer=dropout (p={cfg.p}) and model.dropout={model_cfg.dropout} both set dropout; keep one"
        )
    return dataclasses.replace(model_cfg, dropout=cfg.p)
