"""McCulloch-Pitts units: truth tables, and which boolean functions one threshold unit computes."""

from __future__ import annotations

import itertools

import pytest
from conftest import dlrun

from dlrun.errors import ConfigError
from dlrun.neuron import gate_table, separable, truth_table


def test_the_lectures_unit_computes_x2_and_x1_or_not_x3():
    rows = truth_table([1, 2, -1], 2, "x2 and (x1 or not x3)")
    assert len(rows) == 8 and all(r.y == r.wanted for r in rows)
    assert [r.y for r in rows] == [int(x2 and (x1 or not x3)) for x1, x2, x3 in itertools.product((0, 1), repeat=3)]


def test_14_of_the_16_two_input_functions_are_one_unit_and_xor_xnor_are_not():
    """A known count: of the 16 boolean functions of two inputs, all but XOR and XNOR are linearly separable."""
    inputs = list(itertools.product((0, 1), repeat=2))
    found = {}
    for outputs in itertools.product((0, 1), repeat=4):
        found[outputs] = separable(dict(zip(inputs, outputs, strict=True)))
    assert sum(found.values()) == 14
    assert not found[(0, 1, 1, 0)] and not found[(1, 0, 0, 1)]  # XOR, XNOR
    assert separable(gate_table("AND")) and separable(gate_table("NOT")) and not separable(gate_table("XOR"))
    # a separating unit, checked row by row: AND is x1 + x2 >= 2
    assert [r.y for r in truth_table([1, 1], 2)] == [0, 0, 0, 1]


@pytest.mark.parametrize("expr", ["x4 and x1", "x1 +", "__import__('os')", "x1 and 2"])
def test_bad_expressions_are_one_line(expr):
    with pytest.raises(ConfigError, match="--expr"):
        truth_table([1, 1, 1], 1, expr)


def test_the_command():
    r = dlrun("neuron", "--weights", "1,1", "--threshold", "1", "--expr", "x1 and x2")
    assert r.returncode == 1 and "the unit does not compute x1 and x2: 2 of 4 rows differ" in r.stdout
    r = dlrun("neuron", "--weights", "1,2,-1", "--threshold", "2", "--expr", "x2 and (x1 or not x3)")
    assert r.returncode == 0 and "the unit computes" in r.stdout
    bad = dlrun("neuron", "--weights", "1,a", "--threshold", "1")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --weights 1,a")
