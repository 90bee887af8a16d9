"""Backpropagation written by hand, as the lecture writes it: an MLP of boxes with fprop and bprop.

fprop, layer by layer (one example as a column; a batch is B rows):
    z = W h + b,  h = g(z),  dropout: h = h * mask / (1 - p),  output z (logits or values)
bprop, in reverse order, starting from the output gradient of the loss:
    softmax cross-entropy: grad_z = (softmax(z) - 1_y) / B      MSE: grad_z = 2 (z - y) / (B K)
    grad_W = grad_z h^T (summed over the batch),  grad_b = grad_z (summed over the batch),
    grad_h(below) = W^T grad_z,  grad_z(below) = grad_h * g'(z),  dropout: grad_h * mask / (1 - p)

`backprop=manual` trains this network with the unchanged trainer: `build` turns an MLP into a
ManualMLP that shares its parameters (same names, shapes and values), and pairs it with the
loss's box. Each of the two is wrapped in one torch.autograd.Function whose backward calls bprop,
so `loss.backward()` runs the algorithm above and leaves the gradients in `.grad`; the optimizer,
the regularizer (autograd adds its gradient), logging and checkpoints work as for any model.

In float32 the two backprops round alike (the same kernel computes z = W h + b, the same products give
grad_W, grad_b and grad_h, the dropout masks come from the same draws) except in one place: PyTorch's
log_softmax backward takes exp with another vectorized kernel than torch.softmax, so about a tenth
of the softmax output gradients differ by one ulp. Under SGD or momentum the final losses agree to
about 1e-8; Adam's per-coordinate step m / (sqrt(v) + eps) turns near-cancelling gradients (|g| ~ 1e-9,
a few percent apart after rounding) into full-size steps, and its runs drift ~1e-4 apart within tens
of steps. With MSE or binary cross-entropy the runs are identical under Adam too.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from dlrun import losses
from dlrun.errors import ConfigError
from dlrun.models.activations import ACTIVATIONS
from dlrun.models.dropout import InvertedDropout

LOSSES = ("cross_entropy", "nll", "bce", "mse")  # every loss with an output gradient below


# ----------------------------------------------------------------------------- the boxes
class Box(nn.Module):
    """A box of the computation graph. fprop computes the output and caches what bprop needs;
    bprop takes dL/d(output) and returns dL/d(input), keeping dL/d(parameters) in `self.grads`."""

    def __init__(self):
        super().__init__()
        self.cache: tuple = ()
        self.grads: dict[str, torch.Tensor] = {}

    def forward(self, *inputs):
        return self.fprop(*inputs)  # calling the box runs fprop, so forward hooks see every layer

    def fprop(self, *inputs):
        raise NotImplementedError

    def bprop(self, grad_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Flatten(Box):
    """(B, *input_shape) -> (B, F)."""

    def fprop(self, x):
        self.cache = (x.shape,)
        return x.flatten(1)

    def bprop(self, grad_out):
        (shape,) = self.cache
        return grad_out.reshape(shape)


class Linear(Box):
    """z = W h + b, for a batch h (B, in) -> z (B, out). Holds the parameters of the nn.Linear it replaces."""

    def __init__(self, weight: nn.Parameter, bias: nn.Parameter):
        super().__init__()
        self.weight = weight  # (out, in)
        self.bias = bias  # (out,)

    def fprop(self, h):
        self.cache = (h,)
        return F.linear(h, self.weight, self.bias)  # h W^T + b, the kernel nn.Linear calls

    def bprop(self, grad_z):  # (B, out)
        (h,) = self.cache
        self.grads = {
            "weight": grad_z.T @ h,  # grad_W = grad_z h^T, summed over the batch: (out, in)
            "bias": grad_z.sum(0),  # grad_b = grad_z, summed over the batch: (out,)
        }
        return grad_z @ self.weight  # grad_h = W^T grad_z: (B, in)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}"


def _gelu_derivative(z, a):
    cdf = 0.5 * (1 + torch.erf(z * math.sqrt(0.5)))  # Phi(z)
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # phi(z)
    return cdf + z * pdf


# name -> (g(z), g'(z) written from z and a = g(z)); g is PyTorch's, so both backprops see the same forward
ACTIVATION_FORMS = {
    "identity": (lambda z: z, lambda z, a: torch.ones_like(z)),
    "step": (lambda z: (z > 0).to(z.dtype), lambda z, a: torch.zeros_like(z)),  # no gradient reaches below
    "sign": (lambda z: torch.where(z >= 0, 1.0, -1.0).to(z.dtype), lambda z, a: torch.zeros_like(z)),
    "sigmoid": (torch.sigmoid, lambda z, a: a * (1 - a)),
    "tanh": (torch.tanh, lambda z, a: 1 - a * a),
    "relu": (torch.relu, lambda z, a: (z > 0).to(z.dtype)),  # g'(0) = 0, as PyTorch
    "leaky_relu": (lambda z: F.leaky_relu(z, 0.01), lambda z, a: torch.where(z > 0, 1.0, torch.full_like(z, 0.01))),
    "elu": (F.elu, lambda z, a: torch.where(z > 0, 1.0, torch.exp(z))),
    # softplus is linear above 20, as PyTorch's: log(1 + e^z) = z there, g' = 1; else g' = sigmoid(z)
    "softplus": (F.softplus, lambda z, a: torch.where(z > 20, 1.0, torch.sigmoid(z))),
    "gelu": (F.gelu, _gelu_derivative),  # g' = Phi(z) + z phi(z)
}


class Activation(Box):
    """h = g(z) elementwise; bprop: grad_z = grad_h * g'(z)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.g, self.g_prime = ACTIVATION_FORMS[name]

    def fprop(self, z):
        a = self.g(z)
        self.cache = (z, a)
        return a

    def bprop(self, grad_h):
        z, a = self.cache
        return grad_h * self.g_prime(z, a)

    def extra_repr(self) -> str:
        return self.name


