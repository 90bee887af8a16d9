"""dlrun/models/dropout.py: inverted dropout, and where the models and regularizer=dropout put it.

Training: h -> h * m / (1 - p), m ~ Bernoulli(1 - p), so E[out] = h and Var[out] = h^2 p / (1 - p).
Evaluation: h -> h.
"""

import math

import pytest
import torch
from torch import nn

from dlrun import regularizers
from dlrun.config import compose
from dlrun.errors import ConfigError
from dlrun.models import build as build_model
from dlrun.models.dropout import InvertedDropout
from dlrun.models.mlp import MLP
from dlrun.options import CNNConfig, DropoutRegConfig, MLPConfig
from dlrun.train.loop import build


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_expected_activation_is_preserved(p):
    torch.manual_seed(0)
    n = 20_000  # samples of the mask for every unit
    h = torch.linspace(-2.0, 3.0, 50, dtype=torch.float64)  # one activation vector, 50 units
    out = InvertedDropout(p).train()(h.expand(n, -1).clone())  # (n, 50)
    # the mean of n draws has std |h| sqrt(p / ((1 - p) n)); allow 5 standard errors per unit
    se = h.abs() * math.sqrt(p / ((1 - p) * n))
    assert ((out.mean(0) - h).abs() <= 5 * se + 1e-12).all()
    # the spread matches too: Var = h^2 p / (1 - p)
    torch.testing.assert_close(out.var(0), h**2 * p / (1 - p), rtol=0.1, atol=1e-12)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_drop_fraction_is_p_and_survivors_are_scaled(p):
    torch.manual_seed(1)
    h = torch.rand(400, 250) + 0.5  # no zeros of its own: every zero is a dropped unit
    out = InvertedDropout(p).train()(h)
    dropped = out == 0
    n = h.numel()
    assert abs(dropped.double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)  # binomial, 5 sigma
    torch.testing.assert_close(out[~dropped], h[~dropped] / (1 - p))


def test_identity_in_eval_and_fresh_mask_per_call():
    torch.manual_seed(2)
    drop = InvertedDropout(0.5)
    h = torch.randn(64, 32)
    assert not torch.equal(drop(h), drop(h))  # training: a new mask every forward pass
    drop.eval()
    assert torch.equal(drop(h), h)
    assert torch.equal(InvertedDropout(0.0).train()(h), h)


def test_gradient_flows_through_survivors_only():
    torch.manual_seed(3)
    h = torch.randn(30, 20, requires_grad=True)
    out = InvertedDropout(0.3).train()(h)
    out.sum().backward()
    kept = out.detach() != 0
    # d out / d h = m / (1 - p): 1/(1 - p) for survivors, 0 for dropped units
    torch.testing.assert_close(h.grad, kept.float() / 0.7)


def test_invalid_p_is_refused():
    with pytest.raises(ValueError):
        InvertedDropout(1.0)


def test_mlp_and_cnn_use_inverted_dropout():
    mlp = MLP(4, [5, 3], 2, dropout=0.2)
    assert isinstance(mlp.layers.drop1, InvertedDropout) and mlp.layers.drop2.p == 0.2
    assert not any(isinstance(m, nn.Dropout) for m in mlp.modules())
    cnn = build_model(CNNConfig(channels=[4], hidden=[8, 6], dropout=0.3), (1, 8, 8), 3)
    assert [n for n, m in cnn.layers.named_children() if isinstance(m, InvertedDropout)] == ["fc_drop1", "fc_drop2"]


def _order(model: nn.Module) -> list[str]:
    return [type(m).__name__ for m in model.layers.children()]


def test_regularizer_dropout_goes_after_every_hidden_activation(tmp_path):
    s = build(compose([f"runs_dir={tmp_path}", "regularizer=dropout", "regularizer.p=0.3", "model.hidden=[8,8]"]))
    assert _order(s.model) == [
        "Flatten",
        *["Linear", "ReLU", "InvertedDropout"] * 2,
        "Linear",
    ]
    assert all(m.p == 0.3 for m in s.model.modules() if isinstance(m, InvertedDropout))
    assert s.reg is None  # nothing for the loop to do: dropout lives in the model
    # the cnn: dropout in the fully connected head, not on the feature maps
    cnn = regularizers.model_config(CNNConfig(hidden=[16]), DropoutRegConfig(p=0.4))
    assert cnn.dropout == 0.4


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["model=rnn"], ["model=rnn", "model.dropout", "model.layers"]),
        (["model=resnet"], ["model=resnet", "model=mlp", "model=cnn"]),
        (["model.dropout=0.2"], ["model.dropout=0.2", "keep one"]),
        (["model=linear"], ["model.hidden=[]"]),
    ],
)
def test_regularizer_dropout_refuses_what_it_cannot_do(tmp_path, overrides, words):
    with pytest.raises(ConfigError) as e:
        build(compose([f"runs_dir={tmp_path}", "regularizer=dropout", *overrides]))
    message = str(e.value)
    assert "\n" not in message and "regularizer=dropout" in message
    for w in words:
        assert w in message


def test_same_p_in_both_places_is_accepted():
    cfg = regularizers.model_config(MLPConfig(dropout=0.5), DropoutRegConfig(p=0.5))
    assert cfg.dropout == 0.5
