"""Weight initialization by name, applied after the model is built (torch.nn.init does the drawing).

Which tensors an init touches:
- nn.Linear, nn.Conv1d/2d/3d: the weight is drawn by the named init, the bias is set to init.bias.
  For a conv kernel (C_out, C_in, *k), fan_in = C_in * prod(k) and fan_out = C_out * prod(k).
- nn.RNN / nn.LSTM / nn.GRU: every gate's block of a weight matrix is drawn as its own layer: the input
  matrix W_ih (gates * H, F) as `gates` blocks (H, F), the recurrent matrix W_hh as `gates` blocks (H, H)
  (1 gate for a tanh RNN, 4 for an LSTM, 3 for a GRU). So init=orthogonal makes each gate's recurrent
  matrix orthogonal (the classic choice for recurrent weights), and glorot/he use one gate's fans.
  The cell's bias b_ih + b_hh equals init.bias (b_ih = init.bias, b_hh = 0).
- Normalization layers keep their scale 1 and shift 0; init=default leaves every tensor as PyTorch drew it.
"""

from __future__ import annotations

import torch
from torch import nn

from dlrun.registry import Registry

INITS: Registry = Registry("init")  # name -> fill_(w, cfg): draws the weight tensor w in place
LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
RECURRENT = (nn.RNN, nn.LSTM, nn.GRU)


@INITS.register("default")
def default(w: torch.Tensor, cfg) -> None:
    """PyTorch's defaults (Kaiming-uniform weights with a = sqrt(5), small uniform biases), untouched."""


@INITS.register("glorot_uniform")
def glorot_uniform(w: torch.Tensor, cfg) -> None:
    """W ~ U[-t, t], t = sqrt(6 / (fan_in + fan_out))."""
    nn.init.xavier_uniform_(w)


@INITS.register("glorot_normal")
def glorot_normal(w: torch.Tensor, cfg) -> None:
    """W ~ N(0, 2 / (fan_in + fan_out))."""
    nn.init.xavier_normal_(w)


@INITS.register("he_uniform")
def he_uniform(w: torch.Tensor, cfg) -> None:
    """W ~ U[-t, t], t = sqrt(6 / fan_in) (for ReLU: Var W = 2 / fan_in)."""
    nn.init.kaiming_uniform_(w, nonlinearity="relu")


@INITS.register("he_normal")
def he_normal(w: torch.Tensor, cfg) -> None:
    """W ~ N(0, 2 / fan_in) (for ReLU)."""
    nn.init.kaiming_normal_(w, nonlinearity="relu")


@INITS.register("normal")
def normal(w: torch.Tensor, cfg) -> None:
    """W ~ N(0, std^2)."""
    nn.init.normal_(w, 0.0, cfg.std)


@INITS.register("uniform")
def uniform(w: torch.Tensor, cfg) -> None:
    """W ~ U[-a, a]."""
    nn.init.uniform_(w, -cfg.a, cfg.a)


@INITS.register("orthogonal")
def orthogonal(w: torch.Tensor, cfg) -> None:
    """W = gain Q, Q (semi-)orthogonal: the rows (or columns) of W, flattened to 2-D, are orthonormal times gain."""
    nn.init.orthogonal_(w, gain=cfg.gain)


@INITS.register("zeros")
def zeros(w: torch.Tensor, cfg) -> None:
    """W = 0: every unit of a layer computes the same thing and gets the same gradient."""
    nn.init.zeros_(w)


@INITS.register("constant")
def constant(w: torch.Tensor, cfg) -> None:
    """W = c everywhere: symmetry is never broken."""
    nn.init.constant_(w, cfg.c)


def initialize(model: nn.Module, cfg) -> nn.Module:
    """Draw every Linear/Conv/recurrent weight with init `cfg.name` and set the biases to cfg.bias (in place)."""
    fill = INITS.get(cfg.name)
    if cfg.name == "default":
        return model
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LAYERS):
                fill(module.weight, cfg)
                if module.bias is not None:
                    nn.init.constant_(module.bias, cfg.bias)
            elif isinstance(module, RECURRENT):
                for name, p in module.named_parameters(recurse=False):
                    if name.startswith(("weight_ih", "weight_hh")):
                        for block in p.split(module.hidden_size):  # one (H, F) or (H, H) block per gate
                            fill(block, cfg)
                    elif name.startswith("weight_hr"):  # an LSTM's projection (proj_size, H)
                        fill(p, cfg)
                    elif name.startswith("bias_ih"):
                        nn.init.constant_(p, cfg.bias)
                    elif name.startswith("bias_hh"):
                        nn.init.zeros_(p)
    return model
