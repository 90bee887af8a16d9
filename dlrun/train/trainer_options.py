"""The trainer options that change how a step runs, written once for every kind of run.

    trainer.precision       32, bf16 (autocast to bfloat16, CPU too) or 16 (float16 with a gradient scaler)
    trainer.compile         false, default, reduce-overhead, max-autotune: torch.compile of the training forward
    trainer.memory_format   auto (channels_last for 2-D CNNs on CUDA), contiguous, channels_last
    trainer.ema             decay of an exponential moving average of the weights (0: off)
    trainer.accumulate      micro-batches of trainer.batch_size per optimizer step
    trainer.deterministic   PyTorch's deterministic algorithms; CUDA: cuBLAS workspace, cuDNN benchmark off

A single run and a torchrun job take them all; a vectorized group takes ema and accumulate and refuses
the others in one line (members.refusal), which a sweep reads to run such trials as separate processes.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

from dlrun.errors import ConfigError, first_line

AUTOCAST = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


def check(cfg, device: torch.device, closure: bool, full_batch: bool) -> None:
    """What the device, the optimizer or the backprop cannot take, as one line before anything is written."""
    t = cfg.trainer
    if t.precision != "32":
        if closure or cfg.backprop != "autograd":
            what = f"optim={cfg.optim.name}" if closure else f"backprop={cfg.backprop}"
            raise ConfigError(
                f"trainer.precision={t.precision}: {what} trains in float32 only; use trainer.precision=32"
            )
        if t.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("trainer.precision=bf16: this GPU has no bfloat16; use trainer.precision=16")
        if device.type == "mps" and t.precision == "bf16":
            raise ConfigError("trainer.precision=bf16: not on MPS; use trainer.precision=16 or 32")
    if t.accumulate > 1 and (full_batch or closure):
        raise ConfigError(
            f"trainer.accumulate={t.accumulate}: optim={cfg.optim.name} steps on the whole train split at once; "
            "use trainer.accumulate=1"
        )
    if t.compile != "false" and cfg.backprop != "autograd":
        raise ConfigError(f"trainer.compile={t.compile}: backprop={cfg.backprop} runs per-layer boxes; not compiled")


def settings(t, device: torch.device) -> None:
    """trainer.deterministic; without it cuDNN picks the fastest convolution algorithms (benchmark) on CUDA."""
    if t.deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
    torch.use_deterministic_algorithms(bool(t.deterministic), warn_only=False)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not t.deterministic
        torch.backends.cudnn.deterministic = bool(t.deterministic)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The forward's autocast context (a no-op context for float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def scaler(t, device: torch.device) -> torch.amp.GradScaler | None:
    """float16's gradient scaler (its state is checkpointed); None for 32 and bf16."""
    return torch.amp.GradScaler(device.type) if t.precision == "16" else None


def channels_last(t, device: torch.device, model: nn.Module) -> bool:
    """Whether the model and its inputs go channels_last: asked for, or auto on CUDA for a model with Conv2d."""
    has_conv2d = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if t.memory_format == "channels_last" and not has_conv2d:
        raise ConfigError("trainer.memory_format=channels_last: the model has no 2-D convolution to lay out")
    return has_conv2d and (t.memory_format == "channels_last" or (t.memory_format == "auto" and device.type == "cuda"))


def compiled(net: nn.Module, mode: str) -> nn.Module:
    """torch.compile of the training forward (mode default, reduce-overhead or max-autotune)."""
    return torch.compile(net, mode=None if mode == "default" else mode)


def compile_failed(mode: str, e: Exception) -> ConfigError:
    return ConfigError(f"trainer.compile={mode}: torch.compile failed ({type(e).__name__}: {first_line(e)[:200]}); "
                       "use trainer.compile=false")  # fmt: skip


@torch.no_grad()
def ema_update(ema: list[torch.Tensor], current: list[torch.Tensor], decay: float) -> None:
    """ema <- decay ema + (1 - decay) current for floating tensors (parameters and buffers); others copied."""
    floats = [(e, c) for e, c in zip(ema, current, strict=True) if e.is_floating_point()]
    if floats:
        torch._foreach_lerp_([e for e, _ in floats], [c for _, c in floats], 1.0 - decay)
    for e, c in zip(ema, current, strict=True):
        if not e.is_floating_point():
            e.copy_(c)


def micro_batches(n: int, size: int) -> list[tuple[int, int]]:
    """[start, end) of the micro-batches of a batch of n examples, `size` each (the last takes the rest)."""
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def compile_report(info: dict, logger) -> None:
    """What torch.compile made of the model, after its first step: graphs, and graph breaks (parts that run
    eagerly), in info (the summary's `compile`), a warning and the run's TensorBoard text."""
    import warnings

    from torch._dynamo.utils import counters

    from dlrun.models.base import DlrunWarning

    breaks = dict(counters["graph_break"])
    info.update(graphs=int(counters["stats"]["unique_graphs"]), graph_breaks=sum(breaks.values()))
    text = f"trainer.compile={info['mode']}: the training forward compiled in {info['seconds']} s"
    text += f", {info['graphs']} graph(s)"
    if breaks:
        reason = next(iter(breaks))
        text += f", {info['graph_breaks']} graph break(s), those parts run eagerly (first: {reason[:160]})"
        warnings.warn(text, DlrunWarning, 2)
    if logger is not None:
        logger.text("compile", text)
