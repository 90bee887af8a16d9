"""Per-layer training diagnostics, logged every trainer.diag_every steps (0 = off).

For the step just taken, as scalars in TensorBoard and metrics.jsonl:

  diag/grad_norm/<layer>     ||dL/dW||, the gradient the optimizer used (after trainer.grad_clip)
  diag/update_ratio/<layer>  ||W_after - W_before|| / ||W_before|| (healthy: around 1e-3 per step)
  diag/act_mean/<act>        mean of an activation module's output over the batch (and positions)
  diag/act_std/<act>         its standard deviation
  diag/dead_relu/<act>       fraction of a ReLU's units that output 0 for every example of the batch
                             (a unit: one feature of a dense layer, one channel of a conv layer)

<layer> is the name of a weight matrix or kernel as in `weights/<layer>/norm` (fc1, out, conv1,
stage1.0.conv1); <act> is the activation module's name (act1, fc_act1, stage1.0.relu2). The activations
are read by forward hooks that exist only during a diagnostic step, so other steps cost nothing extra;
a diagnostic step costs a copy of the weights and one host sync.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from dlrun.models.activations import ACTIVATIONS

ACTIVATION_TYPES = tuple(ACTIVATIONS.get(name) for name in ACTIVATIONS)  # nn.ReLU, nn.Tanh, ... as models use them


def layer_name(param_name: str) -> str:
    """'layers.fc1.weight' -> 'fc1' (the name hooks and TensorBoard tags use)."""
    name = param_name.removeprefix("layers.")
    return name.removesuffix(".weight")


class Probe:
    """Snapshots the weights and hooks every activation module; `scalars()` after the step reads it all."""

    def __init__(self, model: nn.Module):
        self.weights = [(layer_name(n), p) for n, p in model.named_parameters() if p.ndim > 1]
        self.before = [p.detach().clone() for _, p in self.weights]
        self.acts: dict[str, torch.Tensor] = {}  # act name -> (mean, std) or (mean, std, dead fraction)
        self.handles = [
            module.register_forward_hook(self._hook(layer_name(name), isinstance(module, nn.ReLU)))
            for name, module in model.named_modules()
            if isinstance(module, ACTIVATION_TYPES)
        ]

    def _hook(self, name: str, relu: bool):
        def hook(module: nn.Module, inputs, out: torch.Tensor) -> None:
            h = out.detach()  # (B, H) dense, (B, C, L) or (B, C, H, W) conv
            h = h.to(torch.promote_types(h.dtype, torch.float32))  # statistics of half precision in float32
            stats = [h.mean(), h.std()]
            if relu:
                per_unit = (h != 0).transpose(0, 1).reshape(h.shape[1], -1)  # (units, B * positions)
                stats.append(1.0 - per_unit.any(dim=1).float().mean())  # units silent on the whole batch
            self.acts[name] = torch.stack(stats)

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    @torch.no_grad()
    def scalars(self) -> dict[str, float]:
        """Every diag/ scalar of the step just taken, read from the device in one host sync."""
        per_layer = [p.grad.norm() if p.grad is not None else p.new_tensor(float("nan")) for _, p in self.weights]
        per_layer += [(p.detach() - b).norm() / b.norm() for (_, p), b in zip(self.weights, self.before, strict=True)]
        parts = ([torch.stack(per_layer)] if per_layer else []) + list(self.acts.values())
        values = torch.cat(parts).tolist() if parts else []  # the one host sync
        out: dict[str, float] = {}
        n = len(self.weights)
        for i, (name, _) in enumerate(self.weights):
            out[f"diag/grad_norm/{name}"] = values[i]
            out[f"diag/update_ratio/{name}"] = values[n + i]
        i = 2 * n
        for name, stats in self.acts.items():
            out[f"diag/act_mean/{name}"], out[f"diag/act_std/{name}"] = values[i], values[i + 1]
            if len(stats) == 3:
                out[f"diag/dead_relu/{name}"] = values[i + 2]
            i += len(stats)
        return out


@contextmanager
def watch(model: nn.Module, logger, step: int, every: int) -> Iterator[None]:
    """Around one training step: at every `every`-th step (and with a logger) record and log diag/ scalars."""
    if logger is None or not every or step % every:
        yield
        return
    probe = Probe(model)
    try:
        yield
    finally:
        probe.remove()
    logger.scalars(step, probe.scalars())
