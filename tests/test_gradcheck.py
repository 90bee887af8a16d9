"""dlrun gradcheck: autograd against finite differences for every registered model, for a user's module or
autograd.Function (a wrong backward is caught and named), around kinks, and on the command line.

Thresholds (CS231n, see ../README "Gradient checking"): relative error |a - n| / max(|a|, |n|, floor)
good <= 1e-7 < acceptable < 1e-4 <= suspicious <= 1e-2 < wrong; a centered float64 difference is judged
good <= 1e-7 < acceptable < 1e-4 <= wrong (CS231n: without kinks 1e-4 is too high), and in float64 a tensor
torch.autograd.gradcheck (eps 1e-6, atol 1e-5, rtol 1e-3) fails is wrong.
"""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from dlrun.cli import app
from dlrun.config import compose
from dlrun.gradcheck import check_config, check_module, numeric, verdict
from dlrun.gradcheck.check import module_problem
from dlrun.options import declared
from dlrun.options.model import NAMED
from tests.conftest import dlrun

runner = CliRunner()
MODULES = "tests/gradcheck_modules/functions.py"
FAST = ["--batch", "4", "--coords", "3"]


def gradcheck(*args: str):
    """`dlrun gradcheck ARGS --json` in this process: (exit code, report or None, stderr)."""
    result = runner.invoke(app, ["gradcheck", *args, "--json"])
    report = json.loads(result.stdout) if result.stdout.strip() else None
    return result.exit_code, report, result.stderr


# ----------------------------------------------------------------------------- every registered model
# each preset of conf/model/ on a dataset it fits; resnet presets differ only in depth, checked at depth 8
MODEL_CASES = {
    "mlp": ["model=mlp", "model.hidden=[16,16]"],
    "mlp-sine-tanh-half_sum": ["model=mlp", "data=sine", "model.activation=tanh", "loss.form=half_sum"],
    "mlp-batchnorm": ["model=mlp", "model.hidden=[16]", "model.norm=batch"],
    "mlp-layernorm-gelu": ["model=mlp", "model.hidden=[16]", "model.norm=layer", "model.activation=gelu"],
    "mlp-dropout-l2": ["model.hidden=[16]", "model.dropout=0.5", "regularizer=l2", "regularizer.strength=1"],
    "linear-xor": ["model=linear", "data=xor"],
    "perceptron": ["model=perceptron", "data=xor", "init=normal"],  # its criterion's gradient -y x on mistakes
    "adaline-pm1": ["model=adaline", "data=breast_cancer"],  # 1/2 (z - t)^2 against t = +-1
    "adaline-01-sum": ["model=adaline", "data=breast_cancer", "loss.targets=01", "loss.form=sum"],
    "cnn": ["model=cnn"],
    "cnn-1d-batchnorm-avgpool": ["model=cnn", "data=mnist1d", "model.norm=batch", "model.pool=avg"],
    "lenet5": ["model=lenet5"],
    "lenet5_original": ["model=lenet5_original", "data=files", "data.path=tests/gradcheck_modules/digits32.npz"],
    "mnist1d_cnn": ["model=mnist1d_cnn", "data=mnist1d"],
    "mnist1d_gru": ["model=mnist1d_gru", "data=mnist1d"],
    "rnn-gru": ["model=rnn", "model.hidden_size=16"],
    "rnn-lstm-adding": ["model=rnn", "model.cell=lstm", "data=adding", "model.hidden_size=8"],
    "rnn-tanh-stacked-bidirectional": ["model=rnn", "model.cell=rnn", "data=parity", "model.layers=2",
                                       "model.bidirectional=true", "model.hidden_size=8"],
    "transformer": ["model=transformer", "data=mnist1d", "model.d_model=8", "model.heads=2", "model.layers=1",
                    "model.ff=8"],
    "transformer-cls-sinusoidal-prenorm": ["model=transformer", "model.d_model=8", "model.heads=2", "model.ff=8",
                                           "model.readout=cls", "model.positions=sinusoidal", "model.norm_first=true"],
    "autoencoder": ["model=autoencoder", "data=iris", "model.hidden=[5]", "model.code=2", "model.activation=tanh"],
    "resnet": ["model=resnet", "model.depth=8"],
    "plain": ["model=plain20", "model.depth=8"],
    "resnet-1d": ["model=resnet", "model.depth=8", "data=mnist1d", "model.widths=[4,8,8]"],
}  # fmt: skip


