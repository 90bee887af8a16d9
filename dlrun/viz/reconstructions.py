"""An autoencoder's reconstructions (`dlrun viz reconstructions`): each example beside what the model gives back
from its code, drawn as the input is (an image, curves or bars), with the squared error of each."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from dlrun.errors import ConfigError


@torch.no_grad()
def reconstruct(model, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, reconstructions shaped as the inputs, mean squared error per example)."""
    x_hat = model(x)
    if x_hat.shape[1:].numel() != x.shape[1:].numel():
        raise ConfigError(
            f"the model maps {tuple(x.shape[1:])} inputs to {tuple(x_hat.shape[1:])}, not to the input's shape; "
            "reconstructions need a run with data.targets=inputs (model=autoencoder)"
        )
    x_hat = x_hat.reshape(x.shape)
    err = (x_hat - x).pow(2).flatten(1).mean(1)
    return x.cpu().numpy(), x_hat.cpu().numpy(), err.cpu().numpy()


def plot_reconstructions(x: np.ndarray, x_hat: np.ndarray, err: np.ndarray, value_range, code: int) -> Figure:
    from dlrun.viz.picture import draw_input, figure

    n = len(x)
    fig = figure(max(1.6 * n, 4), 3.6)
    axes = fig.subplots(2, n, squeeze=False)
    lo, hi = value_range
    lo, hi = min(lo, float(x_hat.min())), max(hi, float(x_hat.max()))
    for i in range(n):
        draw_input(axes[0, i], x[i], (lo, hi))
        draw_input(axes[1, i], x_hat[i], (lo, hi))
        axes[1, i].set_title(f"mse {err[i]:.3g}", fontsize=8)
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("reconstruction")
    fig.suptitle(f"Reconstructions from a code of {code} values (mean squared error {err.mean():.4g})")
    return fig
