"""Learning-rate schedules as pure functions of the step: lr_t = lr * lr_factor(cfg, t, total).

sched=plateau is the exception: its factor also falls by `factor` each time the monitored metric has not
improved for `patience` evaluations (torch's ReduceLROnPlateau), so the schedule keeps that state, and
saves it in its state_dict.
"""

from __future__ import annotations

import math
from typing import Any

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


@SCHEDULES.register("onecycle")
def onecycle(cfg, t: int, total: int) -> float:
    """One cycle (Smith and Topin; torch's OneCycleLR without momentum cycling): from lr / div_factor up to lr over
    the first pct_start of the steps, then down to lr / (div_factor * final_div_factor)."""
    start, peak = 1.0 / cfg.div_factor, 1.0
    end = start / cfg.final_div_factor
    up = float(cfg.pct_start * total) - 1  # the step of the peak, as torch counts it
    if t <= up:
        return _anneal(cfg.anneal, start, peak, t / up)
    return _anneal(cfg.anneal, peak, end, (t - up) / (total - 1 - up))


def _anneal(how: str, start: float, end: float, pct: float) -> float:
    if how == "linear":
        return (end - start) * pct + start
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


SCHEDULES.register("plateau", "Multiply the lr by factor when the monitored metric stops improving")(constant)


def lr_factor(cfg, t: int, total: int) -> float:
    """The schedule's factor at step t (0-based) of `total`, times a linear warmup if asked."""
    factor = SCHEDULES.get(cfg.name)(cfg, t, total)
    if cfg.warmup_steps > 0 and t < cfg.warmup_steps:
        factor *= (t + 1) / cfg.warmup_steps
    return factor


class Plateau:
    """The reductions of sched=plateau, as torch's ReduceLROnPlateau counts them (threshold_mode=rel)."""

    def __init__(self, cfg, maximize: bool = False):
        self.cfg, self.maximize = cfg, maximize
        self.factor, self.best, self.bad, self.cooling = 1.0, None, 0, 0

    def observe(self, value: float) -> None:
        c = self.cfg
        better = self.best is None or (
            value > self.best * (1 + c.threshold) if self.maximize else value < self.best * (1 - c.threshold)
        )
        self.best, self.bad = (value, 0) if better else (self.best, self.bad + 1)
        if self.cooling > 0:
            self.cooling, self.bad = self.cooling - 1, 0
        if self.bad > c.patience:
            self.factor = max(self.factor * c.factor, c.min_factor)
            self.cooling, self.bad = c.cooldown, 0

    def state(self) -> dict[str, Any]:
        return {"factor": self.factor, "best": self.best, "bad": self.bad, "cooling": self.cooling}


class Schedule(torch.optim.lr_scheduler.LambdaLR):
    """lr_t = lr * lr_factor(cfg, t, total), times sched=plateau's reductions; stepped once per optimizer step.
    Its state (the step count, and plateau's reductions) is saved in checkpoints."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg, total_steps: int, maximize: bool = False):
        self.plateau = Plateau(cfg, maximize) if cfg.name == "plateau" else None
        reduced = self.plateau
        super().__init__(optimizer, lambda t: lr_factor(cfg, t, total_steps) * (reduced.factor if reduced else 1.0))

    def observe(self, value: float) -> None:
        """sched=plateau: an evaluation's monitored value; a reduction applies from the next step on."""
        if self.plateau is None:
            return
        self.plateau.observe(value)
        for group, base, fn in zip(self.optimizer.param_groups, self.base_lrs, self.lr_lambdas, strict=True):
            group["lr"] = base * fn(self.last_epoch)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.plateau is not None:
            state["plateau"] = self.plateau.state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        saved = state.pop("plateau", None)
        super().load_state_dict(state)
        if self.plateau is not None and saved:
            self.plateau.factor, self.plateau.best = saved["factor"], saved["best"]
            self.plateau.bad, self.plateau.cooling = saved["bad"], saved["cooling"]


def build_scheduler(optimizer: torch.optim.Optimizer, cfg, total_steps: int, maximize: bool = False) -> Schedule:
    """The schedule of cfg over total_steps; maximize: sched=plateau's monitor is an accuracy."""
    return Schedule(optimizer, cfg, total_steps, maximize)
