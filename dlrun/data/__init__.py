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
    from dlrun.errors import ConfigError

    builder = DATASETS.get(cfg.name)
    data = builder(cfg)
    if not isinstance(data, Dataset):  # a plugin's dataset function that forgot to return its data
        raise ConfigError(
            f"data={cfg.name}: its dataset function returned {type(data).__name__}, not a dlrun Dataset; "
            "return one (dlrun.data.bundled.split_and_standardize makes it from arrays)"
        )
    return data
