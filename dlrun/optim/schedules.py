"""Learning-rate schedules as pure functions of the step: lr_t = lr * lr_factor(cfg, t, total)."""

from __future__ import annotations

import math

import torch

from dlrun.registry import Registry

SCHEDULES: Registry = Registry("sched")


@SCHEDULES.register("constant")
def constant(cfg, t: int, total: int) -> float:
    """alpha_t = alpha_0."""
    return 1.0


SCHEDULES.register("warmup", "Linear warmup over warmup_steps, then constant")(constant)


@SCHEDULES.register("step")
def step(cfg, t: int, total: int) -> float:
    """alpha_t = alpha_0 * gamma^(number of milestones passed); milestones are fractions of total."""
    return cfg.gamma ** sum(t >= m * total for m in cfg.milestones)


@SCHEDULES.register("cosine")
def cosine(cfg, t: int, total: int) -> float:
    """alpha_t = alpha_0 (m + (1 - m) (1 + cos(pi t / total)) / 2), m = min_factor."""
    return cfg.min_factor + (1.0 - cfg.min_factor) * 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))


@SCHEDULES.register("inverse_time")
def inverse_time(cfg, t: int, total: int) -> float:
    """alpha_t = alpha_0 / (1 + k t) (Robbins-Monro)."""
    return 1.0 / (1.0 + cfg.k * t)


def lr_factor(cfg, t: int, total: int) -> float:
    """The schedule's factor at step t (0-based) of `total`, times a linear warmup if asked."""
    factor = SCHEDULES.get(cfg.name)(cfg, t, total)
    if cfg.warmup_steps > 0 and t < cfg.warmup_steps:
        factor *= (t + 1) / cfg.warmup_steps
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per optimizer step; state (the step count) is saved in checkpoints."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: lr_factor(cfg, t, total_steps))
