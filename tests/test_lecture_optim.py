"""dlrun/optim/lecture.py (`optim.impl=lecture`): each update against torch.optim or a hand computation, in float64.

Two problems:
- a 2-parameter quadratic f(theta) = 1/2 theta^T A theta - b^T theta, g(theta) = A theta - b (hand computations);
- least squares on 20 random examples with 5 weights (trajectories against torch.optim).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dlrun.cli import app
from dlrun.config import compose
from dlrun.errors import ConfigError
from dlrun.optim import LECTURE, build_optimizer, build_scheduler, lecture
from dlrun.options import AdagradConfig, AdamConfig, MomentumConfig, OptimConfig, RMSpropConfig, declared, schema
from dlrun.train import checkpoint as ckpt
from dlrun.train import train
from tests.conftest import dlrun, quick

A = np.array([[3.0, 0.5], [0.5, 1.0]])
B = np.array([1.0, -2.0])
THETA0 = np.array([1.5, -0.7])
runner = CliRunner()


def grad(theta: np.ndarray) -> np.ndarray:
    return A @ theta - B  # g(theta) = A theta - b


def quadratic_run(cfg, steps: int, sched=None) -> list[np.ndarray]:
    """Minimize the quadratic with the dlrun-built optimizer (and schedule); the parameters after each step."""
    theta = torch.nn.Parameter(torch.tensor(THETA0))
    a, b = torch.tensor(A), torch.tensor(B)
    opt = build_optimizer([theta], cfg)
    scheduler = build_scheduler(opt, sched, steps) if sched is not None else None
    out = []
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * theta @ a @ theta - b @ theta).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        out.append(theta.detach().numpy().copy())
    return out


def least_squares_run(make_optimizer, steps: int) -> list[torch.Tensor]:
    """Full-batch least squares, 1/n ||X theta - y||^2, from a fixed start; the parameters after each step."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(20, 5, generator=g, dtype=torch.float64)
    y = torch.randn(20, generator=g, dtype=torch.float64)
    theta = torch.nn.Parameter(torch.randn(5, generator=g, dtype=torch.float64))
    opt = make_optimizer([theta])
    out = []
    for _ in range(steps):
        opt.zero_grad()
        (X @ theta - y).pow(2).mean().backward()
        opt.step()
        out.append(theta.detach().clone())
    return out


def assert_same_trajectory(got: list[torch.Tensor], expected: list[torch.Tensor], atol: float = 1e-12) -> None:
    assert len(got) == len(expected)
    for t, (a, b) in enumerate(zip(got, expected, strict=True)):
        torch.testing.assert_close(a, b, rtol=0, atol=atol, msg=f"step {t + 1}")


def lecture_cfg(schema, **kwargs):
    return schema(impl="lecture", **kwargs)


# ----------------------------------------------------------------------------- routing
def test_lecture_forms_are_the_named_optimizers():
    assert set(LECTURE) == {"gd", "sgd", "momentum", "adagrad", "rmsprop", "adam"}
    assert set(LECTURE) <= set(declared("optim"))
    classes = {
        "gd": lecture.GradientDescent,
        "sgd": lecture.GradientDescent,
        "momentum": lecture.HeavyBall,
        "adagrad": lecture.AdaGrad,
        "rmsprop": lecture.RMSProp,
        "adam": lecture.Adam,
    }
    for name, cls in classes.items():
        cfg = schema("optim", name)(name=name, impl="lecture", lr=0.05, weight_decay=0.001)
        opt = build_optimizer([torch.nn.Parameter(torch.zeros(3))], cfg)
        assert type(opt) is cls
        assert opt.param_groups[0]["lr"] == 0.05 and opt.param_groups[0]["weight_decay"] == 0.001
        torch_opt = build_optimizer([torch.nn.Parameter(torch.zeros(3))], schema("optim", name)(name=name))
        assert not isinstance(torch_opt, lecture.LectureOptimizer)


