"""dlrun/data/download.py: fetch, verify and parse MNIST-family IDX files and the CIFAR-10 archive, offline.

The files are generated here (a few 28 x 28 images as gzipped IDX, a CIFAR-10-like tar.gz of pickled
batches), served by http.server on 127.0.0.1 and downloaded through the real urllib code path into a
temporary $DLRUN_DATA.

cache       a file whose SHA-256 matches is reused: no HTTP request
atomic      a download goes to a temporary file, is checked, then renamed: nothing partial is ever left
errors      checksum mismatch, server down, HTTP 404, unknown checksum, malformed files: one-line ConfigError
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import re
import socket
import struct
import tarfile
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from dlrun.config import compose
from dlrun.data import build, download
from dlrun.data.download import MNIST_FILES, SOURCES, Source, cache_dir, fetch, load, read_cifar10, read_idx
from dlrun.errors import ConfigError
from dlrun.train import train

N_TRAIN, N_TEST = 5, 3  # MNIST-like images per split
CIFAR_ROWS = {**{f"data_batch_{i}": 2 for i in range(1, 6)}, "test_batch": 3}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def idx(array: np.ndarray, code: int = 0x08, dtype: str = ">u1", compress: bool = True) -> bytes:
    """IDX bytes: 0x00 0x00, type code, number of dims, dims as big-endian uint32, then the data."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(dtype).tobytes()
    return gzip.compress(raw, mtime=0) if compress else raw


class Py2Pickler(pickle._Pickler):
    """Pickles bytes as Python 2 str (BINSTRING) and numpy under numpy.core, as in the real CIFAR-10 batches."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    def save_global(self, obj, name=None):
        if getattr(obj, "__module__", "") == "numpy._core.multiarray":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n" + (name or obj.__name__).encode() + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch[bytes] = save_bytes


def dumps(obj, protocol: int | str) -> bytes:
    if protocol != "py2":
        return pickle.dumps(obj, protocol=protocol)
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def cifar_batch(rows: int, seed: int, protocol: int | str = "py2") -> tuple[bytes, np.ndarray, np.ndarray]:
    """A pickled batch with the real keys; returns (pickle, data (rows, 3072) uint8, labels (rows,))."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(rows, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=rows)
    batch = {
        b"batch_label": b"batch %d" % seed,
        b"labels": [int(v) for v in labels],
        b"data": data,
        b"filenames": [b"img_%d.png" % i for i in range(rows)],
    }
    return dumps(batch, protocol), data, labels


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def mnist():
    """The four gzipped IDX files of a tiny MNIST and the arrays they hold."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, size=(N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, size=N_TRAIN, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, size=(N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, size=N_TEST, dtype=np.uint8),
    }
    files = {name: idx(a) for name, a in arrays.items()}
    return files, {name: sha(data) for name, data in files.items()}, arrays


@pytest.fixture(scope="module")
def cifar():
    """A CIFAR-10-like archive (2 rows per train batch, 3 test rows) and the arrays it holds."""
    members, arrays = {"cifar-10-batches-py/batches.meta": pickle.dumps({b"label_names": []}, protocol=2)}, {}
    for seed, (batch, rows) in enumerate(CIFAR_ROWS.items()):
        members[f"cifar-10-batches-py/{batch}"], *arrays[batch] = cifar_batch(rows, seed)
    archive = tar_gz(members)
    return archive, sha(archive), arrays


class Server:
    """Serves `files` ({name: bytes}) at {url}/{name}; `requests` lists the paths asked for."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.url = ""


