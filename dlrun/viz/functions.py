"""The activation functions of model.activation and their derivatives (`dlrun viz functions`): g(z) on the left,
g'(z) by autograd on the right (0 where a step or sign is flat; their jump at 0 has no derivative)."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from dlrun.errors import ConfigError, suggest


def curves(
    names: list[str], lo: float, hi: float, points: int = 801
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{name: (z, g(z), g'(z))} for each activation, the derivative by autograd."""
    from dlrun.models.activations import ACTIVATIONS

    out = {}
    for name in names:
        if name not in ACTIVATIONS.names():
            valid = sorted(ACTIVATIONS.names())
            raise ConfigError(
                f"--names: unknown activation '{name}';{suggest(name, valid)} choose from: {', '.join(valid)}"
            )
        z = torch.linspace(lo, hi, points, dtype=torch.float64, requires_grad=True)
        g = ACTIVATIONS.get(name)()(z)
        (grad,) = torch.autograd.grad(g.sum(), z)
        out[name] = (z.detach().numpy(), g.detach().numpy(), grad.numpy())
    return out


def plot_functions(data: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Figure:
    from dlrun.viz.picture import figure

    fig = figure(11, 4.5)
    left, right = fig.subplots(1, 2)
    for name, (z, g, d) in data.items():
        left.plot(z, g, label=name)
        right.plot(z, d, label=f"{name}'")
    left.set(title="g(z)", xlabel="z")
    right.set(title="g'(z) (autograd)", xlabel="z")
    for ax in (left, right):
        ax.axhline(0, color="0.6", linewidth=0.6)
        ax.axvline(0, color="0.6", linewidth=0.6)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return fig
