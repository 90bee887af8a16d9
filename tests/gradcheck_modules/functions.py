"""Factories for `dlrun gradcheck --module tests/gradcheck_modules/functions.py:NAME`.

Each factory returns (nn.Module or torch.autograd.Function subclass, example input). The `wrong_*`
twins have a deliberately wrong backward; the others are correct.
"""

import torch
from torch import nn


class TanhMatmul(torch.autograd.Function):
    """y = tanh(x w): x (B, n), w (n, m). dL/dx = (g (1 - y^2)) w^T, dL/dw = x^T (g (1 - y^2))."""

    @staticmethod
    def forward(ctx, x, w):
        y = torch.tanh(x @ w)
        ctx.save_for_backward(x, w, y)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, w, y = ctx.saved_tensors
        grad_z = grad_y * (1 - y * y)
        return grad_z @ w.T, x.T @ grad_z


class WrongTanhMatmul(torch.autograd.Function):
    """The same forward; the gradient for w forgets tanh's derivative (1 - y^2)."""

    @staticmethod
    def forward(ctx, x, w):
        y = torch.tanh(x @ w)
        ctx.save_for_backward(x, w, y)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, w, y = ctx.saved_tensors
        grad_z = grad_y * (1 - y * y)
        return grad_z @ w.T, x.T @ grad_y  # wrong: should be x.T @ grad_z


class TanhLayer(nn.Module):
    """A layer whose weight goes through a custom Function."""

    def __init__(self, function, n_in: int = 4, n_out: int = 3):
        super().__init__()
        self.function = function
        self.weight = nn.Parameter(torch.randn(n_in, n_out))

    def forward(self, x):
        return self.function.apply(x, self.weight)


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)


def function():
    return TanhMatmul, _inputs()


def wrong_function():
    return WrongTanhMatmul, _inputs()


def layer():
    torch.manual_seed(0)
    return TanhLayer(TanhMatmul), _inputs()[0]


def wrong_layer():
    torch.manual_seed(0)
    return TanhLayer(WrongTanhMatmul), _inputs()[0]


def relu_on_the_edge():
    """A ReLU whose first pre-activation sits 1e-8 above its kink: a step of 1e-6 crosses it."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
        net[0].bias.copy_(torch.tensor([1e-8, 0.2]))
    return net, torch.tensor([[0.0, 1.0]])


def embedding():
    """Integer inputs (indices) have no derivative: only the table's gradient is checked."""
    torch.manual_seed(0)
    return nn.Embedding(6, 3), torch.tensor([[0, 2], [5, 1]])


def not_a_pair():
    return TanhMatmul


def not_a_module():
    return "tanh", torch.zeros(2)


def not_a_tensor():
    return TanhMatmul, [1.0, 2.0]


class WrongShape(torch.autograd.Function):
    """A backward that returns a gradient of the wrong shape."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return grad.sum(0)


def wrong_shape():
    return WrongShape, torch.ones(3, 2)
