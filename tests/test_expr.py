"""dlrun gradcheck --expr: the lecture's exercise, gradient and Hessian by autograd and finite differences.

f(x) = 2 x1 x2 - x3 log x1 - 1/x3
grad f = (2 x2 - x3/x1, 2 x1, -log x1 + 1/x3^2)
H f = [[x3/x1^2, 2, -1/x1], [2, 0, 0], [-1/x1, 0, -2/x3^3]]     (the lecture's solution)
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from dlrun.cli import app
from dlrun.errors import ConfigError
from dlrun.gradcheck import check_expr
from dlrun.gradcheck.expr import parse, variables

runner = CliRunner()
LECTURE = "2*x1*x2 - x3*log(x1) - 1/x3"


def by_hand(x1, x2, x3):
    gradient = [2 * x2 - x3 / x1, 2 * x1, -math.log(x1) + 1 / x3**2]
    hessian = [[x3 / x1**2, 2, -1 / x1], [2, 0, 0], [-1 / x1, 0, -2 / x3**3]]
    return gradient, hessian


def test_the_lectures_exercise_at_1_2_3():
    r = check_expr(LECTURE, "1,2,3")
    assert r["variables"] == ["x1", "x2", "x3"]
    assert r["value"] == pytest.approx(2 * 1 * 2 - 3 * math.log(1) - 1 / 3, abs=1e-12)
    assert r["gradient"]["autograd"] == pytest.approx([1, 2, 1 / 9], abs=1e-10)
    expected = [[3, 2, -1], [2, 0, 0], [-1, 0, -2 / 27]]
    for row, want in zip(r["hessian"]["autograd"], expected, strict=True):
        assert row == pytest.approx(want, abs=1e-10)
    # finite differences agree to their own accuracy (rounding eps|f|/h, eps|f|/H^2)
    assert max(r["gradient"]["abs_error"]) < 1e-8
    assert max(max(row) for row in r["hessian"]["abs_error"]) < 1e-6
    assert r["gradient"]["numeric"] == pytest.approx([1, 2, 1 / 9], abs=1e-8)


@pytest.mark.parametrize("point", [(2.0, 0.5, 1.5), (0.3, -1.0, -2.0)])
def test_the_hand_formulas_hold_elsewhere(point):
    r = check_expr(LECTURE, list(point))
    gradient, hessian = by_hand(*point)
    assert r["gradient"]["autograd"] == pytest.approx(gradient, abs=1e-10)
    for got, want in zip(r["hessian"]["autograd"], hessian, strict=True):
        assert got == pytest.approx(want, abs=1e-10)
    assert r["hessian"]["numeric"][0] == pytest.approx(hessian[0], abs=1e-5)


def test_the_command_prints_both_side_by_side():
    result = runner.invoke(app, ["gradcheck", "--expr", LECTURE, "--at", "1,2,3"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for text in ("autograd", "finite differences", "abs error", "df/dx3", "0.1111111111", "-0.07407407407",
                 "Hessian by autograd", "x1=1, x2=2, x3=3"):  # fmt: skip
        assert text in out, text


def test_json():
    result = runner.invoke(app, ["gradcheck", "--expr", LECTURE, "--at", "1,2,3", "--json"])
    assert result.exit_code == 0
    r = json.loads(result.stdout)
    assert r["hessian"]["autograd"][2][2] == pytest.approx(-2 / 27, abs=1e-12)
    assert set(r) >= {"expr", "variables", "at", "value", "gradient", "hessian"}


def test_negative_values_in_at():
    result = runner.invoke(app, ["gradcheck", "--expr", "x*y", "--at", "-1.5,2", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["gradient"]["autograd"] == [2.0, -1.5]


@pytest.mark.parametrize(
    ("text", "names"),
    [("x10 + x2*x1", ["x1", "x2", "x10"]), ("b*a - c", ["a", "b", "c"]), ("exp(w) + sigmoid(v)", ["v", "w"])],
)
def test_variables_are_sorted_by_name(text, names):
    assert variables(parse(text)) == names


@pytest.mark.parametrize("fn", ["exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid", "relu", "abs"])
def test_every_function_has_the_right_derivative(fn):
    r = check_expr(f"{fn}(x) * x", "0.7")
    value = {"exp": math.exp, "log": math.log, "sqrt": math.sqrt, "sin": math.sin, "cos": math.cos,
             "tan": math.tan, "tanh": math.tanh, "sigmoid": lambda v: 1 / (1 + math.exp(-v)),
             "relu": lambda v: max(v, 0.0), "abs": abs}[fn](0.7)  # fmt: skip
    assert r["value"] == pytest.approx(value * 0.7, abs=1e-12)
    assert r["gradient"]["abs_error"][0] < 1e-8 and r["hessian"]["abs_error"][0][0] < 1e-5


def test_wrong_number_of_values_names_the_variables():
    result = runner.invoke(app, ["gradcheck", "--expr", LECTURE, "--at", "1,2"])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and "x1, x2, x3" in line and "2 values for 3 variables" in line
    with pytest.raises(ConfigError, match="needs --at"):
        check_expr(LECTURE, None)
    with pytest.raises(ConfigError, match="not a comma-separated list"):
        check_expr(LECTURE, "1,two,3")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("__import__('os').system('touch PWNED')", ["calling", "not allowed"]),
        ("x.real + 1", ["Attribute", "not allowed"]),
        ("x[0]", ["Subscript"]),
        ("(lambda t: t)(x)", ["calling"]),
        ("x if x > 0 else -x", ["IfExp"]),
        ("x < 1", ["Compare"]),
        ("x1^2", ["write powers as **"]),
        ("x % 2", ["Mod"]),
        ("'a' + x", ["constant"]),
        ("log(x, 2)", ["exactly one argument"]),
        ("exp + x", ["exp is a function"]),
        ("2 x", ["cannot parse"]),
        ("pow(x, 2)", ["calling pow"]),
    ],
)
def test_only_whitelisted_syntax_is_accepted(text, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        check_expr(text, "1")
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message
    assert not (tmp_path / "PWNED").exists()


def test_outside_the_domain_is_bad_input():
    result = runner.invoke(app, ["gradcheck", "--expr", "log(x)", "--at", "-1"])
    assert result.exit_code == 2 and "outside its domain" in result.stderr


def test_expr_is_exact_for_a_quadratic():
    # f = x^T A x / 2 + b^T x has gradient A x + b and Hessian A, exactly
    r = check_expr("1.5*a**2 + a*b - 0.5*b**2 + 3*a", "0.2,-0.4")
    a, b = 0.2, -0.4
    assert r["gradient"]["autograd"] == pytest.approx([3 * a + b + 3, a - b], abs=1e-14)
    torch.testing.assert_close(torch.tensor(r["hessian"]["autograd"]), torch.tensor([[3.0, 1.0], [1.0, -1.0]]))


# ----------------------------------------------------------------------------- vector functions, step and sign
def test_a_vector_function_gives_its_jacobian():
    """f(x1, x2) = (x1 x2, x1 + x2, sin x1): J = [[x2, x1], [1, 1], [cos x1, 0]] by hand."""
    r = check_expr("x1*x2, x1 + x2, sin(x1)", "1,2")
    assert r["outputs"] == ["x1 * x2", "x1 + x2", "sin(x1)"] and r["value"] == pytest.approx([2, 3, math.sin(1)])
    expected = [[2, 1], [1, 1], [math.cos(1), 0]]
    for which in ("autograd", "numeric"):
        assert r["jacobian"][which] == [pytest.approx(row, abs=1e-8) for row in expected]
    assert max(max(row) for row in r["jacobian"]["abs_error"]) < 1e-8 and "hessian" not in r
    result = runner.invoke(app, ["gradcheck", "--expr", "x1*x2, x1 + x2", "--at", "1,2"])
    assert result.exit_code == 0 and "Jacobian by autograd" in result.stdout
    with pytest.raises(ConfigError, match="Tuple"):
        check_expr("(x1, x2) * 2", "1,2")  # only the top level is a list of formulas


def test_step_and_sign_have_derivative_zero_and_are_undefined_at_the_jump():
    away = check_expr("step(x1 - 1) * x2 + sign(x2)", "2,3")
    assert away["value"] == 3 + 1 and away["gradient"]["autograd"] == [0.0, 1.0]
    assert away["gradient"]["numeric"] == pytest.approx([0.0, 1.0]) and away["undefined"] == []
    at = check_expr("step(x1 - 1) + x2**2", "1,3")
    assert at["undefined"] == ["step(x1 - 1)"] and at["value"] == 9  # step(0) = 0, sign(0) = +1
    assert check_expr("sign(x1) * x2", "0,3")["value"] == 3
    result = runner.invoke(app, ["gradcheck", "--expr", "step(x1 - 1) + x2**2", "--at", "1,3"])
    shown = " ".join(result.stdout.split())  # the line wraps at the terminal's width
    assert "step(x1 - 1): its argument is 0 here, at the jump, where its derivative is undefined" in shown