@pytest.mark.parametrize("name", ["nesterov", "adamw", "newton"])
def test_optimizers_without_a_lecture_form_are_refused(name):
    with pytest.raises(ConfigError, match="optim.impl=lecture") as e:
        build_optimizer([torch.nn.Parameter(torch.zeros(3))], schema("optim", name)(name=name, impl="lecture"))
    assert "adagrad, adam, gd, momentum, rmsprop, sgd" in str(e.value)


def test_eps_inside_sqrt_needs_the_lecture_form():
    with pytest.raises(ConfigError, match="set optim.impl=lecture"):
        build_optimizer([torch.nn.Parameter(torch.zeros(3))], AdamConfig(name="adam", eps_inside_sqrt=True))
    with pytest.raises(ConfigError, match="use optim=adam optim.impl=lecture"):
        build_optimizer([torch.nn.Parameter(torch.zeros(3))], AdamConfig(name="adamw", eps_inside_sqrt=True))


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["optim=adamw", "optim.impl=lecture"], "optim.impl=lecture: optim=adamw has no lecture form"),
        (["optim=newton", "model=linear", "optim.impl=lecture"], "optim=newton has no lecture form"),
        (["optim.eps_inside_sqrt=true"], "set optim.impl=lecture"),
    ],
)
def test_config_errors_exit_2_with_one_line(runs, overrides, expected):
    r = runner.invoke(app, ["train", *quick(runs, *overrides)])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and expected in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not r.stdout, r.output
    assert not any(runs.rglob("summary.json"))  # refused before a run directory was made


