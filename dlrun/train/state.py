"""What every run carries through the loop: its TrainState, the signals that stop it, and how it fails."""

from __future__ import annotations

import errno
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dlrun.errors import RunFailed
from dlrun.files import write_error


class Diverged(RunFailed):
    """The loss became NaN or infinite."""


@dataclass
class TrainState:
    step: int = 0
    best_value: float | None = None
    best_step: int = -1
    bad_evals: int = 0  # evaluations without improvement, for early stopping
    stop: str = ""  # why the loop ended early: early_stop, interrupted, pruned (a callback's reason)
    asked: str = ""  # under torchrun: a signal's stop, agreed between the ranks at the next log step
    last_eval: dict[str, float] = field(default_factory=dict)
    last_train_loss: float = float("nan")
    samples: int = 0  # examples trained on, over every process of the run (for samples/s)
    updates: int = -1  # trainer.stop_at_zero_loss: steps whose loss was not zero (the perceptron's updates)
    train_time: float = 0.0  # seconds spent in fit, over every process of the run
    wall_before: float = 0.0  # wall seconds of the run's earlier processes (before a resume)
    wall_start: float = field(default_factory=time.time)  # when this process started the run
    best_weights: dict[str, torch.Tensor] | None = None  # in memory; written to best.pt with `last`
    last_save: float = field(default_factory=time.perf_counter)

    def load(self, saved: dict[str, Any]) -> None:
        """The state a checkpoint saved with as_dict()."""
        self.step, self.best_value = saved["step"], saved["best_value"]
        self.best_step, self.bad_evals = saved["best_step"], saved["bad_evals"]
        self.last_eval = dict(saved["last_eval"])
        self.samples, self.train_time, self.wall_before = saved["samples"], saved["train_time"], saved["wall_time"]
        self.updates = int(saved.get("updates", -1))

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "updates": self.updates,
            "train_time": self.train_time,
            "wall_time": self.wall_before + time.time() - self.wall_start,
            "step": self.step,
            "best_value": self.best_value,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "last_eval": dict(self.last_eval),
        }


@contextmanager
def stop_on_signal(state: TrainState, defer: bool = False):
    """First Ctrl-C (or SIGTERM) asks the loop to stop after the current step; a second one aborts.
    defer (torchrun): the ranks stop together, at the first log step after the signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    seen: set[int] = set()

    def handler(signum, frame):
        # under torchrun a Ctrl-C reaches the ranks and then torchrun's SIGTERM: only the same signal twice aborts
        if state.stop == "interrupted" and not defer or signum in seen:
            raise KeyboardInterrupt
        seen.add(signum)
        if defer:
            state.asked = "interrupted"
        else:
            state.stop = "interrupted"

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


# what a write fails with mid-run: a full disk or quota, a folder made read-only, a failing device
WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG)


def write_failed(e: OSError, run_dir: Path, dirs: list[Path] | None = None) -> str:
    """One line for a write that failed mid-run: which file, why, and that the last checkpoint still stands.
    run_dir: what a resume names (a run, or a group's folder); dirs: the runs whose checkpoints count."""
    if e.filename is None:  # a line-buffered metrics.jsonl write says no file name
        e.filename = str(run_dir)
    what, fix = write_error(e)
    if not any((d / "checkpoints" / "last.pt").is_file() for d in dirs or [run_dir]):
        return f"{what}; the run stopped before its first checkpoint: {fix} and train it again"
    return f"{what}; the run stopped, its last checkpoint is intact: {fix}, then `dlrun train resume={run_dir}`"
