"""Calibration: do a classifier's confidences mean what they say? The reliability diagram and the expected
calibration error (Guo et al. 2017): examples binned by the confidence of their predicted class,

    ECE = sum_b (n_b / N) |acc_b - conf_b|,

with acc_b the accuracy and conf_b the mean confidence of the examples in bin b (equal-width bins on
[0, 1]). A bar below the diagonal is overconfidence: confident mistakes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlrun.viz.load import predict


@dataclass
class Reliability:
    edges: np.ndarray  # (B + 1,) bin edges on [0, 1]
    count: np.ndarray  # (B,) examples per bin
    accuracy: np.ndarray  # (B,) accuracy per bin (nan where empty)
    confidence: np.ndarray  # (B,) mean confidence per bin (nan where empty)
    ece: float
    n: int


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> Reliability:
    """Bin (confidence, correct) pairs; the last bin holds confidence 1 too."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore"):
        accuracy = np.bincount(which, weights=correct.astype(float), minlength=bins) / count
        mean_conf = np.bincount(which, weights=confidence, minlength=bins) / count
    n = len(confidence)
    ece = float(np.nansum(count / max(n, 1) * np.abs(accuracy - mean_conf)))
    return Reliability(edges, count, accuracy, mean_conf, ece, n)


def of_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bins: int = 15) -> Reliability:
    pred, probs = predict(model, x)
    confidence = probs.max(-1).values.cpu().numpy().astype(np.float64)
    return reliability(confidence, (pred == y).cpu().numpy(), bins)


def plot_reliability(r: Reliability, title: str):
    """Left: accuracy per confidence bin against the diagonal (gaps shaded); right: how many examples per bin."""
    from dlrun.viz.picture import figure

    fig = figure(10.0, 4.4)
    ax, hist = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    centers, width = (r.edges[:-1] + r.edges[1:]) / 2, np.diff(r.edges)
    full = r.count > 0
    ax.bar(centers[full], r.accuracy[full], width[full], color="#8fb3d9", edgecolor="#3b6ea5", label="accuracy")
    gap_low = np.minimum(r.accuracy, r.confidence)[full]
    gap = np.abs(r.accuracy - r.confidence)[full]
    ax.bar(centers[full], gap, width[full], bottom=gap_low, color="#e07b7b", alpha=0.45, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence of the predicted class")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"ECE {r.ece:.4f} over {r.n} examples", fontsize=10)
    hist.bar(centers, r.count, width, color="#999999")
    hist.set_xlim(0, 1)
    hist.set_xlabel("confidence")
    hist.set_ylabel("examples")
    hist.set_yscale("log" if r.count.max() > 50 * max(np.median(r.count[full]), 1) else "linear")
    fig.suptitle(title, fontsize=11)
    return fig