def test_config_error_exit_status_in_a_real_process(runs):
    r = dlrun("train", *quick(runs, "optim=adam", "optim.eps_inside_sqrt=true"))
    assert r.returncode == 2 and r.stderr.startswith("error: optim.eps_inside_sqrt=true"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stdout + r.stderr


# ----------------------------------------------------------------------------- against torch.optim
@pytest.mark.parametrize("name", ["gd", "sgd"])
def test_gradient_descent_follows_torch_sgd(name):
    for wd in (0.0, 0.1):  # weight_decay is coupled L2, as torch's
        cfg = lecture_cfg(OptimConfig, name=name, lr=0.05, weight_decay=wd)
        got = least_squares_run(lambda ps, cfg=cfg: build_optimizer(ps, cfg), 100)
        expected = least_squares_run(lambda ps, wd=wd: torch.optim.SGD(ps, lr=0.05, weight_decay=wd), 100)
        assert_same_trajectory(got, expected)


def test_gradient_descent_by_hand():
    lr = 0.1
    got = quadratic_run(lecture_cfg(OptimConfig, name="gd", lr=lr), 5)
    theta = THETA0.copy()
    for t in range(5):
        theta = theta - lr * grad(theta)  # theta -= alpha g
        np.testing.assert_allclose(got[t], theta, rtol=0, atol=1e-12)


def test_heavy_ball_follows_torch_sgd_momentum_with_a_constant_lr():
    alpha, gamma, steps = 0.05, 0.9, 500
    cfg = lecture_cfg(MomentumConfig, name="momentum", lr=alpha, momentum=gamma)
    got = least_squares_run(lambda ps: build_optimizer(ps, cfg), steps)
    expected = least_squares_run(lambda ps: torch.optim.SGD(ps, lr=alpha, momentum=gamma), steps)
    assert_same_trajectory(got, expected)
    assert (got[0] - got[-1]).abs().max() > 0.1  # it moved: the match is not between two standing points


def test_heavy_ball_with_a_schedule_uses_alpha_t_and_differs_from_torch():
    # step schedule: alpha drops 10x after half of the steps
    alpha, gamma, steps = 0.1, 0.9, 20
    sched = compose(["sched=step", "sched.milestones=[0.5]"]).sched
    got = quadratic_run(lecture_cfg(MomentumConfig, name="momentum", lr=alpha, momentum=gamma), steps, sched)
    prev, theta = THETA0.copy(), THETA0.copy()
    for t in range(steps):
        alpha_t = alpha * (0.1 if t >= steps // 2 else 1.0)
        # theta_t = theta_{t-1} - alpha_t g(theta_{t-1}) + gamma (theta_{t-1} - theta_{t-2})
        prev, theta = theta, theta - alpha_t * grad(theta) + gamma * (theta - prev)
        np.testing.assert_allclose(got[t], theta, rtol=0, atol=1e-12, err_msg=f"step {t + 1}")
    # torch rescales the whole velocity by the current lr, so after the drop the trajectories part
    torch_run = quadratic_run(MomentumConfig(name="momentum", lr=alpha, momentum=gamma), steps, sched)
    np.testing.assert_allclose(torch_run[steps // 2 - 1], got[steps // 2 - 1], rtol=0, atol=1e-12)
    assert np.abs(torch_run[steps // 2] - got[steps // 2]).max() > 1e-3


def test_adam_with_eps_outside_the_root_follows_torch_adam():
    cfg = lecture_cfg(AdamConfig, name="adam", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-3, weight_decay=0.01)
    got = least_squares_run(lambda ps: build_optimizer(ps, cfg), 300)
    expected = least_squares_run(
        lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-3, weight_decay=0.01), 300
    )
    assert (got[0] - got[-1]).abs().max() > 0.1
    assert_same_trajectory(got, expected)


def test_adagrad_with_eps_zero_equals_torch():
    # sqrt(G + 0) = sqrt(G) + 0: with eps = 0 the lecture's form and PyTorch's coincide
    cfg = lecture_cfg(AdagradConfig, name="adagrad", lr=0.1, eps=0.0)
    got = least_squares_run(lambda ps: build_optimizer(ps, cfg), 50)
    assert_same_trajectory(got, least_squares_run(lambda ps: torch.optim.Adagrad(ps, lr=0.1, eps=0.0), 50))


def test_rmsprop_with_eps_zero_equals_torch():
    cfg = lecture_cfg(RMSpropConfig, name="rmsprop", lr=0.01, gamma=0.8, eps=0.0)
    got = least_squares_run(lambda ps: build_optimizer(ps, cfg), 50)
    assert_same_trajectory(got, least_squares_run(lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.8, eps=0.0), 50))


# ----------------------------------------------------------------------------- by hand, eps inside the root
def test_adagrad_by_hand():
    lr, eps = 0.1, 0.5  # a large eps, so its place shows
    got = quadratic_run(lecture_cfg(AdagradConfig, name="adagrad", lr=lr, eps=eps), 4)
    theta, G = THETA0.copy(), np.zeros(2)
    for t in range(4):
        g = grad(theta)
        G = G + g**2  # G_t = G_{t-1} + g_t^2
        theta = theta - lr / np.sqrt(G + eps) * g
        np.testing.assert_allclose(got[t], theta, rtol=0, atol=1e-12, err_msg=f"step {t + 1}")
    torch_form = quadratic_run(AdagradConfig(name="adagrad", lr=lr, eps=eps), 4)
    assert np.abs(torch_form[0] - got[0]).max() > 1e-3


def test_rmsprop_by_hand():
    lr, gamma, eps = 0.01, 0.8, 0.5
    got = quadratic_run(lecture_cfg(RMSpropConfig, name="rmsprop", lr=lr, gamma=gamma, eps=eps), 4)
    theta, G = THETA0.copy(), np.zeros(2)
    for t in range(4):
        g = grad(theta)
        G = gamma * G + (1 - gamma) * g**2  # G_t = gamma G_{t-1} + (1 - gamma) g_t^2
        theta = theta - lr / np.sqrt(G + eps) * g
        np.testing.assert_allclose(got[t], theta, rtol=0, atol=1e-12, err_msg=f"step {t + 1}")
    torch_form = quadratic_run(RMSpropConfig(name="rmsprop", lr=lr, gamma=gamma, eps=eps), 4)
    assert np.abs(torch_form[0] - got[0]).max() > 1e-4


def test_rmsprop_first_step_by_hand():
    # step 1: G = (1 - gamma) g^2, so with eps = 0, theta_1 = theta_0 - alpha sign(g) / sqrt(1 - gamma)
    got = quadratic_run(lecture_cfg(RMSpropConfig, name="rmsprop", lr=0.01, gamma=0.5, eps=0.0), 1)[0]
    np.testing.assert_allclose(got, THETA0 - 0.01 * np.sign(grad(THETA0)) / np.sqrt(0.5), rtol=0, atol=1e-12)


def adam_by_hand(steps, lr, b1, b2, eps, inside):
    theta, m, v = THETA0.copy(), np.zeros(2), np.zeros(2)
    out = []
    for t in range(1, steps + 1):
        g = grad(theta)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat + eps) if inside else np.sqrt(v_hat) + eps)
        out.append(theta)
    return out


def test_adam_eps_inside_and_outside_the_root_follow_their_formulas_and_differ():
    lr, b1, b2, eps, steps = 0.1, 0.9, 0.99, 0.05, 10
    runs = {}
    for inside in (True, False):
        cfg = lecture_cfg(AdamConfig, name="adam", lr=lr, beta1=b1, beta2=b2, eps=eps, eps_inside_sqrt=inside)
        runs[inside] = quadratic_run(cfg, steps)
        for t, expected in enumerate(adam_by_hand(steps, lr, b1, b2, eps, inside)):
            np.testing.assert_allclose(runs[inside][t], expected, rtol=0, atol=1e-12, err_msg=f"step {t + 1}")
    # step 1: m_hat = g, v_hat = g^2, so the steps are g / sqrt(g^2 + eps) and g / (|g| + eps)
    g = grad(THETA0)
    np.testing.assert_allclose(runs[True][0], THETA0 - lr * g / np.sqrt(g**2 + eps), rtol=0, atol=1e-12)
    np.testing.assert_allclose(runs[False][0], THETA0 - lr * g / (np.abs(g) + eps), rtol=0, atol=1e-12)
    assert np.abs(runs[True][-1] - runs[False][-1]).max() > 1e-3


# ----------------------------------------------------------------------------- in the trainer
RUN = ("data=digits", "model.hidden=[32]", "trainer.batch_size=64", "optim.impl=lecture")


@pytest.mark.parametrize("optim", ["adam", "momentum"])
def test_lecture_form_trains_and_resumes_exactly(runs, optim):
    def run(*overrides):
        return train(compose(quick(runs, *RUN, f"optim={optim}", *overrides)))

    whole = run("trainer.epochs=4", "name=whole")
    half = run("trainer.epochs=2", "name=half")
    state = ckpt.load(f"{half['run_dir']}/checkpoints/last.pt")["optimizer"]["state"]
    keys = {"adam": {"step", "m", "v"}, "momentum": {"previous"}}[optim]
    assert state and all(set(s) == keys for s in state.values())  # the running sums are in the checkpoint
    resumed = train(compose([f"resume={half['run_dir']}", "trainer.epochs=4"]))
    assert resumed["status"] == "completed" and resumed["step"] == whole["step"]
    a = ckpt.load(f"{whole['run_dir']}/checkpoints/last.pt")["model"]
    b = ckpt.load(f"{half['run_dir']}/checkpoints/last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert whole["metrics"]["test/acc"] >= 0.8  # it learns (chance: 0.1)


def test_cli_train_with_the_lecture_adam(runs):
    overrides = quick(runs, "optim=adam", "optim.impl=lecture", "optim.eps_inside_sqrt=true", "trainer.epochs=3")
    r = runner.invoke(app, ["train", *overrides])
    assert r.exit_code == 0, r.output
    assert "completed" in r.stdout and "test/acc" in r.stdout
