"""dlrun/optim/newton.py (`optim=newton`): the Hessian against autograd, steps by hand, and logistic regression
on breast_cancer against scikit-learn's optimum, in float64."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from dlrun.cli import app
from dlrun.config import compose
from dlrun.data import Split
from dlrun.optim import build_optimizer, build_scheduler
from dlrun.optim.newton import Newton, hessian
from dlrun.options import NewtonConfig, caps
from dlrun.train import build, fit, train
from dlrun.train.loop import TrainState
from tests.conftest import quick

A = torch.tensor([[3.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
B = torch.tensor([1.0, -2.0], dtype=torch.float64)


def quadratic_step(cfg: NewtonConfig, theta0=(1.5, -0.7), a=A) -> torch.Tensor:
    """One Newton step on f(theta) = 1/2 theta^T a theta - b^T theta."""
    theta = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    opt = build_optimizer([theta], cfg)
    opt.step(lambda: 0.5 * theta @ a @ theta - B @ theta)
    return theta.detach()


def test_hessian_matches_autograd_functional_hessian():
    # a small tanh network: every block of H (weights x weights, weights x biases) is nonzero
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.randint(0, 2, (10,))
    params = list(net.parameters())
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in params]

    def loss_of(theta):  # theta: (n,) -> the loss with these parameters
        chunks = theta.split([s.numel() for s in shapes])
        values = {n: c.view(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        return torch.nn.functional.cross_entropy(torch.func.functional_call(net, values, (x,)), y)

    theta = torch.cat([p.detach().reshape(-1) for p in params])
    expected = torch.autograd.functional.hessian(loss_of, theta)  # (n, n)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    g = torch.cat([gr.reshape(-1) for gr in torch.autograd.grad(loss, params, create_graph=True)])
    torch.testing.assert_close(hessian(g, params), expected, rtol=0, atol=1e-12)


def test_one_undamped_step_solves_a_quadratic():
    theta = quadratic_step(NewtonConfig(name="newton", lr=1.0, damping=0.0))
    torch.testing.assert_close(theta, torch.linalg.solve(A, B), rtol=0, atol=1e-12)  # theta* = A^-1 b


def test_damped_step_by_hand():
    lr, damping, theta0 = 0.5, 0.3, torch.tensor([1.5, -0.7], dtype=torch.float64)
    theta = quadratic_step(NewtonConfig(name="newton", lr=lr, damping=damping))
    g = A @ theta0 - B
    expected = theta0 - lr * torch.linalg.solve(A + damping * torch.eye(2, dtype=torch.float64), g)
    torch.testing.assert_close(theta, expected, rtol=0, atol=1e-12)


def test_weight_decay_is_an_l2_term_in_gradient_and_hessian():
    # f + wd/2 ||theta||^2 has its minimum at (A + wd I)^-1 b, reached in one undamped step
    wd = 0.4
    theta = quadratic_step(NewtonConfig(name="newton", lr=1.0, damping=0.0, weight_decay=wd))
    expected = torch.linalg.solve(A + wd * torch.eye(2, dtype=torch.float64), B)
    torch.testing.assert_close(theta, expected, rtol=0, atol=1e-12)


def test_singular_hessian_takes_the_minimum_norm_step():
    # f = 1/2 (theta_1 + theta_2 - 1)^2: H = [[1, 1], [1, 1]] is singular; from 0 the least-squares step
    # (pseudo-inverse) lands on (1/2, 1/2), the point of the minimizing line closest to the start
    theta = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = Newton([theta], lr=1.0, damping=0.0)
    opt.step(lambda: 0.5 * (theta.sum() - 1) ** 2)
    torch.testing.assert_close(theta.detach(), torch.tensor([0.5, 0.5], dtype=torch.float64), rtol=0, atol=1e-12)


def test_step_without_a_closure_is_refused():
    opt = Newton([torch.nn.Parameter(torch.zeros(2))])
    assert caps("optim", "newton").closure
    with pytest.raises(ValueError, match="closure"):
        opt.step()


def test_newton_is_full_batch():
    assert caps("optim", "newton").full_batch


# ----------------------------------------------------------------------------- logistic regression
def to_float64(s):
    """The setup with model and data in float64, and a fresh optimizer and schedule on the converted model."""
    s.model.double()
    double = {k: Split(s.data.split(k).x.double(), s.data.split(k).y) for k in ("train", "val", "test")}
    s.data = replace(s.data, **double)
    s.optimizer = build_optimizer(s.model.parameters(), s.cfg.optim)
    s.scheduler = build_scheduler(s.optimizer, s.cfg.sched, s.total_steps)
    return s


def test_logistic_regression_reaches_sklearn_optimum_within_10_steps(runs):
    # sklearn minimizes 1/2 ||w||^2 + C sum_i logloss_i, i.e. (divided by C n) the mean logloss plus
    # ||w||^2 / (2 C n): regularizer=l2 (lambda/2 ||W||^2, weights only) with lambda = 1 / (C n);
    # neither regularizes the bias. loss=auto on a binary task is bce with one logit, as sklearn.
    C = 1.0
    base = quick(runs, "model=linear", "data=breast_cancer", "optim=newton", "trainer.checkpoint=false")
    n = len(build(compose(base)).data.train)
    cfg = compose([*base, "trainer.epochs=10", "regularizer=l2", f"regularizer.strength={1 / (C * n)}"])
    s = to_float64(build(cfg))
    assert s.loss_name == "bce" and s.steps_per_epoch == 1 and s.total_steps == 10
    x, y = s.data.train.x, s.data.train.y

    def objective() -> float:  # data loss + lambda/2 ||W||^2
        with torch.no_grad():
            return (s.loss_fn(s.model(x), y) + s.reg()).item()

    ref = LogisticRegression(C=C, tol=1e-12, max_iter=100_000).fit(x.numpy(), y.numpy())  # lbfgs
    w, b = ref.coef_.ravel(), ref.intercept_[0]
    z = x.numpy() @ w + b
    optimum = np.mean(np.logaddexp(0, z) - y.numpy() * z) + w @ w / (2 * C * n)

    values = []  # the objective after each step (full batch: one log per step)

    class Record:
        def on_log(self, step, scalars):
            values.append(objective())

    fit(s, TrainState(), None, None, callbacks=[Record()])
    assert len(values) == 10
    assert values[-1] == pytest.approx(optimum, abs=1e-4)
    assert values[0] - optimum > 0.1  # one step is not enough: the test follows the iterations
    # quadratic convergence: the last steps agree with the optimum far below the tolerance
    assert abs(values[-1] - optimum) < 1e-10
    weight, bias = s.model.state_dict().values()
    np.testing.assert_allclose(weight.numpy().ravel(), w, atol=1e-5)
    np.testing.assert_allclose(bias.item(), b, atol=1e-5)


def test_trainer_runs_newton_in_float32(runs):
    s = train(compose(quick(runs, "model=linear", "data=breast_cancer", "optim=newton", "trainer.epochs=5")))
    assert s["status"] == "completed" and s["step"] == 5
    assert s["metrics"]["test/acc"] >= 0.93 and s["metrics"]["train/loss"] < 0.1


runner = CliRunner()


def test_too_many_parameters_are_refused_with_one_line(runs):
    r = runner.invoke(app, ["train", *quick(runs, "optim=newton")])  # the default MLP: 85,002 parameters
    assert r.exit_code == 2, r.output
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1, r.stderr
    assert "85,002 parameters" in line and "optim.max_params=5,000" in line and "smaller model" in line
    ok = runner.invoke(app, ["train", *quick(runs, "optim=newton", "model=linear", "data=iris", "trainer.epochs=2")])
    assert ok.exit_code == 0, ok.output


def test_list_shows_newton():
    r = runner.invoke(app, ["list", "optim"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    assert "newton" in r.stdout and "Newton's method" in r.stdout
