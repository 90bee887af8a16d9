"""Training: one run lifecycle for a single run, a vectorized group and a torchrun job; run directories,
checkpoints and logging.

The package can be called as its `train` function, so that `from dlrun import train; train(cfg)` works
(`dlrun.train` is both this package and, called, dlrun.train.train).
"""

import sys
import types

from dlrun.train.loop import Diverged, Setup, build, evaluate, fit, train
from dlrun.train.state import TrainState

__all__ = ["Diverged", "Setup", "TrainState", "build", "evaluate", "fit", "train"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        """dlrun.train.train(cfg, callbacks=(), overrides=None, run_dir=None): see dlrun/train/loop.py."""
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
