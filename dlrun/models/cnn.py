"""Convolutional networks: conv blocks then an MLP head; 1-D or 2-D from the data's input shape.

Each conv layer maps N -> M = (N - F + 2P) / S + 1 per spatial axis (F kernel, P padding, S stride);
pooling halves (pool_size) an axis only while it stays at least one pixel.
"""

from __future__ import annotations

from collections import OrderedDict
from math import prod

import torch
from torch import nn

from dlrun.conv import output_size as conv_output_size
from dlrun.errors import ConfigError
from dlrun.models.activations import ACTIVATIONS
from dlrun.models.dropout import InvertedDropout

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
_POOL = {("max", 1): nn.MaxPool1d, ("max", 2): nn.MaxPool2d, ("avg", 1): nn.AvgPool1d, ("avg", 2): nn.AvgPool2d}


def per_layer(values: list[int], i: int) -> int:
    return values[i] if len(values) > 1 else values[0]


class CNN(nn.Module):
    """x -> [conv_i -> norm_i -> act_i -> pool_i] * len(channels) -> flatten -> [fc_j -> act -> drop] -> out.

    norm: batch (bn_i, statistics over the batch), layer (ln_i, over each example's channels and positions)
    or group (gn_i, over model.groups groups of channels of each example); the last two do not depend on the
    batch, so they behave the same in training and evaluation."""

    def __init__(self, cfg, input_shape: tuple[int, ...], out_features: int):
        super().__init__()
        dims = len(input_shape) - 1  # (C, L) -> 1-D convolutions, (C, H, W) -> 2-D
        channels, *size = input_shape
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, width in enumerate(cfg.channels):
            f, s, p = per_layer(cfg.kernel, i), per_layer(cfg.stride, i), per_layer(cfg.padding, i)
            out_size = [conv_output_size(n, f, s, p) for n in size]
            if min(out_size) < 1:
                raise ConfigError(
                    f"model.kernel: conv{i + 1} maps size {size} to M = (N - {f} + 2*{p}) / {s} + 1 = {out_size}, "
                    "below one pixel; use a smaller kernel or stride, more padding, or fewer layers"
                )
            layers[f"conv{i + 1}"] = _CONV[dims](channels, width, f, s, p)
            if cfg.norm == "batch":
                layers[f"bn{i + 1}"] = _BN[dims](width)
            elif cfg.norm == "layer":  # over each example's channels and positions; scale and shift per channel
                layers[f"ln{i + 1}"] = nn.GroupNorm(1, width)
            elif cfg.norm == "group":  # over groups of channels of each example (Wu and He 2018)
                layers[f"gn{i + 1}"] = nn.GroupNorm(cfg.groups, width)
            layers[f"act{i + 1}"] = ACTIVATIONS.get(cfg.activation)()
            size, channels = out_size, width
            if cfg.pool != "none" and min(size) >= cfg.pool_size:  # never pool below one pixel
                layers[f"pool{i + 1}"] = _POOL[(cfg.pool, dims)](cfg.pool_size)
                size = [n // cfg.pool_size for n in size]
        layers["flatten"] = nn.Flatten()
        width = channels * prod(size)
        for j, h in enumerate(cfg.hidden):
            layers[f"fc{j + 1}"] = nn.Linear(width, h)
            layers[f"fc_act{j + 1}"] = ACTIVATIONS.get(cfg.activation)()
            if cfg.dropout > 0:
                layers[f"fc_drop{j + 1}"] = InvertedDropout(cfg.dropout)
            width = h
        layers["out"] = nn.Linear(width, out_features)
        self.layers = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, C, L) or (B, C, H, W) -> (B, out_features)


def build_cnn(cfg, input_shape: tuple[int, ...], out_features: int) -> CNN:
    """Convolutional network: conv blocks then an MLP head (1-D for signals, 2-D for images)."""
    return CNN(cfg, input_shape, out_features)
