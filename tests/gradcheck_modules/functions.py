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


class ScaledTanhMatmul(torch.autograd.Function):
    """TanhMatmul whose backward scales both gradients by `factor`: 1.0025 is a 0.25% error (relative error
    0.0025 / 1.0025 = 2.49e-3), inside CS231n's "suspicious" band, yet wrong on a smooth float64 objective."""

    factor = 1.0025

    @staticmethod
    def forward(ctx, x, w):
        return TanhMatmul.forward(ctx, x, w)

    @classmethod
    def backward(cls, ctx, grad_y):
        return tuple(cls.factor * g for g in TanhMatmul.backward(ctx, grad_y))


class UnscaledTanhMatmul(ScaledTanhMatmul):
    """The correct twin: the same code with factor 1."""

    factor = 1.0


def quarter_percent_off():
    return ScaledTanhMatmul, _inputs()


def quarter_percent_twin():
    return UnscaledTanhMatmul, _inputs()


def quarter_percent_off_layer():
    torch.manual_seed(0)
    return TanhLayer(ScaledTanhMatmul), _inputs()[0]


def quarter_percent_twin_layer():
    torch.manual_seed(0)
    return TanhLayer(UnscaledTanhMatmul), _inputs()[0]


class Float32Layer(nn.Module):
    """tanh(x W + b) computed in float32 inside a float64 check: rounding noise of about 1e-7 |f| per evaluation."""

    def __init__(self, scale_grad: float = 1.0):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.scale_grad = scale_grad

    def forward(self, x):
        w, b = self.linear.weight.float(), self.linear.bias.float()
        z = ScaleGrad.apply(x.float() @ w.T + b, self.scale_grad)
        return torch.tanh(z)


class ScaleGrad(torch.autograd.Function):
    """The identity whose backward scales the gradient (by 1: correct)."""

    @staticmethod
    def forward(ctx, z, factor):
        ctx.factor = factor
        return z.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


def float32_layer():
    torch.manual_seed(0)
    return Float32Layer(), _inputs()[0]


def float32_wrong_layer():
    torch.manual_seed(0)
    return Float32Layer(scale_grad=1.5), _inputs()[0]


def float32_quarter_percent_off():
    torch.manual_seed(0)
    return Float32Layer(scale_grad=1.0025), _inputs()[0]


def relu_smooth_on_top():
    """relu_on_the_edge with tanh on top: curvature, so a one-sided difference errs by O(h)."""
    net, x = relu_on_the_edge()
    return nn.Sequential(*net, nn.Tanh()), x


def exits():
    import sys

    sys.exit(0)


class ExitsInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        import sys

        sys.exit(0)


def exits_in_backward():
    return ExitsInBackward, torch.ones(3)


def nan_input():
    x, w = _inputs()
    x[1, 2] = float("nan")
    return TanhMatmul, (x, w)


class Log(nn.Module):
    def forward(self, x):
        return torch.log(x)


def nan_output():
    """A log of a negative entry: the objective is NaN at the example point."""
    return Log(), torch.tensor([1.0, -1.0])


class OneBadCoordinate(torch.autograd.Function):
    """x * w elementwise, whose backward for w is off by 1% at one coordinate of 200."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x)
        return x * w

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        grad_w = grad * x
        grad_w[BAD] *= 1.01
        return None, grad_w


BAD = 150


def one_bad_coordinate():
    """An integer x (not checked) and w (200 coordinates: torch.autograd.gradcheck checks all of them)."""
    g = torch.Generator().manual_seed(0)
    return OneBadCoordinate, (torch.randint(1, 4, (200,), generator=g), torch.randn(200, generator=g))
