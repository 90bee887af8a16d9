"""Adversarial examples: small input changes that change the prediction.

    FGSM (Goodfellow et al. 2015)  x' = clip(x + eps sign(grad_x J(x, y)))          glass box, one step
    PGD (Madry et al. 2018)        x <- clip(P_eps(x + alpha sign(grad_x J)))      repeated, restarts
    one pixel (Su et al. 2019)     differential evolution over one position and its value(s); black box:
                                   it reads only the predicted probabilities

J is the cross-entropy of the class scores; clip keeps x' inside the data's valid range (Task.value_range,
the min and max of the train inputs) and P_eps projects onto the L-inf ball of radius eps around x.
eps is in the units of the model's input (for data.standardize=unit, a fraction of the pixel range).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlrun.viz.load import class_scores, predict

ATTACKS = ("fgsm", "pgd", "onepixel")


def loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad_x of the summed cross-entropy: each example's own gradient (eval mode: no interaction)."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(class_scores(model(x)), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, value_range) -> torch.Tensor:
    """x' = clip(x + eps sign(grad_x J(x, y)), lo, hi)."""
    lo, hi = value_range
    return (x + eps * loss_gradient(model, x, y).sign()).clamp(lo, hi).detach()


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    value_range,
    steps: int = 40,
    step_size: float | None = None,
    restarts: int = 2,
    seed: int = 0,
) -> torch.Tensor:
    """Projected gradient ascent on J: `steps` signed steps of `step_size` (default 2.5 eps / steps, Madry
    et al.), each projected onto the eps ball around x and the valid range.

    The first start is x itself, the other `restarts - 1` are uniform random points of the ball. Within a
    start an example keeps its first misclassified iterate; over the starts, the first start that fools it.
    """
    lo, hi = value_range
    alpha = 2.5 * eps / steps if step_size is None else step_size
    x = x.detach()
    g = torch.Generator().manual_seed(seed)
    result = x.clone()
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for start in range(max(restarts, 1)):
        adv = x.clone()
        if start > 0:
            adv = (x + eps * (torch.rand(x.shape, generator=g) * 2 - 1).to(x.device)).clamp(lo, hi)
        best = adv.clone()
        wrong = predict(model, adv)[0] != y
        for _ in range(steps):
            adv = adv + alpha * loss_gradient(model, adv, y).sign()
            adv = torch.minimum(torch.maximum(adv, x - eps), x + eps).clamp(lo, hi).detach()
            best[~wrong] = adv[~wrong]  # examples not fooled yet follow the iterate; fooled ones keep theirs
            wrong |= predict(model, adv)[0] != y
        keep = ~fooled & (wrong | (start == 0))  # start 0 fills every example; later starts add new successes
        result[keep] = best[keep]
        fooled |= wrong
    return result


def one_pixel(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    value_range,
    maxiter: int = 60,
    popsize: int = 30,
    seed: int = 0,
) -> tuple[torch.Tensor, np.ndarray]:
    """One-pixel attack by scipy's differential evolution, one example at a time.

    The candidate is (position, value per channel): position indexes a pixel (images), a time step
    (signals) or a feature (tabular); all channels at that position are set. The objective is
    p_y - max_{j != y} p_j from the model's probabilities only (black box); the search stops once it
    is negative, i.e. the prediction has changed. Returns (x' (N, ...), success (N,) bool).
    """
    from scipy.optimize import differential_evolution

    lo, hi = value_range
    shape = x.shape[1:]
    channels, positions = (shape[0], prod(shape[1:])) if len(shape) > 1 else (1, shape[0])
    bounds = [(0, positions - 1)] + [(lo, hi)] * channels
    integrality = [True] + [False] * channels
    out, success = x.detach().clone(), np.zeros(len(x), dtype=bool)
    for i in range(len(x)):
        image = x[i].reshape(channels, positions)
        label = int(y[i])

        def candidates(params: np.ndarray, image=image) -> torch.Tensor:  # params: (1 + C, S) -> (S, *shape)
            pos = torch.as_tensor(params[0].round().astype(np.int64), device=x.device)
            values = torch.as_tensor(params[1:].T, dtype=x.dtype, device=x.device)  # (S, C)
            batch = image.expand(len(pos), channels, positions).clone()
            batch[torch.arange(len(pos), device=x.device), :, pos] = values
            return batch.reshape(len(pos), *shape)

        def margin(params: np.ndarray, label=label, candidates=candidates) -> np.ndarray:
            probs = predict(model, candidates(params.reshape(1 + channels, -1)))[1]
            others = probs.clone()
            others[:, label] = -1.0
            return (probs[:, label] - others.max(-1).values).cpu().numpy()

        result = differential_evolution(
            margin,
            bounds,
            integrality=integrality,
            maxiter=maxiter,
            popsize=popsize,
            seed=seed + i,
            polish=False,
            vectorized=True,
            updating="deferred",
            callback=lambda intermediate_result: intermediate_result.fun < 0,
        )
        out[i] = candidates(result.x.reshape(-1, 1))[0]
        success[i] = result.fun < 0
    return out, success


