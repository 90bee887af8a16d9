"""dlrun/init.py: weight initializations by name, checked against their distributions.

glorot_uniform  W ~ U[-t, t], t = sqrt(6 / (fan_in + fan_out)), Var W = t^2 / 3;  b = 0
glorot_normal   W ~ N(0, 2 / (fan_in + fan_out))
he_uniform      W ~ U[-t, t], t = sqrt(6 / fan_in)
he_normal       W ~ N(0, 2 / fan_in);                                              b = 0
normal, uniform N(0, std^2), U[-a, a];  orthogonal: W W^T = gain^2 I;  zeros, constant c
default         PyTorch's own initialization, untouched
A conv kernel (C_out, C_in, *k) has fan_in = C_in prod(k), fan_out = C_out prod(k). Biases = init.bias.
"""

import math
import os

import pytest
import torch
from conftest import dlrun, quick
from torch import nn

from dlrun.config import compose
from dlrun.init import INITS, initialize
from dlrun.models.mlp import MLP
from dlrun.options import InitConfig, declared, schema
from dlrun.train import checkpoint as ckpt
from dlrun.train import train


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


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


# ----------------------------------------------------------------------------- every init against its formula
def _cfg(name: str, **kw):
    return schema("init", name)(name=name, **kw)


def _drawn(name: str, shape: tuple[int, ...], **kw) -> torch.Tensor:
    """A layer of `shape` (Linear (out, in) or Conv (out, in, *k)) initialized by `name`; its weight in float64."""
    torch.manual_seed(0)
    layer = nn.Linear(shape[1], shape[0]) if len(shape) == 2 else _CONV[len(shape) - 2](shape[1], shape[0], shape[2:])
    initialize(nn.Sequential(layer), _cfg(name, **kw))
    return layer.weight.detach().double()


