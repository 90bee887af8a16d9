"""data=files: your own data file, split and standardized like the bundled sets.

    dlrun train data=files data.path=my.csv data.target=species   # CSV: a header row, numeric features
    dlrun train data=files data.path=my.npz                        # arrays x (N, ...) and y (N,)
    dlrun train data=files data.path=x.npy data.labels=y.npy       # the same as two .npy files
    dlrun train data=files data.path=pictures                      # pictures/<class>/<image>

Labels: text labels are classes, numbered 0..K-1 in sorted order (Task.class_names, `classes` in
summary.json). With data.task=auto, numbers are class labels when they are whole numbers with at
most MAX_CLASSES distinct values and at most one distinct value per two examples; otherwise the
task is a regression. Every problem with a file is a ConfigError naming the file (line and column)
or the key.
"""

from __future__ import annotations

import csv
import zipfile
import zlib
from pathlib import Path

import numpy as np

from dlrun.data.base import DATASETS, Dataset
from dlrun.data.bundled import split_and_standardize
from dlrun.errors import ConfigError, suggest

FORMATS = "a .csv, .npz or .npy file, or a folder of images with one sub-folder per class"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # Pillow modes read as one channel
INPUT_KINDS = {2: "tabular", 3: "signal", 4: "image"}  # x.ndim of (N, F), (N, C, L), (N, C, H, W)
MAGIC = {".npz": (b"PK", "np.savez"), ".npy": (b"\x93NUMPY", "np.save")}  # first bytes, and what writes them
MAX_CLASSES = 50  # data.task=auto: more distinct whole numbers than this are a regression target
MIN_EXAMPLES = 10  # enough for a train, a val and a test split


# ----------------------------------------------------------------------------- CSV
def _problem(cell: str) -> str | None:
    """Why a CSV cell is not a finite number, or None."""
    text = cell.strip()
    if not text:
        return "empty value"
    try:
        value = float(text)
    except ValueError:
        return f"'{text}' is not a number"
    return None if np.isfinite(value) else f"'{text}' is not a finite number (a missing value?)"


def _features(cells: np.ndarray, lines: list[int], columns: list[str], path: Path) -> np.ndarray:
    """The feature cells as float64; the first bad cell is a ConfigError naming its line and column."""
    try:
        values = np.char.strip(cells).astype(np.float64)
        if np.isfinite(values).all():
            return values
    except ValueError:
        pass
    for r, c in np.ndindex(cells.shape):
        if problem := _problem(cells[r, c]):
            raise ConfigError(
                f"{path}: line {lines[r]}, column '{columns[c]}': {problem}; feature columns must hold numbers "
                "(only the target column, data.target, may hold text)"
            )
    raise AssertionError("unreachable: a cell failed to convert")


def _labels(cells: np.ndarray, lines: list[int], column: str, task: str, path: Path) -> np.ndarray:
    """The target column: float64 when every label is a number, else the labels as text."""
    numbers, text = [], []
    for r, cell in enumerate(cells):
        problem = _problem(cell)
        if problem and not problem.endswith("is not a number"):  # empty or NaN / inf
            raise ConfigError(f"{path}: line {lines[r]}, column '{column}': {problem}; every row needs a label")
        (text if problem else numbers).append(r)
    if not text:
        return np.char.strip(cells).astype(np.float64)
    r = text[0]
    where = f"{path}: line {lines[r]}, column '{column}': '{cells[r].strip()}'"
    if task == "regression":
        raise ConfigError(f"{where} is not a number; data.task=regression needs numeric targets")
    if task == "auto" and numbers:  # a typo in a numeric column, or numbers used as class names
        raise ConfigError(
            f"{where} is text, but line {lines[numbers[0]]} holds a number ('{cells[numbers[0]].strip()}'); "
            "fix the value, or set data.task=classification to read every label as a class name"
        )
    return np.char.strip(cells)