def attack(name: str, model, x, y, eps: float, value_range, seed: int = 0, **pgd_options) -> torch.Tensor:
    """FGSM or PGD by name; `pgd_options` (steps, step_size, restarts) go to PGD."""
    if name == "fgsm":
        return fgsm(model, x, y, eps, value_range)
    if name == "pgd":
        return pgd(model, x, y, eps, value_range, seed=seed, **pgd_options)
    raise ValueError(f"unknown attack {name}")


def accuracy_curve(
    name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values, value_range, seed: int = 0, **pgd_options
) -> np.ndarray:
    """Accuracy on (x, y) after the attack, for each eps."""
    accs = []
    for eps in eps_values:
        adv = attack(name, model, x, y, float(eps), value_range, seed=seed, **pgd_options) if eps > 0 else x
        accs.append((predict(model, adv)[0] == y).float().mean().item())
    return np.array(accs)


@dataclass
class AdversarialResult:
    attack: str
    eps_values: np.ndarray  # (E,) (empty for the one-pixel attack)
    curves: dict[str, np.ndarray]  # attack name -> (E,) accuracy on the test split
    eps: float  # the eps of the examples (nan for the one-pixel attack)
    clean_acc: float
    attacked_acc: float  # accuracy on the attacked examples (one pixel: on the examples it tried)
    n_attacked: int
    x: np.ndarray  # (N, *input_shape) clean examples
    x_adv: np.ndarray  # (N, *input_shape) their perturbed versions
    labels: np.ndarray  # (N,)
    pred: np.ndarray  # (N,) clean prediction
    conf: np.ndarray  # (N,) its probability
    pred_adv: np.ndarray  # (N,)
    conf_adv: np.ndarray  # (N,)
    value_range: tuple[float, float]


def examples(model, x, y, x_adv) -> dict[str, np.ndarray]:
    pred, probs = predict(model, x)
    pred_adv, probs_adv = predict(model, x_adv)
    return {
        "x": x.cpu().numpy(),
        "x_adv": x_adv.cpu().numpy(),
        "labels": y.cpu().numpy(),
        "pred": pred.cpu().numpy(),
        "conf": probs.max(-1).values.cpu().numpy(),
        "pred_adv": pred_adv.cpu().numpy(),
        "conf_adv": probs_adv.max(-1).values.cpu().numpy(),
    }