def test_the_cases_cover_every_model_and_preset():
    import yaml

    from dlrun.config.compose import conf_dir

    named = {o.split("=")[1] for case in MODEL_CASES.values() for o in case if o.startswith("model=")}
    # the architectures named in the lectures are stock torch layers at 6-143 million parameters (a minute or
    # more per check): their counts, forms and a training run are tested in test_named_models.py
    assert set(declared("model")) - set(NAMED) <= named
    for path in (conf_dir() / "model").glob("*.yaml"):  # the others are resnet/plain at other depths
        if path.stem not in named:
            assert "resnet" in yaml.safe_load(path.read_text())["defaults"], path.name


@pytest.mark.parametrize("case", list(MODEL_CASES), ids=list(MODEL_CASES))
def test_every_model_passes(case):
    code, report, stderr = gradcheck(*MODEL_CASES[case], *FAST)
    assert code == 0, stderr
    assert report["verdict"] in ("good", "acceptable"), report
    assert report["wrong"] == []
    names = [r["name"] for r in report["tensors"]]
    assert names[-1] == "input x" and len(names) >= 3  # every parameter tensor, then the input
    assert all(r["checked"] == min(3, r["numel"]) for r in report["tensors"])
    assert report["torch_gradcheck"]["passed"], report["torch_gradcheck"]
    assert report["dtype"] == "float64" and report["batch"] == 4


def test_every_parameter_tensor_is_checked():
    report = check_config(compose(["model=cnn", "model.norm=batch"]), batch=2, coords=2)
    names = [r["name"] for r in report["tensors"]]
    assert names == [
        "conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "conv2.weight", "conv2.bias", "bn2.weight",
        "bn2.bias", "fc1.weight", "fc1.bias", "out.weight", "out.bias", "input x",
    ]  # fmt: skip
    assert report["kinks"] == ["MaxPool2d", "ReLU"]


def test_small_tensors_are_checked_whole_and_large_ones_sampled():
    report = check_config(compose(["model.hidden=[16]"]), batch=2, coords=12)
    rows = {r["name"]: r for r in report["tensors"]}
    assert rows["out.bias"]["checked"] == rows["out.bias"]["numel"] == 10
    assert rows["fc1.weight"]["checked"] == 12 and rows["fc1.weight"]["numel"] == 16 * 64
    assert numeric.sample(1000, 12, 0, 3).tolist() == numeric.sample(1000, 12, 0, 3).tolist()  # seeded
    assert len(set(numeric.sample(1000, 12, 0, 3).tolist())) == 12


# ----------------------------------------------------------------------------- the verdicts
@pytest.mark.parametrize(
    ("rel", "expected"),
    [(0.0, "good"), (1e-7, "good"), (3e-6, "acceptable"), (1e-4, "suspicious"), (1e-2, "suspicious"),
     (0.02, "wrong"), (math.nan, "wrong"), (math.inf, "wrong")],
)  # fmt: skip
def test_verdict_thresholds(rel, expected):
    assert verdict(rel) == expected


@pytest.mark.parametrize(
    ("rel", "expected"),
    [(1e-7, "good"), (3e-6, "acceptable"), (1e-4, "wrong"), (2.5e-3, "wrong"), (math.nan, "wrong")],
)
def test_strict_thresholds_for_centered_float64_differences(rel, expected):
    assert verdict(rel, strict=True) == expected


def test_relative_error_uses_the_floor_for_tiny_gradients():
    a = torch.tensor([1.0, 1e-9, 0.0], dtype=torch.float64)
    n = torch.tensor([1.0 + 1e-8, 2e-9, 0.0], dtype=torch.float64)
    floors = torch.full((3,), numeric.floor(2.0, 1e-6), dtype=torch.float64)
    rel = numeric.relative_error(a, n, floors)
    assert rel[0].item() == pytest.approx(1e-8, rel=1e-6)  # |a - n| / max(|a|, |n|)
    assert rel[1].item() == pytest.approx(1e-9 / floors[1].item())  # not 0.5: below the floor
    assert rel[2].item() == 0.0
    # the floor: 1e-7 relative is reachable only above (4 ulps of |f|) / h / 1e-7
    assert numeric.floor(2.0, 1e-6) == pytest.approx(4 * 2.220446049250313e-16 * 2.0 / 1e-6 / 1e-7)


