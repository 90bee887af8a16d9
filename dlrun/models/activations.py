"""Activation functions by the names the lectures use."""

from __future__ import annotations

import torch
from torch import nn

from dlrun.registry import Registry


class _HeavisideFn(torch.autograd.Function):
    """H(z) = 1 if z > 0 else 0. Its derivative is 0 wherever it exists, so backward returns 0."""

    @staticmethod
    def forward(ctx, z):
        return (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        return torch.zeros_like(grad_out)  # dH/dz = 0 almost everywhere: nothing below learns


class Step(nn.Module):
    """The Heaviside step of the perceptron; forward only (its gradient is zero)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _HeavisideFn.apply(z)


class _SignFn(torch.autograd.Function):
    """sgn(z) = +1 if z >= 0 else -1, the threshold unit of the perceptron and ADALINE. Its derivative is 0
    wherever it exists, so backward returns 0."""

    @staticmethod
    def forward(ctx, z):
        return torch.where(z >= 0, 1.0, -1.0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        return torch.zeros_like(grad_out)


class Sign(nn.Module):
    """The sign unit (+1 / -1); forward only (its gradient is zero)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _SignFn.apply(z)


ACTIVATIONS: Registry = Registry("model.activation")
ACTIVATIONS.register("identity", "g(z) = z")(nn.Identity)
ACTIVATIONS.register("step", "Heaviside step (zero gradient: cannot be trained by gradients)")(Step)
ACTIVATIONS.register("sign", "+1 if z >= 0 else -1 (zero gradient: cannot be trained by gradients)")(Sign)
ACTIVATIONS.register("sigmoid", "1 / (1 + exp(-z))")(nn.Sigmoid)
ACTIVATIONS.register("tanh", "tanh(z)")(nn.Tanh)
ACTIVATIONS.register("relu", "max(0, z)")(nn.ReLU)
ACTIVATIONS.register("leaky_relu", "max(0.01 z, z)")(nn.LeakyReLU)
ACTIVATIONS.register("elu", "z if z > 0 else exp(z) - 1")(nn.ELU)
ACTIVATIONS.register("softplus", "log(1 + exp(z))")(nn.Softplus)
ACTIVATIONS.register("gelu", "z * Phi(z)")(nn.GELU)
