"""Variable-length sequences: padded to one length L, with a mask channel that says which steps are the example's.

A signal of C channels and its own length l <= L becomes (C + 1, L): the C channels, zero after step l, and a
last channel that is 1 on the first l steps and 0 on the padding (Task.masked). model=rnn packs the sequences
(torch's pack_padded_sequence: each runs its own l steps) and model=transformer masks the padding out of
attention and of its mean, so a padded batch gives each example the output it gets alone. Other models read
the padding and the mask channel as features.

Sources: an .npz with a padded `x` (N, L) or (N, C, L), `y` and `lengths` (N,) (data=files), and the bundled
data=majority: sequences of +-1 values of odd lengths, labelled 1 when most of them are +1.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from dlrun.data.base import DATASETS, Dataset, Split
from dlrun.data.bundled import split_and_standardize
from dlrun.errors import ConfigError


def check_lengths(lengths: np.ndarray, n: int, steps: int, where: str) -> np.ndarray:
    if lengths.shape != (n,) or lengths.dtype.kind not in "iuf":
        raise ConfigError(
            f"{where}lengths has shape {lengths.shape} ({lengths.dtype}); "
            f"give one integer length per example, shape ({n},)"
        )
    if lengths.dtype.kind == "f" and not np.all(np.isfinite(lengths) & (lengths == np.round(lengths))):
        raise ConfigError(
            f"{where}lengths holds values that are not whole numbers; give each example's number of steps"
        )
    lengths = lengths.astype(np.int64)
    bad = np.flatnonzero((lengths < 1) | (lengths > steps))
    if len(bad):
        raise ConfigError(
            f"{where}lengths[{bad[0]}] = {lengths[bad[0]]}: each length must be 1 to {steps} (the padded length)"
        )
    return lengths


def with_mask(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(N, C, L) padded signals -> (N, C + 1, L): zeros after each length, then the mask channel."""
    steps = x.shape[-1]
    mask = (np.arange(steps)[None, :] < lengths[:, None]).astype(np.float64)  # (N, L)
    return np.concatenate([x * mask[:, None, :], mask[:, None, :]], axis=1)


def masked_dataset(name: str, x: np.ndarray, y: np.ndarray, lengths: np.ndarray, kind: str, cfg,
                   class_names: tuple[str, ...] = ()) -> Dataset:  # fmt: skip
    """Split as any data set; the channels standardized (data.standardize other than none: one mean and std per
    channel over the train split's real steps), the padding kept at 0 and the mask at 0 / 1."""
    x = x[:, None, :] if x.ndim == 2 else x
    data = split_and_standardize(name, with_mask(x, lengths), y, kind, dataclasses.replace(cfg, standardize="none"),
                                 None, class_names, "signal")  # fmt: skip
    train = data.train.x
    valid = train[:, -1:, :] > 0  # (N, 1, L)
    if cfg.standardize != "none":
        count = valid.sum(dim=(0, 2)).clamp_min(1)
        mean = (train[:, :-1] * valid).sum(dim=(0, 2)) / count
        std = (((train[:, :-1] - mean[None, :, None]) ** 2) * valid).sum(dim=(0, 2)).div(count).sqrt()
        std = torch.where(std > 1e-12, std, torch.ones_like(std))

        def scale(s: Split) -> Split:
            m = s.x[:, -1:, :]
            channels = (s.x[:, :-1] - mean[None, :, None]) / std[None, :, None] * m
            return Split(torch.cat([channels, m], dim=1), s.y)

        data = dataclasses.replace(data, train=scale(data.train), val=scale(data.val), test=scale(data.test))
        data.stats["x_mean"], data.stats["x_std"] = mean.numpy(), std.numpy()
    lo, hi = float(data.train.x[:, :-1].min()), float(data.train.x[:, :-1].max())
    return dataclasses.replace(data, task=dataclasses.replace(data.task, masked=True, value_range=(lo, hi)))


def majority_arrays(n: int, max_length: int, min_length: int, rng: np.random.Generator):
    """x (n, 1, max_length) of +-1 (zero-padded), y (n,): 1 when most steps are +1; odd lengths (no ties)."""
    odd = np.arange(min_length | 1, max_length + 1, 2)
    lengths = rng.choice(odd, size=n)
    x = rng.choice([-1.0, 1.0], size=(n, max_length)) * (np.arange(max_length)[None, :] < lengths[:, None])
    return x[:, None, :], (x.sum(axis=1) > 0).astype(np.int64), lengths


@DATASETS.register("majority", "Variable-length sequences of +-1 (odd lengths up to data.length): is most of it +1?")
def majority(cfg) -> Dataset:
    if cfg.min_length > cfg.length:
        raise ConfigError(f"data.min_length={cfg.min_length}: longer than data.length={cfg.length}, the longest")
    x, y, lengths = majority_arrays(cfg.n_samples, cfg.length, cfg.min_length, np.random.default_rng(cfg.seed))
    return masked_dataset("majority", x, y, lengths, "binary", cfg, ("minus", "plus"))
