"""dlrun/models/rnn.py: h_t = F(x_t, h_{t-1}; W), the reading order of signals and images, the readouts.

Reading order: (C, L) -> L steps of C features; (C, H, W) -> H rows of C*W features; (L,) -> L steps of 1.
Readouts: last = the final hidden states (both directions), mean over steps, flatten = every step's output.
"""

import math
import warnings
from dataclasses import asdict

import pytest
import torch
from torch import nn

from dlrun import models
from dlrun.config import compose
from dlrun.data import Task
from dlrun.errors import ConfigError
from dlrun.models import MODELS, count_parameters
from dlrun.models.rnn import RNN, MLPRecurrence, build_rnn, fits, to_sequence
from dlrun.options import CELLS, READOUTS, RNNConfig
from dlrun.train import train

SHAPES = [(1, 40), (1, 8, 8), (40,)]  # signal, image, 1-D
B = 5


def _capture(model: RNN) -> dict:
    """Records what `model.rnn` returns on the next forward: (y, h_n) or (y, (h_n, c_n))."""
    seen = {}
    model.rnn.register_forward_hook(lambda _m, _inp, out: seen.update(y=out[0], state=out[1]))
    return seen


def test_registered_and_cells_match_torch_modules():
    assert MODELS.get("rnn") is build_rnn
    kinds = {cell: type(build_rnn(RNNConfig(cell=cell), (1, 40), 10).rnn) for cell in CELLS}
    assert kinds == {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU, "mlp": MLPRecurrence}
    assert build_rnn(RNNConfig(cell="rnn"), (1, 40), 10).rnn.nonlinearity == "tanh"


def test_mnist1d_reference_gru_has_5134_parameters():
    # per direction: 3 gates * (W_x 6*1 + W_h 6*6 + b_x 6 + b_h 6) = 3 * 54 = 162; two directions: 324
    # head: 40 steps * 6 hidden * 2 directions = 480 inputs -> Linear(480, 10) = 4800 + 10 = 4810
    # total: 324 + 4810 = 5134
    model = models.build(RNNConfig(cell="gru", hidden_size=6, bidirectional=True, readout="flatten"), (1, 40), 10)
    assert count_parameters(model) == 5134
    assert (model.out.in_features, model.out.out_features) == (480, 10)
    assert sum(p.numel() for p in model.rnn.parameters()) == 324


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("cell", CELLS)
def test_output_shape(cell, readout, bidirectional):
    for shape in SHAPES:
        model = build_rnn(RNNConfig(cell=cell, hidden_size=7, bidirectional=bidirectional, readout=readout), shape, 3)
        steps = shape[-1] if len(shape) < 3 else shape[1]
        width = 7 * (2 if bidirectional else 1) * (steps if readout == "flatten" else 1)
        assert model.out.in_features == width, shape
        assert model(torch.randn(B, *shape)).shape == (B, 3), shape


@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("cell", CELLS)
def test_every_parameter_gets_a_finite_gradient(cell, readout):
    torch.manual_seed(0)
    cfg = RNNConfig(cell=cell, hidden_size=5, layers=2, bidirectional=True, readout=readout, dropout=0.2)
    model = build_rnn(cfg, (1, 8, 8), 4)
    model(torch.randn(B, 1, 8, 8)).pow(2).sum().backward()
    params = dict(model.named_parameters())
    assert len(params) == 2 * 2 * 4 + 2  # layers * directions * (W_ih, W_hh, b_ih, b_hh) + head weight and bias
    for name, p in params.items():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_reading_order_element_by_element():
    x = torch.randn(2, 3, 4, 5)  # (B, C, H, W)
    seq = to_sequence(x)
    assert seq.shape == (2, 4, 15)  # H steps of C*W features
    for t in range(4):
        for c in range(3):
            assert torch.equal(seq[:, t, c * 5 : (c + 1) * 5], x[:, c, t, :])  # step t: row t of channel c
    signal = torch.randn(2, 3, 7)  # (B, C, L)
    assert torch.equal(to_sequence(signal)[:, 4, :], signal[:, :, 4])  # step t: position t of every channel
    flat = torch.randn(2, 6)  # (B, L)
    assert torch.equal(to_sequence(flat), flat[:, :, None])  # L steps of 1 feature


