"""Optimizers (torch.optim, the lectures' forms, Newton's method) and learning-rate schedules by name."""

from dlrun.optim.build import LECTURE, OPTIMIZERS, build_optimizer
from dlrun.optim.schedules import SCHEDULES, build_scheduler, lr_factor

__all__ = ["LECTURE", "OPTIMIZERS", "SCHEDULES", "build_optimizer", "build_scheduler", "lr_factor"]
