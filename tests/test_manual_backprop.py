"""backprop=manual: the lecture's fprop/bprop boxes (dlrun/models/manual.py) against autograd.

In float64 the hand-written gradients equal autograd's to 1e-10 for every activation, every loss and
dropout with a fixed mask; in float32 a short training run ends where the autograd run ends.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from dlrun import losses
from dlrun.cli import app
from dlrun.config import compose
from dlrun.errors import ConfigError
from dlrun.gradcheck import check_config
from dlrun.models import manual
from dlrun.models.mlp import MLP
from dlrun.options import ACTIVATIONS
from dlrun.train import build, train
from tests.conftest import quick


def pair(activation: str = "tanh", dropout: float = 0.0, out: int = 3):
    """An autograd MLP in float64 and the manual network sharing its parameters."""
    torch.manual_seed(0)
    mlp = MLP(6, [5, 4], out, activation, dropout).double()
    return mlp, manual.from_mlp(mlp)


def batch(n: int = 8):
    g = torch.Generator().manual_seed(1)
    x = 2 * torch.randn(n, 6, generator=g, dtype=torch.float64)  # spread over every activation's range
    return x, torch.randint(0, 3, (n,), generator=g)


def grads(loss, x, model):
    return torch.autograd.grad(loss, [x, *model.parameters()])


def assert_all_close(got, expected):
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-10)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_matches_autograd(activation):
    mlp, net = pair(activation)
    x, y = batch()
    x.requires_grad_(True)
    expected = grads(losses.cross_entropy(mlp(x), y), x, mlp)
    z = net(x)
    assert type(z.grad_fn).__name__ == "_NetworkBackward"  # backward runs bprop, not autograd's graph
    got = grads(manual.ManualLoss(manual.SoftmaxCrossEntropy())(z, y), x, net)
    assert_all_close(got, expected)
    assert set(net.layers.fc1.grads) == {"weight", "bias"}  # left there by bprop
    if activation == "step":  # nothing reaches below a step
        assert torch.count_nonzero(got[0]) == 0 and torch.count_nonzero(got[1]) == 0


@pytest.mark.parametrize(
    ("name", "form", "out"),
    [("cross_entropy", "mean", 3), ("nll", "mean", 3), ("bce", "mean", 1), ("mse", "mean", 2), ("mse", "half_sum", 2)],
)
def test_every_loss_matches_autograd(name, form, out):
    mlp, net = pair("relu", out=out)
    x, y = batch()
    if name == "bce":
        y = y % 2
    elif name == "mse":
        y = torch.randn(len(x), out, dtype=torch.float64)
    loss_cfg = compose([f"loss={name}", "data=diabetes", f"loss.form={form}"] if name == "mse" else []).loss
    reference = losses.half_sse if form == "half_sum" else {"cross_entropy": losses.cross_entropy,
        "nll": losses.nll, "bce": losses.bce, "mse": losses.mse}[name]  # fmt: skip
    x.requires_grad_(True)
    expected = grads(reference(mlp(x), y), x, mlp)
    box = manual.loss_box(name, loss_cfg)
    value = manual.ManualLoss(box)(net(x), y)
    assert value.item() == reference(mlp(x), y).item()
    assert_all_close(grads(value, x, net), expected)


def test_output_gradient_is_softmax_minus_one_hot_over_batch():
    z = torch.randn(5, 4, dtype=torch.float64)
    y = torch.tensor([0, 3, 1, 1, 2])
    box = manual.SoftmaxCrossEntropy()
    box.fprop(z, y)
    by_hand = (torch.exp(z) / torch.exp(z).sum(1, keepdim=True) - F.one_hot(y, 4)) / 5
    torch.testing.assert_close(box.bprop(torch.tensor(1.0, dtype=torch.float64)), by_hand, rtol=0, atol=1e-15)


def test_linear_bprop_is_the_lectures_formulas():
    lin = torch.nn.Linear(3, 2).double()
    box = manual.Linear(lin.weight, lin.bias)
    h = torch.randn(1, 3, dtype=torch.float64)  # one example
    box.fprop(h)
    grad_z = torch.randn(1, 2, dtype=torch.float64)
    grad_h = box.bprop(grad_z)
    torch.testing.assert_close(box.grads["weight"], torch.outer(grad_z[0], h[0]))  # grad_W = grad_z h^T
    torch.testing.assert_close(box.grads["bias"], grad_z[0])  # grad_b = grad_z
    torch.testing.assert_close(grad_h[0], lin.weight.detach().T @ grad_z[0])  # grad_h = W^T grad_z


def test_dropout_with_a_fixed_mask_matches_autograd():
    mlp, net = pair("relu", dropout=0.5)
    mlp.train()
    net.train()
    x, y = batch(16)
    x.requires_grad_(True)
    torch.manual_seed(7)
    expected = grads(losses.cross_entropy(mlp(x), y), x, mlp)
    torch.manual_seed(7)  # the same draws: the same mask
    z = net(x)
    keep = net.layers.drop1.cache[0]
    assert 0 < keep.sum() < keep.numel() and set(keep.unique().tolist()) == {0.0, 1.0}  # some dropped, some kept
    got = grads(manual.ManualLoss(manual.SoftmaxCrossEntropy())(z, y), x, net)
    assert_all_close(got, expected)
    net.eval()
    torch.testing.assert_close(net(x), mlp.eval()(x))  # evaluation: no dropout


def test_bprop_reads_its_own_forward_pass():
    mlp, net = pair("sigmoid")
    x1, y = batch()
    x2 = torch.randn_like(x1)
    loss_fn = manual.ManualLoss(manual.SoftmaxCrossEntropy())
    first = loss_fn(net(x1), y)
    with torch.no_grad():
        loss_fn(net(x2), y)  # another forward pass in between (an evaluation) overwrites the boxes' caches
    assert_all_close(torch.autograd.grad(first, list(net.parameters())),
                     torch.autograd.grad(losses.cross_entropy(mlp(x1), y), list(mlp.parameters())))  # fmt: skip


# ----------------------------------------------------------------------------- plugged into the trainer
def test_same_parameters_as_the_autograd_mlp():
    auto = build(compose(["model.hidden=[16,8]", "model.dropout=0.1"]))
    hand = build(compose(["model.hidden=[16,8]", "model.dropout=0.1", "backprop=manual"]))
    assert isinstance(hand.model, manual.ManualMLP) and not isinstance(auto.model, manual.ManualMLP)
    a, m = dict(auto.model.named_parameters()), dict(hand.model.named_parameters())
    assert list(a) == list(m) == [f"layers.{n}.{p}" for n in ("fc1", "fc2", "out") for p in ("weight", "bias")]
    for name in a:
        assert torch.equal(a[name], m[name]), name  # the same init under the same seed
    assert list(auto.model.state_dict()) == list(hand.model.state_dict())  # checkpoints are interchangeable
    assert [n for n, _ in auto.model.named_modules()] == [n for n, _ in hand.model.named_modules()]


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["model=cnn"], ["model=mlp", "not model=cnn"]),
        (["model.norm=batch"], ["model.norm=none", "not model.norm=batch"]),
        (["model=linear", "optim=newton"], ["optim=newton", "Hessian"]),
    ],
)
def test_unsupported_configs_are_refused_naming_backprop(overrides, words):
    with pytest.raises(ConfigError) as err:
        build(compose(["backprop=manual", *overrides]))
    message = str(err.value)
    assert message.startswith("backprop=manual") and "\n" not in message
    assert all(w in message for w in words), message


def test_the_cli_refuses_with_exit_2(runs):
    result = CliRunner().invoke(app, ["train", *quick(runs, "backprop=manual", "model=rnn")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: backprop=manual") and len(result.stderr.strip().splitlines()) == 1
    assert not any(runs.rglob("summary.json"))


TRAINING = {
    # softmax cross-entropy on digits with the lecture's heavy ball; and dropout (the same masks)
    "digits-momentum": ["optim=momentum", "optim.lr=0.05", "model.hidden=[64,64]", "trainer.epochs=3"],
    "digits-dropout-sgd": ["optim=sgd", "optim.lr=0.1", "model.hidden=[64]", "model.dropout=0.2", "trainer.epochs=2"],
    # Adam, on the losses whose output gradient both paths compute alike (mse, bce)
    "sine-adam-mse": ["data=sine", "model.hidden=[32]", "model.activation=tanh", "trainer.epochs=5"],
    "xor-adam-bce": ["data=xor", "model.hidden=[8]", "model.activation=elu", "optim.lr=0.02", "trainer.epochs=5"],
}


@pytest.mark.parametrize("case", list(TRAINING), ids=list(TRAINING))
def test_training_ends_where_autograd_ends(case, runs):
    """float32: the same seed, data order and masks; the final losses agree to 1e-6.

    Not tested: Adam with softmax cross-entropy, where the runs drift apart by ~1e-4 in 20 steps. The one
    difference there is PyTorch's log_softmax backward computing exp with another vectorized kernel than
    torch.exp (1 ulp apart in about a tenth of the output gradients); Adam's per-coordinate step
    m / (sqrt(v) + eps) makes near-cancelling gradients (|g| ~ 1e-9, a few percent apart after rounding)
    into steps as large as anyone's, and the runs diverge. With SGD or momentum they stay together.
    """
    base = quick(runs, "trainer.checkpoint=false", *TRAINING[case])
    auto = train(compose([*base, "name=autograd"]))["metrics"]
    hand = train(compose([*base, "name=manual", "backprop=manual"]))["metrics"]
    for key in ("train/loss", "val/loss", "test/loss"):
        assert abs(auto[key] - hand[key]) < 1e-6, (key, auto[key], hand[key])
    assert (
        auto["test/loss"] < 0.9 * train(compose([*base, "name=untrained", "trainer.steps=1"]))["metrics"]["test/loss"]
    )


# ----------------------------------------------------------------------------- dlrun gradcheck backprop=manual
def test_gradcheck_compares_manual_autograd_and_finite_differences():
    report = check_config(compose(["backprop=manual", "model.hidden=[8,8]", "model.activation=softplus"]), batch=4)
    assert report["backprop"] == "manual" and report["verdict"] == "good"
    for row in report["tensors"]:
        assert row["manual_max_rel_error"] <= 1e-7 and row["manual_vs_autograd_rel_error"] <= 1e-12, row
    assert report["torch_gradcheck"]["passed"]


def test_gradcheck_catches_a_wrong_hand_written_derivative(monkeypatch):
    monkeypatch.setitem(manual.ACTIVATION_FORMS, "tanh", (torch.tanh, lambda z, a: 1 - a))  # not 1 - a^2
    report = check_config(compose(["backprop=manual", "model.hidden=[8]", "model.activation=tanh"]), batch=4)
    assert set(report["wrong"]) == {"fc1.weight", "fc1.bias", "input x"}  # below the activation
    rows = {r["name"]: r for r in report["tensors"]}
    assert rows["fc1.weight"]["max_rel_error"] <= 1e-7  # autograd itself is right
    assert rows["fc1.weight"]["manual_max_rel_error"] > 1e-2 and rows["out.weight"]["verdict"] == "good"
    assert not report["torch_gradcheck"]["passed"]
