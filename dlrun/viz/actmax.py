"""Activation maximization: the input that maximizes a class logit, a unit or a channel.

Simonyan et al. 2013 maximize the unnormalized class score S_c(x) - l2 ||x||^2; Olah et al. 2017 add
robustness to random jitter and frequency penalties (blur, total variation) and show that the result
depends on the start. Here, by gradient ascent with Adam on the input itself:

    maximize  S(x) - l2 ||x||^2 - tv TV(x)     S: class logit, unit, or channel mean of a layer's output
    Adam's step size is lr (hi - lo); after each step x <- clip(x, lo, hi), the data's valid range
    (Task.value_range: min and max of the train inputs); every 4 steps x <- blur(x) when blur > 0;
    jitter j: the model sees x shifted by a random (dy, dx) in [-j, j] each step.

All targets and starts are optimized in one batch (B = targets x starts); in eval mode the examples
do not interact, so the gradient of the summed objective is each example's own gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlrun.errors import ConfigError
from dlrun.viz.layers import find_layer, forward_to
from dlrun.viz.load import class_scores, predict
from dlrun.viz.picture import class_name, draw_input, figure, input_kind, suptitle

BLUR_EVERY = 4  # steps between blurs


@dataclass(frozen=True)
class Target:
    layer: str  # "class" (the class scores) or a layer name (see `dlrun viz layers`)
    index: int | None  # class, unit or channel; None = every one (up to a limit)


@dataclass
class ActMaxResult:
    target: Target
    indices: list[int]  # the class / unit / channel of each column
    x: np.ndarray  # (len(indices), starts, *input_shape): the maximizing inputs
    score: np.ndarray  # (len(indices), starts): the maximized S(x) (log p_c with log_prob), no penalties
    probs: np.ndarray  # (len(indices), starts, K): class probabilities of each result (K = 0 for regression)
    value_range: tuple[float, float]


def parse_target(text: str, class_names: tuple[str, ...] = ()) -> Target:
    """'class' | 'class:7' | 'class:cat' | 'fc1' | 'conv2:3' -> Target."""
    layer, _, index = text.partition(":")
    if not layer:
        raise ConfigError(f"--target {text}: give class, class:C, LAYER or LAYER:UNIT (e.g. class:7, conv1:3)")
    if not index:
        return Target(layer, None)
    if index.lstrip("-").isdigit():
        return Target(layer, int(index))
    if layer == "class" and index in class_names:
        return Target(layer, class_names.index(index))
    raise ConfigError(f"--target {text}: '{index}' is not a unit number or class name (e.g. class:7, conv1:3)")


def target_indices(model: nn.Module, target: Target, input_shape, n_classes: int, limit: int) -> list[int]:
    """The indices to maximize: the one asked for, or the first `limit` classes / units / channels."""
    if target.layer == "class":
        if n_classes == 0:
            raise ConfigError("--target class: a regression model has no classes; use --target out:0")
        size, what = n_classes, "classes"
    else:
        module = find_layer(model, target.layer)
        with torch.no_grad():
            out = forward_to(model, module, torch.zeros(2, *input_shape, device=next(model.parameters()).device))
        size = out.shape[1]  # units (B, F) or channels (B, C, ...)
        what = "units" if out.dim() == 2 else "channels"
    if target.index is None:
        return list(range(min(size, limit)))
    if not 0 <= target.index < size:
        raise ConfigError(f"--target {target.layer}:{target.index}: out of range; {target.layer} has {size} {what}")
    return [target.index]


def select(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """out[b, idx[b]] (units) or its mean over the remaining axes (channels): (B, C, ...) -> (B,)."""
    picked = out[torch.arange(len(idx), device=out.device), idx]
    return picked.flatten(1).mean(1) if picked.dim() > 1 else picked


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur over the spatial axes of (B, C, L) or (B, C, H, W); reflect padding."""
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    for axis in range(2, x.dim()):
        moved = x.movedim(axis, -1)  # blur along the last axis
        shape = moved.shape
        flat = F.pad(moved.reshape(-1, 1, shape[-1]), (radius, radius), mode="reflect")
        flat = F.conv1d(flat, kernel.view(1, 1, -1))
        x = flat.reshape(shape).movedim(-1, axis)
    return x


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV per example: sum of |differences| between neighbours along each spatial axis, (B,)."""
    tv = torch.zeros(len(x), device=x.device, dtype=x.dtype)
    for axis in range(2, x.dim()):
        tv = tv + x.diff(dim=axis).abs().flatten(1).sum(1)
    return tv


def maximize(
    model: nn.Module,
    input_shape: tuple[int, ...],
    value_range: tuple[float, float],
    target: Target,
    n_classes: int,
    *,
    starts: int = 3,
    steps: int = 200,
    lr: float = 0.05,  # Adam step size as a fraction of the valid range hi - lo
    l2: float = 0.01,
    jitter: int = 0,
    blur: float = 0.0,
    tv: float = 0.0,
    limit: int = 16,
    log_prob: bool = False,
    seed: int = 0,
) -> ActMaxResult:
    """Gradient ascent on the input from `starts` random inputs per target; the model stays in eval mode.

    log_prob: for class targets, maximize log softmax(S)_c instead of the score S_c; this also pushes
    the other classes down, so the result is classified as c more surely but looks less like a c.
    """
    device = next(model.parameters()).device
    indices = target_indices(model, target, input_shape, n_classes, limit)
    lo, hi = value_range
    g = torch.Generator().manual_seed(seed)
    # random starts: uniform noise over the middle half of the valid range
    x0 = lo + (hi - lo) * (0.25 + 0.5 * torch.rand(len(indices) * starts, *input_shape, generator=g))
    x = x0.to(device).requires_grad_(True)
    idx = torch.tensor(indices, device=device).repeat_interleave(starts)  # (B,): target of each example
    layer = None if target.layer == "class" else find_layer(model, target.layer)
    spatial = list(range(2, 1 + len(input_shape))) if len(input_shape) > 1 else []
    opt = torch.optim.Adam([x], lr=lr * (hi - lo))

    def score(inputs: torch.Tensor) -> torch.Tensor:  # (B,)
        if layer is None:
            scores = class_scores(model(inputs))
            return select(F.log_softmax(scores, -1) if log_prob else scores, idx)
        return select(forward_to(model, layer, inputs), idx)

    for step in range(steps):
        inputs = x
        if jitter and spatial:
            shifts = torch.randint(-jitter, jitter + 1, (len(spatial),), generator=g).tolist()
            inputs = torch.roll(x, shifts, dims=spatial)
        objective = score(inputs) - l2 * x.pow(2).flatten(1).sum(1)
        if tv and spatial:
            objective = objective - tv * total_variation(x)
        (x.grad,) = torch.autograd.grad(-objective.sum(), x)  # parameters get no gradient
        opt.step()
        with torch.no_grad():
            if blur and spatial and (step + 1) % BLUR_EVERY == 0:
                x.copy_(gaussian_blur(x, blur))
            x.clamp_(lo, hi)

    with torch.no_grad():
        final = score(x).cpu().numpy()
    probs = predict(model, x.detach())[1].cpu().numpy() if n_classes else np.zeros((len(x), 0))
    shape = (len(indices), starts)
    return ActMaxResult(
        target=target,
        indices=indices,
        x=x.detach().cpu().numpy().reshape(*shape, *input_shape),
        score=final.reshape(shape),
        probs=probs.reshape(*shape, -1),
        value_range=value_range,
    )


def plot_actmax(result: ActMaxResult, task, title: str = ""):
    """A grid: one column per target, one row per start (images), or one panel per target (curves)."""
    n_targets, starts = result.x.shape[:2]
    is_class = result.target.layer == "class"
    kind = input_kind(result.x.shape[2:])
    per_start = kind == "image"
    rows = starts if per_start else 1
    cols = min(n_targets, 5) if not per_start else n_targets
    grid_rows = rows * math.ceil(n_targets / cols)
    cell = 1.3 if per_start else 2.2
    fig = figure(max(4.0, cols * cell), 0.9 + grid_rows * (cell + 0.25))
    axes = fig.subplots(grid_rows, cols, squeeze=False)
    for t, index in enumerate(result.indices):
        block, col = divmod(t, cols)
        name = class_name(task, index) if is_class else str(index)
        for s in range(starts):
            ax = axes[block * rows + (s if per_start else 0), col]
            draw_input(ax, result.x[t, s], result.value_range, alpha=1.0 if per_start else 0.8, color=f"C{s}")
            label = f"S={result.score[t, s]:.2g}"
            if is_class:
                predicted = int(result.probs[t, s].argmax())
                label = f"p={result.probs[t, s, index]:.2f}" + (f" (→{predicted})" if predicted != index else "")
            if per_start:
                ax.set_title(f"{name}: {label}" if s == 0 else label, fontsize=8)
        if not per_start:
            ax = axes[block, col]
            probs = (
                ", ".join(f"{result.probs[t, s, index]:.2f}" for s in range(starts))
                if is_class
                else ", ".join(f"{v:.2g}" for v in result.score[t])
            )
            ax.set_title(f"{name}: {'p' if is_class else 'S'} = {probs}", fontsize=8)
            ax.set_xlabel("time step" if kind == "signal" else "feature", fontsize=8)
            ax.tick_params(labelsize=7)
    for t in range(n_targets, axes.shape[0] // rows * cols):  # empty cells of the last block
        block, col = divmod(t, cols)
        for s in range(rows):
            axes[block * rows + s, col].set_visible(False)
    what = "class" if is_class else f"{result.target.layer} unit/channel"
    if per_start:
        fig.supylabel("random start", fontsize=9)
    suptitle(fig, title or f"Activation maximization: one input per {what}, {starts} random starts")
    return fig