_CONV = {1: nn.Conv1d, 2: nn.Conv2d}


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) by hand: a kernel (C_out, C_in, *k) has fan_in = C_in prod(k), fan_out = C_out prod(k)."""
    k = math.prod(shape[2:])
    return shape[1] * k, shape[0] * k


# each: name, extra config, (fan_in, fan_out) -> (bound or None, std); about 100,000 draws per shape
UNIFORM_OR_NORMAL = [
    ("glorot_uniform", {}, lambda fi, fo: (math.sqrt(6 / (fi + fo)), math.sqrt(6 / (fi + fo)) / math.sqrt(3))),
    ("glorot_normal", {}, lambda fi, fo: (None, math.sqrt(2 / (fi + fo)))),
    ("he_uniform", {}, lambda fi, fo: (math.sqrt(6 / fi), math.sqrt(2 / fi))),
    ("he_normal", {}, lambda fi, fo: (None, math.sqrt(2 / fi))),
    ("normal", {"std": 0.2}, lambda fi, fo: (None, 0.2)),
    ("uniform", {"a": 0.3}, lambda fi, fo: (0.3, 0.3 / math.sqrt(3))),
]
SHAPES = [(250, 400), (64, 32, 7, 7), (128, 16, 49)]  # Linear, Conv2d 7x7, Conv1d k=49


@pytest.mark.parametrize("shape", SHAPES, ids=["linear", "conv2d", "conv1d"])
@pytest.mark.parametrize("name, extra, formula", UNIFORM_OR_NORMAL, ids=[u[0] for u in UNIFORM_OR_NORMAL])
def test_distribution_matches_formula(name, extra, formula, shape):
    w = _drawn(name, shape, **extra)
    bound, std = formula(*_fans(shape))
    assert w.std().item() == pytest.approx(std, rel=0.02)
    assert abs(w.mean().item()) < 0.02 * std
    if bound is not None:  # uniform: inside [-t, t] and using all of it
        assert w.abs().max().item() <= bound
        assert w.abs().max().item() > 0.99 * bound
    else:  # Gaussian: the fourth moment of a normal is 3 std^4 (a uniform's is 1.8 std^4)
        assert (w**4).mean().item() / std**4 == pytest.approx(3.0, rel=0.1)


@pytest.mark.parametrize("shape", [(30, 80), (80, 30), (16, 8, 3, 3)])
def test_orthogonal_rows_or_columns_are_orthonormal_times_gain(shape):
    gain = 1.7
    w = _drawn("orthogonal", shape, gain=gain).reshape(shape[0], -1)  # (rows, cols), conv kernels flattened
    small = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w  # the Gram matrix of the shorter side
    torch.testing.assert_close(small, gain**2 * torch.eye(len(small), dtype=torch.float64), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name, extra, value", [("zeros", {}, 0.0), ("constant", {"c": 0.37}, 0.37)])
def test_zeros_and_constant(name, extra, value):
    for shape in SHAPES:
        w = _drawn(name, shape, **extra)
        assert (w == torch.tensor(value).double()).all()  # the float32 nearest to value, everywhere


@pytest.mark.parametrize("name", sorted(set(declared("init")) - {"default"}))
def test_every_init_sets_biases_and_leaves_norm_layers(name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.Flatten(), nn.Linear(8, 5), nn.LayerNorm(5))
    bn_before = {k: v.clone() for k, v in model[1].state_dict().items()}
    initialize(model, _cfg(name, bias=0.25))
    for layer in (model[0], model[3]):
        assert torch.equal(layer.bias, torch.full_like(layer.bias, 0.25)), name
    for k, v in model[1].state_dict().items():
        assert torch.equal(v, bn_before[k]), k
    assert torch.equal(model[4].weight, torch.ones(5)) and torch.equal(model[4].bias, torch.zeros(5))


def test_recurrent_weights_are_initialized_gate_by_gate():
    torch.manual_seed(0)
    gru = nn.GRU(20, 16, num_layers=2)
    initialize(gru, _cfg("orthogonal", gain=1.0, bias=0.5))
    for k in range(2):
        w_hh = getattr(gru, f"weight_hh_l{k}").detach()
        for gate in w_hh.split(16):  # reset, update, new: each (H, H) orthogonal
            torch.testing.assert_close(gate @ gate.T, torch.eye(16), rtol=0, atol=1e-5)
        # the cell's bias b_ih + b_hh is init.bias
        b = getattr(gru, f"bias_ih_l{k}") + getattr(gru, f"bias_hh_l{k}")
        assert torch.equal(b, torch.full_like(b, 0.5))
    torch.manual_seed(0)
    lstm = nn.LSTM(300, 200)
    initialize(lstm, _cfg("glorot_uniform"))
    t = math.sqrt(6 / (300 + 200))  # one gate's fans (F -> H), not the stacked (4H, F) matrix
    w_ih = lstm.weight_ih_l0.detach()
    assert w_ih.abs().max() <= t and w_ih.abs().max() > 0.99 * t
    for gate in w_ih.split(200):
        assert gate.std().item() == pytest.approx(t / math.sqrt(3), rel=0.02)


# ----------------------------------------------------------------------------- the lecture's failure cases
def _hidden_units_identical(weights: dict[str, torch.Tensor], n_hidden: int) -> bool:
    """Every hidden unit of every layer has the same incoming weights, bias and outgoing weights."""
    names = [f"layers.fc{i}" for i in range(1, n_hidden + 1)]
    for i, name in enumerate(names):
        w, b = weights[f"{name}.weight"], weights[f"{name}.bias"]
        nxt = weights[f"{names[i + 1]}.weight" if i + 1 < len(names) else "layers.out.weight"]
        if not (torch.equal(w, w[:1].expand_as(w)) and torch.equal(b, b[:1].expand_as(b))):
            return False  # incoming weights or biases differ between units
        if not torch.equal(nxt, nxt[:, :1].expand_as(nxt)):
            return False  # outgoing weights differ between units
    return True


@pytest.mark.parametrize("name, trains", [("zeros", False), ("constant", False), ("glorot_uniform", True)])
def test_zero_and_constant_init_never_break_symmetry_glorot_trains(runs, name, trains):
    # a tanh MLP on digits, 3 epochs of Adam: Glorot reaches > 0.9 test accuracy (logistic regression: 0.97)
    overrides = ["model.hidden=[16,16]", "model.activation=tanh", "optim=adam", "optim.lr=0.01"]
    s = train(compose(quick(runs, f"init={name}", *overrides, "trainer.epochs=3", "trainer.diag_every=0")))
    final = ckpt.load(os.path.join(s["run_dir"], "checkpoints", "last.pt"))["model"]
    acc = s["metrics"]["test/acc"]
    if trains:
        assert not _hidden_units_identical(final, 2)
        assert acc > 0.9
    else:  # every unit of a layer computes the same function: at most one distinct unit per layer
        assert _hidden_units_identical(final, 2)
        assert acc < 0.5
    if name == "zeros":  # tanh(0) = 0 and W = 0: the hidden layers get no gradient at all (a saddle point)
        assert all(not v.any() for k, v in final.items() if k.startswith(("layers.fc", "layers.out.weight")))


def test_dlrun_list_shows_every_init_with_its_formula():
    result = dlrun("list", "init")
    assert result.returncode == 0, result.stderr
    rows = {
        line.split("│")[2].strip().rstrip(" *"): line.split("│")[3].strip()
        for line in result.stdout.splitlines()
        if line.count("│") == 4
    }
    assert set(rows) == set(INITS)
    words = {
        "glorot_uniform": "sqrt(6 / (fan_in + fan_out))",
        "glorot_normal": "2 / (fan_in + fan_out)",
        "he_uniform": "sqrt(6 / fan_in)",
        "he_normal": "2 / fan_in",
        "normal": "std^2",
        "uniform": "U[-a, a]",
        "orthogonal": "gain",
        "zeros": "zero",
        "constant": "c",
        "default": "PyTorch",
    }
    for name, word in words.items():
        assert word in rows[name], name
