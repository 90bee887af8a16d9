"""A per-layer table of a model: output shape, parameters, and M = (N - F + 2P)/S + 1 for conv layers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dlrun.conv import output_size as conv_output_size


def _formula(module: nn.Module, in_shape: tuple[int, ...]) -> str:
    """For a conv layer, the output size of each spatial axis: M = (N - F + 2P) / S + 1."""
    if not isinstance(module, nn.Conv1d | nn.Conv2d):
        return ""
    parts = []
    for n, f, p, s in zip(in_shape[2:], module.kernel_size, module.padding, module.stride, strict=True):
        exact = (n - f + 2 * p) / s + 1
        shown = f"{exact:g}" if exact.is_integer() else f"{exact:g}, floored to {conv_output_size(n, f, s, p)}"
        parts.append(f"({n} - {f} + 2*{p})/{s} + 1 = {shown}")
    if len(set(parts)) == 1:  # square images: one formula serves both axes
        return "M = " + parts[0]
    return "M = " + ", ".join(f"{axis}: {part}" for axis, part in zip("HW", parts, strict=True))


def _shown(name: str) -> str:
    return name.removeprefix("layers.") or "(the model itself)"


@torch.no_grad()
def summarize(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Rows (layer, type, output shape without the batch, parameters, formula) from one forward pass."""
    rows: list[dict[str, Any]] = []
    hooks = []
    for name, module in model.named_modules():
        # containers are listed through their leaves, but for parameters of their own (a plugin's attention
        # module's in_proj_weight): those get a row, so that the rows add up to the total
        if next(module.children(), None) is not None and not any(True for _ in module.parameters(recurse=False)):
            continue

        def hook(mod, inputs, output, name=name):
            out = output[0] if isinstance(output, tuple) else output
            seen = next((r for r in rows if r["layer"] == _shown(name)), None)
            if seen is not None:  # a module run at every step (a recurrent cell): one row, with its calls
                seen["calls"] += 1
                seen["type"] = f"{type(mod).__name__} (x{seen['calls']})"
                return
            rows.append(
                {
                    "layer": _shown(name),
                    "type": type(mod).__name__,
                    "output": tuple(out.shape[1:]),
                    "params": sum(p.numel() for p in mod.parameters(recurse=False)),
                    "formula": _formula(mod, tuple(inputs[0].shape)),
                    "calls": 1,
                }
            )

        hooks.append(module.register_forward_hook(hook))
    dry_run(model, input_shape, hooks)
    seen = {r["layer"] for r in rows}
    for name, module in model.named_modules():  # parameters whose module's forward never ran (attention reads
        own = sum(p.numel() for p in module.parameters(recurse=False))  # out_proj's weight directly)
        if own and _shown(name) not in seen:
            rows.append({"layer": _shown(name), "type": type(module).__name__, "output": "(not called)", "params": own,
                         "formula": ""})  # fmt: skip
    return {"rows": rows, "params": sum(p.numel() for p in model.parameters()), "input": tuple(input_shape)}


def dry_run(model: nn.Module, input_shape: tuple[int, ...], hooks: list) -> None:
    """One eval-mode forward pass of two zero inputs, for the forward `hooks` (handles); they are removed after."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(2, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
