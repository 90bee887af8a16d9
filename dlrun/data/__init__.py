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
    from dlrun.data import bundled, files, images, mnist1d, sequences, varlen  # noqa: F401  (they register their sets)
    from dlrun.errors import ConfigError

    builder = DATASETS.get(cfg.name)
    data = builder(cfg)
    if not isinstance(data, Dataset):  # a plugin's dataset function that forgot to return its data
        raise ConfigError(
            f"data={cfg.name}: its dataset function returned {type(data).__name__}, not a dlrun Dataset; "
            "return one (dlrun.data.bundled.split_and_standardize makes it from arrays)"
        )
    data = subset(data, getattr(cfg, "n_train", 0), getattr(cfg, "seed", 0)) if getattr(cfg, "n_train", 0) else data
    return inputs_as_targets(data) if getattr(cfg, "targets", "labels") == "inputs" else data


def inputs_as_targets(data: Dataset) -> Dataset:
    """data.targets=inputs: every example's target is its own (standardized) input, flattened: a regression of
    prod(input_shape) targets, what an autoencoder learns to reconstruct."""
    from dataclasses import replace
    from math import prod

    def own(split: Split) -> Split:
        return Split(split.x, split.x.flatten(1).clone())

    task = replace(data.task, kind="regression", n_classes=0, n_targets=prod(data.task.input_shape),
                   class_names=(), soft_labels=False)  # fmt: skip
    return replace(data, task=task, train=own(data.train), val=own(data.val), test=own(data.test))


def subset(data: Dataset, n: int, seed: int) -> Dataset:
    """The dataset with a seeded subset of n train examples, stratified by class for classification (each
    class keeps its share); val, test and the standardization fitted on the whole train split stay as they are."""
    from dataclasses import replace

    import numpy as np
    import torch
    from sklearn.model_selection import train_test_split

    from dlrun.errors import ConfigError

    total = len(data.train)
    if n >= total:
        raise ConfigError(f"data.n_train={n}: the train split of data={data.name} has {total:,} examples; give fewer")
    y = data.train.y.cpu().numpy()
    y = y.argmax(1) if data.task.soft_labels else y  # soft labels: stratified by the most likely class
    classes = data.task.kind != "regression"
    if classes and n < len(np.unique(y)):
        raise ConfigError(f"data.n_train={n}: fewer than the {len(np.unique(y))} classes; give at least one per class")
    try:
        keep, _ = train_test_split(np.arange(total), train_size=n, stratify=y if classes else None, random_state=seed)
    except ValueError:  # a class with a single example cannot be split by class: a plain seeded sample
        keep, _ = train_test_split(np.arange(total), train_size=n, random_state=seed)
    idx = torch.as_tensor(np.sort(keep), device=data.train.x.device)
    return replace(data, train=Split(data.train.x[idx], data.train.y[idx]))
