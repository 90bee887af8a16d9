"""Bundled datasets: scikit-learn's small sets and synthetic 2-D / 1-D problems (no download).

scikit-learn is imported only on a cache miss: its sets, the sets its generators make and every
train/val/test split (train_test_split) are kept as arrays in `cache_dir() / "arrays"` (dlrun/data/cache.py),
keyed by scikit-learn's version and everything else they depend on.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from dlrun.data import cache
from dlrun.data.base import DATASETS, Dataset, Split, Task
from dlrun.errors import ConfigError


def _sklearn_version() -> str:
    return cache.package_version("scikit-learn")


def _split(idx: np.ndarray, y: np.ndarray, size: float, seed: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of idx; stratified by class when every class can appear on both sides."""
    from sklearn.model_selection import train_test_split

    if size == 0:  # no hold-out (data.val_fraction=0): every example trains, in its stored order
        return idx, idx[:0]
    if kind != "regression":
        try:
            return train_test_split(idx, test_size=size, random_state=seed, stratify=y[idx])
        except ValueError:  # too few examples of a class (tiny sets): fall back to a plain random split
            pass
    return train_test_split(idx, test_size=size, random_state=seed)


FLOAT32_MAX = float(np.finfo(np.float32).max)


def split_and_standardize(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    kind: str,
    cfg,
    input_shape: tuple[int, ...] | None = None,
    class_names: tuple[str, ...] = (),
    input_kind: str = "tabular",
    n_test: int | None = None,
) -> Dataset:
    """Seeded train/val/test split (stratified for classification), standardization fitted on train.

    x: (N, ...) features; y: (N,) labels or (N,) / (N, K) regression targets. With `n_test`, the
    last n_test examples are a fixed, published test split and val_fraction is a fraction of the rest;
    otherwise test_fraction and val_fraction are fractions of all examples.
    """
    n = len(x)
    soft = kind != "regression" and y.ndim == 2  # soft labels: split by each example's most likely class
    train, val, test = split_indices(name, y.argmax(1) if soft else y, kind, cfg, n_test)

    x = x_raw = x.astype(np.float64)
    stats: dict[str, np.ndarray] = {}
    with np.errstate(over="ignore", invalid="ignore"):  # 1e308: named below, not warned about
        if cfg.standardize == "feature":
            mean, std = x[train].mean(axis=0), x[train].std(axis=0)
        elif cfg.standardize == "global":
            mean, std = x[train].mean(), x[train].std()
        elif cfg.standardize == "unit":  # min-max over all train values: train inputs span [0, 1] (digits: x / 16)
            mean, std = x[train].min(), x[train].max() - x[train].min()
        else:
            mean, std = np.zeros(1), np.ones(1)
        std = np.where(std > 1e-12, std, 1.0)  # constant features (e.g. digit borders) stay put
        x = (x - mean) / std
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(np.abs(x) < FLOAT32_MAX)):
        where = f"data.path={cfg.path}" if getattr(cfg, "path", None) else f"data={name}"
        raise ConfigError(
            f"{where}: its values (largest magnitude {np.nanmax(np.abs(x_raw)):.3g}) overflow when standardized "
            f"(data.standardize={cfg.standardize}) or in float32; rescale them (float32 holds up to 3.4e38)"
        )
    stats["x_mean"], stats["x_std"] = np.asarray(mean), np.asarray(std)

    if kind == "regression":
        y = y.reshape(n, -1).astype(np.float64)
        if getattr(cfg, "standardize_targets", False):
            y_mean, y_std = y[train].mean(axis=0), y[train].std(axis=0)
            y = (y - y_mean) / np.where(y_std > 1e-12, y_std, 1.0)
            stats["y_mean"], stats["y_std"] = y_mean, y_std
        y_t = torch.tensor(y, dtype=torch.float32)
        n_classes, n_targets = 0, y.shape[1]
    elif soft:
        y_t = torch.tensor(y, dtype=torch.float32)
        n_classes, n_targets = y.shape[1], 1
    else:
        y_t = torch.tensor(y, dtype=torch.int64)
        n_classes, n_targets = int(y.max()) + 1, 1

    shape = input_shape or tuple(x.shape[1:])
    x_t = torch.tensor(x, dtype=torch.float32).reshape(n, *shape)
    task = Task(
        kind=kind,
        input_shape=shape,
        n_classes=n_classes,
        n_targets=n_targets,
        value_range=(float(x_t[train].min()), float(x_t[train].max())),
        class_names=class_names,
        input_kind=input_kind,
        soft_labels=soft,
    )
    pick = lambda i: Split(x_t[i], y_t[i])  # noqa: E731
    return Dataset(name, task, pick(train), pick(val), pick(test), stats)


