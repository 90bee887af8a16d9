"""dlrun/optim/build.py: each optimizer's update checked by hand in float64 on a small quadratic.

f(theta) = 1/2 theta^T A theta - b^T theta,   g(theta) = A theta - b

gd, sgd    theta -= alpha g
momentum   theta_t = theta_{t-1} - alpha g(theta_{t-1}) + gamma (theta_{t-1} - theta_{t-2})   (lecture heavy ball)
adagrad    G += g^2;                          theta -= alpha g / (sqrt(G) + eps)
rmsprop    G = gamma G + (1 - gamma) g^2;     theta -= alpha g / (sqrt(G) + eps)
adam       m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t),
           theta -= alpha m_hat / (sqrt(v_hat) + eps)   (eps outside the root, as PyTorch and the paper)

The lecture forms (optim.impl=lecture) are tested in tests/test_lecture_optim.py, newton in tests/test_newton.py.
"""

import numpy as np
import pytest
import torch

from dlrun.optim import build_optimizer
from dlrun.options import (
    AdagradConfig,
    AdamConfig,
    MomentumConfig,
    NewtonConfig,
    OptimConfig,
    RMSpropConfig,
    declared,
    schema,
)

A = np.array([[3.0, 0.5], [0.5, 1.0]])
B = np.array([1.0, -2.0])
THETA0 = np.array([1.5, -0.7])


def grad(theta: np.ndarray) -> np.ndarray:
    return A @ theta - B  # g(theta) = A theta - b


def run_torch(cfg, steps: int) -> list[np.ndarray]:
    """Minimize f with the dlrun-built optimizer in float64; the parameters after each step."""
    theta = torch.nn.Parameter(torch.tensor(THETA0, dtype=torch.float64))
    a, b = torch.tensor(A), torch.tensor(B)
    opt = build_optimizer([theta], cfg)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * theta @ a @ theta - b @ theta
        loss.backward()
        opt.step()
        out.append(theta.detach().numpy().copy())
    return out


@pytest.mark.parametrize("name", sorted(declared("optim")))
def test_every_optimizer_builds_from_its_schema(name):
    cfg = schema("optim", name)(name=name, lr=0.05, weight_decay=0.001)
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(3))], cfg)
    assert isinstance(opt, torch.optim.Optimizer)
    group = opt.param_groups[0]
    assert group["lr"] == 0.05
    assert group["weight_decay"] == 0.001
    # the config's hyperparameters reach torch under torch's names
    if isinstance(cfg, MomentumConfig):
        assert group["momentum"] == cfg.momentum
        assert group["nesterov"] == (name == "nesterov")
    if isinstance(cfg, RMSpropConfig):
        assert group["alpha"] == cfg.gamma
        assert group["eps"] == cfg.eps
    if isinstance(cfg, AdamConfig):
        assert group["betas"] == (cfg.beta1, cfg.beta2)
        assert group["eps"] == cfg.eps
    if isinstance(cfg, AdagradConfig):
        assert group["eps"] == cfg.eps
    if name in ("gd", "sgd"):
        assert group["momentum"] == 0
    if isinstance(cfg, NewtonConfig):
        assert group["damping"] == cfg.damping


@pytest.mark.parametrize("name", ["gd", "sgd"])
def test_gradient_descent(name):
    lr = 0.1
    got = run_torch(OptimConfig(name=name, lr=lr), 5)
    theta = THETA0.copy()
    for t in range(5):
        theta = theta - lr * grad(theta)  # theta -= alpha g
        np.testing.assert_allclose(got[t], theta, rtol=0, atol=1e-12)


def test_sgd_weight_decay_is_coupled_l2():
    lr, wd = 0.1, 0.05
    got = run_torch(OptimConfig(name="sgd", lr=lr, weight_decay=wd), 3)
    theta = THETA0.copy()
    for t in range(3):
        theta = theta - lr * (grad(theta) + wd * theta)  # gradient of f + wd/2 ||theta||^2
        np.testing.assert_allclose(got[t], theta, rtol=0, atol=1e-12)


