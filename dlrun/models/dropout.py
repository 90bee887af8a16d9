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
        # a mask given from outside instead of a fresh draw: a vectorized group (dlrun/train/vector.py)
        # draws each member's masks from that member's own RNG state and passes them in here
        self.register_buffer("keep", None, persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return h
        keep = self.keep if self.keep is not None else draw_mask(h.shape, self.p, h.dtype, h.device)
        return h * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def draw_mask(shape, p: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """m ~ Bernoulli(1 - p) per unit: 1 keeps a unit, 0 drops it (one draw from the device's global RNG)."""
    return torch.empty(shape, dtype=dtype, device=device).bernoulli_(1.0 - p)