@pytest.fixture
def server(monkeypatch):
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state.requests.append(self.path)
            body = state.files.get(self.path.removeprefix("/data/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)  # quick shutdown
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/data"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    """A fresh $DLRUN_DATA; and no proxy between urllib and 127.0.0.1."""
    monkeypatch.setenv("DLRUN_DATA", str(tmp_path / "data"))
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    return tmp_path / "data"


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/data"


def entries(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --- cache directory and the table of sources ----------------------------------------------------------------------


def test_cache_dir_is_dlrun_data_else_home_cache(data_dir, tmp_path, monkeypatch):
    assert cache_dir() == data_dir
    monkeypatch.delenv("DLRUN_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "dlrun"


def test_sources_list_every_file_with_a_sha256():
    assert set(SOURCES) == {"mnist", "fashion_mnist", "kmnist", "cifar10"}
    for name in ("mnist", "fashion_mnist", "kmnist"):
        assert set(SOURCES[name].sha256) == set(MNIST_FILES)
    assert set(SOURCES["cifar10"].sha256) == {"cifar-10-python.tar.gz"}
    hashes = [h for s in SOURCES.values() for h in s.sha256.values()]
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)
    assert len(set(hashes)) == len(hashes) == 13  # 3 x 4 IDX files + 1 archive, all different
    assert all(s.mirrors and all(m.startswith(("http://", "https://")) for m in s.mirrors) for s in SOURCES.values())


# --- download, verify, cache ---------------------------------------------------------------------------------------


def test_load_mnist_downloads_and_parses(server, mnist, data_dir):
    files, checksums, arrays = mnist
    server.files.update(files)
    x_train, y_train, x_test, y_test = load("mnist", base_url=server.url, checksums=checksums)

    assert x_train.shape == (N_TRAIN, 1, 28, 28) and x_train.dtype == np.uint8
    assert x_test.shape == (N_TEST, 1, 28, 28) and x_test.dtype == np.uint8
    assert y_train.shape == (N_TRAIN,) and y_train.dtype == np.int64
    assert y_test.shape == (N_TEST,) and y_test.dtype == np.int64
    np.testing.assert_array_equal(x_train[:, 0], arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(y_train, arrays["train-labels-idx1-ubyte.gz"])
    np.testing.assert_array_equal(x_test[:, 0], arrays["t10k-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte.gz"])
    assert sorted(server.requests) == sorted(f"/data/{f}" for f in MNIST_FILES)
    assert entries(data_dir / "mnist") == sorted(MNIST_FILES)  # the verified files only, no temporary ones
    assert all((data_dir / "mnist" / f).read_bytes() == files[f] for f in MNIST_FILES)


def test_second_call_reuses_the_cache_without_requests(server, mnist, data_dir):
    files, checksums, _ = mnist
    server.files.update(files)
    first = load("fashion_mnist", base_url=server.url, checksums=checksums)
    assert len(server.requests) == 4
    server.requests.clear()

    second = load("fashion_mnist", base_url=server.url, checksums=checksums)
    paths = fetch("fashion_mnist", base_url=server.url, checksums=checksums)
    assert server.requests == []
    assert paths == {f: data_dir / "fashion_mnist" / f for f in MNIST_FILES}
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_cached_file_with_a_wrong_checksum_is_downloaded_again(server, mnist, data_dir):
    files, checksums, _ = mnist
    server.files.update(files)
    name = "train-labels-idx1-ubyte.gz"
    (data_dir / "kmnist").mkdir(parents=True)
    (data_dir / "kmnist" / name).write_bytes(b"stale")

    paths = fetch("kmnist", [name], base_url=server.url, checksums=checksums)
    assert server.requests == [f"/data/{name}"]
    assert paths[name].read_bytes() == files[name]
    assert entries(data_dir / "kmnist") == [name]


def test_load_cifar10(server, cifar, data_dir):
    archive, checksum, arrays = cifar
    server.files["cifar-10-python.tar.gz"] = archive
    x_train, y_train, x_test, y_test = load(
        "cifar10", base_url=server.url, checksums={"cifar-10-python.tar.gz": checksum}
    )

    n_train = sum(CIFAR_ROWS[f"data_batch_{i}"] for i in range(1, 6))
    assert x_train.shape == (n_train, 3, 32, 32) and x_train.dtype == np.uint8
    assert x_test.shape == (3, 3, 32, 32) and x_test.dtype == np.uint8
    assert y_train.shape == (n_train,) and y_train.dtype == np.int64
    assert y_test.shape == (3,) and y_test.dtype == np.int64
    train = [arrays[f"data_batch_{i}"] for i in range(1, 6)]  # batches 1..5 in order
    np.testing.assert_array_equal(x_train.reshape(n_train, -1), np.concatenate([d for d, _ in train]))
    np.testing.assert_array_equal(y_train, np.concatenate([y for _, y in train]))
    np.testing.assert_array_equal(x_test.reshape(3, -1), arrays["test_batch"][0])
    np.testing.assert_array_equal(y_test, arrays["test_batch"][1])
    # channel-first: a row's first 1024 values are the red plane, row-major 32 x 32
    assert x_train[0, 0, 1, 0] == arrays["data_batch_1"][0][0, 32]
    assert x_train[0, 1, 0, 0] == arrays["data_batch_1"][0][0, 1024]
    assert entries(data_dir / "cifar10") == ["cifar-10-python.tar.gz"]


# --- failures ------------------------------------------------------------------------------------------------------


def test_corrupted_download_is_rejected_and_nothing_is_left(server, mnist, data_dir):
    files, checksums, _ = mnist
    name = "t10k-images-idx3-ubyte.gz"
    served = files[name][:-1] + bytes([files[name][-1] ^ 0xFF])  # one byte differs
    server.files[name] = served

    with pytest.raises(ConfigError) as e:
        fetch("mnist", [name], base_url=server.url, checksums=checksums)
    message = str(e.value)
    assert name in message and checksums[name] in message and sha(served) in message
    assert "\n" not in message
    assert server.requests == [f"/data/{name}"]
    assert entries(data_dir / "mnist") == []  # neither the file nor a temporary file


def test_server_down_gives_one_line_naming_missing_files_and_directory(mnist, data_dir):
    _, checksums, _ = mnist
    url = closed_port_url()
    with pytest.raises(ConfigError) as e:
        load("mnist", base_url=url, checksums=checksums)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("mnist: cannot download ")
    assert all(f in message for f in MNIST_FILES)
    assert f"{url}/train-images-idx3-ubyte.gz" in message  # the URL tried
    assert f"put the files in {data_dir / 'mnist'} or set DLRUN_DATA" in message
    assert e.value.exit_code == 2
    assert entries(data_dir / "mnist") == []


def test_http_error_names_the_url_and_status(server, mnist, data_dir):
    _, checksums, _ = mnist  # the server has no files: 404
    with pytest.raises(ConfigError, match=r"404") as e:
        fetch("mnist", ["train-labels-idx1-ubyte.gz"], base_url=server.url, checksums=checksums)
    assert f"{server.url}/train-labels-idx1-ubyte.gz" in str(e.value)
    assert "\n" not in str(e.value)
    assert entries(data_dir / "mnist") == []


def test_next_mirror_is_tried_when_one_fails(server, mnist, data_dir):
    files, checksums, _ = mnist
    server.files.update(files)
    paths = fetch("mnist", base_url=[closed_port_url(), server.url], checksums=checksums)
    assert sorted(paths) == sorted(MNIST_FILES)
    assert all(p.read_bytes() == files[f] for f, p in paths.items())


def test_file_without_a_known_checksum_is_refused_before_downloading(server, mnist, data_dir):
    files, checksums, _ = mnist
    server.files.update(files)
    (data_dir / "mnist").mkdir(parents=True)
    (data_dir / "mnist" / MNIST_FILES[0]).write_bytes(files[MNIST_FILES[0]])  # even a file already there
    with pytest.raises(ConfigError, match=rf"no published SHA-256 for {MNIST_FILES[0]}"):
        fetch("mnist", base_url=server.url, checksums={**checksums, MNIST_FILES[0]: None})
    assert server.requests == []


def test_exception_during_download_leaves_no_partial_file(server, mnist, data_dir, monkeypatch):
    files, checksums, _ = mnist
    name = "train-images-idx3-ubyte.gz"
    server.files[name] = files[name]
    real_urlopen = urllib.request.urlopen

    class Broken:  # the real response, which dies after its first chunk
        def __init__(self, response):
            self.response, self.reads = response, 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.response.close()

        def read(self, n):
            self.reads += 1
            if self.reads > 1:
                raise KeyboardInterrupt
            return self.response.read(10)

    monkeypatch.setattr(download.urllib.request, "urlopen", lambda *a, **k: Broken(real_urlopen(*a, **k)))
    with pytest.raises(KeyboardInterrupt):
        fetch("mnist", [name], base_url=server.url, checksums=checksums)
    assert server.requests == [f"/data/{name}"]
    assert entries(data_dir / "mnist") == []


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"no download source for 'mnsit'.*did you mean 'mnist'"):
        fetch("mnsit")
    with pytest.raises(ConfigError, match=r"no loader for 'cifar100'"):
        load("cifar100")


def test_load_rejects_images_that_are_not_28_by_28(server, mnist):
    files, checksums, _ = mnist
    files = {**files, "train-images-idx3-ubyte.gz": idx(np.zeros((N_TRAIN, 8, 8), np.uint8))}
    server.files.update(files)
    with pytest.raises(ConfigError, match=r"train-images-idx3-ubyte.gz: images are uint8 \(5, 8, 8\)"):
        load("mnist", base_url=server.url, checksums={f: sha(b) for f, b in files.items()})


# --- parsers -------------------------------------------------------------------------------------------------------


def test_read_idx_rejects_a_bad_magic_number(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"\x08\x03\x00\x00" + bytes(100)))
    with pytest.raises(ConfigError, match=r"bad.gz: not an IDX file \(magic number 08030000\)"):
        read_idx(path)


def test_read_idx_rejects_a_size_that_does_not_match_the_header(tmp_path):
    path = tmp_path / "short.gz"
    path.write_bytes(idx(np.zeros((2, 28, 28), np.uint8))[:-30])  # truncated gzip stream
    with pytest.raises(ConfigError, match=r"short.gz"):
        read_idx(path)
    path.write_bytes(gzip.compress(idx(np.zeros((2, 28, 28), np.uint8), compress=False)[:-1]))  # one byte short
    with pytest.raises(ConfigError, match=r"short.gz: IDX size mismatch: shape \(2, 28, 28\) needs 1584 bytes"):
        read_idx(path)


def test_read_idx_reads_plain_files_and_other_element_types(tmp_path):
    values = np.arange(-6, 6, dtype=np.int16).reshape(3, 4) * 1000
    path = tmp_path / "plain"
    path.write_bytes(idx(values, code=0x0B, dtype=">i2", compress=False))
    out = read_idx(path)
    assert out.dtype == np.int16 and out.dtype.isnative
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize("protocol", ["py2", 2, pickle.HIGHEST_PROTOCOL])
def test_read_cifar10_reads_batches_pickled_with_any_protocol(tmp_path, protocol):
    members, arrays = {}, {}
    for seed, batch in enumerate(CIFAR_ROWS):
        members[f"cifar-10-batches-py/{batch}"], *arrays[batch] = cifar_batch(1, seed, protocol)
    path = tmp_path / "c.tar.gz"
    path.write_bytes(tar_gz(members))
    x_train, y_train, x_test, y_test = read_cifar10(path)
    assert x_train.shape == (5, 3, 32, 32) and x_test.shape == (1, 3, 32, 32)
    np.testing.assert_array_equal(x_test.reshape(1, -1), arrays["test_batch"][0])
    np.testing.assert_array_equal(y_train, [arrays[f"data_batch_{i}"][1][0] for i in range(1, 6)])


def test_read_cifar10_rejects_malformed_archives(tmp_path):
    path = tmp_path / "c.tar.gz"
    batches = {f"cifar-10-batches-py/{b}": cifar_batch(1, i)[0] for i, b in enumerate(CIFAR_ROWS)}

    path.write_bytes(b"not a tar.gz")
    with pytest.raises(ConfigError, match=r"c.tar.gz: cannot read the CIFAR-10 archive"):
        read_cifar10(path)

    path.write_bytes(tar_gz({k: v for k, v in batches.items() if not k.endswith("data_batch_3")}))
    with pytest.raises(ConfigError, match=r"c.tar.gz: not the CIFAR-10 python archive: no data_batch_3 in it"):
        read_cifar10(path)

    wrong = pickle.dumps({b"data": np.zeros((1, 100), np.uint8), b"labels": [0]}, protocol=2)
    path.write_bytes(tar_gz({**batches, "cifar-10-batches-py/test_batch": wrong}))
    with pytest.raises(ConfigError, match=r"test_batch: data is uint8 \(1, 100\), expected uint8 \(N, 3072\)"):
        read_cifar10(path)


def test_read_cifar10_refuses_pickles_that_call_functions(tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    path = tmp_path / "c.tar.gz"
    batches = {f"cifar-10-batches-py/{b}": cifar_batch(1, i)[0] for i, b in enumerate(CIFAR_ROWS)}
    path.write_bytes(tar_gz({**batches, "cifar-10-batches-py/data_batch_1": pickle.dumps(Payload())}))
    with pytest.raises(ConfigError, match=r"data_batch_1: not a CIFAR-10 batch \(global .*mkdir is not allowed\)"):
        read_cifar10(path)
    assert not marker.exists()


# --- data=mnist / data=cifar10 through the real download path -------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_balanced():
    """An MNIST-like set large enough for a stratified train/val split: 6 train and 2 test images per class."""
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, size=(60, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": np.repeat(np.arange(10, dtype=np.uint8), 6),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": np.repeat(np.arange(10, dtype=np.uint8), 2),
    }
    files = {name: idx(a) for name, a in arrays.items()}
    return files, {name: sha(data) for name, data in files.items()}, arrays


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "kmnist"])
def test_data_option_downloads_verifies_and_trains(name, server, mnist_balanced, monkeypatch, tmp_path):
    files, sums, arrays = mnist_balanced
    server.files.update(files)
    monkeypatch.setitem(SOURCES, name, Source(mirrors=(server.url,), sha256=sums))
    cfg = compose(
        [
            f"data={name}",
            "model=lenet5",
            "trainer.epochs=1",
            "trainer.progress=none",
            "trainer.hist_every=0",
            f"runs_dir={tmp_path / 'runs'}",
        ]
    )
    ds = build(cfg.data)
    assert ds.task.input_shape == (1, 28, 28) and ds.task.input_kind == "image" and ds.task.n_classes == 10
    assert len(ds.test) == 20 and len(ds.train) + len(ds.val) == 60  # the published test split
    # pixels scaled to [0, 1] and standardized with the train split's mean and std
    expected = (arrays["t10k-images-idx3-ubyte.gz"] / 255.0 - ds.stats["x_mean"]) / ds.stats["x_std"]
    assert np.allclose(ds.test.x[:, 0].numpy(), expected, atol=1e-5)
    summary = train(cfg)
    assert summary["status"] == "completed" and 0.0 <= summary["metrics"]["test/acc"] <= 1.0
    assert len(server.requests) == 4  # downloaded once: the second build read the cache


def test_data_cifar10_is_three_channel_images(server, cifar, monkeypatch):
    archive, digest, arrays = cifar
    server.files["cifar-10-python.tar.gz"] = archive
    monkeypatch.setitem(SOURCES, "cifar10", Source(mirrors=(server.url,), sha256={"cifar-10-python.tar.gz": digest}))
    ds = build(compose(["data=cifar10"]).data)
    assert ds.task.input_shape == (3, 32, 32) and ds.task.class_names[0] == "airplane"
    assert len(ds.test) == len(arrays["test_batch"][1])


def test_data_option_offline_is_one_line_naming_the_directory(monkeypatch, data_dir):
    monkeypatch.setitem(SOURCES, "mnist", Source(mirrors=(closed_port_url(),), sha256=SOURCES["mnist"].sha256))
    with pytest.raises(ConfigError) as err:
        build(compose(["data=mnist"]).data)
    message = str(err.value)
    assert "\n" not in message and "train-images-idx3-ubyte.gz" in message and str(data_dir / "mnist") in message