def test_momentum_is_the_lecture_heavy_ball():
    alpha, gamma, steps = 0.1, 0.9, 50
    got = run_torch(MomentumConfig(name="momentum", lr=alpha, momentum=gamma), steps)
    prev, theta = THETA0.copy(), THETA0.copy()  # theta_{-1} = theta_0: the first step is plain GD
    for t in range(steps):
        # theta_t = theta_{t-1} - alpha g(theta_{t-1}) + gamma (theta_{t-1} - theta_{t-2})
        prev, theta = theta, theta - alpha * grad(theta) + gamma * (theta - prev)
        np.testing.assert_allclose(got[t], theta, rtol=0, atol=1e-12, err_msg=f"step {t + 1}")


def test_rmsprop_gamma_is_the_decay_of_G():
    lr, gamma, eps = 0.01, 0.8, 1e-8
    got = run_torch(RMSpropConfig(name="rmsprop", lr=lr, gamma=gamma, eps=eps), 2)
    theta, G = THETA0.copy(), np.zeros(2)
    for t in range(2):
        g = grad(theta)
        G = gamma * G + (1 - gamma) * g**2
        theta = theta - lr * g / (np.sqrt(G) + eps)
        np.testing.assert_allclose(got[t], theta, rtol=0, atol=1e-12, err_msg=f"step {t + 1}")


def test_rmsprop_first_step_by_hand():
    # step 1: G = (1 - gamma) g^2, so theta_1 = theta_0 - lr g / (sqrt(1 - gamma) |g| + eps)
    lr, gamma = 0.01, 0.5
    got = run_torch(RMSpropConfig(name="rmsprop", lr=lr, gamma=gamma, eps=0.0), 1)[0]
    g = grad(THETA0)
    np.testing.assert_allclose(got, THETA0 - lr * np.sign(g) / np.sqrt(0.5), rtol=0, atol=1e-12)


def test_adagrad_accumulates_squared_gradients():
    lr, eps = 0.1, 1e-10
    got = run_torch(AdagradConfig(name="adagrad", lr=lr, eps=eps), 3)
    theta, G = THETA0.copy(), np.zeros(2)
    for t in range(3):
        g = grad(theta)
        G = G + g**2  # G_t = G_{t-1} + g_t^2
        theta = theta - lr * g / (np.sqrt(G) + eps)
        np.testing.assert_allclose(got[t], theta, rtol=0, atol=1e-12, err_msg=f"step {t + 1}")


def _adam_by_hand(steps, lr, b1, b2, eps, wd=0.0, decoupled=False):
    theta, m, v = THETA0.copy(), np.zeros(2), np.zeros(2)
    out = []
    for t in range(1, steps + 1):
        g = grad(theta)
        if decoupled:
            theta = theta * (1 - lr * wd)  # AdamW: theta <- theta - lr wd theta, apart from the gradient
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(theta)
    return out


def test_adam_one_step_with_bias_correction():
    # a large eps tells apart m_hat / (sqrt(v_hat) + eps) from m_hat / sqrt(v_hat + eps)
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-2
    got = run_torch(AdamConfig(name="adam", lr=lr, beta1=b1, beta2=b2, eps=eps), 1)[0]
    g = grad(THETA0)
    # step 1: m_hat = g, v_hat = g^2 (bias correction undoes the (1 - beta) factors)
    np.testing.assert_allclose(got, THETA0 - lr * g / (np.abs(g) + eps), rtol=0, atol=1e-12)
    assert np.abs(got - (THETA0 - lr * g / np.sqrt(g**2 + eps))).max() > 1e-5


def test_adam_several_steps():
    # large steps and a short v memory: g^2 and v go up and down, so max(v) (AMSGrad) would differ
    lr, b1, b2, eps = 0.5, 0.8, 0.5, 1e-8
    got = run_torch(AdamConfig(name="adam", lr=lr, beta1=b1, beta2=b2, eps=eps), 8)
    for t, expected in enumerate(_adam_by_hand(8, lr, b1, b2, eps)):
        np.testing.assert_allclose(got[t], expected, rtol=0, atol=1e-12, err_msg=f"step {t + 1}")


def test_adamw_weight_decay_is_decoupled():
    lr, b1, b2, eps, wd = 0.05, 0.9, 0.999, 1e-8, 0.1
    got = run_torch(AdamConfig(name="adamw", lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd), 3)
    for t, expected in enumerate(_adam_by_hand(3, lr, b1, b2, eps, wd=wd, decoupled=True)):
        np.testing.assert_allclose(got[t], expected, rtol=0, atol=1e-12, err_msg=f"step {t + 1}")
