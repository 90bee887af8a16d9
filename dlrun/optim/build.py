"""torch.optim optimizers by the names users type. Hyperparameter names follow the lectures."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from dlrun.registry import Registry

OPTIMIZERS: Registry = Registry("optim")
FULL_BATCH = {"gd"}  # these take one step per epoch on the whole train split


@OPTIMIZERS.register("gd")
def gd(params, cfg):
    """Gradient descent (full batch)."""
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("sgd")
def sgd(params, cfg):
    """Mini-batch stochastic gradient descent."""
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("momentum")
def momentum(params, cfg):
    """SGD with heavy-ball momentum: v = mu v + g, theta -= lr v (the lecture's form with alpha=lr, gamma=mu
    while lr is constant)."""
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("nesterov")
def nesterov(params, cfg):
    """SGD with Nesterov momentum."""
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adagrad")
def adagrad(params, cfg):
    """AdaGrad (eps outside the square root, as PyTorch)."""
    return torch.optim.Adagrad(params, lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("rmsprop")
def rmsprop(params, cfg):
    """RMSProp with G = gamma G + (1 - gamma) g^2 (PyTorch's alpha is the lecture's gamma)."""
    return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.gamma, eps=cfg.eps, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adam")
def adam(params, cfg):
    """Adam with bias correction; update m_hat / (sqrt(v_hat) + eps)."""
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(params, cfg):
    """Adam with decoupled weight decay."""
    return torch.optim.AdamW(
        params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay
    )


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(cfg.name)(params, cfg)
