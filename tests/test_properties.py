"""Property-based tests of the parsers users feed (Hypothesis): overrides, the sweep grammar, CSV and .npz
files and `gradcheck --expr`. Any input either parses or is a one-line ConfigError; none raises anything
else or hangs. conftest.py's profiles keep `make test` fast and repeatable; `make fuzz` searches further."""

from __future__ import annotations

import io
import string
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dlrun.errors import ConfigError

SETTINGS = settings()  # the profile loaded in conftest.py: fixed examples in `make test`, random ones in `make fuzz`

KEYS = ["optim.lr", "trainer.epochs", "model.hidden", "model", "data", "name", "trainer.checkpoint", "optim"]
PIECES = ["=", ",", "[", "]", "(", ")", "'", '"', " ", "-", ".", "e", "1", "0", "9" * 30, "é", "\0", ":", "tag", "log"]


def override_text():
    free = st.text(alphabet=string.printable + "éß€\0", max_size=40)
    built = st.tuples(st.sampled_from(KEYS), st.lists(st.sampled_from(PIECES), max_size=8)).map(
        lambda t: t[0] + "".join(t[1])
    )
    return st.one_of(free, built)


def one_line(e: ConfigError) -> None:
    text = str(e)
    assert text and "\n" not in text.strip(), text
    assert "Traceback" not in text


@SETTINGS
@given(st.lists(override_text(), min_size=1, max_size=3))
def test_any_override_composes_or_is_one_line(overrides):
    from dlrun.config import compose

    try:
        compose(overrides)
    except ConfigError as e:
        one_line(e)


@SETTINGS
@given(st.lists(override_text(), min_size=1, max_size=3))
def test_any_sweep_space_parses_or_is_one_line(overrides):
    from dlrun.sweep.space import parse

    try:
        parse(overrides)
    except ConfigError as e:
        one_line(e)


CSV_CELLS = st.one_of(
    st.sampled_from(["1", "0", "-2.5", "1e308", "nan", "inf", "", " ", "a", "b", "\0", '"', "1,2", "é"]),
    st.text(max_size=6),
)


@SETTINGS
@given(
    st.lists(st.lists(CSV_CELLS, min_size=0, max_size=4), min_size=0, max_size=14),
    st.sampled_from(["auto", "classification", "regression"]),
)
def test_any_csv_reads_or_is_one_line(tmp_path_factory, rows, task):
    from dlrun.data.files import encode_labels, read_csv

    path = Path(tmp_path_factory.mktemp("csv")) / "data.csv"
    path.write_text("\n".join(",".join(r) for r in rows), encoding="utf-8", errors="surrogatepass")
    try:
        x, labels, column = read_csv(path, "", task)
        encode_labels(labels, task, column)
    except ConfigError as e:
        one_line(e)


def npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


ARRAYS = st.sampled_from(
    [
        {"x": np.zeros((12, 3)), "y": np.arange(12) % 2},
        {"x": np.zeros((12, 0)), "y": np.arange(12) % 2},
        {"x": np.zeros(12), "y": np.array(1)},
        {"x": np.zeros((12, 2)) + 1j, "y": np.arange(12)},
        {"x": np.array(["a"] * 12), "y": np.arange(12)},
        {"x": np.zeros((12, 1, 4)), "y": np.array(["p", "q"] * 6)},
        {"y": np.arange(12)},
        {"x": np.full((12, 2), np.nan), "y": np.arange(12)},
    ]
)


@SETTINGS
@given(ARRAYS, st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=4), st.integers(0, 4000))
def test_any_npz_reads_or_is_one_line(tmp_path_factory, arrays, flips, cut):
    """Valid and odd arrays, then bytes flipped and the file cut short: read, or one line."""
    from dlrun.data.files import read_arrays

    data = bytearray(npz_bytes(arrays))
    for at, value in flips:
        if at < len(data):
            data[at] = value
    path = Path(tmp_path_factory.mktemp("npz")) / "data.npz"
    path.write_bytes(bytes(data[: max(cut, 4)] if cut < len(data) else data))
    try:
        read_arrays(path)
    except ConfigError as e:
        one_line(e)
    except zipfile.BadZipFile:  # never: a damaged archive is a ConfigError
        raise


EXPR_PIECES = ["x", "y", "+", "*", "/", "**", "(", ")", "sin", "exp", "log", "relu", "1", "0", "1e308", ".", ",", "__"]


@SETTINGS
@given(
    st.one_of(
        st.text(alphabet=string.printable, max_size=30),
        st.lists(st.sampled_from(EXPR_PIECES), min_size=1, max_size=10).map("".join),
    )
)
def test_any_expression_checks_or_is_one_line(text):
    from dlrun.gradcheck.expr import check_expr

    try:
        check_expr(text, None)
    except ConfigError as e:
        one_line(e)
