"""The classical units and the training rules of the slides: Rosenblatt's perceptron (updates on mistakes,
Novikoff's bound), ADALINE's LMS rule, squared error on a binary task, the summed loss (d2l's l.sum()) and
stopping when the gradient norm falls below delta (trainer.grad_tol)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from dlrun import losses
from dlrun.config import compose
from dlrun.data import Task
from dlrun.train import build, train
from dlrun.train.single import train_step
from tests.conftest import quick

SEPARABLE = ["data=blobs", "data.classes=2", "data.noise=0.3"]  # two tight blobs: linearly separable


def run(runs, *overrides):
    return train(compose(quick(runs, *overrides)))


# ----------------------------------------------------------------------------- the perceptron rule
def test_the_perceptron_loss_gradient_is_rosenblatts_update():
    """d/dw of the criterion is -t x on a mistake (t z <= 0, the boundary z = 0 included) and 0 otherwise."""
    torch.manual_seed(0)
    x = torch.randn(40, 3)
    w = torch.randn(3)
    w[0] = 0.0
    x[:5] = x[:5] * torch.tensor([1.0, 0.0, 0.0])  # z = 0 exactly for the first five
    y = torch.randint(0, 2, (40,))
    for i in range(40):
        wi = w.clone().requires_grad_(True)
        z = (x[i] @ wi).reshape(1, 1)
        losses.perceptron(z, y[i : i + 1]).backward()
        t = 2.0 * y[i].item() - 1.0
        expected = -t * x[i] if t * z.item() <= 0 else torch.zeros(3)
        torch.testing.assert_close(wi.grad, expected)


def test_model_perceptron_brings_the_rule_unless_the_command_line_says_otherwise():
    cfg = compose(["model=perceptron"])
    assert (cfg.loss.name, cfg.optim.name, cfg.optim.lr, cfg.trainer.batch_size) == ("perceptron", "sgd", 1.0, 1)
    assert cfg.trainer.stop_at_zero_loss and (cfg.init.name, cfg.init.c) == ("constant", 0.0)
    assert compose(["model=perceptron", "optim.lr=0.5"]).optim.lr == 0.5
    adam = compose(["model=perceptron", "optim=adam"]).optim
    assert adam.name == "adam" and adam.lr == compose(["optim=adam"]).optim.lr  # the implied lr=1 goes with sgd
    assert compose(["model=mlp"]).loss.name == "auto"


def margin_and_radius(x: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """Novikoff's R = max ||x~|| and gamma = max over unit u of min t u . x~, with x~ = (x, 1) (the bias as a
    weight): gamma = 1 / ||u*|| for the hard-margin u* = argmin ||u||^2 subject to t u . x~ >= 1."""
    xa = np.hstack([x, np.ones((len(x), 1))])
    fit = minimize(
        lambda u: u @ u,
        np.zeros(xa.shape[1]),
        jac=lambda u: 2 * u,
        constraints=[{"type": "ineq", "fun": lambda u: t * (xa @ u) - 1, "jac": lambda u: t[:, None] * xa}],
        method="SLSQP",
        options={"maxiter": 500, "ftol": 1e-12},
    )
    assert fit.success, fit.message
    return 1.0 / np.linalg.norm(fit.x), float(np.linalg.norm(xa, axis=1).max())


def test_the_perceptron_converges_within_novikoffs_bound(runs):
    """On a separable set it stops after a pass with no mistake, every training example right, after at most
    (R / gamma)^2 updates."""
    s = run(runs, "model=perceptron", *SEPARABLE, "data.val_fraction=0")
    assert s["status"] == "completed" and s["message"].startswith("converged: epoch")
    assert s["metrics"]["train_final/acc"] == 1.0
    updates = s["metrics"]["train/updates"]
    setup = build(compose(quick(runs, "model=perceptron", *SEPARABLE, "data.val_fraction=0")))
    x, y = setup.data.train.x.double().numpy(), setup.data.train.y.numpy()
    gamma, radius = margin_and_radius(x, 2.0 * y - 1.0)
    assert 1 <= updates <= (radius / gamma) ** 2, (updates, radius, gamma)
    assert s["step"] < s["total_steps"]


def test_the_perceptron_never_converges_on_xor(runs):
    s = run(runs, "model=perceptron", "data=xor", "trainer.epochs=8")
    assert s["message"] == "" and s["step"] == s["total_steps"]  # ran every epoch: never a clean pass
    assert s["metrics"]["train_final/acc"] < 0.8
    assert s["metrics"]["train/updates"] > 8 * 100  # mistakes in every epoch


def test_a_group_of_perceptrons_stops_each_member_on_its_own(runs):
    """trainer.seeds: each member stops at its own epoch with its own count of updates, as when trained alone
    (seed 1's random start already separates the blobs: 0 updates, one epoch; seed 0 needs two)."""
    s = run(runs, "model=perceptron", *SEPARABLE, "trainer.seeds=[0,1]", "init=normal", "init.std=1")
    for seed, m in enumerate(s["members"]):
        own = json.loads((Path(m["run_dir"]) / "summary.json").read_text())
        assert own["message"].startswith("converged"), own
        assert own["metrics"]["train_final/acc"] == 1.0
        alone = run(runs, "model=perceptron", *SEPARABLE, f"trainer.seed={seed}", "init=normal", "init.std=1")
        assert (own["step"], own["metrics"]["train/updates"]) == (alone["step"], alone["metrics"]["train/updates"])


# ----------------------------------------------------------------------------- ADALINE and squared error
def one_step(*overrides: str):
    """(weights before, weights after, the example) of one step of batch size 1."""
    cfg = compose(["trainer.batch_size=1", "trainer.order=fixed", *overrides])
    s = build(cfg)
    x, y = s.data.train.x[:1], s.data.train.y[:1]
    before = {k: v.clone() for k, v in s.model.state_dict().items()}
    train_step(s, x, y)
    return before, s.model.state_dict(), x.flatten(), y.item()


def test_adaline_takes_the_widrow_hoff_step():
    """LMS: w <- w + lr (t - z) x and b <- b + lr (t - z), with t = +-1 (from init 0: z = 0)."""
    before, after, x, y = one_step("model=adaline", "data=breast_cancer", "init=normal", "init.std=0.1")
    z = before["layers.out.weight"][0] @ x + before["layers.out.bias"][0]
    t, lr = 2.0 * y - 1.0, 0.01
    torch.testing.assert_close(after["layers.out.weight"][0], before["layers.out.weight"][0] + lr * (t - z) * x)
    torch.testing.assert_close(after["layers.out.bias"][0], before["layers.out.bias"][0] + lr * (t - z))


def test_adaline_reports_accuracy_from_the_sign(runs):
    s = run(runs, "model=adaline", "data=breast_cancer", "trainer.epochs=2")
    assert s["loss"] == "mse" and s["metrics"]["test/acc"] > 0.9


def test_squared_error_on_a_binary_task_thresholds_its_targets():
    """Targets +-1 split at z = 0, targets 0 / 1 at z = 1/2; the loss is against those targets."""
    task = Task("binary", (2,), "tabular", n_classes=2)
    z, y = torch.tensor([[0.3], [0.7], [-0.2]]), torch.tensor([1, 1, 0])
    pm1 = losses.build(compose(["data=xor", "loss=mse"]).loss, task)[1]
    zero_one = losses.build(compose(["data=xor", "loss=mse", "loss.targets=01"]).loss, task)[1]
    torch.testing.assert_close(pm1(z, y), ((0.3 - 1) ** 2 + (0.7 - 1) ** 2 + (-0.2 + 1) ** 2) / 3 * torch.ones(()))
    torch.testing.assert_close(zero_one(z, y), ((0.3 - 1) ** 2 + (0.7 - 1) ** 2 + 0.2**2) / 3 * torch.ones(()))
    assert losses.batch_metrics(z, y, task, losses.threshold(pm1))["correct"] == 3
    assert losses.batch_metrics(z, y, task, losses.threshold(zero_one))["correct"] == 2  # 0.3 < 1/2: class 0
    assert losses.out_features("mse", task) == 1


# ----------------------------------------------------------------------------- loss.form=sum
def test_a_summed_loss_with_lr_over_b_steps_as_the_mean_with_lr():
    """d2l: sum over the batch with lr / B is the mean with lr (the gradient is B times larger)."""
    common = ["model.hidden=[8]", "optim=sgd", "trainer.batch_size=16", "trainer.order=fixed"]
    s_mean, s_sum = (
        build(compose([*common, "optim.lr=0.1"])),
        build(compose([*common, "optim.lr=0.00625", "loss.form=sum"])),
    )
    x, y = s_mean.data.train.x[:16], s_mean.data.train.y[:16]
    mean_loss, _ = train_step(s_mean, x, y)
    sum_loss, _ = train_step(s_sum, x, y)
    torch.testing.assert_close(sum_loss, mean_loss)  # logged per example either way
    for (name, a), b in zip(s_mean.model.state_dict().items(), s_sum.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_summed_losses_evaluate_per_example(runs):
    a = run(runs, "trainer.steps=20", "optim=sgd", "optim.lr=0.1")  # 20 full batches of 32
    b = run(runs, "trainer.steps=20", "optim=sgd", "optim.lr=0.003125", "loss.form=sum")  # 0.1 / 32
    assert a["metrics"]["test/loss"] == pytest.approx(b["metrics"]["test/loss"], rel=1e-4)


# ----------------------------------------------------------------------------- trainer.grad_tol
def test_grad_tol_stops_when_the_gradient_norm_falls_below_delta(runs):
    s = run(
        runs, "data=iris", "model=linear", "optim=gd", "optim.lr=0.5", "trainer.epochs=5000", "trainer.grad_tol=0.05"
    )
    assert s["message"].startswith("converged: the gradient norm fell below trainer.grad_tol=0.05 at step")
    assert 1 < s["step"] < 5000
    setup = build(compose(quick(runs, "data=iris", "model=linear", "optim=gd", "optim.lr=0.5")))
    x, y = setup.data.train.x, setup.data.train.y
    setup.model.load_state_dict(torch.load(f"{s['run_dir']}/checkpoints/last.pt", weights_only=False)["model"])
    setup.loss_fn(setup.model(x), y).backward()
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in setup.model.parameters()]))
    assert norm < 0.06  # at the stop the gradient was below 0.05; one step later it is still about that small