def read_csv(path: Path, target: str = "", task: str = "auto") -> tuple[np.ndarray, np.ndarray, str]:
    """(features (N, F) float64, labels (N,), target column) of a comma-separated file with a header row.

    target: the label column, default the last one. Labels are float64 when they are all numbers,
    else text. Blank lines are skipped; line numbers in errors are the file's (the header is line 1).
    """
    rows, lines = [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [name.strip() for name in next(reader, [])]
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise ConfigError(
                        f"{path}: line {reader.line_num} has {len(row)} fields, the header (line 1) has {len(header)}"
                    )
                if any("\0" in cell for cell in row):
                    raise ConfigError(f"{path}: line {reader.line_num} holds a NUL byte; this is not a text CSV file")
                rows.append(row)
                lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"{path}: cannot read it as CSV ({e})") from None
    if not header:
        raise ConfigError(
            f"{path}: empty file; a CSV file needs a header row naming the columns, then one row per example"
        )
    if all(_problem(name) is None for name in header):
        raise ConfigError(f"{path}: line 1 holds numbers, not column names; add a header row naming the columns")
    for i, name in enumerate(header):
        if not name or header.count(name) > 1:
            what = f"column {i + 1} has no name" if not name else f"column '{name}' appears twice"
            raise ConfigError(f"{path}: line 1 (the header): {what}; every column needs its own name")
    if len(header) < 2:
        raise ConfigError(f"{path}: one column only ('{header[0]}'); a CSV needs feature columns and a target column")
    column = target or header[-1]
    if column not in header:
        raise ConfigError(
            f"data.target={target}: no such column in {path};{suggest(target, header)} columns: {', '.join(header)}"
        )
    if not rows:
        raise ConfigError(f"{path}: no data rows below the header")
    cells = np.array(rows, dtype=str)
    t = header.index(column)
    keep = [i for i in range(len(header)) if i != t]
    x = _features(cells[:, keep], lines, [header[i] for i in keep], path)
    return x, _labels(cells[:, t], lines, column, task, path), column


# ----------------------------------------------------------------------------- .npz / .npy
# What numpy and zipfile raise on a damaged file: a bad header, a cut-off member, a member marked encrypted
# (RuntimeError) or compressed with a method zipfile lacks (NotImplementedError), deflate data that does not inflate.
DAMAGED = (
    OSError,
    ValueError,
    EOFError,
    MemoryError,
    RuntimeError,
    NotImplementedError,
    zipfile.BadZipFile,
    zlib.error,
)


def _load(path: Path, what: str) -> np.ndarray | np.lib.npyio.NpzFile:
    """np.load without pickles; a file that is not what its suffix says is a ConfigError."""
    magic, writer = MAGIC[path.suffix.lower()]
    try:
        with open(path, "rb") as f:
            if not f.read(len(magic)).startswith(magic):
                raise ConfigError(f"{what}={path}: not a {path.suffix} file (such as {writer} writes)")
        return np.load(path, allow_pickle=False)
    except DAMAGED as e:
        raise ConfigError(f"{what}={path}: cannot read it ({_reason(e)}); save numbers or text with {writer}") from None


def read_lengths(path: Path) -> np.ndarray | None:
    """The .npz file's `lengths` array (variable-length sequences), or None."""
    with _load(path, "data.path") as arrays:
        if "lengths" not in arrays.files:
            return None
        try:
            return np.asarray(arrays["lengths"])
        except DAMAGED as e:
            raise ConfigError(f"data.path={path}: cannot read its lengths ({_reason(e)}); {NPZ_HINT}") from None


NPZ_HINT = "save arrays of numbers or text with np.savez(file, x=inputs, y=labels)"


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "allow_pickle" in text:  # an object array: loading it would run pickle, which dlrun never does
        return "it holds object arrays, which only pickle can load, and dlrun does not load pickles"
    if isinstance(e, MemoryError):
        return "its header declares arrays larger than memory"
    return text


