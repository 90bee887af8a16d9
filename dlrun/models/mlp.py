"""The MLP family: hidden=[] is linear / logistic / softmax regression, the head follows the task."""

from __future__ import annotations

from collections import OrderedDict
from math import prod

import torch
from torch import nn

from dlrun.models.activations import ACTIVATIONS
from dlrun.models.dropout import InvertedDropout


class MLP(nn.Module):
    """x -> [fc_i -> norm_i -> act_i -> drop_i] * len(hidden) -> out.

    Layer names (fc1, act1, ..., out) are what `weights/<layer>/norm` and hooks refer to.
    """

    def __init__(
        self,
        in_features: int,
        hidden: list[int],
        out_features: int,
        activation: str = "relu",
        dropout: float = 0.0,
        norm: str = "none",
    ):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        width = in_features
        for i, h in enumerate(hidden, start=1):
            layers[f"fc{i}"] = nn.Linear(width, h)
            if norm == "batch":
                layers[f"bn{i}"] = nn.BatchNorm1d(h)
            elif norm == "layer":
                layers[f"ln{i}"] = nn.LayerNorm(h)
            layers[f"act{i}"] = ACTIVATIONS.get(activation)()
            if dropout > 0:
                layers[f"drop{i}"] = InvertedDropout(dropout)  # survivors scaled by 1/(1-p)
            width = h
        layers["out"] = nn.Linear(width, out_features)  # logits (or values); the loss applies sigmoid/softmax
        self.layers = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, *input_shape) -> (B, out_features)


def build_mlp(cfg, input_shape: tuple[int, ...], out_features: int) -> MLP:
    """Multilayer perceptron; hidden=[] gives linear, logistic or softmax regression."""
    return MLP(prod(input_shape), list(cfg.hidden), out_features, cfg.activation, cfg.dropout, cfg.norm)
