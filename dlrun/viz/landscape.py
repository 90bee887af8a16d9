"""Loss landscapes along filter-normalized random directions (Li et al. 2018).

    d ~ N(0, I) shaped like the parameters; for each tensor with dim > 1, each filter (slice along the
    first axis) is rescaled so ||d_i|| = ||theta_i||; tensors with dim <= 1 (biases, norm layers) get d = 0.
    1-D: L(theta + a d);  2-D: L(theta + a d + b e), a, b on a grid over [-span, span].

The loss is the mean data loss over the train split with the model in eval mode (batch norm uses its
running statistics). Grid points are evaluated by writing theta + a d + b e into the parameters in
place (under no_grad), and theta is restored afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlrun.data import Task


def filter_normalized_direction(params: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """A Gaussian direction with each filter rescaled to its parameter filter's norm (1-D tensors: zero)."""
    direction = []
    for p in params:
        if p.dim() <= 1:
            direction.append(torch.zeros_like(p))
            continue
        d = torch.randn(p.shape, generator=generator).to(p.device, p.dtype)
        d_norm = d.flatten(1).norm(dim=1).clamp_min(1e-12)  # (filters,)
        p_norm = p.detach().flatten(1).norm(dim=1)
        direction.append(d * (p_norm / d_norm).view(-1, *[1] * (p.dim() - 1)))
    return direction


@dataclass
class Landscape:
    alphas: np.ndarray  # (P,) coordinates along d
    betas: np.ndarray  # (P,) along e; empty for 1-D
    loss: np.ndarray  # (P,) or (P, P) indexed [beta, alpha]
    metric: np.ndarray  # same shape: accuracy (classification) or mse
    metric_name: str  # acc | mse
    label: str = ""


@torch.no_grad()
def loss_landscape(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn,
    task: Task,
    dims: int = 2,
    points: int = 51,
    span: float = 1.0,
    seed: int = 0,
    batch_size: int = 8192,
) -> Landscape:
    """The loss (and acc or mse) on (x, y) at every grid point; theta is restored before returning."""
    from dlrun import losses

    was_training = model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    theta = [p.detach().clone() for p in params]
    g = torch.Generator().manual_seed(seed)
    d = filter_normalized_direction(params, g)
    e = filter_normalized_direction(params, g) if dims == 2 else [torch.zeros_like(p) for p in params]
    alphas = np.linspace(-span, span, points)
    betas = alphas if dims == 2 else np.zeros(1)
    loss = np.zeros((len(betas), len(alphas)))
    metric = np.zeros_like(loss)
    n = len(x)
    try:
        for j, b in enumerate(betas):
            for i, a in enumerate(alphas):
                for p, t, dp, ep in zip(params, theta, d, e, strict=True):
                    torch.add(t, dp, alpha=float(a), out=p)
                    if dims == 2:
                        p.add_(ep, alpha=float(b))
                total_loss = torch.zeros((), device=x.device)
                total_metric = torch.zeros((), device=x.device)
                for k in range(0, n, batch_size):
                    z = model(x[k : k + batch_size])
                    yk = y[k : k + batch_size]
                    total_loss += losses.per_example(loss_fn, loss_fn(z, yk), len(z)) * len(z)
                    total_metric += next(iter(losses.batch_metrics(z, yk, task, losses.threshold(loss_fn)).values()))
                loss[j, i], metric[j, i] = (torch.stack([total_loss, total_metric]) / n).tolist()
    finally:
        for p, t in zip(params, theta, strict=True):
            p.copy_(t)
        model.train(was_training)
    squeeze = (lambda a: a[0]) if dims == 1 else (lambda a: a)
    return Landscape(
        alphas=alphas,
        betas=betas if dims == 2 else np.zeros(0),
        loss=squeeze(loss),
        metric=squeeze(metric),
        metric_name="acc" if task.is_classification else "mse",
    )


