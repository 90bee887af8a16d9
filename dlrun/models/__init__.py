"""Models by name. A model knows its input shape and output size, nothing of trainer or device."""

from __future__ import annotations

import warnings

from torch import nn

from dlrun.errors import ConfigError
from dlrun.models import cnn, resnet, rnn
from dlrun.models.base import MODELS, DlrunWarning
from dlrun.models.mlp import build_mlp
from dlrun.options.model import fit_reason

MODELS.register("mlp")(build_mlp)
MODELS.register("cnn")(cnn.build_cnn)
MODELS.register("rnn")(rnn.build_rnn)
MODELS.register("resnet")(resnet.build_resnet)


def build(cfg, input_shape: tuple[int, ...], out_features: int) -> nn.Module:
    """The model named by cfg.name (a model config), mapping (B, *input_shape) to (B, out_features)."""
    model = MODELS.get(cfg.name)(cfg, input_shape, out_features)
    if getattr(cfg, "activation", None) == "step" and getattr(cfg, "hidden", None):
        warnings.warn(
            "model.activation=step: the Heaviside step's gradient is zero almost everywhere, so no gradient "
            "reaches the hidden layers and only the output layer learns; use sigmoid or relu to train them",
            DlrunWarning,
            stacklevel=2,
        )
    return model


def check_fit(cfg, task, data_name: str) -> None:
    """Refuse a model that cannot read this data (model=cnn on tabular features), with what would fit."""
    reason = fit_reason(cfg.name, task.input_kind, task.input_shape)
    if reason:
        raise ConfigError(f"model={cfg.name} does not fit data={data_name}: {reason}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
