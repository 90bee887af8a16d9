"""Train-split augmentation on device tensors, drawn fresh for every batch from torch's RNG.

Random draws use the global generator of the batch's device (like dropout), so a checkpoint's RNG
state makes a resumed run draw the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from dlrun.errors import ConfigError


def random_window(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Zero-pad every spatial axis by `pad`, then take a window of the original size at a random offset.

    x: (B, C, L) or (B, C, H, W); each example gets its own offsets in [0, 2 pad] per axis.
    """
    dims = x.dim() - 2
    padded = F.pad(x, [pad] * (2 * dims))
    out = padded
    for axis in range(dims):  # one spatial axis at a time: gather a window of length n
        n = x.shape[2 + axis]
        offset = torch.randint(0, 2 * pad + 1, (x.shape[0],), device=x.device)
        index = offset[:, None] + torch.arange(n, device=x.device)  # (B, n)
        shape = [x.shape[0]] + [1] * (out.dim() - 1)
        shape[2 + axis] = n
        index = index.reshape(shape).expand(*out.shape[: 2 + axis], n, *out.shape[3 + axis :])
        out = out.gather(2 + axis, index)
    return out


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror each image left-right (the last axis) with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip.reshape(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)


def build(cfg, task) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The augmentation for a data config's `augment` block, or None when it is all off."""
    if not cfg.active:
        return None
    if cfg.crop and task.input_kind != "image":
        raise ConfigError(f"data.augment.crop works on images; this data is {task.input_kind} (signals: use shift)")
    if cfg.shift and task.input_kind != "signal":
        raise ConfigError(f"data.augment.shift works on signals; this data is {task.input_kind} (images: use crop)")
    if cfg.flip and task.input_kind != "image":
        raise ConfigError(f"data.augment.flip mirrors images; this data is {task.input_kind}")

    def augment(x: torch.Tensor) -> torch.Tensor:
        if cfg.crop or cfg.shift:
            x = random_window(x, cfg.crop or cfg.shift)
        if cfg.flip:
            x = random_flip(x)
        if cfg.noise:
            x = x + cfg.noise * torch.randn_like(x)
        return x

    return augment
