"""dlrun/data: every registered dataset, built from its conf/data/NAME.yaml, split and standardized correctly.

split          train / val / test disjoint, together all n examples; |test| ~ test_fraction n,
               |val| ~ val_fraction n; classification splits stratified (class shares kept)
standardize    x_std = (x - mean_train) / std_train: fitted on train only
"""

import functools
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn import datasets as skd

from dlrun.config import compose, list_options
from dlrun.data import DATASETS, Dataset, build
from dlrun.options import declared

# published test splits (test_mnist1d.py, test_download.py), sequences (test_sequences.py), files (test_data_files.py)
OWN_TESTS = {
    "mnist1d",
    "mnist",
    "fashion_mnist",
    "kmnist",
    "cifar10",
    "adding",
    "parity",
    "sines",
    "files",
    "imagenet",
    "majority",
}  # imagenet: test_named_models.py; majority: test_varlen.py
NAMES = sorted(set(declared("data")) - OWN_TESTS)
SKLEARN = {
    "digits": skd.load_digits,
    "iris": skd.load_iris,
    "breast_cancer": skd.load_breast_cancer,
    "wine": skd.load_wine,
    "diabetes": skd.load_diabetes,
}
# what each dataset is (from its description): kind, one example's shape, number of classes
META = {
    "digits": ("multiclass", (1, 8, 8), 10),
    "iris": ("multiclass", (4,), 3),
    "breast_cancer": ("binary", (30,), 2),
    "wine": ("multiclass", (13,), 3),
    "diabetes": ("regression", (10,), 0),
    "xor": ("binary", (2,), 2),
    "moons": ("binary", (2,), 2),
    "circles": ("binary", (2,), 2),
    "spirals": (None, (2,), None),  # classes from the config
    "blobs": (None, (2,), None),
    "sine": ("regression", (1,), 0),
}


@functools.cache
def config(name: str):
    return compose([f"data={name}"]).data


@functools.cache
def dataset(name: str) -> Dataset:
    return build(config(name))


def _splits(ds: Dataset):
    return [ds.train, ds.val, ds.test]


def _n(name: str) -> int:
    cfg = config(name)
    return len(SKLEARN[name]().target) if name in SKLEARN else cfg.n_samples


def _rows(x: torch.Tensor, y: torch.Tensor) -> list[tuple[bytes, bytes]]:
    """One hashable key per example: its (flattened) input and its target."""
    x = x.reshape(len(x), -1).numpy()
    y = y.reshape(len(y), -1).numpy()
    return [(a.tobytes(), b.tobytes()) for a, b in zip(x, y, strict=True)]


def test_registry_matches_schema_and_conf():
    build(config("iris"))  # registers the bundled sets
    conf_options = {option for option, _ in list_options("data")["data"]}
    assert set(DATASETS) == set(declared("data")) == set(NAMES) | OWN_TESTS == conf_options
    assert set(META) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_splits_are_disjoint_and_cover_n(name):
    ds, cfg = dataset(name), config(name)
    n = _n(name)
    assert sum(len(s) for s in _splits(ds)) == n
    rows = [r for s in _splits(ds) for r in _rows(s.x, s.y)]
    if name in SKLEARN:
        # the splits together are the original data (as a multiset), standardized with the train statistics
        bunch = SKLEARN[name]()
        x = (bunch.data.astype(np.float64) - ds.stats["x_mean"]) / ds.stats["x_std"]
        y = bunch.target
        if ds.task.kind == "regression":
            y = y.reshape(n, -1).astype(np.float64)
            if cfg.standardize_targets:
                y = (y - ds.stats["y_mean"]) / np.where(ds.stats["y_std"] > 1e-12, ds.stats["y_std"], 1.0)
            y_t = torch.tensor(y, dtype=torch.float32)
        else:
            y_t = torch.tensor(y, dtype=torch.int64)
        assert Counter(rows) == Counter(_rows(torch.tensor(x, dtype=torch.float32), y_t))
    else:
        # continuous synthetic data has no repeated points: a shared example would show up twice
        assert len(set(rows)) == n


@pytest.mark.parametrize("name", NAMES)
def test_split_sizes_follow_the_fractions(name):
    ds, cfg = dataset(name), config(name)
    n = _n(name)
    assert abs(len(ds.test) - cfg.test_fraction * n) <= 1
    assert abs(len(ds.val) - cfg.val_fraction * n) <= 2
    assert len(ds.train) == n - len(ds.val) - len(ds.test)


@pytest.mark.parametrize("name", [n for n in NAMES if META[n][0] != "regression"])
def test_classification_splits_are_stratified(name):
    ds = dataset(name)
    k = ds.task.n_classes
    y_all = torch.cat([s.y for s in _splits(ds)])
    p_all = torch.bincount(y_all, minlength=k).double() / len(y_all)
    for split in _splits(ds):
        p = torch.bincount(split.y, minlength=k).double() / len(split)
        # each class count within about 2 of its exact share (two rounded stratified splits)
        assert (p - p_all).abs().max().item() <= 2.0 / len(split) + 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_tensors_other_seed_other_split(name):
    cfg = config(name)
    a, b = dataset(name), build(replace(cfg))
    for s, t in zip(_splits(a), _splits(b), strict=True):
        assert torch.equal(s.x, t.x) and torch.equal(s.y, t.y)
    other = build(replace(cfg, seed=cfg.seed + 1))
    assert not torch.equal(a.test.x, other.test.x)
    assert not torch.equal(a.train.x, other.train.x)


