"""dlrun/losses.py against hand computations and autograd.

Formulas (curriculum, "Objectives"):
  cross-entropy / NLL   L = -log softmax(z)_y,           dL/dz = softmax(z) - onehot(y)  (per example)
  binary cross-entropy  L = -y log s(z) - (1 - y) log(1 - s(z)),  s = sigmoid
  MSE                   mean: 1/K ||y_hat - y||^2,  half_sum: 1/2 ||y_hat - y||^2   (both averaged over the batch)
"""

import re

import pytest
import torch

from dlrun import losses
from dlrun.data import Task
from dlrun.errors import ConfigError
from dlrun.options import LossConfig, MSELossConfig

MULTICLASS = Task(kind="multiclass", input_shape=(4,), n_classes=3)
BINARY = Task(kind="binary", input_shape=(2,), n_classes=2)
REGRESSION = Task(kind="regression", input_shape=(3,), n_targets=2)


def _logits(b: int = 5, c: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, c, generator=g, dtype=torch.float64) * 2.0
    y = torch.randint(0, c, (b,), generator=g)
    return z, y


def _softmax(z: torch.Tensor) -> torch.Tensor:
    # softmax(z)_k = exp(z_k) / sum_j exp(z_j), written out
    e = torch.exp(z)
    return e / e.sum(dim=1, keepdim=True)


def _sigmoid(z: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + torch.exp(-z))


@pytest.mark.parametrize("fn", [losses.cross_entropy, losses.nll], ids=["cross_entropy", "nll"])
def test_categorical_loss_is_minus_log_softmax_of_the_label(fn):
    z, y = _logits()
    # L = 1/B sum_i -log softmax(z_i)_{y_i}
    expected = -torch.log(_softmax(z)[torch.arange(len(y)), y]).mean()
    assert fn(z, y).dtype == torch.float64
    assert abs(fn(z, y).item() - expected.item()) < 1e-12


@pytest.mark.parametrize("fn", [losses.cross_entropy, losses.nll], ids=["cross_entropy", "nll"])
def test_categorical_loss_gradient_is_softmax_minus_onehot(fn):
    z, y = _logits(b=6, c=3, seed=1)
    z.requires_grad_(True)
    fn(z, y).backward()
    # dL/dz = (softmax(z) - onehot(y)) / B for the batch mean
    onehot = torch.zeros_like(z).scatter_(1, y[:, None], 1.0)
    expected = (_softmax(z.detach()) - onehot) / len(y)
    torch.testing.assert_close(z.grad, expected, rtol=0, atol=1e-12)


def test_bce_matches_the_hand_formula():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(7, 1, generator=g, dtype=torch.float64) * 3.0
    y = torch.tensor([0, 1, 1, 0, 1, 0, 1])
    s = _sigmoid(z.squeeze(1))
    # L = 1/B sum_i -y_i log s(z_i) - (1 - y_i) log(1 - s(z_i))
    expected = (-y * torch.log(s) - (1 - y) * torch.log(1 - s)).mean()
    assert abs(losses.bce(z, y).item() - expected.item()) < 1e-12


def test_bce_gradient_is_sigmoid_minus_label():
    z = torch.tensor([[0.3], [-1.2], [2.0], [-0.1]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, 0, 0, 1])
    losses.bce(z, y).backward()
    # dL/dz = (s(z) - y) / B
    expected = (_sigmoid(z.detach().squeeze(1)) - y) / len(y)
    torch.testing.assert_close(z.grad.squeeze(1), expected.to(torch.float64), rtol=0, atol=1e-12)


