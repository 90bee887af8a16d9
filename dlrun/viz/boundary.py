"""Decision regions of a classifier on 2-D inputs, with the data points (XOR, moons, circles, spirals)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlrun.errors import ConfigError
from dlrun.viz.load import predict


@dataclass
class DecisionGrid:
    xs: np.ndarray  # (R,) first input coordinate
    ys: np.ndarray  # (R,) second input coordinate
    probs: np.ndarray  # (R, R, K) class probabilities at (ys[i], xs[j])
    points: np.ndarray  # (N, 2) the data points drawn
    labels: np.ndarray  # (N,)
    accuracy: float  # on those points


def check_2d(input_shape: tuple[int, ...], data_name: str) -> None:
    if tuple(input_shape) != (2,):
        raise ConfigError(
            f"boundary needs 2-D inputs (data=xor, moons, circles, spirals or blobs); "
            f"data={data_name} has inputs of shape {tuple(input_shape)}"
        )


def decision_grid(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, resolution: int = 200, margin: float = 0.25
) -> DecisionGrid:
    """Probabilities on a resolution x resolution grid over the points' bounding box, widened by `margin`
    of its size on each side."""
    lo, hi = x.min(0).values.cpu().numpy(), x.max(0).values.cpu().numpy()
    pad = (hi - lo) * margin
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
    gx, gy = np.meshgrid(xs, ys)  # (R, R): row i is ys[i]
    grid = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=x.dtype, device=x.device)
    _, probs = predict(model, grid)
    pred = predict(model, x)[0]
    return DecisionGrid(
        xs=xs,
        ys=ys,
        probs=probs.cpu().numpy().reshape(resolution, resolution, -1),
        points=x.cpu().numpy(),
        labels=y.cpu().numpy(),
        accuracy=(pred == y).float().mean().item(),
    )


def plot_boundary(grid: DecisionGrid, task, title: str = ""):
    """Two classes: p(class 1) as a diverging color map with a colorbar, and the p = 0.5 boundary; more
    classes: the predicted class's color, fainter where it is less sure. Points are colored by label."""
    from matplotlib.colors import ListedColormap

    from dlrun.viz.picture import class_name, figure

    k = grid.probs.shape[-1]
    fig = figure(6.4, 5.0)
    ax = fig.subplots()
    if k == 2:
        p1 = grid.probs[..., 1]
        image = ax.contourf(grid.xs, grid.ys, p1, levels=np.linspace(0, 1, 21), cmap="RdBu_r", alpha=0.8)
        ax.contour(grid.xs, grid.ys, p1, levels=[0.5], colors="black", linewidths=1.5)
        fig.colorbar(image, ax=ax, label=f"p({class_name(task, 1)})", ticks=np.linspace(0, 1, 6))
        colors = ["#2166ac", "#b2182b"]
    else:
        colors = [f"C{i}" for i in range(k)]
        pred = grid.probs.argmax(-1)
        image = ax.imshow(
            pred,
            origin="lower",
            extent=(grid.xs[0], grid.xs[-1], grid.ys[0], grid.ys[-1]),
            cmap=ListedColormap(colors),
            vmin=-0.5,
            vmax=k - 0.5,
            alpha=0.35,
            aspect="auto",
            interpolation="nearest",
        )
        ax.contour(grid.xs, grid.ys, grid.probs.max(-1), levels=[0.5, 0.9], colors="0.3", linewidths=0.6)
        bar = fig.colorbar(image, ax=ax, ticks=range(k), label="predicted class")
        bar.ax.set_yticklabels([class_name(task, c) for c in range(k)])
    for c in range(k):
        mine = grid.labels == c
        ax.scatter(*grid.points[mine].T, s=12, color=colors[c], edgecolors="white", linewidths=0.4,
                   label=class_name(task, c))  # fmt: skip
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax.set_title(title or f"Decision regions (accuracy on these points {grid.accuracy:.3f})", fontsize=10)
    return fig
