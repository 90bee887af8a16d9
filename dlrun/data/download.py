"""Downloaded datasets: MNIST, Fashion-MNIST, KMNIST (IDX files) and CIFAR-10 (python pickle batches).

paths = fetch("mnist")                  # {file name: Path}, downloaded once into $DLRUN_DATA/mnist/
x_train, y_train, x_test, y_test = load("mnist")   # numpy arrays, (N, 1, 28, 28) uint8 and (N,) int64

Every file is checked against its published SHA-256 before it is used, whether it was just
downloaded or found in the cache; a file whose checksum is unknown is refused. A download goes to a
temporary file in the cache directory and is renamed into place only once its checksum matches, so
the cache never holds a partial or unverified file. Without network, put the files into
`cache_dir() / NAME` by hand (they are checked the same way).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import pickle
import tarfile
import urllib.request
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlrun.data.base import cache_dir  # $DLRUN_DATA, default ~/.cache/dlrun
from dlrun.errors import ConfigError, suggest
from dlrun.files import atomic_file

__all__ = ["SOURCES", "Source", "cache_dir", "fetch", "load", "read_cifar10", "read_idx", "sha256"]

TIMEOUT = 60.0  # seconds: urlopen's timeout for connecting and for each read
CHUNK = 1 << 20  # bytes read, hashed and written at a time
USER_AGENT = "dlrun (python urllib)"  # some hosts refuse urllib's default agent

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",  # 60000 x 28 x 28 uint8
    "train-labels-idx1-ubyte.gz",  # 60000 uint8, 0-9
    "t10k-images-idx3-ubyte.gz",  # 10000 x 28 x 28 uint8
    "t10k-labels-idx1-ubyte.gz",  # 10000 uint8, 0-9
)
CIFAR10_FILE = "cifar-10-python.tar.gz"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))  # 10000 images each, in this order
CIFAR10_TEST = "test_batch"  # 10000 images


@dataclass(frozen=True)
class Source:
    """Where a dataset's files are published: mirror base URLs (tried in order) and each file's SHA-256."""

    mirrors: tuple[str, ...]  # a file's URL is f"{mirror}/{file name}"
    sha256: Mapping[str, str | None]  # file name -> published SHA-256 (hex); None: unknown, the file is refused


# The SHA-256 values are the published ones, identical in two independent places:
#   tensorflow/datasets  tensorflow_datasets/url_checksums/{mnist,fashion_mnist,kmnist}.txt, cifar10.csv
#   pytorch/vision       torchvision/prototype/datasets/_builtin/mnist.py and cifar.py
# (yann.lecun.com, MNIST's original host, now answers 403; the two mirrors below serve the same files.)
SOURCES: dict[str, Source] = {
    "mnist": Source(
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist",  # torchvision's mirror
            "https://storage.googleapis.com/cvdf-datasets/mnist",  # TensorFlow Datasets' mirror
        ),
        sha256={
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
    "fashion_mnist": Source(
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",),  # Zalando's; http only
        sha256={
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    ),
    "kmnist": Source(
        # ROIS-DS CODH publishes KMNIST under MNIST's file names (no kmnist- prefix)
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist",),
        sha256={
            "train-images-idx3-ubyte.gz": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
            "train-labels-idx1-ubyte.gz": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
            "t10k-images-idx3-ubyte.gz": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
            "t10k-labels-idx1-ubyte.gz": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
        },
    ),
    "cifar10": Source(
        mirrors=("https://www.cs.toronto.edu/~kriz",),  # Alex Krizhevsky's page; 170498071 bytes
        sha256={CIFAR10_FILE: "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"},
    ),
}
MNIST_FAMILY = ("mnist", "fashion_mnist", "kmnist")


def sha256(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    name: str,
    files: Iterable[str] | None = None,
    *,
    base_url: str | Sequence[str] | None = None,
    checksums: Mapping[str, str | None] | None = None,
    timeout: float = TIMEOUT,
) -> dict[str, Path]:
    """Verified local copies of `name`'s files (default: all of them), downloading the missing ones.

    A file already in `cache_dir() / name` is reused when its SHA-256 matches, else downloaded again.
    base_url: mirror base URL(s) to use instead of the table's; checksums: {file: sha256} to use
    instead of the table's (tests point both at a local server). Raises ConfigError when a checksum
    is unknown or does not match, or when a file cannot be downloaded from any mirror.
    """
    source = SOURCES.get(name)
    if source is None:
        raise ConfigError(f"no download source for '{name}'; known: {', '.join(SOURCES)}.{suggest(name, SOURCES)}")
    table = dict(checksums if checksums is not None else source.sha256)
    mirrors = (base_url,) if isinstance(base_url, str) else tuple(base_url or source.mirrors)
    wanted = list(table) if files is None else list(files)
    for file in wanted:
        if file not in table:
            raise ConfigError(f"{name}: no file '{file}' to download; known: {', '.join(table)}")
        if table[file] is None:  # never use a file that nothing can verify
            raise ConfigError(f"{name}: no published SHA-256 for {file}; refusing to use an unverified file")

    directory = cache_dir() / name
    paths: dict[str, Path] = {}
    missing: list[str] = []
    wrong: list[str] = []  # in the cache but with another checksum: downloaded again, replaced if that works
    for file in wanted:
        path = directory / file
        if path.is_file():
            if sha256(path) == table[file].lower():
                paths[file] = path
                continue
            wrong.append(file)
        missing.append(file)
    if not missing:
        return paths

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{name}: cannot create {directory} ({e}); set DLRUN_DATA to a writable directory") from e
    for i, file in enumerate(missing):
        tried = []
        for mirror in mirrors:
            url = f"{mirror.rstrip('/')}/{file}"
            try:
                paths[file] = _download(name, url, directory / file, table[file].lower(), timeout)
                break
            except (OSError, http.client.HTTPException, ValueError) as e:  # URLError, HTTPError, timeouts
                tried.append(f"{url}: {_reason(e)}")
        else:
            left = missing[i:]
            stale = [f for f in wrong if f in left]
            note = f"; {', '.join(stale)} in the cache failed its checksum" if stale else ""
            raise ConfigError(
                f"{name}: cannot download {', '.join(left)} ({'; '.join(tried)}){note}; "
                f"put the files in {directory} or set DLRUN_DATA"
            )
    return paths


def _reason(e: Exception) -> str:
    """One line saying why a download failed: 'HTTP Error 404: Not Found', '<urlopen error ...>'."""
    return " ".join(str(e).split()) or type(e).__name__


def _download(name: str, url: str, path: Path, expected: str, timeout: float) -> Path:
    """Stream `url` into a temporary file next to `path`, check its SHA-256, rename it into place."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    # atomic: `path` stays absent (or the old file) unless the block ends with a verified download
    with atomic_file(path, suffix=".part") as out, urllib.request.urlopen(request, timeout=timeout) as response:
        digest = hashlib.sha256()
        while chunk := response.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
        actual = digest.hexdigest()
        if actual != expected:
            raise ConfigError(
                f"{name}: checksum mismatch for {path.name} from {url}: expected SHA-256 {expected}, got {actual}; "
                "the download was discarded"
            )
    return path


