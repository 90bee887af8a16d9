"""First-layer convolution kernels: what the first layer looks for (compare them to Gabor filters)."""

from __future__ import annotations

import math

import numpy as np
from torch import nn

from dlrun.errors import ConfigError

MAX_FILTERS = 64


def first_conv(model: nn.Module) -> tuple[str, nn.Module]:
    """(display name, module) of the first Conv1d / Conv2d in definition order; ConfigError if there is none."""
    from dlrun.viz.layers import named_layers

    for name, module in named_layers(model).items():
        if isinstance(module, nn.Conv1d | nn.Conv2d):
            return name, module
    raise ConfigError(
        f"the model ({type(model).__name__}) has no convolution layer; filters needs a convolutional model "
        "(model=cnn, lenet5, mnist1d_cnn or resnet)"
    )


def kernels(model: nn.Module) -> tuple[str, np.ndarray]:
    """(layer name, weights (out_channels, in_channels, *kernel_size)) of the first convolution."""
    name, conv = first_conv(model)
    return name, conv.weight.detach().cpu().numpy()


def plot_filters(weights: np.ndarray, layer: str):
    """Images (2-D kernels; RGB when there are 3 input channels) or curves (1-D kernels), one panel per filter.

    Kernels share one symmetric color scale (blue < 0 < red) with a colorbar; RGB kernels are each scaled
    to [0, 1]. With more than one (non-RGB) input channel, the first input channel is shown.
    """
    from dlrun.viz.picture import figure

    n_out, n_in = weights.shape[:2]
    n = min(n_out, MAX_FILTERS)
    cols = min(n, 8)
    rows = math.ceil(n / cols)
    two_d = weights.ndim == 4
    rgb = two_d and n_in == 3
    cell = 1.2 if two_d else 1.8
    fig = figure(max(4.5, cols * cell + (0.8 if two_d else 0)), 0.8 + rows * cell)
    axes = fig.subplots(rows, cols, squeeze=False)
    m = float(np.abs(weights[:n]).max()) or 1.0
    image = None
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_visible(False)
            continue
        w = weights[i]
        if two_d:
            ax.set_xticks([])
            ax.set_yticks([])
            if rgb:
                lo, hi = w.min(), w.max()
                ax.imshow(((w - lo) / max(hi - lo, 1e-12)).transpose(1, 2, 0))
            else:
                image = ax.imshow(w[0], cmap="bwr", vmin=-m, vmax=m)
        else:
            for c in range(n_in):
                ax.plot(w[c], marker="o", ms=3, lw=1.2, label=f"in {c}")
            ax.axhline(0, color="0.6", lw=0.6)
            ax.set_ylim(-m * 1.05, m * 1.05)
            ax.tick_params(labelsize=6)
            if i % cols == 0:
                ax.set_ylabel("weight", fontsize=7)
            if i >= n - cols:
                ax.set_xlabel("tap", fontsize=7)
        ax.set_title(f"filter {i}", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="weight")
    if not two_d and n_in > 1:
        axes.flat[0].legend(fontsize=6)
    size = "x".join(str(k) for k in weights.shape[2:])
    shown = "" if n_in == 1 or rgb else ", input channel 0"
    more = f" (first {n} of {n_out})" if n < n_out else ""
    fig.suptitle(f"First-layer kernels: {layer}, {n_out} filters of {size}{more}{shown}", fontsize=11)
    return fig