def test_finite_differences_match_a_known_derivative():
    w = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)

    def evaluate():
        return (torch.sin(w) * w.pow(2)).sum().item(), []

    d = numeric.finite_differences(evaluate, w, torch.arange(3), 1e-6, evaluate())
    exact = torch.cos(w) * w.pow(2) + 2 * w * torch.sin(w)
    torch.testing.assert_close(d.values, exact, rtol=0, atol=1e-9)
    assert torch.equal(w, torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64))  # restored


# ----------------------------------------------------------------------------- kinks
def test_a_crossed_relu_kink_is_measured_one_sided_not_reported_wrong():
    report = check_module(f"{MODULES}:relu_on_the_edge")
    rows = {r["name"]: r for r in report["tensors"]}
    assert rows["0.bias"]["near_kinks"] == 1 and rows["0.bias"]["verdict"] in ("good", "acceptable")
    assert report["wrong"] == [] and report["kinks"] == ["ReLU"]
    assert report["torch_gradcheck"]["passed"] and report["torch_gradcheck"]["mode"] == "subset"
    # the kink is real: a plain centered difference across it is off by half the slope
    p = module_problem(f"{MODULES}:relu_on_the_edge")
    bias = p.objective.target[0].bias
    value = p.objective(*p.args)
    (grad,) = torch.autograd.grad(value, [bias])
    with torch.no_grad():
        bias[0] += 1e-6
        up = p.objective(*p.args).item()
        bias[0] -= 2e-6
        down = p.objective(*p.args).item()
    centered = (up - down) / 2e-6
    assert abs(centered - grad[0].item()) / abs(grad[0].item()) > 0.1  # "wrong" without the kink watch


def test_l1_kinks_are_watched_and_the_term_is_included_or_not():
    overrides = ["model.hidden=[8]", "regularizer=l1", "regularizer.strength=0.1"]
    with_reg = check_config(compose(overrides), batch=4, coords=3, reg=True)
    without = check_config(compose(overrides), batch=4, coords=3, reg=False)
    assert with_reg["regularizer"] == "l1" and without["regularizer"] == "none"
    assert "L1 |w|" in with_reg["kinks"] and "L1 |w|" not in without["kinks"]
    assert with_reg["value"] > without["value"] + 0.1  # Omega = 0.1 sum |W| is in the objective
    assert with_reg["verdict"] == without["verdict"] == "good"


# ----------------------------------------------------------------------------- --module
@pytest.mark.parametrize(("factory", "tensor"), [("wrong_function", "w"), ("wrong_layer", "weight")])
def test_a_wrong_backward_exits_1_and_names_the_tensor(factory, tensor):
    code, report, stderr = gradcheck("--module", f"{MODULES}:{factory}")
    assert code == 1
    assert report["wrong"] == [tensor]
    rows = {r["name"]: r for r in report["tensors"]}
    assert rows[tensor]["verdict"] == "wrong" and rows[tensor]["max_rel_error"] > 0.1
    assert all(r["verdict"] == "good" for name, r in rows.items() if name != tensor)
    assert not report["torch_gradcheck"]["passed"] and f"({tensor})" in report["torch_gradcheck"]["message"]
    assert stderr.strip().count("\n") == 0 and tensor in stderr


@pytest.mark.parametrize(("factory", "tensors"), [("function", ["x", "w"]), ("layer", ["weight", "x"])])
def test_the_correct_twin_exits_0(factory, tensors):
    code, report, stderr = gradcheck("--module", f"{MODULES}:{factory}")
    assert code == 0, stderr
    assert [r["name"] for r in report["tensors"]] == tensors
    assert report["verdict"] == "good" and report["torch_gradcheck"]["passed"]
    assert report["torch_gradcheck"]["mode"] == "full"


