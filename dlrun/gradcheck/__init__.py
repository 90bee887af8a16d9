"""Gradient checking: autograd (and the hand-written backprop) against finite differences.

    report = check_config(compose(["model=cnn"]))       # the trainer's objective on one batch
    report = check_module("my_layer.py:make")           # a user's nn.Module or autograd.Function
    report = check_expr("2*x1*x2 - x3*log(x1) - 1/x3", "1,2,3")   # gradient and Hessian of a formula

Each returns plain data (a dict); `dlrun gradcheck` prints it as tables or JSON.
"""

from __future__ import annotations

from typing import Any

from dlrun.gradcheck.check import config_problem, module_problem, run
from dlrun.gradcheck.expr import check_expr
from dlrun.gradcheck.numeric import VERDICTS, verdict


def check_config(
    cfg, batch: int = 8, coords: int = 20, h: float | None = None, reg: bool = True, seed: int = 0
) -> dict[str, Any]:
    """The configured model and loss (float64, eval mode) on `batch` training examples; h=None: 1e-6."""
    return run(config_problem(cfg, batch=batch, reg=reg, seed=seed), h=h, coords=coords, seed=seed)


def check_module(spec: str, coords: int = 20, h: float | None = None, seed: int = 0) -> dict[str, Any]:
    """`FILE.py:FACTORY`: factory() returns (module or Function subclass, example input); h=None: the step
    that suits the precision it computes in (1e-6 in float64, 1e-3 in float32)."""
    return run(module_problem(spec, seed=seed), h=h, coords=coords, seed=seed)


__all__ = ["VERDICTS", "check_config", "check_expr", "check_module", "verdict"]
