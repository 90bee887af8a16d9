"""Every registered model on every bundled dataset it fits: forward, backward, every parameter gets a
finite gradient; and every pair that does not fit is refused with one line."""

from __future__ import annotations

import pytest
import torch

from dlrun import losses
from dlrun.config import compose
from dlrun.data import build as build_data
from dlrun.errors import ConfigError
from dlrun.models import build, check_fit
from dlrun.options import caps, declared
from dlrun.options.model import NAMED

DOWNLOADED = {"mnist", "fashion_mnist", "kmnist", "cifar10"}  # served locally in test_download.py
OWN_FILES = {"files", "imagenet"}  # the user's own files: test_data_files.py, test_named_models.py
DATASETS = sorted(set(declared("data")) - DOWNLOADED - OWN_FILES)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def data():
    return {name: build_data(compose([f"data={name}"]).data) for name in DATASETS}


@pytest.mark.parametrize("model_name", sorted(declared("model")))
@pytest.mark.parametrize("data_name", DATASETS)
def test_model_on_data(model_name, data_name, data):
    cfg = compose([f"model={model_name}", "model.depth=8"] if model_name == "resnet" else [f"model={model_name}"])
    ds = data[data_name]
    if cfg.data.targets == "inputs":  # model=autoencoder brings data.targets=inputs: its input is its target
        from dlrun.data import inputs_as_targets

        ds = inputs_as_targets(ds)
    try:
        loss_name, loss_fn = losses.build(cfg.loss, ds.task)
    except ConfigError as e:  # the single units' rules (perceptron, ADALINE) need a binary task (or regression)
        assert caps("model", model_name).implies and ds.task.kind != "binary", (model_name, data_name)
        assert "\n" not in str(e) and f"does not fit a {ds.task.kind} task" in str(e)
        return
    try:
        check_fit(cfg.model, ds.task, data_name)
    except ConfigError as e:  # refused: ordered-input models on tabular data, image-only models on signals
        assert ds.task.input_kind not in caps("model", model_name).inputs
        assert ds.task.input_kind == "tabular" or model_name in NAMED
        assert "\n" not in str(e) and "try model=" in str(e)
        return
    torch.manual_seed(0)
    model = build(cfg.model, ds.task.input_shape, losses.out_features(loss_name, ds.task))
    x, y = ds.train.x[:6], ds.train.y[:6]
    out = model(x)
    assert out.shape[0] == 6 and torch.isfinite(out).all()
    loss_fn(out, y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
