"""dlrun/init.py: weight initializations by name, checked against their distributions.

glorot_uniform  W ~ U[-t, t], t = sqrt(6 / (fan_in + fan_out)), Var W = t^2 / 3;  b = 0
he_normal       W ~ N(0, 2 / fan_in);                                              b = 0
default         PyTorch's own initialization, untouched
"""

import math

import pytest
import torch
from torch import nn

from dlrun.config.schema import SCHEMAS, InitConfig
from dlrun.init import INITS, initialize
from dlrun.models.mlp import MLP


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def test_registry_matches_schema_names():
    assert set(INITS) == set(SCHEMAS["init"])


def test_glorot_uniform_bounds_and_variance():
    torch.manual_seed(0)
    model = initialize(MLP(300, [200], 10), InitConfig(name="glorot_uniform"))
    for layer in _linears(model):
        fan_out, fan_in = layer.weight.shape
        t = math.sqrt(6 / (fan_in + fan_out))
        w = layer.weight.detach()
        assert w.abs().max() <= t
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    big = model.layers.fc1.weight.detach().double()  # 60,000 draws
    t = math.sqrt(6 / (300 + 200))
    assert big.abs().max() > 0.99 * t  # the whole interval is used
    assert big.var().item() == pytest.approx(t**2 / 3, rel=0.03)  # Var U[-t, t] = t^2 / 3
    assert abs(big.mean().item()) < 0.01 * t


def test_glorot_uniform_on_conv_uses_receptive_field():
    torch.manual_seed(0)
    model = initialize(nn.Sequential(nn.Conv2d(3, 8, 5), nn.Flatten()), InitConfig(name="glorot_uniform"))
    conv = model[0]
    # fan_in = 3 * 5 * 5, fan_out = 8 * 5 * 5
    t = math.sqrt(6 / (75 + 200))
    assert conv.weight.abs().max() <= t
    assert conv.weight.abs().max() > 0.9 * t
    assert torch.equal(conv.bias, torch.zeros_like(conv.bias))


def test_he_normal_std():
    torch.manual_seed(0)
    model = initialize(MLP(400, [300], 10), InitConfig(name="he_normal"))
    w = model.layers.fc1.weight.detach().double()  # fan_in = 400, 120,000 draws
    assert w.std().item() == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    assert abs(w.mean().item()) < 0.02 * math.sqrt(2 / 400)
    out = model.layers.out.weight.detach().double()  # fan_in = 300, 3,000 draws
    assert out.std().item() == pytest.approx(math.sqrt(2 / 300), rel=0.1)
    for layer in _linears(model):
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))


def test_default_leaves_pytorch_init_untouched():
    torch.manual_seed(123)
    fresh = MLP(5, [7, 6], 3, norm="layer")
    torch.manual_seed(123)
    model = initialize(MLP(5, [7, 6], 3, norm="layer"), InitConfig(name="default"))
    for (n, a), b in zip(fresh.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), n
    assert any(layer.bias.abs().sum() > 0 for layer in _linears(model))  # PyTorch's biases are not zero


def test_non_default_inits_change_every_linear_layer():
    for name in ("glorot_uniform", "he_normal"):
        torch.manual_seed(0)
        fresh = MLP(5, [7], 3)
        torch.manual_seed(0)
        model = initialize(MLP(5, [7], 3), InitConfig(name=name))
        for a, b in zip(_linears(fresh), _linears(model), strict=True):
            assert not torch.equal(a.weight, b.weight), name
