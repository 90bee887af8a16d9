"""The MLP family: hidden=[] is linear / logistic / softmax regression, the head follows the task."""

from __future__ import annotations

from collections import OrderedDict
from math import prod

import torch
from torch import nn

from dlrun.models.activations import ACTIVATIONS
from dlrun.models.dropout import InvertedDropout


class MLP(nn.Module):
    """x -> [fc_i -> norm_i -> act_i -> drop_i] * len(hidden) -> out; `activation` is one name for every
    hidden layer or one per layer ("relu,tanh").

    With `residual`, a hidden layer as wide as the one before adds its input to its output:
    h_i = skip_scale * h_{i-1} + drop(act(norm(W_i h_{i-1} + b_i))) (a skip connection around each such
    block; H(x) = F(x) + lambda x with lambda = skip_scale). With bias=False every layer is z = W h.
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
        residual: bool = False,
        skip_scale: float = 1.0,
        bias: bool = True,
    ):
        super().__init__()
        self.skip_from: set[str] = set()  # a block starts at fc_i (its input is saved) ...
        self.skip_to: set[str] = set()  # ... and the saved input is added after its last layer
        self.skip_scale = skip_scale
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        width = in_features
        acts = activation.split(",")  # one for every layer, or one per layer
        for i, h in enumerate(hidden, start=1):
            layers[f"fc{i}"] = nn.Linear(width, h, bias=bias)
            if norm == "batch":
                layers[f"bn{i}"] = nn.BatchNorm1d(h)
            elif norm == "layer":
                layers[f"ln{i}"] = nn.LayerNorm(h)
            layers[f"act{i}"] = ACTIVATIONS.get(acts[i - 1] if len(acts) > 1 else acts[0])()
            if dropout > 0:
                layers[f"drop{i}"] = InvertedDropout(dropout)  # survivors scaled by 1/(1-p)
            if residual and h == width and i > 1:
                self.skip_from.add(f"fc{i}")
                self.skip_to.add(next(reversed(layers)))
            width = h
        layers["out"] = nn.Linear(
            width, out_features, bias=bias
        )  # logits (or values); the loss applies sigmoid/softmax
        self.layers = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.skip_from:
            return self.layers(x)  # (B, *input_shape) -> (B, out_features)
        h = saved = x
        for name, layer in self.layers.named_children():
            if name in self.skip_from:
                saved = h
            h = layer(h)
            if name in self.skip_to:
                h = h + self.skip_scale * saved
        return h


def build_mlp(cfg, input_shape: tuple[int, ...], out_features: int) -> MLP:
    """Multilayer perceptron; hidden=[] gives linear, logistic or softmax regression."""
    return MLP(
        prod(input_shape),
        list(cfg.hidden),
        out_features,
        cfg.activation,
        cfg.dropout,
        cfg.norm,
        cfg.residual or getattr(cfg, "skip_scale", 1.0) != 1.0,  # a skip scale asks for skip connections
        getattr(cfg, "skip_scale", 1.0),
        getattr(cfg, "bias", True),
    )


def build_unit(cfg, input_shape: tuple[int, ...], out_features: int) -> MLP:
    """The perceptron's and ADALINE's single unit z = w . x + b (layer `out`); the rule is in the loss."""
    return MLP(prod(input_shape), [], out_features, bias=getattr(cfg, "bias", True))


class Autoencoder(nn.Module):
    """x -> encoder (hidden widths, then the code) -> decoder (the widths mirrored) -> x_hat, flattened.

    `encode(x)` gives the code; the forward pass the reconstruction, (B, prod(input_shape)), the regression
    target of data.targets=inputs."""

    def __init__(self, in_features: int, hidden: list[int], code: int, activation: str = "relu"):
        super().__init__()

        def stack(widths: list[int], last_linear: bool) -> nn.Sequential:
            layers: list[nn.Module] = []
            for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
                layers.append(nn.Linear(a, b))
                if not (last_linear and i == len(widths) - 2):
                    layers.append(ACTIVATIONS.get(activation)())
            return nn.Sequential(*layers)

        self.encoder = nn.Sequential(nn.Flatten(), *stack([in_features, *hidden, code], last_linear=True))
        self.decoder = stack([code, *reversed(hidden), in_features], last_linear=True)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def build_autoencoder(cfg, input_shape: tuple[int, ...], out_features: int) -> Autoencoder:
    """MLP autoencoder; its output is the input's reconstruction, so the task's targets must be the inputs."""
    from dlrun.errors import ConfigError

    if out_features != prod(input_shape):
        raise ConfigError(
            f"model=autoencoder reconstructs its input ({prod(input_shape)} values) but this task has "
            f"{out_features} outputs; set data.targets=inputs"
        )
    return Autoencoder(prod(input_shape), list(cfg.hidden), cfg.code, cfg.activation)
