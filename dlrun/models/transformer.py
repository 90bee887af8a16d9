"""A Transformer encoder for sequences (Vaswani et al. 2017): a signal (C, L) is L tokens of C features, an
image (C, H, W) is H tokens (its rows, as model=rnn reads it) of C*W features.

    tokens -> Linear to d_model -> + positions -> [self-attention, feed-forward] * layers -> readout -> Linear

Each layer is PyTorch's nn.TransformerEncoderLayer: multi-head self-attention softmax(Q K^T / sqrt(d_k)) V over
`heads` heads, then a two-layer ReLU feed-forward block of width `ff`, each with a residual connection and layer
norm (after it, as in the paper, or before it with norm_first). Positions are learned vectors, fixed sinusoids,
or none, in which case the encoder is blind to order: with the mean readout its output does not change when
the tokens are permuted. The readout is the mean over tokens or a learned class token prepended (cls).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dlrun.models.rnn import sequence_shape, to_sequence


def sinusoids(steps: int, d: int) -> torch.Tensor:
    """PE(t, 2i) = sin(t / 10000^(2i/d)), PE(t, 2i+1) = cos(t / 10000^(2i/d)): (steps, d)."""
    t = torch.arange(steps, dtype=torch.float32)[:, None]
    rate = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float32) / d)
    pe = torch.zeros(steps, d)
    pe[:, 0::2] = torch.sin(t * rate)
    pe[:, 1::2] = torch.cos(t * rate)[:, : d // 2]
    return pe


class Transformer(nn.Module):
    def __init__(self, cfg, input_shape: tuple[int, ...], out_features: int, masked: bool = False):
        super().__init__()
        steps, features = sequence_shape(tuple(input_shape))
        self.masked = masked  # variable-length signals: the last feature marks the example's steps
        features -= int(masked)
        d, self.readout = cfg.d_model, cfg.readout
        self.embed = nn.Linear(features, d)
        tokens = steps + (cfg.readout == "cls")
        if cfg.positions == "learned":
            self.position = nn.Parameter(torch.randn(1, tokens, d) * 0.02)
        else:
            self.register_buffer("position", sinusoids(tokens, d)[None] if cfg.positions == "sinusoidal" else None)
        self.cls = nn.Parameter(torch.zeros(1, 1, d)) if cfg.readout == "cls" else None
        layer = nn.TransformerEncoderLayer(
            d, cfg.heads, cfg.ff, cfg.dropout, batch_first=True, norm_first=cfg.norm_first
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d) if cfg.norm_first else nn.Identity()  # pre-norm ends with one more norm
        self.out = nn.Linear(d, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = to_sequence(x)  # (B, T, F)
        keep = None
        if self.masked:  # padding is masked out of attention and of the mean
            seq, keep = seq[..., :-1], seq[..., -1] > 0  # keep: (B, T)
        h = self.embed(seq)  # (B, T, d)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1)
            keep = torch.cat([keep.new_ones(len(h), 1), keep], dim=1) if keep is not None else None
        if self.position is not None:
            h = h + self.position
        h = self.norm(self.encoder(h, src_key_padding_mask=~keep if keep is not None else None))
        if self.cls is not None:
            return self.out(h[:, 0])
        if keep is None:
            return self.out(h.mean(dim=1))
        w = keep.to(h.dtype)[..., None]
        return self.out((h * w).sum(dim=1) / w.sum(dim=1))


def build_transformer(cfg, input_shape: tuple[int, ...], out_features: int, masked: bool = False) -> Transformer:
    """Transformer encoder over the steps of a signal or the rows of an image, then a linear head."""
    return Transformer(cfg, input_shape, out_features, masked)