def test_the_wrong_backward_on_the_real_command_line():
    result = dlrun("gradcheck", "--module", f"{MODULES}:wrong_function", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["wrong"] == ["w"]  # stdout holds the JSON and nothing else
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    table = runner.invoke(app, ["gradcheck", "--module", f"{MODULES}:wrong_function"], env={"COLUMNS": "200"})
    assert table.exit_code == 1 and "wrong" in table.stdout and "│ w " in table.stdout


def test_integer_inputs_are_skipped_and_said_so():
    report = check_module(f"{MODULES}:embedding")
    assert [r["name"] for r in report["tensors"]] == ["weight"]
    assert report["skipped"] == [{"name": "input", "reason": "torch.int64 input has no derivative"}]
    assert report["verdict"] == "good"


def test_every_output_element_matters():
    # a projection with fixed random weights: the gradient of sum(w * out) reaches every output element
    report = check_module(f"{MODULES}:function", seed=3)
    assert report["value"] != check_module(f"{MODULES}:function", seed=4)["value"]
    assert report["value"] == check_module(f"{MODULES}:function", seed=3)["value"]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("tests/gradcheck_modules/nowhere.py:make", ["no file"]),
        (f"{MODULES}", ["FILE.py:FACTORY"]),
        (f"{MODULES}:missing", ["no function 'missing'", "wrong_function"]),
        (f"{MODULES}:not_a_pair", ["(module_or_function, example_input)"]),
        (f"{MODULES}:not_a_module", ["nn.Module", "str"]),
        (f"{MODULES}:not_a_tensor", ["tensor"]),
    ],
)
def test_bad_modules_are_one_line_config_errors(spec, words):
    result = runner.invoke(app, ["gradcheck", "--module", spec])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --module"), result.stderr
    assert all(w in lines[0] for w in words), lines[0]