def _check_standardized(ds: Dataset, how: str):
    x_train = ds.train.x.reshape(len(ds.train), -1).double()
    if how == "feature":
        mean, std = x_train.mean(0), x_train.std(0, unbiased=False)
        const = std < 1e-6  # constant train features (digit borders) stay at 0
        assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-5)
        assert torch.allclose(std[~const], torch.ones_like(std[~const]), atol=1e-4)
        for split in (ds.val, ds.test):  # fitted on train only: the other splits are near, not exactly, standard
            m = split.x.reshape(len(split), -1).double().mean(0)
            assert m[~const].abs().max() > 1e-4
    else:  # global: one mean and one std over all train inputs
        assert abs(x_train.mean().item()) < 1e-6
        assert abs(x_train.std(unbiased=False).item() - 1) < 1e-5
        for split in (ds.val, ds.test):  # many pixels: close to standard, but far beyond float32 rounding
            x = split.x.double()
            assert abs(x.mean().item()) > 1e-5 or abs(x.std(unbiased=False).item() - 1) > 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_standardization_is_fitted_on_train(name):
    ds, cfg = dataset(name), config(name)
    if cfg.standardize == "none":
        assert np.all(ds.stats["x_mean"] == 0) and np.all(ds.stats["x_std"] == 1)
    else:
        _check_standardized(ds, cfg.standardize)


@pytest.mark.parametrize(("name", "how"), [("digits", "feature"), ("wine", "global"), ("xor", "feature")])
def test_other_standardize_options(name, how):
    _check_standardized(build(replace(config(name), standardize=how)), how)


def test_regression_targets():
    diabetes, sine = dataset("diabetes"), dataset("sine")
    # diabetes: standardize_targets=true -> train targets mean 0, std 1
    y = diabetes.train.y.double()
    assert abs(y.mean().item()) < 1e-5 and abs(y.std(unbiased=False).item() - 1) < 1e-4
    assert abs(diabetes.val.y.double().mean().item()) > 1e-3
    # sine: targets left as sin(x) + noise, std = sqrt(Var sin(U[-pi, pi]) + noise^2) = sqrt(1/2 + 0.01) ~ 0.71
    assert "y_mean" not in sine.stats
    assert sine.train.y.double().std().item() == pytest.approx(np.sqrt(0.5 + 0.01), abs=0.05)


@pytest.mark.parametrize("name", NAMES)
def test_dtypes_and_shapes(name):
    ds = dataset(name)
    for split in _splits(ds):
        assert split.x.dtype == torch.float32
        assert split.x.shape[1:] == ds.task.input_shape
        if ds.task.is_classification:
            assert split.y.dtype == torch.int64 and split.y.shape == (len(split),)
        else:
            assert split.y.dtype == torch.float32 and split.y.shape == (len(split), ds.task.n_targets)


@pytest.mark.parametrize("name", NAMES)
def test_task_metadata(name):
    ds, cfg = dataset(name), config(name)
    kind, shape, n_classes = META[name]
    if n_classes is None:  # spirals, blobs: cfg.classes arms / blobs, binary when 2
        n_classes, kind = cfg.classes, "binary" if cfg.classes == 2 else "multiclass"
    assert ds.task.kind == kind
    assert ds.task.input_shape == shape
    assert ds.task.n_classes == n_classes
    if kind != "regression":
        y_all = torch.cat([s.y for s in _splits(ds)])
        assert set(y_all.tolist()) == set(range(n_classes))
    else:
        assert ds.task.n_targets == 1
    if name in SKLEARN and kind != "regression":
        assert len(ds.task.class_names) == n_classes
    # value_range: min and max of the standardized train inputs
    assert ds.task.value_range == pytest.approx((ds.train.x.min().item(), ds.train.x.max().item()))


@pytest.mark.parametrize("name", ["spirals", "blobs"])
def test_two_classes_make_a_binary_task(name):
    ds = build(replace(config(name), classes=2, n_samples=200))
    assert ds.task.kind == "binary" and ds.task.n_classes == 2


def test_xor_is_balanced_and_labelled_by_sign():
    ds = dataset("xor")
    x = torch.cat([s.x for s in _splits(ds)])
    y = torch.cat([s.y for s in _splits(ds)])
    # four equally likely clusters, two per label: P(y = 1) = 1/2 (std of the share ~ 0.016 for n = 1000)
    assert y.double().mean().item() == pytest.approx(0.5, abs=0.05)
    # label = 1 where x1 x2 < 0; noise 0.3 moves a point across an axis with probability ~ 2 Phi(-1/0.3) ~ 0.1%
    agree = ((x[:, 0] * x[:, 1] < 0).long() == y).double().mean().item()
    assert agree > 0.95


def test_the_data_cache_follows_xdg_unless_dlrun_data_is_set(monkeypatch, tmp_path):
    from dlrun.data import cache_dir

    monkeypatch.delenv("DLRUN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "dlrun"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "dlrun"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DLRUN_DATA", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_a_stratified_train_subset_for_debugging():
    """data.n_train=200: 200 train examples with each class's share of the whole split; val and test unchanged."""
    from dlrun.config import compose
    from dlrun.data import build

    full = build(compose(["data=digits"]).data)
    small = build(compose(["data=digits", "data.n_train=200"]).data)
    assert len(small.train) == 200 and len(small.val) == len(full.val) and len(small.test) == len(full.test)
    share = torch.bincount(full.train.y, minlength=10).double() / len(full.train)
    counts = torch.bincount(small.train.y, minlength=10).double()
    assert (counts - 200 * share).abs().max() <= 1  # stratified: every class within one example of its share
    again = build(compose(["data=digits", "data.n_train=200"]).data)
    assert torch.equal(small.train.x, again.train.x)  # seeded by data.seed
