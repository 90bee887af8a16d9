"""Inverted dropout as the lecture writes it: drop each unit with probability p, scale survivors by 1/(1 - p).

The scaling keeps the expected activation unchanged, E[h * m / (1 - p)] = h, so evaluation needs no
rescaling and the module is the identity in eval mode.
"""

from __future__ import annotations

import torch
from torch import nn


class InvertedDropout(nn.Module):
    """h -> h * m / (1 - p), m ~ Bernoulli(1 - p) per unit and example, in training; h in evaluation."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability p={p} must be in [0, 1)")
        self.p = p

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return h
        keep = torch.empty_like(h).bernoulli_(1.0 - self.p)  # 1 keeps a unit, 0 drops it; same shape as h
        return h * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"