def test_a_module_file_that_fails_to_import(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("import torch\nraise RuntimeError('no GPU here')\n")
    result = runner.invoke(app, ["gradcheck", "--module", f"{bad}:make"])
    assert result.exit_code == 2 and "RuntimeError: no GPU here" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- the report
def test_table_output_names_the_checks():
    result = runner.invoke(app, ["gradcheck", "model=linear", "data=xor"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for word in ("out.weight", "out.bias", "input x", "max rel error", "good", "torch.autograd.gradcheck",
                 "every coordinate of the parameters (3)", "passed", "verdict: good"):  # fmt: skip
        assert word in out, word


def test_json_report_holds_the_numbers():
    code, report, _ = gradcheck("model.hidden=[8]", *FAST)
    assert code == 0
    assert {"model", "data", "loss", "value", "h", "floor", "tensors", "verdict", "torch_gradcheck"} <= set(report)
    row = report["tensors"][0]
    assert {"name", "shape", "checked", "max_abs_error", "max_rel_error", "verdict"} <= set(row)
    assert report["torch_gradcheck"]["mode"] == "subset" and report["torch_gradcheck"]["coordinates"] > 0
    assert report["h"] == 1e-6


@pytest.mark.parametrize(
    ("args", "word"),
    [(["--h", "0"], "--h"), (["--batch", "0"], "--batch"), (["--at", "1,2"], "--at"), (["model=nope"], "model")],
)
def test_bad_options_exit_2(args, word):
    result = runner.invoke(app, ["gradcheck", *args])
    assert result.exit_code == 2 and word in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_wrong_gradient_in_the_configured_model_is_caught(monkeypatch):
    """A model whose backward is wrong (a ReLU that passes gradient through where it is off) is reported."""

    class LeakyBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            return z.clamp_min(0)

        @staticmethod
        def backward(ctx, grad):
            return grad  # wrong where z < 0

    monkeypatch.setattr(nn.ReLU, "forward", lambda self, z: LeakyBackward.apply(z))
    report = check_config(compose(["model.hidden=[16]"]), batch=4, coords=20)
    assert "fc1.weight" in report["wrong"] and "input x" in report["wrong"]
    assert "out.weight" not in report["wrong"]  # the layer above the activation is right


def test_a_backward_that_fails_exits_1_with_one_line():
    result = runner.invoke(app, ["gradcheck", "--module", f"{MODULES}:wrong_shape"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: gradcheck: the backward pass failed: RuntimeError: Function WrongShapeBackward returned an "
        "invalid gradient at index 0 - got [2] but expected shape compatible with [3, 2]"
    )


def test_help_has_examples():
    result = runner.invoke(app, ["gradcheck", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Examples" in result.stdout and "dlrun gradcheck --expr" in result.stdout


# ----------------------------------------------------------------------------- honest verdicts
QUARTER = 0.0025 / 1.0025  # the relative error of a backward scaled by 1.0025: 2.49e-3


@pytest.mark.parametrize(
    ("factory", "tensors"), [("quarter_percent_off", ["x", "w"]), ("quarter_percent_off_layer", ["weight", "x"])]
)
def test_a_quarter_percent_wrong_backward_is_wrong_in_float64(factory, tensors):
    # 2.5e-3 sits in CS231n's "suspicious" band, but a centered float64 difference of a smooth objective is
    # accurate to about 1e-9 (its correct twin below), and torch.autograd.gradcheck fails it too
    code, report, stderr = gradcheck("--module", f"{MODULES}:{factory}")
    assert code == 1
    assert report["wrong"] == tensors and report["verdict"] == "wrong"
    assert report["dtype"] == "float64" and report["kinks"] == []
    for row in report["tensors"]:
        assert row["max_rel_error"] == pytest.approx(QUARTER, rel=1e-3), row
        assert row["verdict"] == "wrong" and "1e-4" in row["why"]
    assert report["torch_gradcheck"]["status"] == "failed" and report["torch_gradcheck"]["failed"] == tensors
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: gradcheck: the gradient of " + ", ".join(tensors))
    assert "2.5e-03" in lines[0]


@pytest.mark.parametrize(
    ("factory", "tensors"), [("quarter_percent_twin", ["x", "w"]), ("quarter_percent_twin_layer", ["weight", "x"])]
)
def test_the_quarter_percent_twin_exits_0(factory, tensors):
    code, report, stderr = gradcheck("--module", f"{MODULES}:{factory}")
    assert code == 0, stderr
    assert [r["name"] for r in report["tensors"]] == tensors
    assert report["verdict"] == "good" and max(r["max_rel_error"] for r in report["tensors"]) < 1e-8
    assert report["torch_gradcheck"]["passed"] and report["wrong"] == report["suspicious"] == []
    assert stderr == ""


def test_the_quarter_percent_module_on_the_real_command_line():
    result = dlrun("gradcheck", "--module", f"{MODULES}:quarter_percent_off")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "x, w is wrong" in result.stderr
    assert dlrun("gradcheck", "--module", f"{MODULES}:quarter_percent_twin").returncode == 0


def test_float32_rounding_reads_suspicious_not_wrong():
    # a module that computes in float32 inside: noise of about 1e-7 |f| per evaluation, so the step is 1e-3
    # and rounding alone reaches 1e-4..1e-2; torch.autograd.gradcheck's tolerances are for float64
    code, report, stderr = gradcheck("--module", f"{MODULES}:float32_layer")
    assert code == 0, stderr
    assert report["dtype"] == "float32" and report["h"] == 1e-3
    assert report["verdict"] == "suspicious" and "x" in report["suspicious"] and report["wrong"] == []
    assert 1e-4 <= report["tensors"][-1]["max_rel_error"] <= 1e-2
    assert report["torch_gradcheck"]["status"] == "not run" and report["torch_gradcheck"]["passed"] is None
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: gradcheck: the gradient of ")
    assert "is suspicious" in lines[0] and "in float32" in lines[0]


def test_float32_still_catches_a_gross_error_and_cannot_tell_a_small_one():
    code, report, _ = gradcheck("--module", f"{MODULES}:float32_wrong_layer")  # backward scaled by 1.5
    assert code == 1 and report["wrong"] == ["linear.weight", "linear.bias", "x"]
    code, report, _ = gradcheck("--module", f"{MODULES}:float32_quarter_percent_off")  # inside float32's noise
    assert code == 0 and report["verdict"] == "suspicious" and report["wrong"] == []


def test_one_sided_differences_at_a_kink_read_suspicious_with_a_coarse_step():
    # relu at 1e-8 from its kink under tanh: one-sided differences err by O(h); at h = 1e-2 that reaches
    # the suspicious band; the centered coordinates stay acceptable
    code, report, stderr = gradcheck("--module", f"{MODULES}:relu_smooth_on_top", "--h", "1e-2")
    assert code == 0, stderr
    assert report["kinks"] == ["ReLU"] and report["suspicious"] == ["input"] and report["wrong"] == []
    rows = {r["name"]: r for r in report["tensors"]}
    assert rows["input"]["near_kinks"] == 1 and "kink" in rows["input"]["why"]
    assert "one-sided" in stderr and stderr.startswith("warning: ")
    code, report, _ = gradcheck("--module", f"{MODULES}:relu_smooth_on_top")  # h = 1e-6
    assert code == 0 and report["verdict"] == "good"


def test_a_torch_gradcheck_failure_on_an_unsampled_coordinate_is_wrong():
    # one coordinate of w's 200 is 1% off; finite differences sample 3 and miss it, torch.autograd.gradcheck
    # checks every coordinate of a small smooth objective and finds it
    from tests.gradcheck_modules.functions import BAD

    assert BAD not in numeric.sample(200, 3, 0, 0).tolist()
    code, report, stderr = gradcheck("--module", f"{MODULES}:one_bad_coordinate", "--coords", "3")
    assert code == 1 and report["wrong"] == ["w"]
    row = report["tensors"][0]
    assert row["max_rel_error"] < 1e-7 and row["why"] == "torch.autograd.gradcheck finds a Jacobian mismatch"
    assert report["torch_gradcheck"]["mode"] == "full" and "(w)" in report["torch_gradcheck"]["message"]
    assert "Jacobian mismatch" in stderr
    code, report, _ = gradcheck("--module", f"{MODULES}:one_bad_coordinate", "--coords", "200")
    assert code == 1 and "relative error 9.9e-03 >= 1e-4" in report["tensors"][0]["why"]


def test_a_module_that_calls_sys_exit_is_bad_input(tmp_path):
    # sys.exit(0) would otherwise end dlrun with status 0: a pass
    for factory, words in [("exits", "the factory called sys.exit(0)"),
                           ("exits_in_backward", "its forward or backward called sys.exit(0)")]:  # fmt: skip
        result = dlrun("gradcheck", "--module", f"{MODULES}:{factory}")
        assert result.returncode == 2, (factory, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: --module {MODULES}:{factory}: "), lines
        assert words in lines[0] and result.stdout == ""
    exiting = tmp_path / "exiting.py"
    exiting.write_text("import sys\nsys.exit()\n")
    result = runner.invoke(app, ["gradcheck", "--module", f"{exiting}:make"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: --module {exiting}:make: importing {exiting} called sys.exit(); a module to check must return, "
        "not exit"
    )


@pytest.mark.parametrize(
    ("factory", "words"),
    [("nan_input", "the example input x holds NaN (1 of 20 values)"),
     ("nan_output", "its output at the example input holds NaN (1 of 2 values)")],
)  # fmt: skip
def test_nan_at_the_example_is_bad_input(factory, words):
    result = dlrun("gradcheck", "--module", f"{MODULES}:{factory}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --module {MODULES}:{factory}: ") and words in lines[0]


# ----------------------------------------------------------------------------- --expr limits
@pytest.mark.parametrize(
    ("expr", "at", "words"),
    [
        ("1" * 400 + "*x", "1", ["more than 30 digits", "at most 30"]),
        ("x*1e400", "1", ["1e400", "beyond float64's range"]),
        ("0x" + "f" * 40 + "*x", "1", ["more than 30 digits"]),
        ("+".join(f"x{i}" for i in range(300)), ",".join(["1"] * 300), ["300 variables", "at most 32"]),
        ("x" + "+x" * 300, "1", ["601 terms and operations", "at most 500"]),
        ("x" * 2001, "1", ["2,001 characters", "at most 2,000"]),
    ],
    ids=["400-digits", "1e400", "hex", "300-variables", "601-nodes", "2001-characters"],
)
def test_oversized_expressions_are_refused_before_evaluation(expr, at, words):
    start = time.perf_counter()
    result = runner.invoke(app, ["gradcheck", "--expr", expr, "--at", at])
    assert time.perf_counter() - start < 2
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --expr") and len(lines[0]) < 300, lines
    assert all(w in lines[0] for w in words), lines[0]


def test_the_largest_allowed_expression_is_quick():
    expr = "+".join(f"sin(x{i})*exp(x{(i + 1) % 32})" for i in range(32))  # 32 variables, 225 nodes
    start = time.perf_counter()
    code, report, stderr = gradcheck("--expr", expr, "--at", ",".join(["0.5"] * 32))
    assert code == 0, stderr
    assert time.perf_counter() - start < 2
    assert max(report["gradient"]["abs_error"]) < 1e-8 and max(map(max, report["hessian"]["abs_error"])) < 1e-5