def test_bce_stays_finite_for_large_logits():
    z = torch.tensor([[100.0], [-100.0], [100.0], [-100.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, 0, 0, 1])
    loss = losses.bce(z, y)
    loss.backward()
    # confident and right: -log s(100) = log(1 + e^-100) ~ e^-100; confident and wrong: ~100.
    # The naive formula gives log(1 - s(100)) = log(0) = -inf; the stable one gives (0 + 0 + 100 + 100) / 4.
    expected = (2 * torch.log1p(torch.exp(torch.tensor(-100.0, dtype=torch.float64))) + 2 * 100.0) / 4
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    assert torch.isfinite(z.grad).all()
    torch.testing.assert_close(z.grad.squeeze(1), torch.tensor([0.0, 0.0, 0.25, -0.25], dtype=torch.float64))


def _regression_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return (torch.randn(4, 2, generator=g, dtype=torch.float64), torch.randn(4, 2, generator=g, dtype=torch.float64))


def test_mse_mean_form():
    z, y = _regression_batch()
    name, fn = losses.build(MSELossConfig(name="mse", form="mean"), REGRESSION)
    assert name == "mse"
    # 1/B sum_i 1/K ||y_hat_i - y_i||^2, K = 2
    expected = sum(((z[i] - y[i]) ** 2).sum() / 2 for i in range(4)) / 4
    assert abs(fn(z, y).item() - expected.item()) < 1e-12


@pytest.mark.parametrize("loss_name", ["mse", "auto"])
def test_mse_half_sum_form(loss_name):
    z, y = _regression_batch()
    name, fn = losses.build(MSELossConfig(name=loss_name, form="half_sum"), REGRESSION)
    assert name == "mse"
    # 1/B sum_i 1/2 ||y_hat_i - y_i||^2
    expected = sum(0.5 * ((z[i] - y[i]) ** 2).sum() for i in range(4)) / 4
    assert abs(fn(z, y).item() - expected.item()) < 1e-12


@pytest.mark.parametrize(
    ("task", "expected"),
    [(MULTICLASS, "cross_entropy"), (BINARY, "bce"), (REGRESSION, "mse")],
    ids=["multiclass", "binary", "regression"],
)
def test_auto_picks_the_loss_from_the_task(task, expected):
    assert losses.resolve("auto", task) == expected
    assert losses.build(LossConfig(name="auto"), task)[0] == expected


@pytest.mark.parametrize(
    ("name", "task"),
    [("cross_entropy", BINARY), ("nll", BINARY), ("bce", BINARY), ("cross_entropy", MULTICLASS), ("nll", MULTICLASS)],
)
def test_compatible_pairs_resolve_to_themselves(name, task):
    assert losses.resolve(name, task) == name


# the valid losses for each task kind (curriculum: bce and the perceptron criterion are binary only; mse is
# regression's, and a binary task's when asked for by name: ADALINE)
VALID = {
    "multiclass": {"auto", "cross_entropy", "nll"},
    "binary": {"auto", "cross_entropy", "nll", "bce", "mse", "perceptron"},
    "regression": {"auto", "mse"},
}


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("bce", MULTICLASS),
        ("mse", MULTICLASS),
        ("perceptron", MULTICLASS),
        ("perceptron", REGRESSION),
        ("cross_entropy", REGRESSION),
        ("nll", REGRESSION),
        ("bce", REGRESSION),
    ],
)
def test_incompatible_pairs_raise_config_error_naming_valid_choices(name, task):
    with pytest.raises(ConfigError) as info:
        losses.resolve(name, task)
    message = str(info.value)
    m = re.search(r"choose from: (.*)$", message)
    assert m, message
    assert {c.strip() for c in m.group(1).split(",")} == VALID[task.kind]


def test_out_features():
    assert losses.out_features("bce", BINARY) == 1  # one logit
    assert losses.out_features("cross_entropy", BINARY) == 2  # one logit per class
    assert losses.out_features("cross_entropy", MULTICLASS) == 3
    assert losses.out_features("nll", MULTICLASS) == 3
    assert losses.out_features("mse", REGRESSION) == 2  # one value per target


def test_batch_metrics_binary_single_logit():
    # predicted class = 1 where z > 0 (s(z) > 1/2): preds 1, 0, 1, 0, 1 vs labels 1, 1, 0, 0, 1 -> 3 correct
    z = torch.tensor([[2.0], [-1.0], [0.5], [-3.0], [0.1]])
    y = torch.tensor([1, 1, 0, 0, 1])
    assert losses.batch_metrics(z, y, BINARY)["correct"].item() == 3


def test_batch_metrics_multiclass():
    # argmax per row: 2, 0, 1, 1 vs labels 2, 1, 1, 0 -> 2 correct
    z = torch.tensor([[0.1, 0.2, 0.9], [3.0, -1.0, 0.0], [0.0, 5.0, 4.0], [-2.0, -1.0, -3.0]])
    y = torch.tensor([2, 1, 1, 0])
    assert losses.batch_metrics(z, y, MULTICLASS)["correct"].item() == 2


def test_batch_metrics_regression():
    # sum over the batch of 1/K ||z - y||^2: (1 + 0) / 2 + (0 + 4) / 2 + (9 + 1) / 2 = 0.5 + 2 + 5 = 7.5
    z = torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]])
    y = torch.tensor([[0.0, 2.0], [3.0, 6.0], [3.0, -1.0]])
    assert losses.batch_metrics(z, y, REGRESSION)["sq_err"].item() == pytest.approx(7.5)
