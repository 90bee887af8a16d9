"""Per-layer activations and gradients for one batch: the vanishing (or exploding) gradient picture.

For each watched layer: its output a_l on one training batch, and dJ/da_l, the gradient of the batch's
mean data loss J with respect to that output. With sigmoid or tanh units in a deep net, the gradients
shrink layer by layer toward the input (Glorot and Bengio 2010).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlrun.models.activations import ACTIVATIONS
from dlrun.viz.layers import find_layer, named_layers

MAX_VALUES = 200_000  # values kept per layer for the histograms (a seeded random subset beyond that)


@dataclass
class LayerStats:
    name: str
    activations: np.ndarray  # flattened a_l (at most MAX_VALUES)
    gradients: np.ndarray  # flattened dJ/da_l (at most MAX_VALUES)
    act_std: float  # over every value, not only the kept ones
    grad_std: float


def default_layers(model: nn.Module) -> list[str]:
    """The activation-function modules (act1, fc_act1, relu2, ...); a model without any: its layers with
    parameters (Linear, Conv, ...)."""
    kinds = tuple(ACTIVATIONS.get(name) for name in ACTIVATIONS)
    layers = named_layers(model)
    chosen = [name for name, m in layers.items() if isinstance(m, kinds)]
    if not chosen:
        chosen = [
            name
            for name, m in layers.items()
            if next(m.children(), None) is None and any(True for _ in m.parameters(recurse=False))
        ]
    return chosen


def _subsample(t: torch.Tensor, g: torch.Generator) -> np.ndarray:
    flat = t.detach().flatten().float().cpu()
    if len(flat) > MAX_VALUES:
        flat = flat[torch.randperm(len(flat), generator=g)[:MAX_VALUES]]
    return flat.numpy()


def activation_stats(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn, layers: list[str] | None = None, seed: int = 0
) -> list[LayerStats]:
    """Outputs and output gradients of each layer (in forward order) for the batch (x, y).

    The model is used in its current mode (training mode shows what the optimizer sees: dropout on,
    batch norm with batch statistics). Parameter gradients are not touched.
    """
    names = layers or default_layers(model)
    modules = {name: find_layer(model, name) for name in names}
    outputs: dict[str, torch.Tensor] = {}
    order: list[str] = []
    hooks = []
    for name, module in modules.items():

        def hook(mod, inputs, output, name=name):
            out = output[0] if isinstance(output, tuple) else output
            if name not in outputs:  # a module called twice (shared) keeps its first output
                outputs[name] = out
                order.append(name)

        hooks.append(module.register_forward_hook(hook))
    try:
        loss = loss_fn(model(x), y)
    finally:
        for h in hooks:
            h.remove()
    watched = [n for n in order if outputs[n].requires_grad]
    grads = torch.autograd.grad(loss, [outputs[n] for n in watched], allow_unused=True)
    g = torch.Generator().manual_seed(seed)
    stats = []
    for name, grad in zip(watched, grads, strict=True):
        grad = torch.zeros_like(outputs[name]) if grad is None else grad
        a = outputs[name].detach()
        stats.append(
            LayerStats(
                name=name,
                activations=_subsample(a, g),
                gradients=_subsample(grad, g),
                act_std=a.float().std().item(),
                grad_std=grad.float().std().item(),
            )
        )
    return stats


def plot_activations(stats: list[LayerStats], title: str = ""):
    """Activation histograms, gradient histograms (both overlaid per layer) and the per-layer
    standard deviations (log scale), layers colored from the input (dark) to the output (light)."""
    from matplotlib import colormaps

    from dlrun.viz.picture import few_ticks, figure

    fig = figure(15.0, 4.8)
    act_ax, grad_ax, std_ax = fig.subplots(1, 3, width_ratios=[1.0, 1.0, 0.8])
    cmap = colormaps["viridis"]
    colors = [cmap(i / max(len(stats) - 1, 1) * 0.9) for i in range(len(stats))]

    def spread(arrays):
        values = np.concatenate(arrays) if arrays else np.zeros(1)
        lo, hi = np.percentile(values, [0.5, 99.5])
        return (lo, hi) if hi > lo else (lo - 1, hi + 1)

    a_lo, a_hi = spread([s.activations for s in stats])
    g_abs = max(abs(v) for v in spread([s.gradients for s in stats]))
    for s, color in zip(stats, colors, strict=True):
        act_ax.hist(s.activations, bins=60, range=(a_lo, a_hi), density=True, histtype="step", lw=1.4, color=color,
                    label=f"{s.name} (std {s.act_std:.2g})")  # fmt: skip
        grad_ax.hist(s.gradients, bins=60, range=(-g_abs, g_abs), density=True, histtype="step", lw=1.4,
                     color=color, label=f"{s.name} (std {s.grad_std:.2g})")  # fmt: skip
    for ax in (act_ax, grad_ax):  # gradients ~1e-4 at initialization: nine labels like -0.0004 ran together
        few_ticks(ax.xaxis)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))  # -4 ... 4 and x 1e-4 once
    act_ax.set_xlabel("activation a_l")
    act_ax.set_ylabel("density")
    grad_ax.set_yscale("log")  # narrow (vanishing) gradients pile into a few tall bins around 0
    grad_ax.set_xlabel("gradient dJ/da_l")
    grad_ax.set_ylabel("density (log scale)")
    for ax in (act_ax, grad_ax):
        ax.legend(fontsize=7)
    act_ax.set_title("layer outputs")
    grad_ax.set_title("gradients of the loss w.r.t. the layer outputs")
    positions = np.arange(len(stats))
    std_ax.semilogy(positions, [max(s.act_std, 1e-30) for s in stats], "-o", label="activation std")
    std_ax.semilogy(positions, [max(s.grad_std, 1e-30) for s in stats], "-s", label="gradient std")
    std_ax.set_xticks(positions, [s.name for s in stats], rotation=45, ha="right", fontsize=7)
    std_ax.set_xlabel("layer (input -> output)")
    std_ax.set_ylabel("standard deviation (log scale)")
    std_ax.set_title("spread per layer")
    std_ax.grid(alpha=0.3, which="both")
    std_ax.legend(fontsize=7)
    fig.suptitle(title or "Activations and gradients of one batch", fontsize=11)
    return fig
