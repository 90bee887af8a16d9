"""dlrun/regularizers.py: Omega(theta) over weight matrices only (biases and norm layers excluded).

l2   Omega = lambda/2 sum_W ||W||^2,   dOmega/dW = lambda W,        dOmega/db = 0
l1   Omega = lambda sum_W |W_ij|,      dOmega/dW = lambda sign(W),  dOmega/db = 0
elastic  Omega = lambda (r sum |W_ij| + (1 - r)/2 sum ||W||^2)
weight_decay  W_{t+1} = (1 - lr lambda) W_t - lr grad for SGD; torch.optim.AdamW's update for Adam
"""

import copy
import json
import os

import pytest
import torch
from conftest import dlrun, quick
from torch import nn

from dlrun import regularizers
from dlrun.config import compose
from dlrun.models.mlp import MLP
from dlrun.options import ElasticConfig, L1Config, RegularizerConfig
from dlrun.train import checkpoint as ckpt
from dlrun.train import train


def _model() -> MLP:
    torch.manual_seed(0)
    model = MLP(3, [4, 5], 2, activation="tanh", norm="batch").double()
    with torch.no_grad():  # move norm-layer parameters away from 1 / 0 so that including them would show
        for p in model.parameters():
            if p.ndim == 1:
                p.uniform_(0.5, 1.5)
    return model


def _weight_matrices(model: MLP) -> list[torch.Tensor]:
    layers = model.layers
    return [layers.fc1.weight, layers.fc2.weight, layers.out.weight]


def test_weights_are_the_linear_matrices_only():
    model = _model()
    got = {id(p) for p in regularizers.weights(model)}
    assert got == {id(w) for w in _weight_matrices(model)}


def test_l2_value():
    model, lam = _model(), 0.3
    omega = regularizers.build(RegularizerConfig(name="l2", strength=lam), model)
    # lambda/2 (||W1||^2 + ||W2||^2 + ||W_out||^2); biases, bn scales and shifts left out
    expected = lam / 2 * sum((w.detach() ** 2).sum() for w in _weight_matrices(model))
    assert abs(omega().item() - expected.item()) < 1e-12


def test_l1_value():
    model, lam = _model(), 0.2
    omega = regularizers.build(RegularizerConfig(name="l1", strength=lam), model)
    expected = lam * sum(w.detach().abs().sum() for w in _weight_matrices(model))  # lambda sum |W_ij|
    assert abs(omega().item() - expected.item()) < 1e-12


def _grad_of_omega(name: str, lam: float) -> tuple[MLP, dict[str, torch.Tensor]]:
    """d(data loss + Omega)/dtheta - d(data loss)/dtheta for every parameter, by autograd."""
    model = _model()
    x = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    omega = regularizers.build(RegularizerConfig(name=name, strength=lam), model)

    def grads(with_omega: bool) -> dict[str, torch.Tensor]:
        model.zero_grad()
        loss = model(x).pow(2).mean()
        if with_omega:
            loss = loss + omega()
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    full, data = grads(True), grads(False)
    return model, {n: full[n] - data[n] for n in full}


@pytest.mark.parametrize("name", ["l2", "l1"])
def test_gradient_on_weights_and_biases(name):
    lam = 0.7
    model, g = _grad_of_omega(name, lam)
    for n, p in model.named_parameters():
        if p.ndim > 1:
            # l2: lambda W; l1: lambda sign(W)
            expected = lam * (p.detach() if name == "l2" else torch.sign(p.detach()))
            torch.testing.assert_close(g[n], expected, rtol=0, atol=1e-12, msg=n)
        else:  # biases and batch-norm gamma/beta are not regularized
            assert torch.equal(g[n], torch.zeros_like(p)), n


def test_none_builds_nothing():
    assert regularizers.build(RegularizerConfig(name="none", strength=1.0), _model()) is None


# ----------------------------------------------------------------------------- which tensors are weights
def test_weights_include_kernels_recurrent_and_embedding_matrices_not_norm_layers():
    class Zoo(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)  # a linear layer on one-hot inputs: regularized
            self.conv = nn.Conv2d(1, 3, 3)
            self.bn = nn.BatchNorm2d(3)
            self.ln = nn.LayerNorm((3, 4))  # a 2-D scale and shift, still a norm layer
            self.gn = nn.GroupNorm(1, 3)
            self.gru = nn.GRU(4, 5)
            self.fc = nn.Linear(5, 2)

    zoo = Zoo()
    got = {id(p) for p in regularizers.weights(zoo)}
    expected = [zoo.emb.weight, zoo.conv.weight, zoo.gru.weight_ih_l0, zoo.gru.weight_hh_l0, zoo.fc.weight]
    assert got == {id(p) for p in expected}
    assert zoo.ln.weight.ndim == 2  # so "ndim > 1" alone would have taken it


