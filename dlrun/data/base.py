"""Datasets as tensors on the device, with the task metadata models and losses need (no submodule imports)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from dlrun.registry import Registry

KINDS = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class Task:
    """What the data asks of a model: the head size, the loss and the metrics follow from it."""

    kind: str  # binary | multiclass | regression
    input_shape: tuple[int, ...]  # one example: (F,) tabular, (C, L) signal, (C, H, W) image
    input_kind: str = "tabular"  # tabular | signal | image: which models fit (conv and recurrent need order)
    n_classes: int = 0  # 0 for regression
    n_targets: int = 1  # regression outputs
    value_range: tuple[float, float] = (0.0, 1.0)  # min/max of the standardized train inputs
    class_names: tuple[str, ...] = ()
    soft_labels: bool = False  # classification against class probabilities: y is (N, n_classes), rows sum to 1
    masked: bool = False  # variable-length signals: the last channel is 1 on each example's steps, 0 on padding

    @property
    def is_classification(self) -> bool:
        return self.kind != "regression"


@dataclass
class Split:
    x: torch.Tensor  # (N, *input_shape), float32
    y: torch.Tensor  # (N,) int64 class labels, (N, n_classes) float32 soft labels, or (N, n_targets) float32 targets

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class Dataset:
    name: str
    task: Task
    train: Split
    val: Split
    test: Split
    # affine maps fitted on train (inputs and, for regression, targets): x_std = (x - mean) / std
    stats: dict[str, np.ndarray] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> Dataset:
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))

    def split(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


DATASETS: Registry = Registry("data")


def cache_dir() -> Path:
    """Where generated and downloaded data are kept: $DLRUN_DATA, else $XDG_CACHE_HOME/dlrun, else ~/.cache/dlrun."""
    if env := os.environ.get("DLRUN_DATA"):
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "dlrun"
