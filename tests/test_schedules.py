"""dlrun/optim/schedules.py: lr_t = lr_0 * factor(t), checked against the hand formulas.

constant      factor = 1
step          factor = gamma^(number of milestones m with t >= m * total)
cosine        factor = m + (1 - m) (1 + cos(pi t / total)) / 2,  m = min_factor
inverse_time  factor = 1 / (1 + k t)          (Robbins-Monro)
warmup        factor *= (t + 1) / warmup_steps  for t < warmup_steps
"""

import math

import pytest
import torch

from dlrun.optim import build_scheduler, lr_factor
from dlrun.options import CosineSchedConfig, InverseTimeSchedConfig, SchedConfig, StepSchedConfig


def test_constant():
    cfg = SchedConfig(name="constant")
    assert all(lr_factor(cfg, t, 50) == 1.0 for t in range(60))


def test_step():
    cfg = StepSchedConfig(name="step", milestones=[0.5, 0.75], gamma=0.1)
    total = 100
    # milestones at steps 50 and 75: 1 before, 0.1 from 50, 0.01 from 75
    for t in range(total):
        expected = 1.0 if t < 50 else 0.1 if t < 75 else 0.01
        assert lr_factor(cfg, t, total) == pytest.approx(expected, rel=1e-12), t


def test_step_with_unsorted_milestones_and_other_gamma():
    cfg = StepSchedConfig(name="step", milestones=[0.6, 0.2], gamma=0.5)
    # milestones at steps 4 and 12 of 20
    expected = [1.0] * 4 + [0.5] * 8 + [0.25] * 8
    assert [lr_factor(cfg, t, 20) for t in range(20)] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("m", [0.0, 0.1])
def test_cosine(m):
    cfg = CosineSchedConfig(name="cosine", min_factor=m)
    total = 100
    assert lr_factor(cfg, 0, total) == pytest.approx(1.0, rel=1e-12)  # cos 0 = 1
    assert lr_factor(cfg, total, total) == pytest.approx(m, abs=1e-12)  # cos pi = -1
    assert lr_factor(cfg, 50, total) == pytest.approx(m + (1 - m) / 2, rel=1e-12)  # cos pi/2 = 0
    # cos(pi/4) = sqrt(2)/2
    assert lr_factor(cfg, 25, total) == pytest.approx(m + (1 - m) * (1 + math.sqrt(2) / 2) / 2, rel=1e-12)
    assert lr_factor(cfg, total + 10, total) == pytest.approx(m, abs=1e-12)  # stays at the floor past the end


def test_inverse_time():
    cfg = InverseTimeSchedConfig(name="inverse_time", k=0.5)
    # alpha_t / alpha_0 = 1 / (1 + k t)
    assert lr_factor(cfg, 0, 100) == 1.0
    assert lr_factor(cfg, 2, 100) == pytest.approx(0.5, rel=1e-12)
    assert lr_factor(cfg, 4, 100) == pytest.approx(1 / 3, rel=1e-12)
    assert lr_factor(cfg, 98, 100) == pytest.approx(1 / 50, rel=1e-12)


def test_warmup_is_linear_then_constant():
    cfg = SchedConfig(name="warmup", warmup_steps=4)
    # (t + 1) / 4 for t < 4, then 1
    expected = [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0]
    assert [lr_factor(cfg, t, 100) for t in range(7)] == pytest.approx(expected, rel=1e-12)


def test_warmup_multiplies_another_schedule():
    cfg = CosineSchedConfig(name="cosine", min_factor=0.0, warmup_steps=10)
    total = 40
    for t in range(total):
        cosine = 0.5 * (1 + math.cos(math.pi * t / total))
        expected = cosine * min(1.0, (t + 1) / 10)
        assert lr_factor(cfg, t, total) == pytest.approx(expected, rel=1e-12, abs=1e-15), t


def _hand(cfg, t: int, total: int) -> float:
    """The schedules written out independently of dlrun."""
    if cfg.name == "step":
        f = cfg.gamma ** len([m for m in cfg.milestones if t >= m * total])
    elif cfg.name == "cosine":
        f = cfg.min_factor + (1 - cfg.min_factor) * (1 + math.cos(math.pi * min(t, total) / total)) / 2
    elif cfg.name == "inverse_time":
        f = 1 / (1 + cfg.k * t)
    else:
        f = 1.0
    return f * ((t + 1) / cfg.warmup_steps if t < cfg.warmup_steps else 1.0)


@pytest.mark.parametrize(
    "cfg",
    [
        SchedConfig(name="constant"),
        SchedConfig(name="warmup", warmup_steps=5),
        StepSchedConfig(name="step", milestones=[0.3, 0.8], gamma=0.2),
        CosineSchedConfig(name="cosine", min_factor=0.05, warmup_steps=3),
        InverseTimeSchedConfig(name="inverse_time", k=0.1),
    ],
    ids=lambda c: c.name,
)
def test_build_scheduler_sets_the_optimizer_lr(cfg):
    lr0, total = 0.2, 20
    p = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([p], lr=lr0)
    sched = build_scheduler(opt, cfg, total)
    for t in range(total):
        # the lr used for the (t+1)-th optimizer step is lr0 * factor(t)
        assert opt.param_groups[0]["lr"] == pytest.approx(lr0 * _hand(cfg, t, total), rel=1e-12), t
        p.grad = torch.ones_like(p)
        opt.step()
        sched.step()
