"""Layers by the names users type, reached through forward hooks.

A layer's name is its module path with the `layers.` prefix of the Sequential models dropped:
`fc1`, `act1`, `conv2`, `out` (MLP, CNN), `stage2.0.relu2` (ResNet). `dlrun viz layers RUN` lists them.
"""

from __future__ import annotations

import torch
from torch import nn

from dlrun.errors import ConfigError, suggest
from dlrun.models.summary import dry_run


def display_name(module_path: str) -> str:
    return module_path.removeprefix("layers.")


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every submodule (containers included) by display name, in definition order; `layers` itself is skipped."""
    return {display_name(name): m for name, m in model.named_modules() if name and name != "layers"}


def find_layer(model: nn.Module, name: str) -> nn.Module:
    layers = named_layers(model)
    if name not in layers:
        raise ConfigError(
            f"layer '{name}': not in this model;{suggest(name, layers)} choose from: {', '.join(layers)} "
            "(see `dlrun viz layers RUN`)"
        )
    return layers[name]


@torch.no_grad()
def layer_table(model: nn.Module, input_shape: tuple[int, ...]) -> list[dict]:
    """[{layer, type, output (shape without the batch), params}] from one forward pass of zeros, eval mode."""
    layers = named_layers(model)
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for name, module in layers.items():

        def hook(mod, inputs, output, name=name):
            out = output[0] if isinstance(output, tuple) else output
            if isinstance(out, torch.Tensor):
                shapes[name] = tuple(out.shape[1:])

        hooks.append(module.register_forward_hook(hook))
    dry_run(model, input_shape, hooks)
    return [
        {
            "layer": name,
            "type": type(module).__name__,
            "output": shapes.get(name),
            "params": sum(p.numel() for p in module.parameters()),
        }
        for name, module in layers.items()
    ]


class _Reached(Exception):
    """Raised by the hook of `forward_to` to skip the layers after the one asked for."""


def forward_to(model: nn.Module, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output of `module` for input x, without running the layers after it (autograd graph kept)."""
    seen: dict[str, torch.Tensor] = {}

    def hook(mod, inputs, output):
        seen["out"] = output[0] if isinstance(output, tuple) else output
        raise _Reached

    handle = module.register_forward_hook(hook)
    try:
        model(x)
    except _Reached:
        pass
    finally:
        handle.remove()
    return seen["out"]
