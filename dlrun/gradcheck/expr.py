"""Gradient and Hessian of a formula, by autograd and by finite differences (`dlrun gradcheck --expr`).

    check_expr("2*x1*x2 - x3*log(x1) - 1/x3", [1, 2, 3])
    check_expr("x1*x2, x1 + x2", [1, 2])          # a vector function: its Jacobian

Several formulas separated by commas are a vector function f: R^n -> R^m, checked through its m x n
Jacobian (no Hessian). step() and sign() are allowed: their derivative is 0 away from the jump and
undefined at it, which the report names instead of comparing differences across the jump.

The formula is parsed with Python's `ast` and evaluated by walking the tree: only numbers,
variables, + - * / **, unary minus and calls of FUNCTIONS are accepted; nothing is ever passed
to eval. Every other identifier is a variable; variables are ordered by name with numbers
compared as numbers (x1, x2, ..., x10). Its size is refused before anything is evaluated beyond
MAX_LENGTH characters, MAX_NODES nodes, MAX_VARIABLES variables, and literals with more than
MAX_DIGITS digits or beyond float64's range.

Finite differences in float64: the gradient by centered differences with step h,
(f(x + h e_i) - f(x - h e_i)) / 2h; the Hessian by the four-point formula with step H (about
eps^(1/4), where rounding eps |f| / H^2 and truncation H^2 balance):
    (f(x + H e_i + H e_j) - f(x + H e_i - H e_j) - f(x - H e_i + H e_j) + f(x - H e_i - H e_j)) / 4H^2
"""

from __future__ import annotations

import ast
import math
import re
import sys
from typing import Any

import torch

from dlrun.errors import ConfigError

FUNCTIONS = {
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "sin": torch.sin,
    "cos": torch.cos,
    "tan": torch.tan,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "abs": torch.abs,
    "step": lambda z: _Jump.apply(z, "step"),
    "sign": lambda z: _Jump.apply(z, "sign"),
}
JUMPS = ("step", "sign")
MAX_OUTPUTS = 32


