"""Residual networks of the CIFAR family (He et al. 2016): depth 6n + 2; 1-D or 2-D from the data's input shape.

x -> stem (conv3x3, BN, ReLU) -> stage1 (n blocks) -> stage2 (n blocks, first one strided) -> stage3 (likewise)
  -> global average pooling -> Linear.

A basic block computes F(x) = BN(conv3x3(ReLU(BN(conv3x3(x))))) and outputs H(x) = ReLU(F(x) + shortcut(x)).
The shortcut is "option A": the identity, or, where the block downsamples, x subsampled with the block's stride
and zero-padded with the extra channels. It has no parameters, so `skip=false` (the plain network, H(x) = ReLU(F(x)))
has exactly the same parameter count.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from dlrun.errors import ConfigError

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
_POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}


def conv3x3(dims: int, c_in: int, c_out: int, stride: int | tuple[int, ...] = 1) -> nn.Module:
    """3 (x 3) convolution, padding 1, no bias (BatchNorm follows): M = (N - 3 + 2)/S + 1 per axis."""
    return _CONV[dims](c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class ShortcutA(nn.Module):
    """Option A: x[..., ::S, ::S] with zeros appended for the extra channels (no parameters)."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, ...]):
        super().__init__()
        self.extra = c_out - c_in
        self.stride = tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(s > 1 for s in self.stride):
            x = x[(..., *(slice(None, None, s) for s in self.stride))]  # (B, C, ceil(N / S), ...)
        if self.extra:
            pad = [0, 0] * (x.dim() - 2) + [0, self.extra]  # F.pad lists the last axis first; channels come last
            x = F.pad(x, pad)  # (B, C_out, ...)
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, zero_channels={self.extra}"


class BasicBlock(nn.Module):
    """x -> conv1 -> bn1 -> relu1 -> conv2 -> bn2 (= F(x)) -> [+ shortcut(x)] -> relu2."""

    def __init__(self, dims: int, c_in: int, c_out: int, stride: tuple[int, ...], skip: bool):
        super().__init__()
        self.conv1 = conv3x3(dims, c_in, c_out, stride)  # (C_in, N) -> (C_out, ceil(N / S))
        self.bn1 = _BN[dims](c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(dims, c_out, c_out)  # (C_out, M) -> (C_out, M)
        self.bn2 = _BN[dims](c_out)
        self.shortcut = ShortcutA(c_in, c_out, stride) if skip else None  # (C_in, N) -> (C_out, ceil(N / S))
        self.relu2 = nn.ReLU()

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """F(x), the part the block learns."""
        return self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)  # H(x) = F(x) + x
        return self.relu2(out)


def depth_to_blocks(depth: int) -> int:
    """n of depth = 6n + 2 (the stem, 3 stages x n blocks x 2 convs, the output layer)."""
    if depth < 8 or (depth - 2) % 6:
        raise ConfigError(f"model.depth: {depth} is not 6n + 2 with n >= 1; use 8, 14, 20, 32, 44, 56, 110, ...")
    return (depth - 2) // 6


class ResNet(nn.Module):
    """stem -> stage1 -> stage2 -> stage3 -> pool -> flatten -> out; shapes below: (3, 32, 32) in, widths 16/32/64."""

    def __init__(self, cfg, input_shape: tuple[int, ...], out_features: int):
        super().__init__()
        dims = len(input_shape) - 1  # (C, L) -> 1-D convolutions, (C, H, W) -> 2-D
        if dims not in (1, 2):
            raise ConfigError(f"model=resnet: input shape {tuple(input_shape)} is neither (C, L) nor (C, H, W)")
        n = depth_to_blocks(cfg.depth)
        widths = list(cfg.widths)
        if cfg.skip and any(b < a for a, b in zip(widths, widths[1:], strict=False)):
            raise ConfigError(
                f"model.widths: {widths} decreases, but option-A shortcuts zero-pad channels and cannot drop them; "
                "use non-decreasing widths or model.skip=false"
            )
        channels, *size = input_shape
        self.stem = nn.Sequential(
            OrderedDict(
                conv=conv3x3(dims, channels, widths[0]),  # (3, 32, 32) -> (16, 32, 32)
                bn=_BN[dims](widths[0]),
                relu=nn.ReLU(),
            )
        )
        channels = widths[0]
        stages = []
        for i, width in enumerate(widths):  # stage1 (16, 32, 32), stage2 (32, 16, 16), stage3 (64, 8, 8)
            blocks: OrderedDict[str, nn.Module] = OrderedDict()
            for j in range(n):
                # downsample at the first block of stages 2 and 3, but never an axis already at one pixel
                stride = tuple(2 if (i > 0 and j == 0 and m > 1) else 1 for m in size)
                blocks[f"block{j}"] = BasicBlock(dims, channels, width, stride, cfg.skip)
                size = [(m - 1) // s + 1 for m, s in zip(size, stride, strict=True)]  # M = (N - 3 + 2)/S + 1
                channels = width
            stages.append(nn.Sequential(blocks))
        self.stage1, self.stage2, self.stage3 = stages
        self.pool = _POOL[dims](1)  # (64, 8, 8) -> (64, 1, 1): global average pooling
        self.flatten = nn.Flatten()  # -> (64,)
        self.out = nn.Linear(channels, out_features)  # -> (out_features,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.out(self.flatten(self.pool(x)))  # (B, C, L) or (B, C, H, W) -> (B, out_features)


def build_resnet(cfg, input_shape: tuple[int, ...], out_features: int) -> ResNet:
    """ResNet of the CIFAR family (depth 6n + 2); `skip=false` gives the plain network of the same size."""
    return ResNet(cfg, input_shape, out_features)
