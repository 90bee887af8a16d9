"""A regression model's prediction over its one input, beside the data: the picture of universal
approximation (a one-hidden-layer net fitting sin(x) better as it widens), for any 1-D regression run.
Inputs and targets are drawn in the data's own units (the standardization undone)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dlrun.errors import ConfigError


def units(data, key: str, values: np.ndarray) -> np.ndarray:
    """Undo the standardization fitted on the train split (x_mean / x_std, y_mean / y_std)."""
    mean, std = data.stats.get(f"{key}_mean"), data.stats.get(f"{key}_std")
    if mean is None or std is None:
        return values
    return values * np.asarray(std).reshape(-1)[0] + np.asarray(mean).reshape(-1)[0]


def curve(model: nn.Module, lo: float, hi: float, points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(x, f(x)) on an even grid over [lo, hi], in the model's (standardized) units."""
    x = torch.linspace(lo, hi, points).unsqueeze(1)
    with torch.no_grad():
        y = model(x.to(next(model.parameters()).device)).cpu()
    return x.squeeze(1).numpy(), y[:, 0].numpy()


def require_1d_regression(run) -> None:
    task = run.task
    if task.is_classification or tuple(task.input_shape) != (1,) or task.n_targets != 1:
        raise ConfigError(
            f"{run.run_dir}: viz fit draws a regression on one input; data={run.cfg.data.name} has inputs "
            f"{tuple(task.input_shape)} and {'classes' if task.is_classification else f'{task.n_targets} targets'} "
            "(try data=sine)"
        )


def plot_fit(run, title: str):
    from dlrun.viz.picture import figure

    data = run.data
    fig = figure(7.5, 4.4)
    ax = fig.subplots()
    for name, color in (("train", "#9aa7b8"), ("test", "#e08a3c")):
        split = data.split(name)
        x = units(data, "x", split.x[:, 0].cpu().numpy())
        y = units(data, "y", split.y[:, 0].cpu().numpy())
        ax.scatter(x, y, s=8, color=color, alpha=0.7, label=f"{name} ({len(x)})")
    xs = data.train.x[:, 0]
    span = float(xs.max() - xs.min())
    gx, gy = curve(run.model, float(xs.min()) - 0.05 * span, float(xs.max()) + 0.05 * span)
    ax.plot(units(data, "x", gx), units(data, "y", gy), color="#1f4e8c", lw=2, label="the model")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig
