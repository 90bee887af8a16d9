"""dlrun/models: activations match their formulas, the MLP family builds, runs forward and backward.

identity z;  step H(z) = [z > 0] (dH/dz = 0);  sigmoid 1 / (1 + e^-z);  tanh;  relu max(0, z);
leaky_relu max(0.01 z, z);  elu z if z > 0 else e^z - 1;  softplus log(1 + e^z);  gelu z Phi(z)
dropout (inverted): h -> h * mask / (1 - p) in training, identity in evaluation
"""

import math
import warnings

import pytest
import torch
from torch import nn

from dlrun import models
from dlrun.models import DlrunWarning, count_parameters
from dlrun.models import activations as act
from dlrun.models.mlp import MLP
from dlrun.options import ACTIVATIONS, NORMS, MLPConfig

Z = [-3.0, -1.0, -0.25, 0.0, 0.5, 2.0]


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))  # standard normal CDF


FORMULAS = {
    "identity": lambda z: z,
    "step": lambda z: 1.0 if z > 0 else 0.0,
    "sign": lambda z: 1.0 if z >= 0 else -1.0,
    "sigmoid": lambda z: 1 / (1 + math.exp(-z)),
    "tanh": lambda z: (math.exp(z) - math.exp(-z)) / (math.exp(z) + math.exp(-z)),
    "relu": lambda z: max(0.0, z),
    "leaky_relu": lambda z: max(0.01 * z, z),
    "elu": lambda z: z if z > 0 else math.exp(z) - 1,
    "softplus": lambda z: math.log(1 + math.exp(z)),
    "gelu": lambda z: z * _phi(z),
}


def test_activation_names_match_schema():
    assert set(act.ACTIVATIONS) == set(ACTIVATIONS) == set(FORMULAS)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_formula(name):
    z = torch.tensor(Z, dtype=torch.float64)
    got = act.ACTIVATIONS.get(name)()(z)
    expected = torch.tensor([FORMULAS[name](v) for v in Z], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("unit", [act.Step, act.Sign])
def test_threshold_units_have_zero_gradient(unit):
    z = torch.tensor(Z, dtype=torch.float64, requires_grad=True)
    unit()(z).sum().backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_step_with_hidden_layers_warns():
    with pytest.warns(DlrunWarning, match="step"):
        models.build(MLPConfig(hidden=[4], activation="step"), (2,), 1)


def test_no_warning_without_step_or_without_hidden_layers():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DlrunWarning)
        models.build(MLPConfig(hidden=[4], activation="relu"), (2,), 1)
        models.build(MLPConfig(hidden=[], activation="step"), (2,), 1)  # no hidden layer: step is never used


@pytest.mark.parametrize(("shape", "out"), [((1, 8, 8), 10), ((4,), 1), ((3,), 2)])
def test_no_hidden_layer_is_one_linear_layer(shape, out):
    model = models.build(MLPConfig(hidden=[]), shape, out)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1
    n_in = math.prod(shape)
    assert count_parameters(model) == n_in * out + out  # W: out x in, b: out
    x = torch.randn(5, *shape)
    # softmax / logistic / linear regression: z = W x + b
    torch.testing.assert_close(model(x), x.reshape(5, -1) @ linears[0].weight.T + linears[0].bias)


def test_parameter_count_with_hidden_layers():
    model = models.build(MLPConfig(hidden=[5, 3]), (4,), 2)
    assert count_parameters(model) == (4 * 5 + 5) + (5 * 3 + 3) + (3 * 2 + 2)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_backward_gives_finite_gradients(activation, norm):
    torch.manual_seed(0)
    model = MLP(6, [5, 4], 3, activation=activation, dropout=0.2, norm=norm).double()
    x = torch.randn(8, 2, 3, dtype=torch.float64)  # flattened to 6 features
    z = model(x)
    assert z.shape == (8, 3)
    z.pow(2).mean().backward()
    for n, p in model.named_parameters():
        assert p.grad is not None, n
        assert torch.isfinite(p.grad).all(), n


def test_layer_names():
    names = dict(MLP(4, [5, 3], 2, dropout=0.1, norm="batch").layers.named_children())
    for n in ("flatten", "fc1", "bn1", "act1", "drop1", "fc2", "bn2", "act2", "drop2", "out"):
        assert n in names
    assert isinstance(names["fc1"], nn.Linear) and isinstance(names["out"], nn.Linear)
    assert "ln1" in dict(MLP(4, [5], 2, norm="layer").layers.named_children())
    assert isinstance(MLP(4, [5], 2, norm="layer").layers.ln1, nn.LayerNorm)


def test_dropout_is_off_in_eval():
    torch.manual_seed(0)
    model = MLP(10, [64], 3, dropout=0.5)
    x = torch.randn(16, 10)
    model.train()
    assert not torch.equal(model(x), model(x))  # a fresh mask per forward pass
    model.eval()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


def test_dropout_is_inverted():
    torch.manual_seed(0)
    p = 0.25
    model = MLP(10, [200], 3, dropout=p).train()
    h = torch.randn(32, 200)
    out = model.layers.drop1(h)
    kept = out != 0
    # survivors scaled by 1 / (1 - p), the rest zero; about a fraction p dropped
    torch.testing.assert_close(out[kept], h[kept] / (1 - p))
    assert abs((~kept).double().mean().item() - p) < 0.03


def test_residual_mlp_adds_skip_connections():
    """residual=true: h_i = h_{i-1} + act(W_i h_{i-1} + b_i) where widths match; same parameters as plain."""
    from dlrun.models.mlp import MLP

    torch.manual_seed(0)
    plain = MLP(5, [4, 4, 3, 3], 2, activation="tanh")
    res = MLP(5, [4, 4, 3, 3], 2, activation="tanh", residual=True)
    res.load_state_dict(plain.state_dict())
    assert res.skip_from == {"fc2", "fc4"}  # fc3 changes the width: no skip around it
    x = torch.randn(7, 5)
    L = plain.layers
    h1 = torch.tanh(L.fc1(x))
    h2 = h1 + torch.tanh(L.fc2(h1))
    h3 = torch.tanh(L.fc3(h2))
    h4 = h3 + torch.tanh(L.fc4(h3))
    assert torch.allclose(res(x), L.out(h4), atol=1e-6)
    assert not torch.allclose(plain(x), res(x), atol=1e-3)


def test_mlp_without_biases_and_with_a_scaled_skip():
    """model.bias=false: z = W h in every layer; model.skip_scale: H(x) = F(x) + lambda x (by hand)."""
    m = models.build(MLPConfig(hidden=[3, 3], bias=False), (2,), 1)
    assert not [n for n, _ in m.named_parameters() if n.endswith("bias")]
    x = torch.randn(5, 2)
    torch.testing.assert_close(m(x), (m.layers.fc2(m.layers.fc1(x).relu()).relu()) @ m.layers.out.weight.T)
    r = models.build(MLPConfig(hidden=[3, 3], residual=True, skip_scale=0.5), (2,), 1)
    layers = r.layers
    h1 = layers.act1(layers.fc1(x))
    h2 = layers.act2(layers.fc2(h1)) + 0.5 * h1
    torch.testing.assert_close(r(x), layers.out(h2))
