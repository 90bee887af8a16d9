"""Losses by name, and the metrics that go with each task.

Models output logits (classification) or values (regression); the output activation (sigmoid,
softmax) is folded into the loss for numerical stability. `loss=auto` picks from the task.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from dlrun import options
from dlrun.data import Task
from dlrun.errors import ConfigError
from dlrun.registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry = Registry("loss")  # name -> builder(cfg) -> LossFn; `auto` resolves to one of these


def resolve(name: str, task: Task) -> str:
    """`auto` -> cross_entropy (multiclass), bce (binary), mse (regression); else check the declared tasks."""
    if name == "auto":
        return {"multiclass": "cross_entropy", "binary": "bce", "regression": "mse"}[task.kind]
    if task.kind not in options.caps("loss", name).tasks:
        fits = [n for n, d in options.declared("loss").items() if task.kind in d.caps.tasks]
        raise ConfigError(f"loss={name} does not fit a {task.kind} task; choose from: {', '.join(fits)}")
    return name


def out_features(name: str, task: Task) -> int:
    """Size of the model's head for this loss: 1 logit for bce (1 score for perceptron and binary mse), one per
    class, one per target."""
    if name in ("bce", "perceptron") or (name == "mse" and task.kind == "binary"):
        return 1
    return task.n_classes if task.is_classification else task.n_targets


def cross_entropy(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-log softmax(z)_y averaged over the batch; z: (B, C) logits, y: (B,) labels."""
    return F.cross_entropy(z, y)


def nll(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-log p_y with p = softmax(z), computed through log_softmax so it never takes log(0)."""
    return F.nll_loss(F.log_softmax(z, dim=-1), y)


def bce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-y log s(z) - (1 - y) log(1 - s(z)) from the logit z: (B, 1), y: (B,) in {0, 1}."""
    return F.binary_cross_entropy_with_logits(z.squeeze(-1), y.to(z.dtype))


def mse(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1/K ||y_hat - y||^2 averaged over the batch (PyTorch's MSELoss)."""
    return F.mse_loss(z, y)


def half_sse(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1/2 ||y_hat - y||^2 per example, averaged over the batch."""
    return 0.5 * (z - y).pow(2).sum(dim=-1).mean()


def smoothed_cross_entropy(eps: float) -> LossFn:
    """Cross-entropy against the smoothed target (1 - eps) one_hot(y) + eps / C (torch's label_smoothing)."""
    return lambda z, y: F.cross_entropy(z, y, label_smoothing=eps)


def signs(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Binary labels {0, 1} as the targets {-1, +1} of the perceptron and ADALINE."""
    return 2.0 * y.to(dtype) - 1.0


def perceptron(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Rosenblatt's rule as a loss: 1 - t z on a mistake (t z <= 0, t = +-1), 0 on an example right.

    Its gradient is -t x on each mistake and 0 otherwise, so SGD with lr 1 and batch size 1 is the perceptron
    rule w <- w + t x (update on mistakes, z = 0 included); the 1 makes a mistake on the boundary count, so
    the loss of a pass is zero exactly when no example was wrong (trainer.stop_at_zero_loss)."""
    margin = signs(y, z.dtype) * z.squeeze(-1)
    return torch.where(margin <= 0, 1.0 - margin, torch.zeros_like(margin)).mean()


def binary_squared_error(targets: str, half: bool) -> LossFn:
    """Squared error of the single output z against +-1 (ADALINE's LMS) or 0 / 1 targets; the class predicted
    is z > 0 (+-1) or z > 1/2 (0 / 1), the `threshold` the metrics read."""

    def loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t = signs(y, z.dtype) if targets == "pm1" else y.to(z.dtype)
        return (0.5 if half else 1.0) * (z.squeeze(-1) - t).pow(2).mean()

    loss.threshold = 0.0 if targets == "pm1" else 0.5
    return loss


def summed(fn: LossFn) -> LossFn:
    """loss.form=sum: the sum over the batch instead of the mean (d2l's l.sum().backward()); the gradient is
    batch_size times the mean's. The trainer logs it per example (`per_batch`: divided by the batch size)."""

    def loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fn(z, y) * y.shape[0]

    loss.per_batch = True
    loss.threshold = getattr(fn, "threshold", 0.0)
    return loss


LOSSES.register("cross_entropy")(
    lambda cfg: smoothed_cross_entropy(cfg.label_smoothing) if getattr(cfg, "label_smoothing", 0.0) else cross_entropy
)
LOSSES.register("nll")(lambda cfg: nll)
LOSSES.register("bce")(lambda cfg: bce)
LOSSES.register("mse")(lambda cfg: half_sse if getattr(cfg, "form", "mean") in ("half_sum", "sum") else mse)
LOSSES.register("perceptron")(lambda cfg: perceptron)


def threshold(fn: LossFn) -> float:
    """Where a single-output binary model's score z splits the classes: 0 (logits, +-1 targets), 1/2 (0 / 1)."""
    return getattr(fn, "threshold", 0.0)


def per_example(fn: LossFn, value: torch.Tensor, n: int) -> torch.Tensor:
    """A batch's loss as the mean over its n examples (loss.form=sum returns their sum)."""
    return value / n if getattr(fn, "per_batch", False) else value


def build(cfg, task: Task) -> tuple[str, LossFn]:
    """(resolved name, loss function) for a LossConfig and a task."""
    name = resolve(cfg.name, task)
    if task.soft_labels and name != "cross_entropy":
        raise ConfigError(f"loss={name}: the labels are class probabilities (soft labels); use loss=cross_entropy "
                          "(or auto), which takes a distribution as its target")  # fmt: skip
    if getattr(cfg, "label_smoothing", 0.0) and name != "cross_entropy":
        raise ConfigError(
            f"loss.label_smoothing={cfg.label_smoothing}: smooths the classes of cross_entropy; "
            f"loss={name} has none (use loss=cross_entropy on a multiclass task)"
        )
    if getattr(cfg, "targets", "pm1") != "pm1" and not (name == "mse" and task.kind == "binary"):
        raise ConfigError(f"loss.targets={cfg.targets}: the targets of loss=mse on a binary task; loss={name} on "
                          f"a {task.kind} task has none (leave loss.targets out)")  # fmt: skip
    if name == "mse" and task.kind == "binary":  # ADALINE: one output against +-1 (or 0 / 1) targets
        fn = binary_squared_error(getattr(cfg, "targets", "pm1"), half=getattr(cfg, "form", "mean") != "mean")
    else:
        fn = LOSSES.get(name)(cfg)
    return name, summed(fn) if getattr(cfg, "form", "mean") == "sum" else fn


@torch.no_grad()
def batch_metrics(z: torch.Tensor, y: torch.Tensor, task: Task, cut: float = 0.0) -> dict[str, torch.Tensor]:
    """Sums over the batch (divide by N after summing batches): `correct` or `sq_err`. A single output is
    class 1 above `cut` (the loss's threshold: 0 for a logit); soft labels count their most likely class."""
    if task.is_classification:
        y = y.argmax(dim=-1) if task.soft_labels else y
        pred = (z.squeeze(-1) > cut).long() if z.shape[-1] == 1 else z.argmax(dim=-1)
        return {"correct": (pred == y).sum()}
    return {"sq_err": (z - y).pow(2).mean(dim=-1).sum()}