def save_npz(path, landscapes: list[Landscape]) -> None:
    """The grids beside the PNG: alphas, betas, loss, <metric> (suffixed _2 for a compared run)."""
    import io

    from dlrun.files import atomic_write

    arrays = {}
    for k, ls in enumerate(landscapes):
        suffix = "" if k == 0 else f"_{k + 1}"
        arrays.update(
            {f"alphas{suffix}": ls.alphas, f"betas{suffix}": ls.betas, f"loss{suffix}": ls.loss}
            | {f"{ls.metric_name}{suffix}": ls.metric, f"label{suffix}": np.array(ls.label)}
        )
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, buffer.getvalue())


def plot_landscape(landscapes: list[Landscape]):
    """1-D: loss (log scale) and the metric against a; 2-D: filled contours of log10 loss with a colorbar.

    Side by side when several runs are given; 2-D panels share one color scale, 1-D panels one loss axis
    and one metric axis (the same limits: the runs compare by eye).
    """
    from matplotlib.colors import LogNorm

    from dlrun.viz.picture import few_ticks, figure

    n = len(landscapes)
    two_d = landscapes[0].loss.ndim == 2
    fig = figure(5.2 * n + (0.9 if two_d else 0), 4.6)
    axes = fig.subplots(1, n, squeeze=False, sharey=not two_d)[0]
    if two_d:
        lo = max(min(float(ls.loss.min()) for ls in landscapes), 1e-6)
        hi = max(float(ls.loss.max()) for ls in landscapes)
        levels = np.geomspace(lo, max(hi, lo * 1.01), 25)
        norm = LogNorm(vmin=levels[0], vmax=levels[-1])
        filled = None
        for ax, ls in zip(axes, landscapes, strict=True):
            z = np.clip(ls.loss, levels[0], levels[-1])
            filled = ax.contourf(ls.alphas, ls.betas, z, levels=levels, norm=norm, cmap="viridis")
            ax.contour(ls.alphas, ls.betas, z, levels=levels[::2], colors="white", linewidths=0.5, alpha=0.6)
            ax.plot(0, 0, "r+", ms=12, mew=2, label="trained weights")
            ax.set_xlabel("a (direction d)")
            ax.set_ylabel("b (direction e)")
            ax.set_aspect("equal")
            few_ticks(ax.xaxis)  # a square panel ~3 inches wide: nine labels -1.00, -0.75, ... ran together
            few_ticks(ax.yaxis)
            ax.set_title(f"{ls.label}\nloss at center {ls.loss[len(ls.betas) // 2, len(ls.alphas) // 2]:.3g}")
            ax.legend(loc="upper right", fontsize=7)
        bar = fig.colorbar(filled, ax=list(axes), label="train loss (log scale)", shrink=0.9)
        bar.set_ticks(levels[::4], labels=[f"{v:.3g}" for v in levels[::4]])
    else:
        twins = []
        for ax, ls in zip(axes, landscapes, strict=True):
            ax.plot(ls.alphas, ls.loss, color="C0", label="train loss")
            ax.set_yscale("log")
            ax.set_xlabel("a (direction d)")
            ax.axvline(0, color="0.6", lw=0.8, ls=":")
            twin = ax.twinx()
            if twins:
                twin.sharey(twins[0])
                twins[-1].tick_params(labelright=False)  # shared: the numbers once, on the right edge
            twins.append(twin)
            twin.plot(ls.alphas, ls.metric, color="C1", ls="--", label=f"train {ls.metric_name}")
            if ls.metric_name == "acc":
                twin.set_ylim(0, 1.02)
            ax.set_title(ls.label)
        axes[0].set_ylabel("train loss (log scale)", color="C0")  # the inner panels' loss numbers are hidden
        twins[-1].set_ylabel(f"train {landscapes[-1].metric_name}", color="C1")
    fig.suptitle("Loss landscape along filter-normalized random directions (Li et al. 2018)", fontsize=11)
    return fig