# IDX (LeCun's MNIST format), all integers big-endian:
#   bytes 0-1  0x00 0x00
#   byte  2    element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
#   byte  3    number of dimensions D
#   then D uint32 sizes, then the prod(sizes) elements in C order (row-major)
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (gzipped or not) as an array of its shape, in native byte order."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"  # gzip's magic
        with (gzip.open if gzipped else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise ConfigError(f"{path}: cannot read IDX file ({_reason(e)})") from e
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_TYPES:
        raise ConfigError(f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'})")
    ndim, header = raw[3], 4 + 4 * raw[3]
    if ndim == 0 or len(raw) < header:
        raise ConfigError(f"{path}: malformed IDX header ({ndim} dimensions, {len(raw)} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ConfigError(f"{path}: IDX size mismatch: shape {shape} needs {expected} bytes, the file has {len(raw)}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


# CIFAR-10 python version: a tar.gz with cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta, readme.html}.
# Each batch is a (Python 2) pickle of a dict with bytes keys:
#   b"data"    (10000, 3072) uint8 ndarray, a row = 1024 red, then 1024 green, then 1024 blue values,
#              each 32 x 32 in row-major order, so data.reshape(-1, 3, 32, 32) is (N, C, H, W)
#   b"labels"  list of 10000 ints in 0-9
#   b"batch_label", b"filenames"  (not used)
_PICKLE_GLOBALS = {  # all a batch needs: an ndarray (and bytes, when pickled by Python 3 with protocol < 3)
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only: loading a pickle may otherwise call any function."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module.startswith("numpy.core.") and np.lib.NumpyVersion(np.__version__) >= "2.0.0":
            module = "numpy._core." + module.removeprefix("numpy.core.")  # numpy 2 renamed it (and warns)
        return super().find_class(module, name)


def _read_batch(archive: Path, member: str, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    where = f"{archive}: {member}"
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    except Exception as e:  # any malformed pickle: UnpicklingError, EOFError, KeyError, TypeError, ...
        raise ConfigError(f"{where}: not a CIFAR-10 batch ({_reason(e)})") from e
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ConfigError(f"{where}: data is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu" or not np.all((labels >= 0) & (labels < 10)):
        raise ConfigError(f"{where}: expected {len(data)} labels in 0-9, got {labels.dtype} {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_cifar10(archive: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x_train (N, 3, 32, 32) uint8, y_train (N,) int64, x_test, y_test from the python-version tar.gz.

    The batches are read from the archive in one pass, without extracting anything to disk.
    """
    archive = Path(archive)
    wanted = (*CIFAR10_TRAIN, CIFAR10_TEST)
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:  # streams through the gzip once
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted and base not in batches:
                    batches[base] = _read_batch(archive, member.name, tar.extractfile(member).read())
    except (OSError, EOFError, zlib.error, tarfile.TarError) as e:
        raise ConfigError(f"{archive}: cannot read the CIFAR-10 archive ({_reason(e)})") from e
    absent = [b for b in wanted if b not in batches]
    if absent:
        raise ConfigError(f"{archive}: not the CIFAR-10 python archive: no {', '.join(absent)} in it")
    x_train = np.concatenate([batches[b][0] for b in CIFAR10_TRAIN])
    y_train = np.concatenate([batches[b][1] for b in CIFAR10_TRAIN])
    return x_train, y_train, *batches[CIFAR10_TEST]


def load(
    name: str,
    *,
    base_url: str | Sequence[str] | None = None,
    checksums: Mapping[str, str | None] | None = None,
    timeout: float = TIMEOUT,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x_train, y_train, x_test, y_test of `name` (fetched first; base_url and checksums as in fetch).

    MNIST family: x (N, 1, 28, 28) uint8, y (N,) int64; cifar10: x (N, 3, 32, 32) uint8, y (N,) int64.
    """
    if name == "cifar10":
        paths = fetch(name, [CIFAR10_FILE], base_url=base_url, checksums=checksums, timeout=timeout)
        return read_cifar10(paths[CIFAR10_FILE])
    if name not in MNIST_FAMILY:
        known = (*MNIST_FAMILY, "cifar10")
        raise ConfigError(f"no loader for '{name}'; known: {', '.join(known)}.{suggest(name, known)}")
    paths = fetch(name, MNIST_FILES, base_url=base_url, checksums=checksums, timeout=timeout)
    out = []
    for split in ("train", "t10k"):
        images_file, labels_file = f"{split}-images-idx3-ubyte.gz", f"{split}-labels-idx1-ubyte.gz"
        x, y = read_idx(paths[images_file]), read_idx(paths[labels_file])
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
            raise ConfigError(f"{paths[images_file]}: images are {x.dtype} {x.shape}, expected uint8 (N, 28, 28)")
        if y.ndim != 1 or len(y) != len(x):
            raise ConfigError(f"{paths[labels_file]}: {y.shape} labels for {len(x)} images in {images_file}")
        out += [x[:, None], y.astype(np.int64)]  # (N, 1, 28, 28): one channel
    return out[0], out[1], out[2], out[3]
