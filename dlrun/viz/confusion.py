"""Confusion matrix on the test split: C[i, j] = number of test examples of class i predicted as j."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dlrun.viz.load import predict


def confusion_matrix(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_classes: int) -> np.ndarray:
    """(K, K) counts, rows = true class, columns = predicted class."""
    pred = predict(model, x)[0]
    counts = torch.bincount(y * n_classes + pred, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).cpu().numpy()


def plot_confusion(matrix: np.ndarray, task, title: str = ""):
    """Cells colored by the fraction of their row (recall per class), annotated with the counts."""
    from dlrun.viz.picture import class_name, figure

    k = len(matrix)
    names = [class_name(task, c) for c in range(k)]
    rows = matrix.sum(1, keepdims=True)
    fraction = matrix / np.maximum(rows, 1)
    size = min(max(4.5, 0.4 * k + 2.5), 12.0)
    fig = figure(size + 1.0, size)
    ax = fig.subplots()
    image = ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.85, label="fraction of the true class")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    color = "white" if fraction[i, j] > 0.6 else "black"
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(k), names, rotation=90 if max(map(len, names)) > 3 else 0, fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(
        title or f"Confusion matrix, test split ({matrix.sum()} examples, accuracy {accuracy:.3f})", fontsize=10
    )
    return fig
