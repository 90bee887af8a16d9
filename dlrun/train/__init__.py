"""Training: the loop, run directories, checkpoints and logging."""

from dlrun.train.loop import Diverged, Setup, build, evaluate, fit, train

__all__ = ["Diverged", "Setup", "build", "evaluate", "fit", "train"]