class Dropout(Box):
    """Inverted dropout: h * m / (1 - p) in training, m ~ Bernoulli(1 - p) per unit; the identity in evaluation."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def fprop(self, h):
        if not self.training or self.p == 0:
            self.cache = (None,)
            return h
        keep = torch.empty_like(h).bernoulli_(1 - self.p)  # m: 1 keeps a unit, 0 drops it (drawn as dlrun's
        self.cache = (keep,)  # InvertedDropout draws it, so one seed gives both backprops the same mask)
        return h * keep / (1 - self.p)

    def bprop(self, grad_out):
        (keep,) = self.cache
        return grad_out if keep is None else grad_out * keep / (1 - self.p)  # dropped units pass no gradient

    def extra_repr(self) -> str:
        return f"p={self.p}"


# ----------------------------------------------------------------------------- losses: output gradients
class SoftmaxCrossEntropy(Box):
    """L = mean_i -log softmax(z_i)_{y_i}; output gradient grad_z = (softmax(z) - 1_y) / B."""

    def fprop(self, z, y):  # z: (B, C) logits, y: (B,) labels
        self.cache = (z, y)
        return losses.cross_entropy(z, y)

    def bprop(self, grad_loss):
        z, y = self.cache
        one_hot = F.one_hot(y, z.shape[-1]).to(z.dtype)
        return (torch.softmax(z, dim=-1) - one_hot) * (grad_loss / len(z))


class SigmoidCrossEntropy(Box):
    """L = mean_i -y log s(z) - (1 - y) log(1 - s(z)); output gradient grad_z = (s(z) - y) / B."""

    def fprop(self, z, y):  # z: (B, 1) logits, y: (B,) in {0, 1}
        self.cache = (z, y)
        return losses.bce(z, y)

    def bprop(self, grad_loss):
        z, y = self.cache
        return (torch.sigmoid(z) - y.to(z.dtype).reshape(z.shape)) * (grad_loss / len(z))


class MeanSquaredError(Box):
    """form=mean: L = 1/(B K) sum ||z - y||^2, grad_z = 2 (z - y) / (B K);
    form=half_sum: L = 1/B sum 1/2 ||z - y||^2, grad_z = (z - y) / B (dlrun/losses.py's two forms)."""

    def __init__(self, form: str = "mean"):
        super().__init__()
        self.form = form

    def fprop(self, z, y):  # z, y: (B, K)
        self.cache = (z, y)
        return losses.half_sse(z, y) if self.form == "half_sum" else losses.mse(z, y)

    def bprop(self, grad_loss):
        z, y = self.cache
        if self.form == "half_sum":
            return (z - y) * (grad_loss / len(z))
        return 2.0 / z.numel() * (z - y) * grad_loss

    def extra_repr(self) -> str:
        return f"form={self.form}"


# ----------------------------------------------------------------------------- the network
class ManualMLP(nn.Module):
    """The MLP's layers as boxes; `layers` holds them under the MLP's names (flatten, fc1, act1, drop1, ..., out),
    so parameter names, shapes and checkpoints are the MLP's."""

    def __init__(self, layers: OrderedDict[str, Box]):
        super().__init__()
        self.layers = nn.Sequential(layers)

    def fprop(self, x):
        for layer in self.layers:  # each box in order
            x = layer(x)
        return x

    def bprop(self, grad_z):
        for layer in reversed(self.layers):  # each box in reverse order
            grad_z = layer.bprop(grad_z)
        return grad_z

    def param_grads(self) -> list[torch.Tensor]:
        """dL/d(parameter) left by the last bprop, in the order of `self.parameters()`."""
        return [layer.grads[name] for layer in self.layers for name, _ in layer.named_parameters(recurse=False)]

    def forward(self, x):
        return _Network.apply(self, x, *self.parameters())  # (B, *input_shape) -> (B, out_features)


def _caches(module: nn.Module) -> list[tuple]:
    return [m.cache for m in module.modules() if isinstance(m, Box)]


def _restore(module: nn.Module, caches: list[tuple]) -> None:
    for m, cache in zip([m for m in module.modules() if isinstance(m, Box)], caches, strict=True):
        m.cache = cache


class _Network(torch.autograd.Function):
    """forward = net.fprop, backward = net.bprop. The caches of this call travel with ctx, so bprop reads
    its own forward pass even when other forward passes ran in between (evaluation, gradient checks)."""

    @staticmethod
    def forward(ctx, net: ManualMLP, x, *params):
        z = net.fprop(x)
        ctx.net, ctx.caches = net, _caches(net)
        return z

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_z):
        _restore(ctx.net, ctx.caches)
        grad_x = ctx.net.bprop(grad_z)
        return None, grad_x, *ctx.net.param_grads()


