"""Optimizers by the names users type. Hyperparameter names follow the lectures.

`optim.impl=torch` (default) builds torch.optim's optimizer; `optim.impl=lecture` builds the
lectures' formulas written out in dlrun/optim/lecture.py (see its docstring for where the forms
differ). `optim=newton` (dlrun/optim/newton.py) has one form and keeps the default impl=torch.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from dlrun import options
from dlrun.errors import ConfigError
from dlrun.optim import lecture
from dlrun.optim.newton import Newton
from dlrun.registry import Registry

OPTIMIZERS: Registry = Registry("optim")  # impl=torch
LECTURE: Registry = Registry("optim")  # impl=lecture


def fused(params, cfg=None) -> tuple[list, dict]:
    """torch's fused kernels where the device has them: the same update in one kernel for all parameters
    (Adam, MNIST-1D CNN, one CPU thread: 4.4 instead of 4.9 ms per training step). optim.fused=false keeps
    PyTorch's default kernel, whose rounding published code (the MNIST-1D reference, say) was trained with."""
    params = list(params)
    ok = (
        getattr(cfg, "fused", True)
        and bool(params)
        and all(
            isinstance(p, torch.Tensor) and p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
        )
    )
    return params, {"fused": True} if ok else {}


@OPTIMIZERS.register("gd")
def gd(params, cfg):
    """Gradient descent (full batch)."""
    params, kw = fused(params, cfg)
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)


@OPTIMIZERS.register("sgd")
def sgd(params, cfg):
    """Mini-batch stochastic gradient descent."""
    params, kw = fused(params, cfg)
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)


@OPTIMIZERS.register("momentum")
def momentum(params, cfg):
    """SGD with heavy-ball momentum: v = mu v + g, theta -= lr v (the lecture's form with alpha=lr, gamma=mu
    while lr is constant)."""
    params, kw = fused(params, cfg)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **kw)


@OPTIMIZERS.register("nesterov")
def nesterov(params, cfg):
    """SGD with Nesterov momentum."""
    params, kw = fused(params, cfg)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay, **kw)


@OPTIMIZERS.register("adagrad")
def adagrad(params, cfg):
    """AdaGrad (eps outside the square root, as PyTorch)."""
    params, kw = fused(params, cfg)
    return torch.optim.Adagrad(params, lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay, **kw)


@OPTIMIZERS.register("rmsprop")
def rmsprop(params, cfg):
    """RMSProp with G = gamma G + (1 - gamma) g^2 (PyTorch's alpha is the lecture's gamma)."""
    return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.gamma, eps=cfg.eps, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adam")
def adam(params, cfg):
    """Adam with bias correction; update m_hat / (sqrt(v_hat) + eps)."""
    params, kw = fused(params, cfg)
    return torch.optim.Adam(
        params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay, **kw
    )


@OPTIMIZERS.register("adamw")
def adamw(params, cfg):
    """Adam with decoupled weight decay."""
    params, kw = fused(params, cfg)
    return torch.optim.AdamW(
        params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay, **kw
    )


@OPTIMIZERS.register("newton")
def newton(params, cfg):
    """Newton's method with the exact Hessian (small models only)."""
    params = list(params)
    n = sum(p.numel() for p in params if p.requires_grad)
    if n > cfg.max_params:
        raise ConfigError(
            f"optim=newton: the model has {n:,} parameters, above optim.max_params={cfg.max_params:,} "
            f"(the Hessian has n^2 entries); use a smaller model (e.g. model=linear) or raise optim.max_params"
        )
    from dlrun.models import memory_bytes

    need = 3 * n * n * 4  # the Hessian, its damped copy and the solve's factor, in float32
    if need > memory_bytes():
        raise ConfigError(
            f"optim=newton: the model's {n:,} parameters make a Hessian of {n * n:,} entries, about "
            f"{need / 2**30:,.0f} GiB to invert, more than this machine's {memory_bytes() / 2**30:.0f} GiB of memory; "
            "use a smaller model (e.g. model=linear)"
        )
    return Newton(params, lr=cfg.lr, damping=cfg.damping, weight_decay=cfg.weight_decay)


# ----------------------------------------------------------------------------- impl=lecture
LECTURE.register("gd")(lambda params, c: lecture.GradientDescent(params, lr=c.lr, weight_decay=c.weight_decay))
LECTURE.register("sgd")(lambda params, c: lecture.GradientDescent(params, lr=c.lr, weight_decay=c.weight_decay))
LECTURE.register("momentum")(
    lambda params, c: lecture.HeavyBall(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
)
LECTURE.register("adagrad")(lambda params, c: lecture.AdaGrad(params, lr=c.lr, eps=c.eps, weight_decay=c.weight_decay))
LECTURE.register("rmsprop")(
    lambda params, c: lecture.RMSProp(params, lr=c.lr, gamma=c.gamma, eps=c.eps, weight_decay=c.weight_decay)
)
LECTURE.register("adam")(
    lambda params, c: lecture.Adam(
        params,
        lr=c.lr,
        beta1=c.beta1,
        beta2=c.beta2,
        eps=c.eps,
        eps_inside_sqrt=c.eps_inside_sqrt,
        weight_decay=c.weight_decay,
    )
)


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg) -> torch.optim.Optimizer:
    """The optimizer that cfg.name and cfg.impl name; impossible combinations raise ConfigError."""
    has_lecture = options.caps("optim", cfg.name).lecture
    if cfg.impl == "lecture":
        if not has_lecture:
            raise ConfigError(
                f"optim.impl=lecture: optim={cfg.name} has no lecture form; use optim.impl=torch, "
                f"or one of: {', '.join(options.with_cap('optim', 'lecture'))}"
            )
        return LECTURE.get(cfg.name)(params, cfg)
    if getattr(cfg, "eps_inside_sqrt", False):
        fix = "set optim.impl=lecture" if has_lecture else "use optim=adam optim.impl=lecture"
        raise ConfigError(
            f"optim.eps_inside_sqrt=true: torch.optim's {cfg.name} puts eps outside the root; "
            f"{fix} for the lecture's m_hat / sqrt(v_hat + eps)"
        )
    return OPTIMIZERS.get(cfg.name)(params, cfg)
