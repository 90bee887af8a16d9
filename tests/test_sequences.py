"""data=adding, data=parity, data=sines: signals (C, L) for recurrent networks, checked by hand on the
unstandardized data; seeds; and a GRU that learns the adding problem and 8-bit parity."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from dlrun.config import compose
from dlrun.data import build
from dlrun.data.sequences import SINE_PERIODS, sines_arrays
from dlrun.train import train
from tests.conftest import quick

# name: (kind, channels, n_classes)
META = {"adding": ("regression", 2, 0), "parity": ("binary", 1, 2), "sines": ("regression", 1, 0)}


def raw(name: str, **changes):
    """The dataset from conf/data/NAME.yaml with the inputs and targets left as generated."""
    cfg = compose([f"data={name}"]).data
    if hasattr(cfg, "standardize_targets"):  # regression sets only
        changes["standardize_targets"] = False
    return build(replace(cfg, standardize="none", **changes))


def everything(ds):
    return torch.cat([ds.train.x, ds.val.x, ds.test.x]), torch.cat([ds.train.y, ds.val.y, ds.test.y])


@pytest.mark.parametrize("name", sorted(META))
def test_shapes_dtypes_and_task(name):
    cfg = compose([f"data={name}"]).data
    ds = build(cfg)
    kind, channels, n_classes = META[name]
    shape = (channels, cfg.length)
    assert ds.task.kind == kind and ds.task.input_shape == shape and ds.task.input_kind == "signal"
    assert ds.task.n_classes == n_classes and ds.task.n_targets == 1
    assert sum(len(s) for s in (ds.train, ds.val, ds.test)) == cfg.n_samples
    assert abs(len(ds.test) - cfg.test_fraction * cfg.n_samples) <= 1
    for split in (ds.train, ds.val, ds.test):
        assert split.x.dtype == torch.float32 and split.x.shape[1:] == shape
        if kind == "regression":
            assert split.y.dtype == torch.float32 and split.y.shape == (len(split), 1)
        else:
            assert split.y.dtype == torch.int64 and split.y.shape == (len(split),)


def test_adding_two_markers_one_per_half_and_target_is_their_sum():
    ds = raw("adding")
    x, y = everything(ds)
    values, markers = x[:, 0].double(), x[:, 1].double()
    length = x.shape[2]
    half = length // 2
    assert ((values >= 0) & (values <= 1)).all()
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    assert (markers[:, :half].sum(1) == 1).all() and (markers[:, half:].sum(1) == 1).all()
    marked = (values * markers).sum(1)
    assert torch.allclose(marked, y[:, 0].double(), atol=1e-6)
    # markers spread over every position of both halves; sums cover [0, 2] with mean about 1
    assert (markers.sum(0) > 0).all()
    assert abs(y.mean().item() - 1.0) < 0.05 and y.min() < 0.2 and y.max() > 1.8


def test_adding_default_targets_are_standardized_on_train():
    ds = build(compose(["data=adding"]).data)
    y = ds.train.y.double()
    assert abs(y.mean().item()) < 1e-5 and abs(y.std(unbiased=False).item() - 1.0) < 1e-4
    assert abs(ds.stats["y_mean"][0] - 1.0) < 0.05 and abs(ds.stats["y_std"][0] - (1 / 6) ** 0.5) < 0.02
    assert torch.equal(ds.train.x, raw("adding").train.x)  # inputs keep their values (standardize: none)


def test_parity_labels_are_the_xor_of_the_bits():
    ds = raw("parity")
    x, y = everything(ds)
    bits = x[:, 0]
    assert set(bits.unique().tolist()) == {0.0, 1.0}
    xor = torch.zeros(len(bits), dtype=torch.int64)
    for t in range(bits.shape[1]):
        xor ^= bits[:, t].long()
    assert torch.equal(y, xor)
    assert 0.4 < y.float().mean().item() < 0.6  # both classes, about equally often


def test_parity_strings_are_distinct_when_there_are_enough():
    ds = raw("parity", n_samples=500, length=12)  # 500 of the 4096 strings
    x, _ = everything(ds)
    assert len({tuple(r) for r in x[:, 0].tolist()}) == 500


def test_parity_default_inputs_are_centered_bits():
    ds = build(compose(["data=parity"]).data)
    low, high = sorted(ds.train.x.unique().tolist())
    assert low == pytest.approx(-1.0, abs=0.05) and high == pytest.approx(1.0, abs=0.05)


def test_sines_target_is_the_next_value_of_the_formula():
    # with noise 0 the window is the formula exactly: recover f and phi from the first steps
    x, y = everything(raw("sines", noise=0.0))
    assert x.shape == (2000, 1, 20) and y.shape == (2000, 1)
    s, y = x[:, 0].double().numpy(), y[:, 0].double().numpy()
    # sin(a + 2w) + sin(a) = 2 cos(w) sin(a + w): the window obeys one linear recurrence per example
    cos_w = (s[:, 2] + s[:, 0]) / (2 * s[:, 1])
    predicted = 2 * cos_w * s[:, -1] - s[:, -2]
    ok = np.abs(s[:, 1]) > 0.1  # away from division by ~0
    assert ok.sum() > 1700
    np.testing.assert_allclose(predicted[ok], y[ok], atol=1e-4)  # float32 data
    # 1 to 3 periods over the window
    periods = np.arccos(np.clip(cos_w[ok], -1, 1)) * 20 / (2 * np.pi)
    assert periods.min() >= SINE_PERIODS[0] - 1e-6 and periods.max() <= SINE_PERIODS[1] + 1e-6


def test_sines_noise_is_on_the_inputs_only():
    rng_args = (400, 20)
    clean_x, clean_y = sines_arrays(*rng_args, 0.0, np.random.default_rng(3))
    noisy_x, noisy_y = sines_arrays(*rng_args, 0.2, np.random.default_rng(3))
    np.testing.assert_array_equal(clean_y, noisy_y)  # the target is noise-free
    assert abs((noisy_x - clean_x).std() - 0.2) < 0.01
    ds = raw("sines")
    x, y = everything(ds)
    assert x.abs().max() < 1.0 + 6 * compose(["data=sines"]).data.noise and y.abs().max() <= 1.0


@pytest.mark.parametrize("name", sorted(META))
def test_seeds_reproduce_and_differ(name):
    cfg = compose([f"data={name}"]).data
    a, b, c = build(cfg), build(replace(cfg)), build(replace(cfg, seed=cfg.seed + 1))
    for split in ("train", "val", "test"):
        assert torch.equal(a.split(split).x, b.split(split).x) and torch.equal(a.split(split).y, b.split(split).y)
    assert not torch.equal(a.train.x, c.train.x)


def test_gru_learns_the_adding_problem(runs):
    ds = build(compose(["data=adding"]).data)
    baseline = ((ds.test.y - ds.train.y.mean()) ** 2).mean().item()  # predict the train mean: about 1.0
    assert 0.8 < baseline < 1.2
    overrides = ["data=adding", "model=rnn", "model.hidden_size=32", "optim.lr=5e-3", "trainer.epochs=8"]
    s = train(compose(quick(runs, *overrides, "trainer.checkpoint=false")))
    assert s["metrics"]["test/mse"] < 0.1 * baseline


def test_gru_learns_8_bit_parity(runs):
    s = train(
        compose(
            quick(runs, "data=parity", "model=rnn", "optim.lr=3e-3", "trainer.epochs=40", "trainer.checkpoint=false")
        )
    )
    assert s["metrics"]["test/acc"] >= 0.9
