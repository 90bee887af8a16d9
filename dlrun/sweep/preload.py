"""Imported once by the warm-trial server (see warm.py): what every trial would import again.

Imports only: no tensor is made and no thread starts here, so the server forks safely.
"""

import optuna  # noqa: F401
import torch  # noqa: F401
import torch._dynamo  # noqa: F401  (the first optimizer imports it: about 1 s)
import torch.utils.tensorboard  # noqa: F401

import dlrun.config  # noqa: F401
import dlrun.data  # noqa: F401
import dlrun.sweep.study  # noqa: F401
import dlrun.sweep.trial  # noqa: F401
import dlrun.train  # noqa: F401
import dlrun.train.vector  # noqa: F401

try:  # an uncached bundled set loads through scikit-learn
    import sklearn.datasets  # noqa: F401
except ImportError:
    pass
