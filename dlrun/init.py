"""Weight initialization by name, applied to every Linear and Conv layer after the model is built."""

from __future__ import annotations

from torch import nn

from dlrun.registry import Registry

INITS: Registry = Registry("init")
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


@INITS.register("default")
def default(module: nn.Module) -> None:
    """PyTorch's defaults: Kaiming-uniform weights (a = sqrt(5)), small uniform biases."""


@INITS.register("glorot_uniform")
def glorot_uniform(module: nn.Module) -> None:
    """W ~ U[-t, t], t = sqrt(6 / (fan_in + fan_out)); b = 0."""
    nn.init.xavier_uniform_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


@INITS.register("he_normal")
def he_normal(module: nn.Module) -> None:
    """W ~ N(0, 2 / fan_in) (for ReLU); b = 0."""
    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def initialize(model: nn.Module, cfg) -> nn.Module:
    fn = INITS.get(cfg.name)
    for module in model.modules():
        if isinstance(module, _LAYERS):
            fn(module)
    return model