def run_attack(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    value_range,
    eps: float,
    points: int = 11,
    n_examples: int = 4,
    n_onepixel: int = 20,
    seed: int = 0,
    **pgd_options,
) -> AdversarialResult:
    """The accuracy curve over eps in [0, eps] (FGSM and PGD; PGD is drawn with FGSM for reference), and
    examples at eps; for the one-pixel attack, the success over the first `n_onepixel` correctly
    classified examples instead of a curve.
    """
    clean_pred = predict(model, x)[0]
    clean_acc = (clean_pred == y).float().mean().item()
    correct = torch.nonzero(clean_pred == y).flatten()
    if name == "onepixel":
        chosen = correct[:n_onepixel]
        x_adv, success = one_pixel(model, x[chosen], y[chosen], value_range, seed=seed)
        # show the fooled examples first
        order = torch.as_tensor(np.argsort(~success, kind="stable"), device=x.device)[:n_examples]
        shown = examples(model, x[chosen][order], y[chosen][order], x_adv[order])
        return AdversarialResult(
            name, np.zeros(0), {}, float("nan"), clean_acc, float(1 - success.mean()), len(chosen),
            value_range=value_range, **shown,
        )  # fmt: skip
    eps_values = np.linspace(0.0, eps, points)
    curves = {name: accuracy_curve(name, model, x, y, eps_values, value_range, seed, **pgd_options)}
    if name == "pgd":
        curves["fgsm"] = accuracy_curve("fgsm", model, x, y, eps_values, value_range, seed)
    chosen = correct[:n_examples]
    x_adv = attack(name, model, x[chosen], y[chosen], eps, value_range, seed=seed, **pgd_options)
    shown = examples(model, x[chosen], y[chosen], x_adv)
    return AdversarialResult(
        name, eps_values, curves, eps, clean_acc, float(curves[name][-1]), len(x), value_range=value_range, **shown
    )


def plot_adversarial(result: AdversarialResult, task):
    """Left: accuracy against eps (or the one-pixel success); right: clean / perturbed / difference."""
    from dlrun.viz.picture import class_name, draw_input, figure, input_kind

    n = len(result.x)
    kind = input_kind(result.x.shape[1:])
    fig = figure(11.0, max(4.0, 1.6 * n + 0.8))
    left, right = fig.subfigures(1, 2, width_ratios=[1.0, 1.25])
    ax = left.subplots()
    if result.attack == "onepixel":
        bars = ax.bar(["clean", "one pixel"], [1.0, result.attacked_acc], color=["C0", "C3"])
        ax.bar_label(bars, fmt="%.2f")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("accuracy")
        ax.set_title(
            f"one-pixel attack on {result.n_attacked} correctly classified test examples\n"
            f"fooled {1 - result.attacked_acc:.0%} (differential evolution, black box)",
            fontsize=10,
        )
    else:
        for name, acc in result.curves.items():
            style = "-o" if name == result.attack else "--s"
            ax.plot(result.eps_values, acc, style, ms=4, label=name.upper())
        ax.set_xlabel("eps (L-inf, input units)")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title(
            f"{result.attack.upper()}: accuracy {result.clean_acc:.3f} -> {result.attacked_acc:.3f} at eps = "
            f"{result.eps:g}\n({result.n_attacked} test examples; range [{result.value_range[0]:.3g}, "
            f"{result.value_range[1]:.3g}])",
            fontsize=10,
        )
    axes = right.subplots(n, 3, squeeze=False)
    diff = result.x_adv - result.x
    m = float(np.abs(diff).max()) or 1.0
    image = None
    for i in range(n):
        clean = f"{class_name(task, int(result.pred[i]))} ({result.conf[i]:.2f})"
        adv = f"{class_name(task, int(result.pred_adv[i]))} ({result.conf_adv[i]:.2f})"
        draw_input(axes[i, 0], result.x[i], result.value_range)
        axes[i, 0].set_title(f"clean: {clean}", fontsize=8)
        draw_input(axes[i, 1], result.x_adv[i], result.value_range)
        changed = result.pred_adv[i] != result.pred[i]
        axes[i, 1].set_title(f"perturbed: {adv}", fontsize=8, color="C3" if changed else "black")
        if kind == "image":
            image = axes[i, 2].imshow(diff[i].mean(0), cmap="bwr", vmin=-m, vmax=m)  # mean over channels
            axes[i, 2].set_xticks([])
            axes[i, 2].set_yticks([])
        else:
            draw_input(axes[i, 2], diff[i], (-m * 1.05, m * 1.05), color="C3")
        axes[i, 2].set_title("difference", fontsize=8)
        if kind != "image":
            for a in axes[i]:
                a.tick_params(labelsize=6)
    if image is not None:
        right.colorbar(image, ax=axes[:, 2], shrink=0.8, label="x' - x")
    label = "one pixel" if result.attack == "onepixel" else f"eps = {result.eps:g}"
    right.suptitle(f"examples ({label}); prediction (confidence)", fontsize=10)
    fig.suptitle(f"Adversarial examples: {result.attack}", fontsize=12)
    return fig