# ----------------------------------------------------------------------------- the loss terms
def test_l2_step_on_the_term_alone_shrinks_weights_and_leaves_biases():
    model, lam, lr = _model(), 0.5, 0.1
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    omega = regularizers.build(RegularizerConfig(name="l2", strength=lam), model)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    omega().backward()
    opt.step()
    for n, p in model.named_parameters():
        if p.ndim > 1:  # W - lr lambda W
            torch.testing.assert_close(p.detach(), (1 - lr * lam) * before[n], rtol=0, atol=1e-15)
        else:  # biases and batch-norm scales/shifts: no gradient, untouched
            assert p.grad is None or torch.equal(p.grad, torch.zeros_like(p)), n
            assert torch.equal(p.detach(), before[n]), n


def test_elastic_value_and_gradient():
    lam, r = 0.6, 0.3
    model = _model()
    omega = regularizers.build(ElasticConfig(name="elastic", strength=lam, l1_ratio=r), model)
    ws = [w.detach() for w in _weight_matrices(model)]
    # lambda (r sum |W| + (1 - r)/2 sum ||W||^2)
    expected = lam * (r * sum(w.abs().sum() for w in ws) + (1 - r) / 2 * sum((w**2).sum() for w in ws))
    assert abs(omega().item() - expected.item()) < 1e-12
    model, g = _grad_of_omega_cfg(ElasticConfig(name="elastic", strength=lam, l1_ratio=r))
    for n, p in model.named_parameters():
        w = p.detach()
        if p.ndim > 1:  # lambda (r sign(W) + (1 - r) W)
            torch.testing.assert_close(g[n], lam * (r * torch.sign(w) + (1 - r) * w), rtol=0, atol=1e-12, msg=n)
        else:
            assert torch.equal(g[n], torch.zeros_like(p)), n


@pytest.mark.parametrize("r, same_as", [(1.0, "l1"), (0.0, "l2")])
def test_elastic_ends_are_l1_and_l2(r, same_as):
    model = _model()
    elastic = regularizers.build(ElasticConfig(name="elastic", strength=0.4, l1_ratio=r), model)
    other = regularizers.build(RegularizerConfig(name=same_as, strength=0.4), model)
    assert abs(elastic().item() - other().item()) < 1e-12


def _grad_of_omega_cfg(cfg) -> tuple[MLP, dict[str, torch.Tensor]]:
    model = _model()
    omega = regularizers.build(cfg, model)
    model.zero_grad()
    omega().backward()
    return model, {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


def test_sparsity_counts_weights_below_the_threshold():
    model = _model()
    with torch.no_grad():
        model.layers.fc1.weight[:2] = 1e-4  # 2 rows of 3: 6 of the 3*4 + 4*5 + 5*2 = 42 weights
        model.layers.fc1.bias.zero_()  # biases do not count
    reg = regularizers.build(L1Config(name="l1", strength=0.1, zero_threshold=1e-3), model)
    assert reg.scalars()["weights/sparsity"].item() == pytest.approx(6 / 42)


# ----------------------------------------------------------------------------- decoupled weight decay
def _sgd_step_with_decay(lam: float, lrs: tuple[float, float]):
    """One step of SGD (two param groups, two learning rates) with regularizer=weight_decay."""
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    groups = [
        {"params": [p for n, p in model.named_parameters() if n.startswith("layers.fc1")], "lr": lrs[0]},
        {"params": [p for n, p in model.named_parameters() if not n.startswith("layers.fc1")], "lr": lrs[1]},
    ]
    opt = torch.optim.SGD(groups, lr=lrs[1])
    reg = regularizers.build(RegularizerConfig(name="weight_decay", strength=lam), model)
    x = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert reg() is None  # not a loss term
    reg.before_step(opt)
    opt.step()
    return model, before, grads


def test_weight_decay_is_the_lecture_update_for_sgd():
    lam, lrs = 0.3, (0.2, 0.05)
    model, before, grads = _sgd_step_with_decay(lam, lrs)
    for n, p in model.named_parameters():
        lr = lrs[0] if n.startswith("layers.fc1") else lrs[1]  # each weight decays with its own group's lr
        if p.ndim > 1:  # (1 - lr lambda) W - lr grad
            expected = (1 - lr * lam) * before[n] - lr * grads[n]
        else:  # biases and norm layers: plain SGD
            expected = before[n] - lr * grads[n]
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-14, msg=n)


