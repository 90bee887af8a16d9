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
    """Size of the model's head for this loss: 1 logit for bce, one per class, one per target."""
    if name == "bce":
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


LOSSES.register("cross_entropy")(
    lambda cfg: smoothed_cross_entropy(cfg.label_smoothing) if getattr(cfg, "label_smoothing", 0.0) else cross_entropy
)
LOSSES.register("nll")(lambda cfg: nll)
LOSSES.register("bce")(lambda cfg: bce)
LOSSES.register("mse")(lambda cfg: half_sse if getattr(cfg, "form", "mean") == "half_sum" else mse)


def build(cfg, task: Task) -> tuple[str, LossFn]:
    """(resolved name, loss function) for a LossConfig and a task."""
    name = resolve(cfg.name, task)
    if getattr(cfg, "label_smoothing", 0.0) and name != "cross_entropy":
        raise ConfigError(
            f"loss.label_smoothing={cfg.label_smoothing}: smooths the classes of cross_entropy; "
            f"loss={name} has none (use loss=cross_entropy on a multiclass task)"
        )
    return name, LOSSES.get(name)(cfg)


@torch.no_grad()
def batch_metrics(z: torch.Tensor, y: torch.Tensor, task: Task) -> dict[str, torch.Tensor]:
    """Sums over the batch (divide by N after summing batches): `correct` or `sq_err`."""
    if task.is_classification:
        pred = (z.squeeze(-1) > 0).long() if z.shape[-1] == 1 else z.argmax(dim=-1)
        return {"correct": (pred == y).sum()}
    return {"sq_err": (z - y).pow(2).mean(dim=-1).sum()}
