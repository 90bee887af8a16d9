"""Which side of every kink a forward pass is on, so a finite difference can tell when it crossed one.

A kink is a point where the function is not differentiable: ReLU at 0, the ends of hardtanh, a
max-pooling window where the maximum changes hands, |w| at 0 under an L1 penalty. Between two
forward passes that sit on the same side of every kink, the function is one smooth piece, and a
centered difference between them approximates the derivative. A difference that straddles a kink
measures an average of two different slopes instead, which is no error of the backward pass.

`KinkWatch` records, at every forward pass, each kink module's side (its input against its
breakpoints; for max pooling, the argmax of each window) and the sign of each L1-penalized weight.
Kinks computed by plain functions inside a module (F.relu, torch.abs, torch.max) are not seen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlrun.models.activations import Step


def _breakpoints(module: nn.Module) -> list[float] | None:
    """The inputs where an elementwise module's slope jumps, or None when it has none."""
    if isinstance(module, nn.ReLU | nn.LeakyReLU | nn.PReLU | nn.ELU | nn.CELU | nn.SELU | Step):
        return [0.0]
    if isinstance(module, nn.Hardtanh):  # also ReLU6
        return [module.min_val, module.max_val]
    if isinstance(module, nn.Threshold):
        return [module.threshold]
    if isinstance(module, nn.Hardshrink | nn.Softshrink):
        return [-module.lambd, module.lambd]
    if isinstance(module, nn.Hardswish | nn.Hardsigmoid):
        return [-3.0, 3.0]
    if isinstance(module, nn.Softplus):  # linear above threshold / beta: a small jump in value there
        return [module.threshold / module.beta]
    return None


_MAX_POOL = {nn.MaxPool1d: F.max_pool1d, nn.MaxPool2d: F.max_pool2d, nn.MaxPool3d: F.max_pool3d}
_ADAPTIVE_MAX_POOL = {
    nn.AdaptiveMaxPool1d: F.adaptive_max_pool1d,
    nn.AdaptiveMaxPool2d: F.adaptive_max_pool2d,
    nn.AdaptiveMaxPool3d: F.adaptive_max_pool3d,
}


def _side(module: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The module's kink state for input x: x > breakpoint for each breakpoint, or the max-pool argmaxes."""
    if (points := _breakpoints(module)) is not None:
        return torch.stack([x > p for p in points])
    pool = _MAX_POOL.get(type(module))
    if pool is not None:
        m = module
        return pool(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, return_indices=True)[1]
    pool = _ADAPTIVE_MAX_POOL.get(type(module))
    if pool is not None:
        return pool(x, module.output_size, return_indices=True)[1]
    return None


def has_kink(module: nn.Module) -> bool:
    return _breakpoints(module) is not None or type(module) in _MAX_POOL or type(module) in _ADAPTIVE_MAX_POOL


class KinkWatch:
    """Forward hooks on the kink modules under `root`; `states()` is what the last forward pass recorded."""

    def __init__(self, root: nn.Module | None, l1_weights: list[torch.Tensor] = ()):
        self.l1_weights = list(l1_weights)
        self._states: list[torch.Tensor] = []
        self._hooks = []
        self.kinds: list[str] = sorted(
            {type(m).__name__ for m in (root.modules() if root is not None else ()) if has_kink(m)}
        )
        if self.l1_weights:
            self.kinds.append("L1 |w|")
        if root is not None:
            for m in root.modules():
                if has_kink(m):
                    self._hooks.append(m.register_forward_hook(self._record))

    def _record(self, module, inputs, output):
        self._states.append(_side(module, inputs[0].detach()))

    @property
    def active(self) -> bool:
        return bool(self.kinds)

    def start(self) -> None:
        """Call before a forward pass."""
        self._states = []

    def states(self) -> list[torch.Tensor]:
        """After a forward pass: the side of every kink it met (and of every L1-penalized weight)."""
        return self._states + [torch.sign(w.detach()) for w in self.l1_weights]

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []


def same_side(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