class _Jump(torch.autograd.Function):
    """step(z) = 1 if z > 0 else 0 and sign(z) = +1 if z >= 0 else -1 (as model.activation's); derivative 0."""

    @staticmethod
    def forward(ctx, z, kind):
        return (z > 0).to(z.dtype) if kind == "step" else torch.where(z >= 0, 1.0, -1.0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        return torch.zeros_like(grad_out), None


_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_UNARY = {ast.USub: "-", ast.UAdd: "+"}
ALLOWED = "numbers, variables, + - * / **, unary minus and " + ", ".join(f"{f}()" for f in FUNCTIONS)
H_HESSIAN = 1e-4
MAX_LENGTH = 2000  # characters; parsing is linear in them, but nobody types more
MAX_NODES = 500  # numbers, variables, operations and calls; evaluation recurses once per level
MAX_VARIABLES = 32  # the Hessian by finite differences takes 4 n^2 evaluations
MAX_DIGITS = 30  # float64 keeps 17 significant digits; an integer beyond float range would overflow


def _shown(text: str) -> str:
    return text if len(text) <= 60 else f"{text[:57]}..."


def _refuse(text: str, what: str) -> ConfigError:
    return ConfigError(f"--expr '{_shown(text)}': {what} is not allowed; use {ALLOWED}")


def parse(text: str) -> ast.Expression:
    """The syntax tree of the formula, checked against the whitelist and the size limits (ConfigError
    otherwise), before anything is evaluated."""
    source = text.strip()
    if len(source) > MAX_LENGTH:
        raise ConfigError(f"--expr: {len(source):,} characters; at most {MAX_LENGTH:,} are allowed")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as e:
        raise ConfigError(f"--expr '{_shown(text)}': cannot parse it ({e.msg} at column {e.offset})") from None
    names = variables(tree)
    if len(names) > MAX_VARIABLES:
        raise ConfigError(
            f"--expr '{_shown(text)}': {len(names)} variables; at most {MAX_VARIABLES} are allowed "
            "(the Hessian takes 4 n^2 evaluations)"
        )
    nodes = sum(isinstance(n, ast.expr) for n in ast.walk(tree.body))  # not the operators themselves
    if nodes > MAX_NODES:
        raise ConfigError(f"--expr '{_shown(text)}': {nodes:,} terms and operations; at most {MAX_NODES} are allowed")
    parts = tree.body.elts if isinstance(tree.body, ast.Tuple) else [tree.body]
    if not parts or len(parts) > MAX_OUTPUTS:
        raise ConfigError(
            f"--expr '{_shown(text)}': {len(parts)} formulas; give 1 to {MAX_OUTPUTS}, separated by commas"
        )
    for part in parts:
        _check(part, source)
    return tree


def _check(node: ast.AST, text: str) -> None:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise _refuse(text, f"the constant {node.value!r}")
        _check_literal(node, text)
    elif isinstance(node, ast.Name):
        if node.id in FUNCTIONS:
            raise ConfigError(f"--expr '{text}': {node.id} is a function; call it as {node.id}(...)")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            hint = " (write powers as **)" if isinstance(node.op, ast.BitXor) else ""
            raise _refuse(text, f"the operator {type(node.op).__name__}{hint}")
        _check(node.left, text)
        _check(node.right, text)
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise _refuse(text, f"the operator {type(node.op).__name__}")
        _check(node.operand, text)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise _refuse(text, f"calling {ast.unparse(node.func)}")
        if node.keywords or len(node.args) != 1:
            raise ConfigError(f"--expr '{text}': {node.func.id}() takes exactly one argument")
        _check(node.args[0], text)
    else:
        raise _refuse(text, f"'{ast.unparse(node)}' ({type(node).__name__})")


def _check_literal(node: ast.Constant, text: str) -> None:
    """A number's digits and range: a 400-digit integer would overflow float(), 1e400 would be inf."""
    literal = ast.get_source_segment(text, node) or repr(node.value)
    if isinstance(node.value, int):
        too_long = abs(node.value) >= 10**MAX_DIGITS  # also for hexadecimal and binary literals
    else:
        too_long = sum(c.isdigit() for c in re.split("[eE]", literal)[0]) > MAX_DIGITS
    if too_long:
        raise ConfigError(
            f"--expr '{_shown(text)}': the number {_shown(literal)} has more than {MAX_DIGITS} digits; "
            f"at most {MAX_DIGITS} are allowed (float64 keeps 17)"
        )
    if not math.isfinite(node.value):
        raise ConfigError(
            f"--expr '{_shown(text)}': the number {literal} is beyond float64's range (about ±{sys.float_info.max:.2g})"
        )


def variables(tree: ast.Expression) -> list[str]:
    """The formula's variables, ordered by name with digit runs compared as numbers: x1, x2, ..., x10."""
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id not in FUNCTIONS}

    def key(name: str):
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]

    return sorted(names, key=key)


def evaluate(node: ast.AST, env: dict[str, torch.Tensor]) -> torch.Tensor:
    """The value of a checked tree, with the variables bound to the tensors in env."""
    if isinstance(node, ast.Expression):
        return evaluate(node.body, env)
    if isinstance(node, ast.Tuple):  # a vector function: (..., m)
        return torch.stack(torch.broadcast_tensors(*[evaluate(e, env) for e in node.elts]), -1)
    if isinstance(node, ast.Constant):
        return torch.tensor(float(node.value), dtype=torch.float64)
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.UnaryOp):
        value = evaluate(node.operand, env)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        a, b = evaluate(node.left, env), evaluate(node.right, env)
        op = _BINARY[type(node.op)]
        return {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op] if op != "**" else a**b
    if isinstance(node, ast.Call):
        return FUNCTIONS[node.func.id](evaluate(node.args[0], env))
    raise AssertionError(f"unchecked node {type(node).__name__}")  # parse() refuses these


def parse_point(at: str | list[float] | None, names: list[str], text: str) -> list[float]:
    """--at '1,2,3' -> [1.0, 2.0, 3.0], one value per variable in order (ConfigError otherwise)."""
    order = ", ".join(names)
    if at is None:
        raise ConfigError(f"--expr '{text}' needs --at with one value per variable ({order}), e.g. --at 1,2,3")
    if isinstance(at, str):
        try:
            values = [float(v) for v in at.replace(" ", "").split(",") if v != ""]
        except ValueError:
            raise ConfigError(f"--at {at}: not a comma-separated list of numbers (for {order})") from None
    else:
        values = [float(v) for v in at]
    if len(values) != len(names):
        raise ConfigError(
            f"--at: {len(values)} value{'s' if len(values) != 1 else ''} for {len(names)} "
            f"variable{'s' if len(names) != 1 else ''} ({order}); give one per variable, in this order"
        )
    return values


