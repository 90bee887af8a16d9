"""dlrun/regularizers.py: Omega(theta) over weight matrices only (biases and norm layers excluded).

l2   Omega = lambda/2 sum_W ||W||^2,   dOmega/dW = lambda W,        dOmega/db = 0
l1   Omega = lambda sum_W |W_ij|,      dOmega/dW = lambda sign(W),  dOmega/db = 0
"""

import pytest
import torch

from dlrun import regularizers
from dlrun.config.schema import RegularizerConfig
from dlrun.models.mlp import MLP


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


def test_registry_matches_schema_names():
    from dlrun.config.schema import SCHEMAS

    assert set(regularizers.REGULARIZERS) == set(SCHEMAS["regularizer"])