def split_indices(
    name: str, y: np.ndarray, kind: str, cfg, n_test: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices of split_and_standardize, cached by the labels, the fractions and the seed."""

    def compute() -> dict[str, np.ndarray]:
        n = len(y)
        idx = np.arange(n)
        if n_test is None:
            rest, test = _split(idx, y, cfg.test_fraction, cfg.seed, kind)
            val_size = cfg.val_fraction / (1.0 - cfg.test_fraction)
        else:
            rest, test = idx[: n - n_test], idx[n - n_test :]
            val_size = cfg.val_fraction
        train, val = _split(rest, y, val_size, cfg.seed, kind)
        return {"train": train, "val": val, "test": test}

    labels = np.ascontiguousarray(y)
    if labels.dtype == object:  # no stable bytes to key the cache by
        parts = compute()
    else:
        key = {
            "sklearn": _sklearn_version(),
            "numpy": np.__version__,
            "labels": [str(labels.dtype), list(labels.shape), hashlib.sha256(labels.tobytes()).hexdigest()],
            "kind": kind,
            "seed": cfg.seed,
            "test_fraction": cfg.test_fraction if n_test is None else None,
            "val_fraction": cfg.val_fraction,
            "n_test": n_test,
        }
        parts = cache.cached(f"{name}-split", key, ("train", "val", "test"), compute)
    return parts["train"], parts["val"], parts["test"]


def _sklearn(loader: str, kind: str, input_shape=None):
    """A scikit-learn set (sklearn.datasets.<loader>), loaded once and then read from the cache."""

    def load() -> dict[str, np.ndarray]:
        from sklearn import datasets as skd

        bunch = getattr(skd, loader)()
        names = [str(c) for c in getattr(bunch, "target_names", ())] if kind != "regression" else []
        if kind == "multiclass" and not names:
            names = [str(c) for c in np.unique(bunch.target)]
        return {"data": bunch.data, "target": bunch.target, "names": np.array(names, dtype=str)}

    def build(cfg) -> Dataset:
        arrays = cache.cached(
            cfg.name, {"loader": loader, "sklearn": _sklearn_version()}, ("data", "target", "names"), load
        )
        names = tuple(str(c) for c in arrays["names"])
        input_kind = "image" if input_shape and len(input_shape) == 3 else "tabular"
        return split_and_standardize(
            cfg.name, arrays["data"], arrays["target"], kind, cfg, input_shape, names, input_kind
        )

    return build


def _generated(generator: str, cfg, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """x, y of sklearn.datasets.<generator>(**kwargs), made once and then read from the cache."""

    def make() -> dict[str, np.ndarray]:
        from sklearn import datasets as skd

        x, y = getattr(skd, generator)(**kwargs)
        return {"x": x, "y": y}

    arrays = cache.cached(cfg.name, {"generator": generator, **kwargs, "sklearn": _sklearn_version()}, ("x", "y"), make)
    return arrays["x"], arrays["y"]


DATASETS.register("digits", "8x8 handwritten digits, 10 classes")(_sklearn("load_digits", "multiclass", (1, 8, 8)))
DATASETS.register("iris", "Iris flowers, 3 classes")(_sklearn("load_iris", "multiclass"))
DATASETS.register("breast_cancer", "Breast cancer Wisconsin, binary")(_sklearn("load_breast_cancer", "binary"))
DATASETS.register("wine", "Wine cultivars, 3 classes")(_sklearn("load_wine", "multiclass"))
DATASETS.register("diabetes", "Diabetes progression, regression")(_sklearn("load_diabetes", "regression"))


@DATASETS.register("xor", "Four Gaussian clusters at (+-1, +-1), label x1 * x2 < 0")
def xor(cfg) -> Dataset:
    rng = np.random.default_rng(cfg.seed)
    centers = rng.choice([-1.0, 1.0], size=(cfg.n_samples, 2))
    x = centers + cfg.noise * rng.standard_normal((cfg.n_samples, 2))
    y = (centers[:, 0] * centers[:, 1] < 0).astype(np.int64)  # the cluster's label
    return split_and_standardize("xor", x, y, "binary", cfg, class_names=("same sign", "opposite sign"))


@DATASETS.register("moons", "Two interleaving half circles")
def moons(cfg) -> Dataset:
    x, y = _generated("make_moons", cfg, n_samples=cfg.n_samples, noise=cfg.noise, random_state=cfg.seed)
    return split_and_standardize("moons", x, y, "binary", cfg)


@DATASETS.register("circles", "A circle inside a circle")
def circles(cfg) -> Dataset:
    x, y = _generated("make_circles", cfg, n_samples=cfg.n_samples, noise=cfg.noise, factor=0.5, random_state=cfg.seed)
    return split_and_standardize("circles", x, y, "binary", cfg)


@DATASETS.register("spirals", "Interleaved spiral arms, one class per arm")
def spirals(cfg) -> Dataset:
    rng = np.random.default_rng(cfg.seed)
    k = cfg.classes
    per = cfg.n_samples // k
    t = np.tile(np.linspace(0.05, 1.0, per), k)  # position along the arm
    y = np.repeat(np.arange(k), per)
    angle = 3.0 * np.pi * t + 2.0 * np.pi * y / k  # 1.5 turns per arm
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    x = x + cfg.noise * 0.1 * rng.standard_normal(x.shape)  # noise in units of 1/10 of the radius
    return split_and_standardize("spirals", x, y, "binary" if k == 2 else "multiclass", cfg)


@DATASETS.register("blobs", "Isotropic Gaussian blobs in 2-D")
def blobs(cfg) -> Dataset:
    x, y = _generated(
        "make_blobs",
        cfg,
        n_samples=cfg.n_samples,
        n_features=2,
        centers=cfg.classes,
        cluster_std=cfg.noise,
        random_state=cfg.seed,
    )
    return split_and_standardize("blobs", x, y, "binary" if cfg.classes == 2 else "multiclass", cfg)


@DATASETS.register("sine", "y = sin(x) + noise on [-pi, pi], regression")
def sine(cfg) -> Dataset:
    rng = np.random.default_rng(cfg.seed)
    x = rng.uniform(-np.pi, np.pi, size=(cfg.n_samples, 1))
    y = np.sin(x) + cfg.noise * rng.standard_normal(x.shape)
    return split_and_standardize("sine", x, y, "regression", cfg)
