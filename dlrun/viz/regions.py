"""The linear regions of a ReLU network over a 2-D input: each ReLU is on or off, and the points that share
one on/off pattern form a convex region on which the network is one affine map. Counting the patterns on a
fine grid counts the regions the grid sees (a lower bound on the network's number of regions). The most a
network can make grows exponentially with depth and only polynomially with width (Montufar et al. 2014);
how many a trained network uses is another matter, which `--compare` puts side by side."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlrun.errors import ConfigError


@dataclass
class Regions:
    xs: np.ndarray
    ys: np.ndarray
    ids: np.ndarray  # (R, R) region number of each grid point, numbered by first appearance
    count: int
    units: int  # ReLUs in the network


def patterns(model: nn.Module, grid: torch.Tensor) -> torch.Tensor:
    """(N, units) booleans: which ReLU outputs are positive at each grid point (a forward hook per nn.ReLU)."""
    on: list[torch.Tensor] = []
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ConfigError("viz regions counts the linear regions of a ReLU network; this model has no nn.ReLU")
    hooks = [m.register_forward_hook(lambda mod, inp, out: on.append((out > 0).flatten(1))) for m in relus]
    try:
        with torch.no_grad():
            model(grid)
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(on, dim=1)


def regions(model: nn.Module, lo: np.ndarray, hi: np.ndarray, resolution: int = 400) -> Regions:
    xs, ys = np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    gx, gy = np.meshgrid(xs, ys)
    device = next(model.parameters()).device
    grid = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32, device=device)
    was = model.training
    model.eval()
    try:
        p = patterns(model, grid).cpu().numpy()
    finally:
        model.train(was)
    _, first, ids = np.unique(p, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # number regions by where they first appear (stable colors)
    return Regions(xs, ys, order[ids.reshape(-1)].reshape(resolution, resolution), len(first), p.shape[1])


def plot_regions(panels: list[tuple[str, Regions]]):
    from dlrun.viz.picture import figure

    fig = figure(5.2 * len(panels), 5.0)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    rng = np.random.default_rng(0)
    for ax, (title, r) in zip(axes, panels, strict=True):
        colors = rng.random((r.count, 3)) * 0.7 + 0.3
        ax.imshow(colors[r.ids], origin="lower", extent=(r.xs[0], r.xs[-1], r.ys[0], r.ys[-1]), aspect="auto")
        ax.set_title(f"{title}\n{r.count} linear regions, {r.units} ReLUs", fontsize=9)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    return fig
