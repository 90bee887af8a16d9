"""Optimizer trajectories on a surface of two variables (`dlrun viz trajectory`), as d2l's show_trace_2d: each
optimizer of dlrun (the same builder `dlrun train` uses) minimizes an `--expr` formula f(x1, x2) from one start,
and its iterates are drawn over the contours of f."""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

from dlrun.errors import ConfigError


@dataclass
class Trajectory:
    optim: str
    points: np.ndarray  # (steps + 1, 2): the start, then each iterate (fewer when f left its domain)
    values: np.ndarray  # f at each point
    stopped: str = ""  # why it ended early ("" when it took every step)


def surface(text: str):
    """(f: (..., 2) -> (...), the two variable names) of a formula of exactly two variables."""
    from dlrun.gradcheck.expr import evaluate, parse, variables

    tree = parse(text)
    names = variables(tree)
    if len(names) != 2 or isinstance(tree.body, ast.Tuple):
        raise ConfigError(f"--expr '{text}': give one formula of two variables (x1, x2), not {len(names)}: {names}")
    return (lambda x: evaluate(tree, {names[0]: x[..., 0], names[1]: x[..., 1]})), names


def descend(text: str, start: list[float], optims: list[str], lr: float, steps: int) -> list[Trajectory]:
    """Each optimizer's iterates from `start` (optim.lr = lr, its other settings dlrun's defaults)."""
    f, names = surface(text)
    if len(start) != 2:
        raise ConfigError(f"--at: give two values, one per variable ({', '.join(names)})")
    return [_descend(f, start, name, lr, steps) for name in optims]


def _descend(f, start: list[float], name: str, lr: float, steps: int) -> Trajectory:
    from dlrun import options
    from dlrun.config import compose
    from dlrun.optim.build import build_optimizer

    cfg = compose([f"optim={name}", f"optim.lr={lr}"]).optim
    p = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    opt = build_optimizer([p], cfg)
    closure = options.caps("optim", name).closure  # Newton recomputes f in its step
    points, values = [list(start)], [f(p.detach()).item()]
    for step in range(steps):
        if closure:
            opt.step(lambda: f(p))
        else:
            opt.zero_grad()
            f(p).backward()
            opt.step()
        value = f(p.detach()).item()
        if not (math.isfinite(value) and torch.isfinite(p).all()):
            why = f"f is {value} after step {step + 1}: it left the surface's domain or diverged"
            return Trajectory(name, np.array(points), np.array(values), why)
        points.append(p.detach().tolist())
        values.append(value)
    return Trajectory(name, np.array(points), np.array(values))


def plot_trajectories(text: str, paths: list[Trajectory], lr: float) -> Figure:
    from dlrun.viz.picture import figure

    f, names = surface(text)
    pts = np.concatenate([t.points for t in paths])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = np.maximum((hi - lo) * 0.15, 0.5)
    g1, g2 = np.meshgrid(
        np.linspace(lo[0] - pad[0], hi[0] + pad[0], 200), np.linspace(lo[1] - pad[1], hi[1] + pad[1], 200)
    )
    with torch.no_grad():
        z = f(torch.tensor(np.stack([g1, g2], -1))).numpy()
    fig = figure(7, 6)
    ax = fig.add_subplot()
    finite = z[np.isfinite(z)]
    levels = np.unique(np.quantile(finite, np.linspace(0, 1, 25))) if finite.size else 10
    contours = ax.contour(g1, g2, np.where(np.isfinite(z), z, np.nan), levels=levels, cmap="viridis", linewidths=0.7)
    fig.colorbar(contours, ax=ax, label="f")
    for t in paths:
        label = f"{t.optim}: f = {t.values[-1]:.4g} after {len(t.points) - 1} steps" + (
            " (stopped)" if t.stopped else ""
        )
        ax.plot(t.points[:, 0], t.points[:, 1], "-o", markersize=3, linewidth=1.2, label=label)
    ax.plot(*paths[0].points[0], "k*", markersize=12, label="start")
    ax.set(xlabel=names[0], ylabel=names[1], title=f"f = {text}, lr = {lr:g}")
    ax.legend(fontsize=8, loc="best")
    return fig
