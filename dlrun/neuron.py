"""The McCulloch-Pitts unit: binary inputs, weights and a threshold; it fires (y = 1) when
sum_i w_i x_i >= theta. `truth_table` lists what a unit computes; `separable` says whether any single
threshold unit computes a boolean function (a linear program over w and theta: feasible exactly when the
inputs that give 1 and those that give 0 are linearly separable). AND, OR and NOT are; XOR is not.
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass

import numpy as np

from dlrun.errors import ConfigError

MAX_INPUTS = 12  # 4,096 rows


@dataclass
class Row:
    x: tuple[int, ...]
    total: float
    y: int
    wanted: int | None = None  # the boolean expression's value, when one is given


def truth_table(weights: list[float], threshold: float, expr: str | None = None) -> list[Row]:
    """Every input in {0, 1}^n, its weighted sum and the unit's output (and the expression's value)."""
    n = len(weights)
    if not 1 <= n <= MAX_INPUTS:
        raise ConfigError(f"--weights: give 1 to {MAX_INPUTS} weights, one per input (got {n})")
    check = compile_expr(expr, n) if expr else None
    rows = []
    for x in itertools.product((0, 1), repeat=n):
        total = float(np.dot(weights, x))
        rows.append(Row(x, total, int(total >= threshold), int(check(x)) if check else None))
    return rows


def compile_expr(text: str, n: int):
    """'x2 and (x1 or not x3)' -> a function of the input tuple; names x1..xn, and, or, not, 0, 1 only."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ConfigError(f"--expr {text!r}: not a boolean expression (use x1..x{n}, and, or, not)") from None
    allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.Name, ast.Load, ast.Constant)
    names = {f"x{i}" for i in range(1, n + 1)}
    for node in ast.walk(tree):
        if not isinstance(node, allowed) or (isinstance(node, ast.Constant) and node.value not in (0, 1)):
            raise ConfigError(f"--expr {text!r}: only x1..x{n}, and, or, not, 0 and 1 are allowed")
        if isinstance(node, ast.Name) and node.id not in names:
            raise ConfigError(f"--expr {text!r}: '{node.id}' is not an input; the unit has x1..x{n}")
    code = compile(tree, "<expr>", "eval")
    return lambda x: bool(eval(code, {"__builtins__": {}}, {f"x{i + 1}": bool(v) for i, v in enumerate(x)}))


def separable(outputs: dict[tuple[int, ...], int]) -> bool:
    """Whether one threshold unit computes this boolean function: is there (w, theta) with w.x - theta >= 1
    where the output is 1 and <= -1 where it is 0? (scipy's linear program; feasible iff separable)."""
    from scipy.optimize import linprog

    xs = np.array(list(outputs), dtype=float)
    ys = np.array([outputs[tuple(x)] for x in xs.astype(int)])
    sign = np.where(ys == 1, -1.0, 1.0)  # rows: -(w.x - theta) <= -1 for ones, (w.x - theta) <= -1 for zeros
    a = sign[:, None] * np.hstack([xs, -np.ones((len(xs), 1))])
    res = linprog(np.zeros(xs.shape[1] + 1), A_ub=a, b_ub=-np.ones(len(xs)), bounds=(None, None), method="highs")
    return res.status == 0


GATES = {  # upper case: and, or and not are Python's words, which a claim's expectations cannot name
    "AND": lambda x: x[0] and x[1],
    "OR": lambda x: x[0] or x[1],
    "NAND": lambda x: not (x[0] and x[1]),
    "XOR": lambda x: x[0] != x[1],
    "NOT": lambda x: not x[0],
}


def gate_table(name: str) -> dict[tuple[int, ...], int]:
    n = 1 if name == "NOT" else 2
    return {x: int(GATES[name](x)) for x in itertools.product((0, 1), repeat=n)}
