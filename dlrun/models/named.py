"""The architectures the lectures name: AlexNet, VGG, GoogLeNet (Inception v1) and the ImageNet ResNets.

Each is built layer for layer as published, so that on ImageNet's input (3x224x224, 1,000 classes) its
parameter count is the published one (torchvision's: AlexNet 61,100,840, VGG-16 138,357,544, GoogLeNet
6,624,904 without its auxiliary heads, ResNet-18 11,689,512, ...). Each also has a small-image form
(`model.stem=small`, picked by `auto` for images under 64 pixels): the first convolution becomes 3x3
with stride 1 and the early pooling that shrinks 224 pixels to 56 is left out, so CIFAR-10's 32x32
images (and digits' 8x8) keep enough resolution for the later stages; only that first layer's count
differs. A pooling window larger than its input map passes the map through (8x8 digits through VGG's
five poolings), and the classifiers pool adaptively to their published input size (AlexNet 6x6, VGG 7x7).
"""

from __future__ import annotations

import torch
from torch import nn

SMALL_BELOW = 64  # `stem=auto`: the small-image form below this many pixels (height or width)


def small_stem(stem: str, input_shape: tuple[int, ...]) -> bool:
    """True for the small-image form: asked for, or `auto` with an image under SMALL_BELOW pixels."""
    return stem == "small" or (stem == "auto" and min(input_shape[1:]) < SMALL_BELOW)


class FitPool(nn.Module):
    """Max pooling that passes a map smaller than its window through unchanged (never pools below 1 pixel)."""

    def __init__(self, kernel: int, stride: int, padding: int = 0, ceil_mode: bool = False):
        super().__init__()
        self.kernel = kernel
        self.pool = nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) + 2 * self.pool.padding < self.kernel:
            return x
        return self.pool(x)


# ----------------------------------------------------------------------------- AlexNet (Krizhevsky et al. 2012)
class AlexNet(nn.Module):
    """Five convolutions (11x11 stride 4, 5x5, three 3x3) with ReLU and three max poolings, then three
    fully connected layers (4096, 4096, classes) with dropout: the single-GPU form of the 2012 network."""

    def __init__(self, in_channels: int, classes: int, small: bool = False, dropout: float = 0.5):
        super().__init__()
        first = nn.Conv2d(in_channels, 64, 3, 1, 1) if small else nn.Conv2d(in_channels, 64, 11, 4, 2)
        self.features = nn.Sequential(
            first, nn.ReLU(inplace=True), FitPool(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), FitPool(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), FitPool(3, 2),
        )  # fmt: skip
        self.pool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# ----------------------------------------------------------------------------- VGG (Simonyan and Zisserman 2015)