def test_image_is_read_row_by_row_like_a_plain_gru():
    torch.manual_seed(0)
    model = build_rnn(RNNConfig(cell="gru", hidden_size=5, readout="flatten"), (1, 8, 8), 3)
    ref = nn.GRU(8, 5, batch_first=True)
    ref.load_state_dict(model.rnn.state_dict())
    x = torch.randn(B, 1, 8, 8)
    seen = _capture(model)
    got = model(x)
    y_ref, _ = ref(x.reshape(B, 8, 8))  # (B, H, C*W): row h is step h
    torch.testing.assert_close(seen["y"], y_ref)
    torch.testing.assert_close(got, model.out(y_ref.reshape(B, -1)))
    y_row0, _ = ref(x[:, 0, :1, :])  # a sequence of one step: row 0 alone
    torch.testing.assert_close(seen["y"][:, 0], y_row0[:, 0])  # the first step sees row 0 (and nothing else)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_last_readout_is_the_final_hidden_state(cell, bidirectional):
    torch.manual_seed(0)
    cfg = RNNConfig(cell=cell, hidden_size=4, layers=2, bidirectional=bidirectional, readout="last")
    model = build_rnn(cfg, (1, 40), 3)
    seen = _capture(model)
    got = model(torch.randn(B, 1, 40))
    h_n = seen["state"][0] if cell == "lstm" else seen["state"]  # (layers * directions, B, H)
    top = torch.cat([h_n[-2], h_n[-1]], dim=1) if bidirectional else h_n[-1]  # top layer: forward, backward
    torch.testing.assert_close(got, model.out(top))


def test_mean_readout_averages_the_outputs_over_steps():
    torch.manual_seed(0)
    model = build_rnn(RNNConfig(cell="lstm", hidden_size=4, bidirectional=True, readout="mean"), (2, 9), 3)
    seen = _capture(model)
    got = model(torch.randn(B, 2, 9))
    assert seen["y"].shape == (B, 9, 8)
    torch.testing.assert_close(got, model.out(seen["y"].mean(dim=1)))


def test_dropout_goes_to_torch_only_between_stacked_layers():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when dropout > 0 with a single layer
        assert build_rnn(RNNConfig(layers=1, dropout=0.3), (1, 40), 2).rnn.dropout == 0.0
    assert build_rnn(RNNConfig(layers=2, dropout=0.3), (1, 40), 2).rnn.dropout == 0.3


def test_unreadable_shape_is_refused():
    with pytest.raises(ValueError, match="model=rnn reads inputs of shape"):
        build_rnn(RNNConfig(), (1, 2, 3, 4), 2)


def test_fits_signals_and_images_but_not_tabular():
    assert fits(Task("multiclass", (1, 40), "signal", n_classes=10)) is None
    assert fits(Task("multiclass", (1, 8, 8), "image", n_classes=10)) is None
    reason = fits(Task("multiclass", (4,), "tabular", n_classes=3))
    assert isinstance(reason, str) and "\n" not in reason
    assert "reads sequences" in reason and "model=mlp" in reason and "tabular" in reason


def test_training_refuses_tabular_data(runs):
    with pytest.raises(ConfigError, match="model=rnn"):
        train(compose(["model=rnn", "data=iris", f"runs_dir={runs}", "trainer.progress=none"]))


def test_compose_rnn_defaults():
    m = compose(["model=rnn"]).model
    assert isinstance(m, RNNConfig)
    expected = dict(
        name="rnn", cell="gru", hidden_size=64, layers=1, bidirectional=False, readout="last", dropout=0.0,
        cell_hidden=[64],
    )  # fmt: skip
    assert asdict(m) == expected


def test_compose_mnist1d_gru():
    m = compose(["model=mnist1d_gru"]).model
    assert isinstance(m, RNNConfig)
    assert (m.name, m.cell, m.hidden_size, m.layers, m.bidirectional, m.readout) == (
        "rnn",
        "gru",
        6,
        1,
        True,
        "flatten",
    )
    assert count_parameters(models.build(m, (1, 40), 10)) == 5134


def test_compose_rejects_an_unknown_cell():
    with pytest.raises(ConfigError, match="model.cell"):
        compose(["model=rnn", "model.cell=transformer"])


def test_gru_learns_digits_row_by_row(runs):
    s = train(
        compose(
            [
                "model=rnn",
                "data=digits",
                "trainer.epochs=5",
                f"runs_dir={runs}",
                "trainer.progress=none",
                "trainer.hist_every=0",
                "optim.lr=0.01",
            ]
        )
    )
    assert s["status"] == "completed"
    assert s["params"] == 3 * (64 * 8 + 64 * 64 + 2 * 64) + 64 * 10 + 10  # GRU(8 -> 64) + Linear(64, 10)
    assert s["metrics"]["test/acc"] >= 0.85  # reached 0.975 when written
    assert math.isfinite(s["metrics"]["test/loss"])
