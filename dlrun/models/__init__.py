"""Models by name. A model knows its input shape and output size, nothing of trainer or device."""

from __future__ import annotations

import warnings

from torch import nn

from dlrun import options
from dlrun.errors import ConfigError
from dlrun.models import cnn, named, resnet, rnn, transformer
from dlrun.models.base import MODELS, DlrunWarning
from dlrun.models.mlp import build_autoencoder, build_mlp, build_unit
from dlrun.options.model import fit_reason

MODELS.register("mlp")(build_mlp)
MODELS.register("cnn")(cnn.build_cnn)
MODELS.register("rnn")(rnn.build_rnn)
MODELS.register("resnet")(resnet.build_resnet)
MODELS.register("transformer")(transformer.build_transformer)
MODELS.register("autoencoder")(build_autoencoder)
MODELS.register("perceptron")(build_unit)
MODELS.register("adaline")(build_unit)
for _name in options.model.NAMED:
    MODELS.register(_name)(
        lambda cfg, input_shape, out_features, name=_name: named.build(name, cfg, input_shape, out_features)
    )


def build(cfg, input_shape: tuple[int, ...], out_features: int, masked: bool = False) -> nn.Module:
    """The model named by cfg.name (a model config), mapping (B, *input_shape) to (B, out_features).

    Its size is known before anything is allocated (it is built once on the meta device), so a model
    whose parameters would not fit in memory is refused with its size. A plugin's model is then run on
    two examples: it must have a parameter and return a floating (2, out_features) tensor."""
    builder = MODELS.get(cfg.name)
    if masked:  # variable-length signals: a builder that knows the mask channel (rnn, transformer) gets told
        builder = _told_masked(builder)
    check_size(builder, cfg, input_shape, out_features)
    try:
        model = builder(cfg, input_shape, out_features)
    except MemoryError:
        raise ConfigError(f"model={cfg.name}: its parameters do not fit in this machine's memory") from None
    if not builder.__module__.startswith("dlrun."):
        check_plugin_model(model, cfg.name, input_shape, out_features)
    if {"step", "sign"} & set(str(getattr(cfg, "activation", "")).split(",")) and getattr(cfg, "hidden", None):
        warnings.warn(
            f"model.activation={cfg.activation}: a threshold unit's gradient is zero almost everywhere, so no gradient "
            "reaches the hidden layers and only the output layer learns; use sigmoid or relu to train them",
            DlrunWarning,
            stacklevel=2,
        )
    return model


def _told_masked(builder):
    import functools
    import inspect

    if "masked" not in inspect.signature(builder).parameters:
        return builder  # it reads the padding and the mask channel as features
    return functools.wraps(builder)(functools.partial(builder, masked=True))


def memory_bytes() -> int:
    """This machine's physical memory."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: no check
        return 1 << 62


def check_size(builder, cfg, input_shape: tuple[int, ...], out_features: int) -> None:
    """Refuse a model whose float32 parameters alone exceed the machine's memory (counted on the meta device,
    where nothing is allocated). A builder that cannot run on the meta device is not checked here."""
    import torch

    state = torch.random.get_rng_state()
    try:
        with torch.device("meta"):
            meta = builder(cfg, input_shape, out_features)
        count = sum(p.numel() for p in meta.parameters()) + sum(b.numel() for b in meta.buffers())
    except Exception:  # noqa: BLE001 - a builder that reads real data or tensors: built for real below
        return
    finally:
        torch.random.set_rng_state(state)
    need, have = 4 * count, memory_bytes()
    if need > have:
        raise ConfigError(
            f"model={cfg.name}: {count:,} parameters, {need / 2**30:,.1f} GiB in float32 (and about 4 times that to "
            f"train with gradients and Adam's moments), more than this machine's {have / 2**30:.0f} GiB of memory; "
            "give a smaller model (model.hidden, model.channels)"
        )


def check_plugin_model(model: nn.Module, name: str, input_shape: tuple[int, ...], out_features: int) -> None:
    """A plugin's model, tried on two examples of zeros before training: one line for what is wrong with it."""
    import torch

    what = f"model={name} (a plugin)"
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{what}: its builder returned {type(model).__name__}, not a torch.nn.Module")
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"{what}: it has no trainable parameter; give it at least one (an nn.Linear, say)")
    was = model.training
    model.eval()
    from dlrun.plugins import exit_message, no_exit

    try:
        try:
            with torch.no_grad(), no_exit():
                out = model(torch.zeros(2, *input_shape))
        except BaseException as e:  # an exit in the plugin's forward is named, not obeyed
            if (why := exit_message(e)) is None:
                raise
            raise ConfigError(f"{what}: its forward {why}") from None
    except ConfigError:
        raise
    except MemoryError:
        raise ConfigError(
            f"{what}: its forward ran out of memory on 2 examples of shape {tuple(input_shape)}"
        ) from None
    except Exception as e:  # noqa: BLE001 - whatever a plugin raises is named in one line
        first = str(e).splitlines()[0] if str(e) else ""
        raise ConfigError(
            f"{what}: its forward raised {type(e).__name__}: {first} (on 2 examples of shape {tuple(input_shape)})"
        ) from None
    finally:
        model.train(was)
    expected = (2, out_features)
    if not isinstance(out, torch.Tensor):
        raise ConfigError(
            f"{what}: its forward returned {type(out).__name__}; return one tensor of shape (batch, {out_features})"
        )
    if not out.is_floating_point():
        raise ConfigError(f"{what}: its forward returned a {out.dtype} tensor; return floating-point scores")
    if tuple(out.shape) != expected:
        raise ConfigError(
            f"{what}: its forward returned shape {tuple(out.shape)} for 2 examples; "
            f"this task needs (batch, {out_features})"
        )


def check_fit(cfg, task, data_name: str) -> None:
    """Refuse a model that cannot read this data (model=cnn on tabular features), with what would fit."""
    reason = fit_reason(cfg.name, task.input_kind, task.input_shape)
    if reason:
        raise ConfigError(f"model={cfg.name} does not fit data={data_name}: {reason}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
