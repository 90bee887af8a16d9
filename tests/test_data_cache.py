"""The array cache (dlrun/data/cache.py): scikit-learn's sets, the sets its generators make and every split are
kept as .npz files after the first build; later builds read them (no scikit-learn import, the same tensors);
a damaged file, or one written for another key (another scikit-learn), is rebuilt."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import sklearn.datasets
import torch
from sklearn.model_selection import train_test_split

from dlrun.config import compose
from dlrun.data import Dataset, build, bundled, cache

SKLEARN_SETS = ["digits", "iris", "breast_cancer", "wine", "diabetes", "moons", "circles", "blobs"]
SYNTHETIC = ["xor", "spirals", "sine"]  # numpy data; only the split comes from scikit-learn


@pytest.fixture
def arrays_dir(monkeypatch, tmp_path):
    """An empty cache; returns where the arrays go."""
    monkeypatch.setenv("DLRUN_DATA", str(tmp_path / "data"))
    return tmp_path / "data" / "arrays"


def data_config(name: str, *overrides: str):
    return compose([f"data={name}", *overrides]).data


def tensors(ds: Dataset) -> list[torch.Tensor]:
    return [ds.train.x, ds.train.y, ds.val.x, ds.val.y, ds.test.x, ds.test.y]


def assert_same(a: Dataset, b: Dataset) -> None:
    assert a.task == b.task
    for s, t in zip(tensors(a), tensors(b), strict=True):
        assert s.dtype == t.dtype and torch.equal(s, t)
    assert a.stats.keys() == b.stats.keys()
    for k in a.stats:
        assert np.array_equal(a.stats[k], b.stats[k])


def no_sklearn_work(monkeypatch) -> None:
    """From here on, loading, generating or splitting with scikit-learn fails the test."""

    def fail(*args, **kwargs):
        raise AssertionError("scikit-learn called although the arrays are cached")

    for name in ("load_digits", "load_iris", "load_breast_cancer", "load_wine", "load_diabetes"):
        monkeypatch.setattr(sklearn.datasets, name, fail)
    for name in ("make_moons", "make_circles", "make_blobs"):
        monkeypatch.setattr(sklearn.datasets, name, fail)
    monkeypatch.setattr(bundled, "_split", fail)


@pytest.mark.parametrize("name", SKLEARN_SETS + SYNTHETIC)
def test_second_build_reads_the_cache(arrays_dir, monkeypatch, name):
    cfg = data_config(name)
    first = build(cfg)
    files = sorted(p.name for p in arrays_dir.iterdir())
    assert any(f.startswith(f"{name}-split-") for f in files)
    assert len(files) == (2 if name in SKLEARN_SETS else 1)  # the data (when from scikit-learn) and the split
    no_sklearn_work(monkeypatch)
    assert_same(first, build(cfg))


def test_a_later_process_does_not_import_sklearn(arrays_dir, tmp_path):
    first = build(data_config("digits"))
    code = (
        "import sys, torch\n"
        "from dlrun.config import compose\n"
        "from dlrun.data import build\n"
        "ds = build(compose(['data=digits']).data)\n"
        "torch.save([ds.train.x, ds.train.y, ds.val.x, ds.val.y, ds.test.x, ds.test.y], sys.argv[1])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy'}))\n"
    )
    out = tmp_path / "tensors.pt"
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, env=os.environ)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    for s, t in zip(tensors(first), torch.load(out), strict=True):
        assert torch.equal(s, t)


def test_the_cached_split_is_train_test_split(arrays_dir):
    cfg = data_config("wine")
    y = sklearn.datasets.load_wine().target
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=cfg.test_fraction, random_state=cfg.seed, stratify=y)
    val_size = cfg.val_fraction / (1 - cfg.test_fraction)
    train, val = train_test_split(rest, test_size=val_size, random_state=cfg.seed, stratify=y[rest])
    for _ in range(2):  # computed and written, then read back
        got = bundled.split_indices("wine", y, "multiclass", cfg)
        for a, b in zip(got, (train, val, test), strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b)


def _flip_middle(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]


DAMAGE = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "not an npz": lambda data: b"\x93NUMPY garbage " * 64,
    "a flipped byte": _flip_middle,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_cache_file_is_rebuilt(arrays_dir, monkeypatch, damage):
    cfg = data_config("digits")
    first = build(cfg)
    for path in arrays_dir.iterdir():
        path.write_bytes(DAMAGE[damage](path.read_bytes()))
    assert_same(first, build(cfg))  # rebuilt from scikit-learn, no crash
    no_sklearn_work(monkeypatch)
    assert_same(first, build(cfg))  # and written whole again


def test_another_sklearn_version_is_another_key(arrays_dir, monkeypatch):
    cfg = data_config("iris")
    first = build(cfg)
    before = {p.name for p in arrays_dir.iterdir()}
    calls = []
    load_iris = sklearn.datasets.load_iris
    monkeypatch.setattr(sklearn.datasets, "load_iris", lambda: calls.append(1) or load_iris())
    monkeypatch.setattr(bundled, "_sklearn_version", lambda: "0.0.other")
    assert_same(first, build(cfg))
    assert calls == [1]  # loaded again for this version
    assert len({p.name for p in arrays_dir.iterdir()} - before) == 2  # its own data and split files


def test_cached_checks_the_key_and_the_names_inside_the_file(arrays_dir):
    builds = []

    def make(n):
        return lambda: builds.append(n) or {"a": np.arange(n)}

    assert cache.cached("t", {"v": 1}, ("a",), make(3))["a"].tolist() == [0, 1, 2]
    assert cache.cached("t", {"v": 1}, ("a",), make(3))["a"].tolist() == [0, 1, 2]
    assert builds == [3]
    # a file written for another key, found under this key's name (copied, or a hash collision): not taken
    cache.path_for("t", {"v": 1}).replace(cache.path_for("t", {"v": 2}))
    assert cache.cached("t", {"v": 2}, ("a",), make(4))["a"].tolist() == [0, 1, 2, 3]
    assert builds == [3, 4]
    # the same key asked for other arrays: rebuilt
    with pytest.raises(ValueError, match="expected"):
        cache.cached("t", {"v": 2}, ("a", "b"), make(5))


def test_an_unwritable_cache_still_gives_the_arrays(monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("DLRUN_DATA", str(tmp_path / "a-file"))  # no directory can be made under it
    got = cache.cached("t", {"v": 1}, ("a",), lambda: {"a": np.arange(3)})
    assert got["a"].tolist() == [0, 1, 2]
