"""data=files: the user's CSV, .npz / .npy arrays and image folders; task inference; one-line errors.

Every test writes its own small files into tmp_path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dlrun.cli import app
from dlrun.config import compose
from dlrun.data import build
from dlrun.data.files import MAX_CLASSES, encode_labels
from dlrun.train import train
from tests.conftest import dlrun, quick

runner = CliRunner()


def write_csv(path: Path, header: list[str], rows) -> Path:
    path.write_text("\n".join([",".join(header), *(",".join(map(str, row)) for row in rows)]) + "\n")
    return path


def clusters_csv(path: Path, n: int = 150, seed: int = 0) -> Path:
    """Three well-separated classes along feature a; sorted names (ant, moose, zebra) differ from the a order."""
    rng = np.random.default_rng(seed)
    centers = {"zebra": -5.0, "ant": 0.0, "moose": 5.0}
    names = list(centers)
    rows = [(f"{centers[names[i % 3]] + rng.normal():.4f}", f"{rng.normal():.4f}", names[i % 3]) for i in range(n)]
    return write_csv(path, ["a", "b", "species"], rows)


def stripes(folder: Path, n: int = 20, size: tuple[int, int] = (8, 8), rgb: bool = False, seed: int = 0) -> Path:
    """folder/horizontal/*.png and folder/vertical/*.png: noisy stripes, one class per orientation."""
    rng = np.random.default_rng(seed)
    for name in ("horizontal", "vertical"):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = np.zeros(size)
            if name == "horizontal":
                img[::2, :] = 1.0
            else:
                img[:, ::2] = 1.0
            pixels = np.clip(img * 200 + rng.integers(0, 55, size), 0, 255).astype(np.uint8)
            if rgb:
                pixels = np.stack([pixels, pixels // 2, 255 - pixels], axis=-1)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")
    return folder


def data(*overrides: str):
    return build(compose(["data=files", *overrides]).data)


def run(runs, *overrides: str) -> dict:
    return train(compose(quick(runs, "data=files", "model.hidden=[16]", *overrides)))


# ----------------------------------------------------------------------------- training on each format
def test_csv_with_text_labels_trains_and_records_the_label_map(runs, tmp_path):
    csv_file = clusters_csv(tmp_path / "animals.csv")
    s = run(runs, f"data.path={csv_file}", "data.target=species", "trainer.epochs=20", "optim.lr=0.05")
    assert s["status"] == "completed" and s["loss"] == "cross_entropy"
    assert s["metrics"]["test/acc"] > 0.9  # chance: 1/3
    run_dir = Path(s["run_dir"])
    assert s["classes"] == json.loads((run_dir / "summary.json").read_text())["classes"] == ["ant", "moose", "zebra"]
    assert f"path: {csv_file}" in (run_dir / "config.yaml").read_text()


def test_text_labels_are_numbered_in_sorted_order(tmp_path):
    ds = data(f"data.path={clusters_csv(tmp_path / 'animals.csv')}")  # target: the last column by default
    assert ds.task.kind == "multiclass" and ds.task.class_names == ("ant", "moose", "zebra")
    assert ds.task.input_shape == (2,) and ds.task.input_kind == "tabular"
    x, y = ds.train.x[:, 0], ds.train.y
    # a: zebra -5, ant 0, moose +5
    assert x[y == 2].mean() < x[y == 0].mean() < x[y == 1].mean()


def test_csv_regression(runs, tmp_path):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=200), rng.normal(size=200)
    target = 2 * a - b + 0.1 * rng.normal(size=200)
    rows = [(f"{t:.4f}", f"{u:.4f}", f"{v:.4f}") for t, u, v in zip(target, a, b, strict=True)]
    csv_file = write_csv(tmp_path / "linear.csv", ["y", "a", "b"], rows)  # the target is not the last column
    s = run(runs, f"data.path={csv_file}", "data.target=y", "model=linear", "trainer.epochs=20", "optim.lr=0.05")
    assert s["loss"] == "mse" and s["classes"] == []
    assert s["metrics"]["test/mse"] < 0.1  # standardized targets: predicting the mean scores about 1


def test_npz_binary(runs, tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(120, 5))
    np.savez(tmp_path / "arrays.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    s = run(runs, f"data.path={tmp_path / 'arrays.npz'}", "trainer.epochs=15", "optim.lr=0.01")
    assert s["loss"] == "bce" and s["classes"] == ["0", "1"]
    assert s["metrics"]["test/acc"] > 0.8


def test_image_folder(runs, tmp_path):
    folder = stripes(tmp_path / "stripes")
    s = run(runs, f"data.path={folder}", "data.standardize=global", "trainer.epochs=10", "optim.lr=0.01")
    assert s["classes"] == ["horizontal", "vertical"]
    assert s["metrics"]["test/acc"] > 0.8
    ds = data(f"data.path={folder}")
    assert ds.task.input_shape == (1, 8, 8) and ds.task.input_kind == "image" and ds.task.kind == "binary"


def test_npy_pair_with_signals_and_text_labels(tmp_path):
    x = np.random.default_rng(3).normal(size=(30, 2, 16))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.array(["up", "down", "flat"] * 10))
    ds = data(f"data.path={tmp_path / 'x.npy'}", f"data.labels={tmp_path / 'y.npy'}")
    assert ds.task.input_shape == (2, 16) and ds.task.input_kind == "signal"
    assert ds.task.class_names == ("down", "flat", "up") and ds.task.n_classes == 3


def test_image_channels_are_inferred_or_set_and_images_resized(tmp_path):
    gray = stripes(tmp_path / "gray", n=6)
    assert data(f"data.path={gray}").task.input_shape == (1, 8, 8)
    assert data(f"data.path={gray}", "data.channels=3").task.input_shape == (3, 8, 8)
    mixed = stripes(tmp_path / "mixed", n=6)
    stripes(tmp_path / "mixed_rgb", n=6, rgb=True)
    (tmp_path / "mixed_rgb" / "vertical" / "0.png").rename(mixed / "vertical" / "rgb.png")  # one colour image
    assert data(f"data.path={mixed}").task.input_shape == (3, 8, 8)
    assert data(f"data.path={mixed}", "data.channels=1").task.input_shape == (1, 8, 8)
    Image.new("L", (12, 10), 128).save(mixed / "horizontal" / "big.png")  # 10 x 12 (H x W)
    ds = data(f"data.path={mixed}", "data.image_size=[4,6]")
    assert ds.task.input_shape == (3, 4, 6) and len(ds.train) + len(ds.val) + len(ds.test) == 14


def test_path_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    clusters_csv(tmp_path / "animals.csv")
    monkeypatch.chdir(tmp_path)
    cfg = compose(["data=files", "data.path=animals.csv"]).data
    assert cfg.path == str(tmp_path / "animals.csv")
    assert build(cfg).task.n_classes == 3


# ----------------------------------------------------------------------------- the split
def test_split_is_stratified_and_standardized_with_train_statistics(tmp_path):
    rng = np.random.default_rng(4)
    labels = ["rare"] * 60 + ["common"] * 140
    raw = np.stack([rng.uniform(0, 100, 200), rng.normal(size=200)], axis=1)
    raw = np.round(raw, 3)
    write_csv(tmp_path / "t.csv", ["a", "b", "label"], [(*row, k) for row, k in zip(raw, labels, strict=True)])
    ds = data(f"data.path={tmp_path / 't.csv'}")
    # test: ceil(0.2 * 200); val: ceil(0.15 / 0.8 * 160) of the rest
    assert (len(ds.train), len(ds.val), len(ds.test)) == (130, 30, 40)
    for split in (ds.train, ds.val, ds.test):  # class shares kept: common = 0, rare = 1
        assert abs(split.y.float().mean().item() - 0.3) < 1.0 / len(split)
    # the splits together are the file's rows; x_std = (x - mean_train) / std_train
    mean, std = ds.stats["x_mean"], ds.stats["x_std"]
    back = [split.x.double().numpy() * std + mean for split in (ds.train, ds.val, ds.test)]
    assert sorted(map(tuple, np.round(np.concatenate(back), 3))) == sorted(map(tuple, raw))
    assert np.allclose(back[0].mean(axis=0), mean) and np.allclose(back[0].std(axis=0), std)
    assert not np.allclose(raw.mean(axis=0), mean, atol=0.01)  # not fitted on all rows


# ----------------------------------------------------------------------------- task inference
@pytest.mark.parametrize(
    ("labels", "task", "kind", "names"),
    [
        (np.array(["b", "a", "b", "c"] * 5), "auto", "multiclass", ("a", "b", "c")),
        (np.array([1.0, -1.0] * 10), "auto", "binary", ("-1", "1")),
        (np.array([10.0, 9.0, 2.0] * 10), "auto", "multiclass", ("2", "9", "10")),  # sorted as numbers
        (np.arange(100.0) % MAX_CLASSES, "auto", "multiclass", tuple(str(i) for i in range(MAX_CLASSES))),
        (np.arange(200.0) % (MAX_CLASSES + 1), "auto", "regression", ()),  # too many distinct values
        (np.arange(20.0) % 11, "auto", "regression", ()),  # more than one distinct value per two examples
        (np.linspace(0, 1, 20), "auto", "regression", ()),  # not whole numbers
        (np.array([0.5, 1.5] * 10), "classification", "binary", ("0.5", "1.5")),
        (np.array([0.0, 1.0] * 10), "regression", "regression", ()),
    ],
)
def test_task_inference(labels, task, kind, names):
    got_kind, y, got_names = encode_labels(labels, task, "labels")
    assert (got_kind, got_names) == (kind, names)
    if kind == "regression":
        assert y.dtype == np.float64 and np.array_equal(y, labels)
    else:  # label i is class_names[i]
        assert y.dtype == np.int64
        decoded = np.array(got_names)[y]
        if labels.dtype.kind == "U":
            assert list(decoded) == list(labels)
        else:
            assert np.allclose(decoded.astype(float), labels)


# ----------------------------------------------------------------------------- bad input: one line, exit 2
def _csv(text: str):
    def write(tmp: Path) -> list[str]:
        (tmp / "bad.csv").write_text(text)
        return [f"data.path={tmp / 'bad.csv'}"]

    return write


def _npz(**arrays):
    def write(tmp: Path) -> list[str]:
        np.savez(tmp / "bad.npz", **arrays)
        return [f"data.path={tmp / 'bad.npz'}"]

    return write


def _images(setup):
    def write(tmp: Path) -> list[str]:
        folder = tmp / "pictures"
        folder.mkdir()
        setup(folder)
        return [f"data.path={folder}"]

    return write


def _npy(n_x: int, n_y: int | None):
    def write(tmp: Path) -> list[str]:
        np.save(tmp / "x.npy", np.zeros((n_x, 3)))
        if n_y is None:
            return [f"data.path={tmp / 'x.npy'}"]
        np.save(tmp / "y.npy", np.arange(n_y) % 2)
        return [f"data.path={tmp / 'x.npy'}", f"data.labels={tmp / 'y.npy'}"]

    return write


def _one_class(folder: Path) -> None:
    stripes(folder, n=6)
    for f in (folder / "vertical").iterdir():
        f.unlink()
    (folder / "vertical").rmdir()


def _broken_image(folder: Path) -> None:
    stripes(folder, n=6)
    (folder / "vertical" / "broken.png").write_bytes(b"not a png")


def _two_sizes(folder: Path) -> None:
    stripes(folder, n=6)
    Image.new("L", (9, 7), 0).save(folder / "vertical" / "z.png")


def _unknown_suffix(tmp: Path) -> list[str]:
    (tmp / "table.xlsx").write_text("a,b\n")
    return [f"data.path={tmp / 'table.xlsx'}"]


def _not_an_npz(tmp: Path) -> list[str]:
    (tmp / "bad.npz").write_bytes(b"garbage")
    return [f"data.path={tmp / 'bad.npz'}"]


def _with(write, *overrides: str):
    return lambda tmp: write(tmp) + list(overrides)


ROWS = "".join(f"{i},{i % 3},{'ab'[i % 2]}\n" for i in range(20))  # lines 2-21 of "a,b,y\n" + ROWS
GOOD = _csv("a,b,y\n" + ROWS)
BAD = [
    ("no path", lambda tmp: [], ["data.path: required", "a .csv, .npz or .npy file, or a folder of images"]),
    ("missing file", lambda tmp: [f"data.path={tmp / 'nope.csv'}"], ["data.path=", "nope.csv: no such file"]),
    ("unknown suffix", _unknown_suffix, ["table.xlsx: unknown format '.xlsx'", "a .csv, .npz or .npy file"]),
    ("target column", _with(GOOD, "data.target=yy"), ["data.target=yy", "did you mean 'y'?", "columns: a, b, y"]),
    ("ragged row", _csv("a,b,y\n1,2,a\n3,b\n" + ROWS), ["bad.csv: line 3 has 2 fields, the header (line 1) has 3"]),
    ("NaN", _csv("a,b,y\n1,2,a\n3,4,b\n5,nan,a\n" + ROWS), ["bad.csv: line 4, column 'b': 'nan' is not a finite"]),
    ("empty value", _csv("a,b,y\n,2,a\n" + ROWS), ["bad.csv: line 2, column 'a': empty value"]),
    ("text feature", _csv("a,color,y\n1,2,a\n3,red,b\n" + ROWS), ["line 3, column 'color': 'red' is not a number"]),
    ("empty label", _csv("a,b,y\n1,2,\n" + ROWS), ["line 2, column 'y': empty value; every row needs a label"]),
    ("no header", _csv("1,2,0\n" + ROWS), ["bad.csv: line 1 holds numbers", "header row"]),
    ("empty file", _csv(""), ["bad.csv: empty file"]),
    ("one class", _csv("a,b,y\n" + "".join(f"{i},{i},same\n" for i in range(20))), ["one class only ('same')"]),
    ("text target", _with(GOOD, "data.task=regression"), ["line 2, column 'y': 'a' is not a number"]),
    ("mixed labels", _csv("a,b,y\n1,2,3\n" + ROWS), ["line 3, column 'y': 'a' is text, but line 2 holds a number"]),
    ("few rows", _csv("a,y\n1,a\n2,b\n3,a\n"), ["bad.csv: 3 examples; at least 10"]),
    ("empty folder", _images(lambda folder: None), ["pictures: no class sub-folders"]),
    ("one class folder", _images(_one_class), ["pictures: one class sub-folder only ('horizontal')"]),
    ("unreadable image", _images(_broken_image), ["vertical/broken.png: cannot read the image"]),
    ("sizes differ", _images(_two_sizes), ["vertical/z.png is 7x9", "data.image_size=[H,W]"]),
    ("npz without y", _npz(x=np.zeros((20, 2)), labels=np.zeros(20)), ["bad.npz: no array 'y' (arrays: x, labels)"]),
    ("npz lengths", _npz(x=np.zeros((20, 2)), y=np.zeros(19)), ["bad.npz: x has 20 examples", "y has 19"]),
    ("npz NaN", _npz(x=np.array([[0.0], [np.nan]] * 10), y=np.arange(20) % 2), ["bad.npz: x: example 1"]),
    ("not an npz", _not_an_npz, ["data.path=", "bad.npz: not a .npz file (such as np.savez writes)"]),
    ("npy without labels", _npy(20, None), ["data.labels: required with an .npy file"]),
    ("npy lengths", _npy(20, 18), ["x.npy has 20 examples", "y.npy has 18"]),
    ("key of another format", _with(GOOD, "data.channels=1"), ["data.channels: applies to image folders only"]),
    ("task", lambda tmp: ["data.task=classify"], ["data.task", "choose from: auto, classification, regression"]),
    ("image_size", lambda tmp: ["data.image_size=[8]"], ["data.image_size", "[H, W]"]),
    ("channels", lambda tmp: ["data.channels=2"], ["data.channels", "0 (infer), 1 (gray), 3 (RGB)"]),
]


@pytest.mark.parametrize(("case", "write", "must_contain"), BAD, ids=[case for case, _, _ in BAD])
def test_bad_input_exits_2_with_one_line(case, write, must_contain, runs, tmp_path):
    result = runner.invoke(app, ["train", f"runs_dir={runs}", "data=files", *write(tmp_path)])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    for part in must_contain:
        assert part in lines[0], (part, lines[0])
    assert not any(runs.rglob("summary.json"))  # caught before a run directory is made


def test_a_missing_file_exits_2_from_the_shell(runs, tmp_path):
    result = dlrun("train", f"runs_dir={runs}", "data=files", f"data.path={tmp_path / 'nope.csv'}")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: data.path={tmp_path / 'nope.csv'}: no such file or folder"
