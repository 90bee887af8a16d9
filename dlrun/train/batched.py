"""dlrun's MLP and CNN as K stacked members without vmap: batched matmuls and grouped convolutions.

A vectorized group (dlrun/train/vector.py) whose model is dlrun's MLP (no norm layers, no skips) or
CNN (no batch norm) runs its K members' dense layers as torch.baddbmm on the [K, in, out] leaves and
its convolutions as one grouped convolution (the members' channels side by side, groups=K): the same
ops as each single run, without vmap's cost per op.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlrun.models.dropout import InvertedDropout

ELEMENTWISE = (nn.Identity, nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Softplus, nn.GELU)
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
Layers = list[tuple[str, str, Any]]  # (kind, parameter prefix, module)


def stacked_layers(model: nn.Module, convs: bool) -> Layers:
    """The steps of dlrun's MLP or CNN as (kind, parameter prefix, module); [] for any other model (vmap).
    convs: whether convolutions run grouped (else a CNN stays under vmap)."""
    from dlrun.models.activations import Sign, Step
    from dlrun.models.cnn import CNN
    from dlrun.models.mlp import MLP

    if type(model) not in (MLP, CNN) or getattr(model, "skip_from", None):
        return []
    steps = []
    for name, mod in model.layers.named_children():
        prefix = f"layers.{name}"
        if type(mod) is nn.Flatten and mod.start_dim == 1 and mod.end_dim == -1:
            steps.append(("flatten", prefix, mod))
        elif type(mod) is nn.Linear:
            steps.append(("linear", prefix, mod))
        elif type(mod) in (nn.Conv1d, nn.Conv2d) and mod.padding_mode == "zeros" and isinstance(mod.padding, tuple):
            if not convs:
                return []
            steps.append(("conv", prefix, mod))
        elif type(mod) is InvertedDropout:
            steps.append(("dropout", prefix, mod))
        elif type(mod) in ELEMENTWISE or type(mod) in (Step, Sign):
            steps.append(("act", prefix, mod))
        elif type(mod) in POOLS:
            steps.append(("pool", prefix, mod))
        else:
            return []  # batch or layer norm: vmap
    return steps


def _conv(h: torch.Tensor, layout: str, k: int, mod: nn.Module, w: torch.Tensor, bias) -> torch.Tensor:
    """One grouped convolution of K members: h [B, K*C, ...] -> [B, K*out, ...]; w [K, out, C, ...]."""
    if layout == "member":  # [K, B, C, ...] -> [B, K*C, ...]
        h = h.transpose(0, 1).flatten(1, 2)
    elif layout == "shared":
        h = h.repeat(1, k, *[1] * (h.dim() - 2))
    conv = F.conv1d if type(mod) is nn.Conv1d else F.conv2d
    b = bias.flatten() if bias is not None else None
    return conv(h, w.flatten(0, 1), b, mod.stride, mod.padding, mod.dilation, mod.groups * k)


def stacked_forward(
    layers: Layers, leaves: dict[str, torch.Tensor], k: int, x: torch.Tensor, masks: dict | None = None
) -> torch.Tensor:
    """[K, B, out]. Training (masks given): x [K, B, ...], each member's batch; evaluation: x [B, ...] for all.

    Dense layers hold h as [K, B, features]; convolutions as [B, K * channels, ...] (member k's channels
    at k*C ... (k+1)*C - 1), so pooling and activations act per channel as in each single run. The single
    run's op order: h W^T + b, the activation, then h * keep / (1 - p) in training.
    """
    h, layout = x, "member" if masks is not None else "shared"  # shared: one input for every member
    for kind, prefix, mod in layers:
        w, bias = leaves.get(prefix + ".weight"), leaves.get(prefix + ".bias")
        if kind == "conv":
            h, layout = _conv(h, layout, k, mod, w, bias), "conv"
        elif kind == "flatten":
            if layout == "conv":  # [B, K*C, ...] -> [K, B, C*...]
                h, layout = h.unflatten(1, (k, -1)).flatten(2).transpose(0, 1), "member"
            else:
                h = h.flatten(2) if layout == "member" else h.flatten(1)
        elif kind == "linear":  # w: [K, in, out], bias: [K, out]
            if layout == "shared":
                h = torch.matmul(h, w)
                h, layout = (h + bias.unsqueeze(1) if bias is not None else h), "member"
            else:
                h = torch.baddbmm(bias.unsqueeze(1), h, w) if bias is not None else torch.bmm(h, w)
        elif kind in ("act", "pool"):
            h = mod(h)
        elif masks is not None and mod.p > 0:
            keep = masks[prefix + ".keep"]  # [K, B, ...]
            if layout == "conv":
                keep = keep.transpose(0, 1).flatten(1, 2)
            h = h * keep / (1.0 - mod.p)
    return h
