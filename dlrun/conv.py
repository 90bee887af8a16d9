"""1-D convolution as the slides compute it (`dlrun conv`): each output a window of the signal times the kernel,
y_i = sum_k w_k x_(i S + k) over the zero-padded signal (deep learning's convolution, a cross-correlation: the
kernel is not flipped), M = (N - F + 2P) / S + 1 outputs. The same outputs two ways as one matrix product:

- filter as Toeplitz matrix: y = T x_pad, row i of T holds the kernel at columns i S .. i S + F - 1;
- data as matrix (im2col): y = X w, row i of X is the i-th window of x_pad.

Checked against torch.nn.functional.conv1d in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlrun.errors import ConfigError

MAX_LENGTH = 10_000


@dataclass
class Output:
    i: int  # 1-based, as the slides number outputs
    window: list[float]  # x_pad[i S : i S + F]
    value: float


def output_size(n: int, f: int, s: int, p: int) -> int:
    """M = (N - F + 2P) / S + 1, rounded down as PyTorch does (model=cnn's sizes and `dlrun summary` use it too)."""
    return (n - f + 2 * p) // s + 1


def numbers(text: str, key: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ConfigError(f"{key} {text}: give comma-separated numbers, e.g. {key} 1,0,-1") from None
    if not values or len(values) > MAX_LENGTH or not all(np.isfinite(values)):
        raise ConfigError(f"{key} {text}: give 1 to {MAX_LENGTH:,} finite numbers")
    return values


def padded(signal: list[float], padding: int) -> np.ndarray:
    return np.pad(np.asarray(signal, dtype=np.float64), padding)


def check(signal: list[float], kernel: list[float], padding: int, stride: int) -> int:
    """M, the number of outputs; a ConfigError when the kernel is longer than the padded signal."""
    if padding < 0 or stride < 1:
        raise ConfigError(f"--padding {padding} --stride {stride}: give padding >= 0 and stride >= 1")
    n, f = len(signal), len(kernel)
    if f > n + 2 * padding:
        raise ConfigError(
            f"--kernel: {f} values, longer than the padded signal ({n} + 2*{padding}); "
            "give a shorter kernel or more padding"
        )
    return output_size(n, f, stride, padding)


def convolve(signal: list[float], kernel: list[float], padding: int = 0, stride: int = 1) -> list[Output]:
    m, x, f = check(signal, kernel, padding, stride), padded(signal, padding), len(kernel)
    w = np.asarray(kernel, dtype=np.float64)
    return [
        Output(i + 1, x[i * stride : i * stride + f].tolist(), float(x[i * stride : i * stride + f] @ w))
        for i in range(m)
    ]


def toeplitz(kernel: list[float], n: int, padding: int = 0, stride: int = 1) -> np.ndarray:
    """T (M x (N + 2P)) with y = T x_pad: the filter as a banded (Toeplitz) matrix."""
    f = len(kernel)
    m = output_size(n, f, stride, padding)
    t = np.zeros((m, n + 2 * padding))
    for i in range(m):
        t[i, i * stride : i * stride + f] = kernel
    return t


def im2col(signal: list[float], f: int, padding: int = 0, stride: int = 1) -> np.ndarray:
    """X (M x F) with y = X w: row i is the i-th window of the padded signal."""
    x = padded(signal, padding)
    m = output_size(len(signal), f, stride, padding)
    return np.stack([x[i * stride : i * stride + f] for i in range(m)])