def read_arrays(path: Path, labels: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(x, y) from an .npz file with arrays x and y, or from an .npy file of x and an .npy file of y (labels)."""
    if path.suffix.lower() == ".npz":
        with _load(path, "data.path") as arrays:
            missing = [name for name in ("x", "y") if name not in arrays.files]
            if missing:
                present = ", ".join(arrays.files) or "none"
                raise ConfigError(
                    f"{path}: no array '{missing[0]}' (arrays: {present}); save with np.savez(file, x=inputs, y=labels)"
                )
            try:
                x, y = arrays["x"], arrays["y"]
            except DAMAGED as e:
                raise ConfigError(f"data.path={path}: cannot read its arrays ({_reason(e)}); {NPZ_HINT}") from None
            x_name, y_name, where = "x", "y", f"{path}: "
    else:
        if not labels:
            raise ConfigError("data.labels: required with an .npy file; give the labels' file (data.labels=y.npy)")
        if not Path(labels).is_file():
            raise ConfigError(f"data.labels={labels}: no such file")
        x, y = _load(path, "data.path"), _load(Path(labels), "data.labels")
        x_name, y_name, where = str(path), f"data.labels={labels}", ""
    if y.ndim == 0:
        raise ConfigError(f"{where}{y_name} is a single value {y.shape}; give one label per example, shape (N,)")
    if x.ndim == 0:
        raise ConfigError(f"{where}{x_name} is a single value; give one row of features per example, shape (N, F)")
    if x.ndim == 1:
        x = x[:, None]
    if np.iscomplexobj(x) or np.iscomplexobj(y):
        name = x_name if np.iscomplexobj(x) else y_name
        raise ConfigError(f"{where}{name} holds complex numbers; give real numbers (split real and imaginary parts)")
    if x.ndim in INPUT_KINDS and 0 in x.shape[1:]:
        raise ConfigError(f"{where}{x_name} has shape {x.shape}: no features; give at least one per example")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or x.ndim not in INPUT_KINDS:
        raise ConfigError(
            f"{where}{x_name} holds {x.dtype} values of shape {x.shape}; features must be numbers of shape "
            "(N, F) tabular, (N, C, L) signals or (N, C, H, W) images"
        )
    if len(x) != len(y):
        raise ConfigError(f"{where}{x_name} has {len(x)} examples, {y_name} has {len(y)}; give one label per example")
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        raise ConfigError(f"{where}{x_name}: example {int(np.argmax(bad))} (counting from 0) holds NaN or inf")
    if y.ndim not in (1, 2) or not (np.issubdtype(y.dtype, np.number) or y.dtype.kind in "bU"):
        raise ConfigError(
            f"{where}{y_name} holds {y.dtype} values of shape {y.shape}; give labels of shape (N,) or (N, K)"
        )
    if y.dtype.kind != "U":
        y = y.astype(np.float64)
        bad = ~np.isfinite(y.reshape(len(y), -1)).all(axis=1)
        if bad.any():
            raise ConfigError(f"{where}{y_name}: label {int(np.argmax(bad))} (counting from 0) is NaN or inf")
    return x, y


# ----------------------------------------------------------------------------- images
def read_images(folder: Path, image_size: list[int] = (), channels: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, C, H, W) float32 in [0, 1], labels (N,) = class sub-folder names) of folder/<class>/<image>.

    image_size [H, W] resizes every image (bilinear); without it every image must have one size.
    channels 0: 1 when every image is grayscale, else 3 (RGB; alpha dropped).
    """
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ConfigError(
            f"{folder}: no class sub-folders; put each class's images in a sub-folder named after it "
            f"({folder.name}/cat/1.png, {folder.name}/dog/1.png)"
        )
    if len(classes) == 1:
        raise ConfigError(f"{folder}: one class sub-folder only ('{classes[0].name}'); give at least 2 classes")
    images, labels, files = [], [], []
    for sub in classes:
        paths = sorted(  # hidden files (._cat.png of macOS, editors' backups) are not examples
            p
            for p in sub.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not paths:
            raise ConfigError(f"{sub}: no images ({', '.join(IMAGE_SUFFIXES)}); add some or remove the folder")
        for p in paths:
            try:
                with Image.open(p) as im:
                    images.append(im.convert("L" if im.mode in GRAY_MODES else "RGB"))
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                reason = "not an image format Pillow reads" if isinstance(e, UnidentifiedImageError) else str(e)
                raise ConfigError(f"{p}: cannot read the image ({reason}); replace or remove it") from None
        labels += [sub.name] * len(paths)
        files += paths
    if image_size:
        h, w = image_size
        images = [im.resize((w, h), Image.BILINEAR) for im in images]
    odd = next((i for i, im in enumerate(images) if im.size != images[0].size), None)
    if odd is not None:
        (w0, h0), (w1, h1) = images[0].size, images[odd].size
        raise ConfigError(
            f"{folder}: images differ in size: {files[0].relative_to(folder)} is {h0}x{w0} (HxW), "
            f"{files[odd].relative_to(folder)} is {h1}x{w1}; set data.image_size=[H,W] to resize them"
        )
    c = channels or (1 if all(im.mode == "L" for im in images) else 3)
    x = np.stack([np.asarray(im.convert("L" if c == 1 else "RGB"), dtype=np.float32) / 255.0 for im in images])
    x = x[:, None] if c == 1 else x.transpose(0, 3, 1, 2)
    return x, np.array(labels)


# ----------------------------------------------------------------------------- labels -> task
def _class_name(value) -> str:
    if isinstance(value, str):
        return str(value)  # not np.str_
    return str(int(value)) if float(value).is_integer() else str(float(value))


def encode_labels(labels: np.ndarray, task: str, where: str) -> tuple[str, np.ndarray, tuple[str, ...]]:
    """(kind, y, class names): classes numbered 0..K-1 in sorted order, or float regression targets.

    task auto: text labels, or at most MAX_CLASSES distinct whole numbers and at most one distinct
    value per two examples, are classes; other numbers are a regression target.
    """
    text = labels.dtype.kind == "U"
    if task == "auto":
        whole = not text and labels.ndim == 1 and bool(np.all(labels == np.round(labels)))
        k = len(np.unique(labels)) if whole else 0
        task = "classification" if text or (whole and k <= MAX_CLASSES and 2 * k <= len(labels)) else "regression"
    if task == "regression":
        if text:
            raise ConfigError(f"data.task=regression: {where} holds text labels; use data.task=classification or auto")
        return "regression", labels.astype(np.float64), ()
    if labels.ndim == 2 and labels.dtype.kind == "f":
        return soft_labels(labels, where)
    if labels.ndim != 1:
        raise ConfigError(f"data.task=classification: {where} has shape {labels.shape}; give one label per example")
    classes, y = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ConfigError(
            f"{where}: one class only ('{_class_name(classes[0])}'); classification needs at least 2 "
            "(or set data.task=regression)"
        )
    return ("binary" if len(classes) == 2 else "multiclass"), y.astype(np.int64), tuple(map(_class_name, classes))


def soft_labels(p: np.ndarray, where: str) -> tuple[str, np.ndarray, tuple[str, ...]]:
    """A 2-D y with data.task=classification: each row the probabilities of the classes (soft labels), trained
    with cross-entropy against that distribution; accuracy is against each row's most likely class."""
    if p.shape[1] < 2:
        raise ConfigError(
            f"data.task=classification: {where} has {p.shape[1]} column; soft labels need one per class (>= 2)"
        )
    sums = p.sum(axis=1)
    bad = np.flatnonzero((p < 0).any(axis=1) | (np.abs(sums - 1) > 1e-6))
    if len(bad):
        i = int(bad[0])
        raise ConfigError(
            f"{where}: row {i} (counting from 0) holds {np.round(p[i], 6).tolist()[:6]}, summing to {sums[i]:.6g}; "
            "soft labels are class probabilities, >= 0 and summing to 1 in every row"
        )
    return "multiclass", p.astype(np.float64), tuple(str(k) for k in range(p.shape[1]))


# ----------------------------------------------------------------------------- data=files
def _check_keys(cfg, fmt: str) -> None:
    """Keys that only one format reads are refused elsewhere (a typo'd format would silently ignore them)."""
    used = {"target": ".csv", "labels": ".npy", "image_size": "images", "channels": "images"}
    for key, owner in used.items():
        if getattr(cfg, key) and fmt != owner:
            what = "image folders" if owner == "images" else f"{owner} files"
            raise ConfigError(f"data.{key}: applies to {what} only; data.path={cfg.path} is not one")


def _regular(path: Path, key: str) -> None:
    """A named pipe or a device would be read forever: only regular files (and folders of images) are read."""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError:
        return  # missing: said where the file is read
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ConfigError(f"{key}={path}: not a regular file (a named pipe or a device); give a file or a folder")


@DATASETS.register("files", "Your own data: a CSV file, .npz / .npy arrays or a folder of images (data.path)")
def files(cfg) -> Dataset:
    if not cfg.path:
        raise ConfigError(f"data.path: required; give {FORMATS} (data=files data.path=my.csv)")
    path = Path(cfg.path)  # absolute: the schema resolves it against the working directory
    if not path.exists():
        raise ConfigError(f"data.path={path}: no such file or folder")
    _regular(path, "data.path")
    if cfg.labels:
        _regular(Path(cfg.labels), "data.labels")
    fmt = "images" if path.is_dir() else path.suffix.lower()
    if fmt not in (".csv", ".npz", ".npy", "images"):
        raise ConfigError(f"data.path={path}: unknown format '{path.suffix}'; give {FORMATS}")
    _check_keys(cfg, fmt)
    if fmt == ".csv":
        x, labels, column = read_csv(path, cfg.target, cfg.task)
        input_kind, where = "tabular", f"column '{column}' of {path}"
    elif fmt == "images":
        if cfg.task == "regression":
            raise ConfigError(f"data.task=regression: {path} is a folder of classes; use data.task=classification")
        x, labels = read_images(path, cfg.image_size, cfg.channels)
        input_kind, where = "image", str(path)
    else:
        x, labels = read_arrays(path, cfg.labels)
        input_kind, where = INPUT_KINDS[x.ndim], f"{path}: y" if fmt == ".npz" else f"data.labels={cfg.labels}"
    if len(x) < MIN_EXAMPLES:
        raise ConfigError(f"{path}: {len(x)} examples; at least {MIN_EXAMPLES} are needed for train, val and test")
    kind, y, class_names = encode_labels(labels, cfg.task, where)
    lengths = read_lengths(path) if fmt == ".npz" else None
    if lengths is not None:  # variable-length signals, padded: a mask channel says which steps are real
        from dlrun.data.varlen import check_lengths, masked_dataset

        if x.ndim not in (2, 3):
            raise ConfigError(f"{path}: lengths go with padded signals x of shape (N, L) or (N, C, L), not {x.shape}")
        lengths = check_lengths(lengths, len(x), x.shape[-1], f"{path}: ")
        return masked_dataset("files", x, y, lengths, kind, cfg, class_names)
    return split_and_standardize("files", x, y, kind, cfg, tuple(x.shape[1:]), class_names, input_kind)
