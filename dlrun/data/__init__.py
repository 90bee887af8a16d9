"""Datasets as tensors on the training device, with the task metadata models and losses need.

data = build(cfg.data)          # a Dataset: train / val / test splits + task
data = data.to("cuda")          # small sets live on the device, batched by index
"""

from __future__ import annotations

from dlrun.data import augment
from dlrun.data.base import DATASETS, KINDS, Dataset, Split, Task, cache_dir

__all__ = ["DATASETS", "KINDS", "Dataset", "Split", "Task", "augment", "build", "cache_dir"]


def build(cfg) -> Dataset:
    """The dataset named by `cfg.name` (a DataConfig), split and standardized."""
    from dlrun.data import bundled, files, images, mnist1d, sequences  # noqa: F401  (they register their sets)

    return DATASETS.get(cfg.name)(cfg)