def test_weight_decay_with_adam_is_adamw_on_the_weights():
    torch.manual_seed(0)
    lam, lr = 0.1, 0.01
    net = nn.Sequential(nn.Linear(4, 6, bias=False), nn.Tanh(), nn.Linear(6, 2, bias=False)).double()
    ref = copy.deepcopy(net)  # every parameter is a weight, so AdamW decays the same tensors
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=lr, weight_decay=lam)
    reg = regularizers.build(RegularizerConfig(name="weight_decay", strength=lam), net)
    x = torch.randn(16, 4, dtype=torch.float64)
    for _ in range(5):
        for m, o in ((net, opt), (ref, ref_opt)):
            o.zero_grad()
            m(x).pow(2).mean().backward()
            if m is net:
                reg.before_step(o)
            o.step()
    for a, b in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)


# ----------------------------------------------------------------------------- in the trainer
def _records(run_dir: str) -> list[dict]:
    return [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]


def test_trainer_logs_reg_loss_and_sparsity(runs):
    common = ("model.hidden=[16]", "trainer.epochs=2", "trainer.log_every=10", "trainer.diag_every=0")
    s = train(compose(quick(runs, "regularizer=l1", "regularizer.strength=1e-3", *common)))
    logs = [r for r in _records(s["run_dir"]) if "train/loss" in r]
    assert all("train/reg_loss" in r and 0.0 <= r["weights/sparsity"] <= 1.0 for r in logs)
    # the last log is at the last step: its sparsity is that of the final weights
    final = ckpt.load(os.path.join(s["run_dir"], "checkpoints", "last.pt"))["model"]
    ws = [v for k, v in final.items() if k.endswith("weight")]
    expected = sum((w.abs() < 1e-3).sum().item() for w in ws) / sum(w.numel() for w in ws)
    assert logs[-1]["step"] == s["step"] and logs[-1]["weights/sparsity"] == pytest.approx(expected, abs=1e-6)
    # the reg term is logged apart: lambda sum |W| of the (nearly final) weights, not mixed into train/loss
    l1 = 1e-3 * sum(w.abs().sum().item() for w in ws)
    assert logs[-1]["train/reg_loss"] == pytest.approx(l1, rel=0.05)

    decayed = train(compose(quick(runs, "regularizer=weight_decay", *common)))
    logs = [r for r in _records(decayed["run_dir"]) if "train/loss" in r]
    assert logs and not any("train/reg_loss" in r or "weights/sparsity" in r for r in logs)


def test_weight_decay_run_ends_with_smaller_weights(runs):
    common = ("model.hidden=[16]", "trainer.epochs=2", "optim=sgd", "optim.lr=0.1", "trainer.diag_every=0")
    plain = train(compose(quick(runs, "name=plain", *common)))
    decayed = train(
        compose(quick(runs, "name=decayed", "regularizer=weight_decay", "regularizer.strength=0.5", *common))
    )
    last = {
        name: [r for r in _records(run["run_dir"]) if "weights/fc1/norm" in r][-1]["weights/fc1/norm"]
        for name, run in (("plain", plain), ("decayed", decayed))
    }
    assert last["decayed"] < 0.8 * last["plain"]  # ||W1|| at the last log step


def test_dlrun_list_shows_every_regularizer_with_its_formula():
    result = dlrun("list", "regularizer")
    assert result.returncode == 0, result.stderr
    rows = {
        line.split("│")[2].strip().rstrip(" *"): line.split("│")[3].strip()
        for line in result.stdout.splitlines()
        if line.count("│") == 4
    }
    assert set(rows) == set(regularizers.REGULARIZERS)
    words = {
        "l2": "lambda/2",
        "l1": "lambda sum |W|",
        "elastic": "l1_ratio",
        "weight_decay": "lambda W",
        "dropout": "1/(1 - p)",
        "none": "No regularization",
    }
    for name, word in words.items():
        assert word in rows[name], name
