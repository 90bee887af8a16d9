"""Variable-length sequences: padded with a mask channel, packed by model=rnn and masked by model=transformer,
so that every example in a padded batch gets the output it gets alone (no padding at all)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlrun.config import compose
from dlrun.data import build as build_data
from dlrun.data.varlen import with_mask
from dlrun.errors import ConfigError
from dlrun.models import build

LENGTHS = [7, 3, 12, 1, 9]
STEPS = 12


def batch(channels: int = 2) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A padded batch (B, C + 1, L) with padding full of noise (it must not matter) and each example alone."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(len(LENGTHS), channels, STEPS))
    padded = torch.tensor(with_mask(x, np.array(LENGTHS)), dtype=torch.float64)
    noisy = padded.clone()
    noisy[:, :-1] += torch.tensor(rng.normal(size=(len(LENGTHS), channels, STEPS))) * (padded[:, -1:] == 0)
    alone = [padded[i : i + 1, :, :n] for i, n in enumerate(LENGTHS)]
    return noisy, alone


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=rnn", "model.cell=gru"],
        ["model=rnn", "model.cell=lstm", "model.bidirectional=true", "model.layers=2"],
        ["model=rnn", "model.cell=rnn", "model.readout=mean"],
        ["model=rnn", "model.cell=mlp", "model.bidirectional=true", "model.layers=2", "model.cell_hidden=[5]"],
        ["model=transformer", "model.d_model=8", "model.heads=2"],
        ["model=transformer", "model.d_model=8", "model.heads=2", "model.readout=cls", "model.positions=sinusoidal"],
    ],
    ids=["gru", "lstm-bi-2", "rnn-mean", "mlp-cell-bi-2", "transformer", "transformer-cls"],
)
def test_a_padded_batch_gives_each_sequence_its_output_alone(overrides):
    torch.manual_seed(0)
    cfg = compose([*overrides, "model.hidden_size=6"] if "model=rnn" in overrides else overrides)
    model = build(cfg.model, (3, STEPS), 4, masked=True).double().eval()
    padded, alone = batch()
    out = model(padded)
    for i, x in enumerate(alone):
        short = build(cfg.model, (3, x.shape[-1]), 4, masked=True).double().eval()
        state = model.state_dict()
        if "position" in state and state["position"] is not None:  # learned positions: the first l of them
            state = {**state, "position": state["position"][:, : short.position.shape[1]]}
        short.load_state_dict(state)
        torch.testing.assert_close(out[i : i + 1], short(x), atol=1e-6, rtol=1e-6)


def test_majority_is_padded_with_a_mask_and_trains(runs):
    from dlrun.train import train
    from tests.conftest import quick

    data = build_data(compose(["data=majority"]).data)
    assert data.task.masked and data.task.input_shape == (2, 31)
    mask = data.train.x[:, -1]
    lengths = mask.sum(1)
    assert set(lengths.long().tolist()) <= set(range(5, 32, 2))
    assert torch.equal(mask, (torch.arange(31)[None] < lengths[:, None]).float())
    assert (data.train.x[:, 0] * (1 - mask)).abs().max() == 0  # padding is 0
    s = train(compose(quick(runs, "data=majority", "model=rnn", "trainer.epochs=3")))
    assert s["metrics"]["test/acc"] > 0.9


def test_an_npz_with_lengths_is_read_as_variable_length_signals(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 10))
    lengths = rng.integers(1, 11, size=40)
    np.savez(tmp_path / "v.npz", x=x, y=np.arange(40) % 2, lengths=lengths)
    data = build_data(compose(["data=files", f"data.path={tmp_path / 'v.npz'}"]).data)
    assert data.task.masked and data.task.input_shape == (2, 10) and data.task.input_kind == "signal"
    real = torch.cat([data.train.x, data.val.x, data.test.x])
    assert sorted(real[:, -1].sum(1).long().tolist()) == sorted(lengths.tolist())
    valid = real[:, -1] > 0
    assert abs(real[:, 0][valid].mean().item()) < 0.5  # standardized over the real steps only (train split)
    np.savez(tmp_path / "bad.npz", x=x, y=np.arange(40) % 2, lengths=lengths + 5)
    with pytest.raises(ConfigError, match=r"lengths\[\d+\] = \d+: each length must be 1 to 10"):
        build_data(compose(["data=files", f"data.path={tmp_path / 'bad.npz'}"]).data)


def test_flatten_readout_needs_one_length():
    with pytest.raises(ValueError, match="readout=flatten needs sequences of one length"):
        build(compose(["model=rnn", "model.readout=flatten"]).model, (2, 8), 2, masked=True)
