"""Saliency (Simonyan et al. 2013): |dS_c/dx|, how much each input value moves the class score S_c.

For images the map is the maximum over color channels; c is the predicted class unless given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlrun.viz.load import class_scores


@dataclass
class SaliencyResult:
    x: np.ndarray  # (N, *input_shape) the inputs
    saliency: np.ndarray  # (N, *input_shape) |dS_c/dx|
    classes: np.ndarray  # (N,) the class c whose score was differentiated
    labels: np.ndarray  # (N,) the true labels
    probs: np.ndarray  # (N, K) class probabilities


def saliency(model: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: torch.Tensor | None = None) -> SaliencyResult:
    """|dS_c/dx| for each example (the model's mode is left as it is; call it in eval mode)."""
    x = x.detach().clone().requires_grad_(True)
    scores = class_scores(model(x))  # (N, K)
    c = scores.argmax(-1) if classes is None else classes.to(x.device)
    # the examples do not interact in eval mode, so one backward of the sum gives every example's gradient
    (grad,) = torch.autograd.grad(scores.gather(1, c[:, None]).sum(), x)
    return SaliencyResult(
        x=x.detach().cpu().numpy(),
        saliency=grad.abs().cpu().numpy(),
        classes=c.cpu().numpy(),
        labels=y.cpu().numpy(),
        probs=F.softmax(scores.detach(), -1).cpu().numpy(),
    )


def plot_saliency(result: SaliencyResult, task):
    """Two rows: the inputs (label, prediction, confidence) and their saliency maps, with a colorbar."""
    from dlrun.viz.picture import class_name, draw_input, figure, input_kind

    n = len(result.x)
    kind = input_kind(result.x.shape[1:])
    cell = 1.5 if kind == "image" else 2.4
    fig = figure(max(5.0, n * cell + 0.9), 2 * cell + 1.0)
    axes = fig.subplots(2, n, squeeze=False)
    top = float(result.saliency.max()) or 1.0
    image = None
    for i in range(n):
        c, label = int(result.classes[i]), int(result.labels[i])
        draw_input(axes[0, i], result.x[i], task.value_range)
        axes[0, i].set_title(
            f"label {class_name(task, label)}\npred {class_name(task, c)} ({result.probs[i, c]:.2f})", fontsize=8
        )
        s = result.saliency[i]
        ax = axes[1, i]
        if kind == "image":
            image = ax.imshow(s.max(0), cmap="hot", vmin=0, vmax=top)
            ax.set_xticks([])
            ax.set_yticks([])
        elif kind == "signal":
            for ch in range(len(s)):
                ax.plot(s[ch], color="C3", lw=1.2)
            ax.set_ylim(0, top * 1.05)
            ax.set_xlabel("time step", fontsize=7)
        else:
            ax.bar(np.arange(len(s)), s, color="C3")
            ax.set_ylim(0, top * 1.05)
            ax.set_xlabel("feature", fontsize=7)
        if kind != "image":
            for a in (axes[0, i], ax):
                a.tick_params(labelsize=6)
    axes[0, 0].set_ylabel("input", fontsize=9)
    axes[1, 0].set_ylabel("|dS_c/dx|", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes[1, :], shrink=0.9, label="|dS_c/dx|")
    channels = " (max over channels)" if kind == "image" and result.x.shape[1] > 1 else ""
    fig.suptitle(f"Saliency: |dS_c/dx| of the predicted class score S_c{channels}", fontsize=11)
    return fig