VGG_LAYERS = {  # conv widths, "M" = 2x2 max pooling: configurations A, B, D and E of the paper
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """Stacks of 3x3 convolutions (stride 1, padding 1) with ReLU, halved by 2x2 max pooling after each
    stage, then 4096, 4096 and classes fully connected units with dropout."""

    def __init__(self, depth: int, in_channels: int, classes: int, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for v in VGG_LAYERS[depth]:
            if v == "M":
                layers.append(FitPool(2, 2))
            else:
                layers += [nn.Conv2d(width, v, 3, padding=1), nn.ReLU(inplace=True)]
                width = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# ----------------------------------------------------------------------------- GoogLeNet (Szegedy et al. 2015)
def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
    """Convolution (no bias), batch norm, ReLU: GoogLeNet's unit as torchvision trains it."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm2d(cout, eps=0.001), nn.ReLU(True)
    )


class Inception(nn.Module):
    """Four branches side by side, concatenated along channels: 1x1; 1x1 then 3x3; 1x1 then a second 3x3
    (the paper's 5x5; torchvision's weights, whose count we match, use 3x3 there); 3x3 max pool then 1x1."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, proj: int):
        super().__init__()
        self.b1 = conv_bn(cin, c1, 1)
        self.b2 = nn.Sequential(conv_bn(cin, c3r, 1), conv_bn(c3r, c3, 3, padding=1))
        self.b3 = nn.Sequential(conv_bn(cin, c5r, 1), conv_bn(c5r, c5, 3, padding=1))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), conv_bn(cin, proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class GoogLeNet(nn.Module):
    """Inception v1: a convolutional stem, nine Inception modules in three stages, global average pooling,
    dropout and one fully connected layer (the two auxiliary classifiers of the paper are left out)."""

    def __init__(self, in_channels: int, classes: int, small: bool = False, dropout: float = 0.2):
        super().__init__()
        first = conv_bn(in_channels, 64, 3, padding=1) if small else conv_bn(in_channels, 64, 7, 2, 3)
        early_pool = nn.Identity() if small else FitPool(3, 2, ceil_mode=True)
        self.stem = nn.Sequential(
            first, early_pool, conv_bn(64, 64, 1), conv_bn(64, 192, 3, padding=1),
            nn.Identity() if small else FitPool(3, 2, ceil_mode=True),
        )  # fmt: skip
        self.blocks = nn.Sequential(
            Inception(192, 64, 96, 128, 16, 32, 32), Inception(256, 128, 128, 192, 32, 96, 64),
            FitPool(3, 2, ceil_mode=True),
            Inception(480, 192, 96, 208, 16, 48, 64), Inception(512, 160, 112, 224, 24, 64, 64),
            Inception(512, 128, 128, 256, 24, 64, 64), Inception(512, 112, 144, 288, 32, 64, 64),
            Inception(528, 256, 160, 320, 32, 128, 128),
            FitPool(2, 2, ceil_mode=True),
            Inception(832, 256, 160, 320, 32, 128, 128), Inception(832, 384, 192, 384, 48, 128, 128),
        )  # fmt: skip
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.flatten(self.pool(self.blocks(self.stem(x))), 1)))


# ----------------------------------------------------------------------------- ResNet, ImageNet form (He et al. 2016)
class Basic(nn.Module):
    """Two 3x3 convolutions: H(x) = relu(F(x) + shortcut(x)) (ResNet-18 and -34)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        self.f = nn.Sequential(
            nn.Conv2d(cin, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
        )  # fmt: skip
        self.shortcut = projection(cin, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.f(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 down to `width`, 3x3 (carrying the stride), 1x1 up to 4 * width (ResNet-50 and deeper)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        out = width * self.expansion
        self.f = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out),
        )  # fmt: skip
        self.shortcut = projection(cin, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.f(x) + self.shortcut(x))


def projection(cin: int, cout: int, stride: int) -> nn.Module:
    """The identity where shapes agree, else a strided 1x1 convolution and batch norm (option B)."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


RESNET_BLOCKS = {18: (Basic, [2, 2, 2, 2]), 34: (Basic, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3])}
RESNET_BLOCKS |= {101: (Bottleneck, [3, 4, 23, 3]), 152: (Bottleneck, [3, 8, 36, 3])}


class ImageNetResNet(nn.Module):
    """7x7 stride-2 stem and 3x3 max pool, four stages (64, 128, 256, 512 wide; the last three halve the
    map), global average pooling and one fully connected layer."""

    def __init__(self, depth: int, in_channels: int, classes: int, small: bool = False):
        super().__init__()
        block, counts = RESNET_BLOCKS[depth]
        conv = (
            nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
            if small
            else nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        )
        self.stem = nn.Sequential(
            conv, nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.Identity() if small else FitPool(3, 2, 1)
        )
        stages, cin = [], 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), counts, strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, width, 2 if (i > 0 and j == 0) else 1))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def build(name: str, cfg, input_shape: tuple[int, ...], out_features: int) -> nn.Module:
    """model=NAME for (C, H, W) images and `out_features` classes."""
    small, c = small_stem(cfg.stem, input_shape), input_shape[0]
    if name == "alexnet":
        return AlexNet(c, out_features, small, cfg.dropout)
    if name.startswith("vgg"):
        return VGG(int(name[3:]), c, out_features, cfg.dropout)
    if name == "googlenet":
        return GoogLeNet(c, out_features, small, cfg.dropout)
    return ImageNetResNet(int(name.removeprefix("resnet")), c, out_features, small)