def jumps_at(tree: ast.Expression, env: dict[str, torch.Tensor]) -> list[str]:
    """The step() and sign() calls whose argument is exactly 0 at the point: where their derivative is undefined."""
    return [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and node.func.id in JUMPS and evaluate(node.args[0], env).item() == 0
    ]


def check_jacobian(tree: ast.Expression, text: str, names: list[str], point: torch.Tensor, h: float) -> dict:
    """A vector function's Jacobian J[i][j] = df_i/dx_j by autograd and by centered differences."""

    def f(x: torch.Tensor) -> torch.Tensor:  # (..., n) -> (..., m)
        return evaluate(tree, {name: x[..., i] for i, name in enumerate(names)})

    values = f(point)
    if not torch.isfinite(values).all():
        where = ", ".join(f"{n}={v:g}" for n, v in zip(names, point.tolist(), strict=True))
        raise ConfigError(f"--expr '{text}' is {values.tolist()} at ({where}): outside its domain")
    auto = torch.autograd.functional.jacobian(f, point)  # (m, n)
    eye = torch.eye(len(names), dtype=torch.float64)
    numeric = ((f(point + h * eye) - f(point - h * eye)) / (2 * h)).T  # row j of the stack: +- h e_j
    return {
        "expr": text,
        "variables": names,
        "outputs": [ast.unparse(e) for e in tree.body.elts],
        "at": point.tolist(),
        "value": values.tolist(),
        "h": h,
        "jacobian": {
            "autograd": auto.tolist(),
            "numeric": numeric.tolist(),
            "abs_error": (auto - numeric).abs().tolist(),
        },
        "undefined": jumps_at(tree, {n: point[i] for i, n in enumerate(names)}),
    }


def check_expr(text: str, at: str | list[float] | None, h: float = 1e-6) -> dict[str, Any]:
    """Value, gradient and Hessian at the point, by autograd and by finite differences, with each entry's error."""
    if not h > 0:
        raise ConfigError(f"--h {h}: the finite-difference step must be > 0 (1e-6 suits float64)")
    tree = parse(text)
    names = variables(tree)
    if not names:
        raise ConfigError(f"--expr '{text}': no variables to differentiate by")
    point = torch.tensor(parse_point(at, names, text), dtype=torch.float64)
    if isinstance(tree.body, ast.Tuple):
        return check_jacobian(tree, text, names, point, h)

    def f(x: torch.Tensor) -> torch.Tensor:  # (..., n) -> (...): many points in one walk of the tree
        return evaluate(tree, {name: x[..., i] for i, name in enumerate(names)})

    value = f(point).item()
    if not math.isfinite(value):
        where = ", ".join(f"{n}={v:g}" for n, v in zip(names, point.tolist(), strict=True))
        raise ConfigError(f"--expr '{text}' is {value} at ({where}): outside its domain")
    x = point.clone().requires_grad_(True)
    grad_auto = torch.autograd.grad(f(x), x)[0]
    hess_auto = torch.autograd.functional.hessian(f, point)

    n = len(names)
    eye = torch.eye(n, dtype=torch.float64)
    grad_num = (f(point + h * eye) - f(point - h * eye)) / (2 * h)  # row i: point +- h e_i
    s = H_HESSIAN
    ei, ej = s * eye[:, None, :], s * eye[None, :, :]  # entry (i, j): point +- s e_i +- s e_j
    hess_num = (f(point + ei + ej) - f(point + ei - ej) - f(point - ei + ej) + f(point - ei - ej)) / (4 * s * s)
    return {
        "expr": text,
        "variables": names,
        "at": point.tolist(),
        "value": value,
        "h": h,
        "h_hessian": s,
        "gradient": {
            "autograd": grad_auto.tolist(),
            "numeric": grad_num.tolist(),
            "abs_error": (grad_auto - grad_num).abs().tolist(),
        },
        "hessian": {
            "autograd": hess_auto.tolist(),
            "numeric": hess_num.tolist(),
            "abs_error": (hess_auto - hess_num).abs().tolist(),
        },
        "undefined": jumps_at(tree, {n: point[i] for i, n in enumerate(names)}),
    }
