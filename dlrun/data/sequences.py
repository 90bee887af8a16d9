"""Synthetic sequence tasks for recurrent networks: the adding problem, parity and next-value prediction of sines.

Every example is a signal (C, L) (input_kind "signal"): L time steps of C features, the way model=rnn
reads it. All three are generated with numpy's default_rng(cfg.seed), `cfg.n_samples` examples of
`cfg.length` steps, then split and standardized by `split_and_standardize`.

adding   (Hochreiter and Schmidhuber 1997) x (2, L): row 0 holds values uniform in [0, 1], row 1 a
         marker that is 1 at exactly two steps, one uniform in the first half [0, L // 2) and one in
         the second half [L // 2, L), 0 elsewhere. Target: the sum of the two marked values (in
         [0, 2], mean 1, variance 1/6); regression with 1 target.
parity   x (1, L): bits 0/1; label: their XOR (1 when the number of ones is odd); binary. When
         n_samples <= 2^L the bit strings are distinct, so val and test hold strings that train
         never saw; otherwise (more examples than strings) they are drawn with replacement.
sines    x (1, L): x_t = sin(2 pi f t + phi) + noise * N(0, 1) for t = 0 ... L - 1, with f uniform in
         [1 / L, 3 / L] cycles per step (1 to 3 periods over the window) and phi uniform in [0, 2 pi).
         Target: the noise-free next value sin(2 pi f L + phi); regression with 1 target.
"""

from __future__ import annotations

import numpy as np

from dlrun.data.base import DATASETS, Dataset
from dlrun.data.bundled import split_and_standardize

SINE_PERIODS = (1.0, 3.0)  # periods over the window of L steps: f uniform in [1 / L, 3 / L] cycles per step


def adding_arrays(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """x (n, 2, length): values and markers; y (n,): the sum of the two marked values."""
    values = rng.uniform(0.0, 1.0, size=(n, length))
    half = length // 2
    first = rng.integers(0, half, size=n)  # one marker in [0, half)
    second = rng.integers(half, length, size=n)  # one in [half, length)
    rows = np.arange(n)
    markers = np.zeros((n, length))
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return np.stack([values, markers], axis=1), y


def parity_arrays(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """x (n, 1, length): bits 0/1, distinct strings when n <= 2^length; y (n,): their XOR (int64)."""
    if length < 63 and n <= 2**length:  # distinct strings: sample integers without replacement
        codes = rng.choice(2**length, size=n, replace=False)
        bits = (codes[:, None] >> np.arange(length - 1, -1, -1)) & 1  # most significant bit first
    else:  # more examples than strings (duplicates unavoidable), or so many strings that repeats are negligible
        bits = rng.integers(0, 2, size=(n, length))
    y = bits.sum(axis=1) % 2
    return bits[:, None, :].astype(np.float64), y.astype(np.int64)


def sines_arrays(n: int, length: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """x (n, 1, length): noisy windows of sin(2 pi f t + phi); y (n,): the noise-free value at t = length."""
    lo, hi = SINE_PERIODS
    f = rng.uniform(lo / length, hi / length, size=(n, 1))  # cycles per step
    phi = rng.uniform(0.0, 2.0 * np.pi, size=(n, 1))
    t = np.arange(length + 1)[None, :]
    clean = np.sin(2.0 * np.pi * f * t + phi)  # (n, length + 1): the window and the next value
    x = clean[:, :length] + noise * rng.standard_normal((n, length))
    return x[:, None, :], clean[:, length]


@DATASETS.register("adding", "Adding problem: sum of the 2 marked values in a sequence, regression")
def adding(cfg) -> Dataset:
    x, y = adding_arrays(cfg.n_samples, cfg.length, np.random.default_rng(cfg.seed))
    return split_and_standardize("adding", x, y, "regression", cfg, (2, cfg.length), input_kind="signal")


@DATASETS.register("parity", "Parity (XOR) of a bit string, binary")
def parity(cfg) -> Dataset:
    x, y = parity_arrays(cfg.n_samples, cfg.length, np.random.default_rng(cfg.seed))
    return split_and_standardize("parity", x, y, "binary", cfg, (1, cfg.length), ("even", "odd"), "signal")


@DATASETS.register("sines", "Next value of a noisy sine of random frequency and phase, regression")
def sines(cfg) -> Dataset:
    x, y = sines_arrays(cfg.n_samples, cfg.length, cfg.noise, np.random.default_rng(cfg.seed))
    return split_and_standardize("sines", x, y, "regression", cfg, (1, cfg.length), input_kind="signal")
