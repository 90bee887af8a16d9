"""The hooks a callback may implement: a progress view, a sweep's pruner, a user's plugin.

They mean the same for a single run and for a vectorized group (whose values are the mean over its
running members). A callback implements any of them; `Callback` gives the rest as no-ops, and a
plain object with only some of these methods works as well.

    on_start(info)                     before the first step: total_steps, step, run_dir, params, ...
    on_log(step, scalars)              every trainer.log_every steps: train/loss, lr, grad/norm, ...
    on_eval(step, epoch, metrics)      after each evaluation; a returned reason ("pruned") ends the run
    on_eval_members(step, results)     a group's evaluation, {member index: metrics}; returns the
                                       indices of the members to end (a sweep's pruner ends a trial's seeds)
    on_end(summary)                    after the summary is written
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

HOOKS = ("on_start", "on_log", "on_eval", "on_eval_members", "on_end")


class Callback:
    """Base with every hook a no-op."""

    def on_start(self, info: dict[str, Any]) -> None:
        return None

    def on_log(self, step: int, scalars: dict[str, float]) -> None:
        return None

    def on_eval(self, step: int, epoch: float, metrics: dict[str, float]) -> str | None:
        return None

    def on_eval_members(self, step: int, results: dict[int, dict[str, float]]) -> list[int] | None:
        return None

    def on_end(self, summary: Any) -> None:
        return None


class Callbacks:
    """The callbacks of one training, each hook looked up once: hooks.log(step, scalars) calls every on_log."""

    def __init__(self, callbacks: Iterable[Any] = ()):
        self.callbacks = list(callbacks)
        self._hooks = {name: [getattr(cb, name) for cb in self.callbacks if hasattr(cb, name)] for name in HOOKS}

    def start(self, info: dict[str, Any]) -> None:
        for hook in self._hooks["on_start"]:
            hook(info)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for hook in self._hooks["on_log"]:
            hook(step, scalars)

    def eval(self, step: int, epoch: float, metrics: dict[str, float]) -> str | None:
        """Every on_eval; the last reason given to stop, or None."""
        reason = None
        for hook in self._hooks["on_eval"]:
            reason = hook(step, epoch, metrics) or reason
        return reason

    def eval_members(self, step: int, results: dict[int, dict[str, float]]) -> set[int]:
        ended: set[int] = set()
        for hook in self._hooks["on_eval_members"]:
            ended |= set(hook(step, results) or ())
        return ended

    def end(self, summary: Any) -> None:
        for hook in self._hooks["on_end"]:
            hook(summary)