class _Loss(torch.autograd.Function):
    """forward = loss.fprop(z, y), backward = loss.bprop(dL/dL) -> the output gradient grad_z."""

    @staticmethod
    def forward(ctx, box: Box, z, y):
        value = box.fprop(z, y)
        ctx.box, ctx.caches = box, _caches(box)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        _restore(ctx.box, ctx.caches)
        return None, ctx.box.bprop(grad_loss), None


class ManualLoss:
    """loss_fn(z, y) for the trainer, with the loss box's bprop as its backward."""

    def __init__(self, box: Box):
        self.box = box

    def __call__(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _Loss.apply(self.box, z, y)


# ----------------------------------------------------------------------------- building
def check(cfg, loss_name: str) -> None:
    """Refuse, in one line naming `backprop`, what the hand-written backprop does not cover."""
    supported = "model=mlp (or model=linear) without norm layers or skip connections and loss=" + ", ".join(LOSSES)
    if cfg.model.name != "mlp":
        raise ConfigError(f"backprop=manual supports {supported}; not model={cfg.model.name} (use backprop=autograd)")
    if getattr(cfg.model, "residual", False) or getattr(cfg.model, "skip_scale", 1.0) != 1.0:
        raise ConfigError(f"backprop=manual supports {supported}; not model.residual=true (use backprop=autograd)")
    if cfg.model.norm != "none":
        raise ConfigError(
            f"backprop=manual supports {supported}; not model.norm={cfg.model.norm} (use model.norm=none)"
        )
    if loss_name not in LOSSES:
        raise ConfigError(f"backprop=manual supports {supported}; not loss={loss_name} (use backprop=autograd)")
    if cfg.optim.name == "newton":
        raise ConfigError(
            "backprop=manual gives first derivatives only, and optim=newton needs the Hessian by double "
            "backward; use backprop=autograd or another optim"
        )


def loss_box(loss_name: str, loss_cfg) -> Box:
    if loss_name in ("cross_entropy", "nll"):  # nll of log_softmax is the same function of the logits
        return SoftmaxCrossEntropy()
    if loss_name == "bce":
        return SigmoidCrossEntropy()
    return MeanSquaredError(getattr(loss_cfg, "form", "mean"))


def _activation_name(module: nn.Module) -> str | None:
    for name in ACTIVATIONS:
        if type(module) is ACTIVATIONS.get(name):
            return name
    return None


def from_mlp(mlp: nn.Module) -> ManualMLP:
    """A ManualMLP sharing the parameters of `mlp` (dlrun.models.mlp.MLP): same names, shapes and values."""
    boxes: OrderedDict[str, Box] = OrderedDict()
    for name, layer in mlp.layers.named_children():
        if isinstance(layer, nn.Flatten):
            boxes[name] = Flatten()
        elif isinstance(layer, nn.Linear):
            boxes[name] = Linear(layer.weight, layer.bias)
        elif isinstance(layer, InvertedDropout | nn.Dropout):
            boxes[name] = Dropout(layer.p)
        elif (act := _activation_name(layer)) is not None:
            boxes[name] = Activation(act)
        else:
            raise ConfigError(
                f"backprop=manual: layer {name} ({type(layer).__name__}) has no hand-written bprop; "
                "supported: linear layers, the activations, dropout (use backprop=autograd)"
            )
    manual = ManualMLP(boxes)
    manual.train(mlp.training)
    return manual


def build(model: nn.Module, cfg, loss_name: str) -> tuple[ManualMLP, ManualLoss]:
    """(the network, loss_fn) with hand-written bprop, for the MLP `model` built and initialized from cfg."""
    check(cfg, loss_name)
    return from_mlp(model), ManualLoss(loss_box(loss_name, cfg.loss))
