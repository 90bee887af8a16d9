"""`dlrun gradcheck`: autograd (and the hand-written backprop) against finite differences."""

from __future__ import annotations

import json
import math

import typer
from rich.columns import Columns
from rich.console import Console
from rich.table import Table

from dlrun.commands.base import PASS_THROUGH, app, handle_errors, overrides_argument, print_table

COLORS = {"good": "green", "acceptable": "cyan", "suspicious": "yellow", "wrong": "bold red"}


@app.command(
    context_settings=PASS_THROUGH,
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun gradcheck                                [dim]# the default MLP on digits[/]\n\n"
        "  dlrun gradcheck model=lenet5 --coords 5\n\n"
        "  dlrun gradcheck model=mnist1d_gru data=mnist1d --batch 4\n\n"
        "  dlrun gradcheck backprop=manual 'model.hidden=[64,64]' model.activation=tanh\n\n"
        "  dlrun gradcheck regularizer=l1 regularizer.strength=1e-3 --no-reg\n\n"
        "  dlrun gradcheck --module my_layer.py:make      [dim]# your nn.Module or autograd.Function[/]\n\n"
        '  dlrun gradcheck --expr "2*x1*x2 - x3*log(x1) - 1/x3" --at 1,2,3\n\n'
        "  dlrun gradcheck model=cnn --json > gradcheck.json"
    ),
)
@handle_errors
def gradcheck(
    overrides: list[str] | None = overrides_argument(),
    batch: int = typer.Option(8, "--batch", help="Training examples the loss is computed on."),
    coords: int = typer.Option(
        20, "--coords", help="Coordinates checked per tensor: every one of a smaller tensor, else a seeded sample."
    ),
    h: float | None = typer.Option(
        None,
        "--h",
        help="Finite-difference step; by default 1e-6 in float64, 1e-3 when the objective computes in float32.",
        show_default=False,
    ),
    reg: bool = typer.Option(True, "--reg/--no-reg", help="Include the regularization term Omega in the objective."),
    seed: int = typer.Option(0, "--seed", help="Seed of the batch, the sampled coordinates and the projection."),
    module: str | None = typer.Option(
        None,
        "--module",
        help="FILE.py:FACTORY; factory() returns (nn.Module or autograd.Function subclass, example input). "
        "The output is reduced to a scalar by a fixed random projection.",
        show_default=False,
    ),
    expr: str | None = typer.Option(
        None,
        "--expr",
        help="A formula such as '2*x1*x2 - x3*log(x1) - 1/x3': its gradient and Hessian at --at.",
        show_default=False,
    ),
    at: str | None = typer.Option(
        None, "--at", help="With --expr: one value per variable, in name order (x1, x2, ...).", show_default=False
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (and nothing else on stdout)."),
):
    """Compare gradients with centered finite differences: every parameter tensor and the input.

    Relative error |a - n| / max(|a|, |n|, floor) per tensor. A centered difference in float64 is judged
    good <= 1e-7 < acceptable < 1e-4 <= wrong; one next to a kink (ReLU, max pooling: measured one-sided) and
    any in float32 by good <= 1e-7 < acceptable < 1e-4 <= suspicious <= 1e-2 < wrong. In float64
    torch.autograd.gradcheck runs on each tensor too, and a tensor it fails is wrong.
    [bold]backprop=manual[/] adds the hand-written backprop's columns.
    Exit status 1 when a tensor's gradient is wrong, 0 otherwise (a warning when one is suspicious).
    """
    from dlrun.errors import ConfigError, RunFailed

    overrides = list(overrides or [])
    if expr is not None:
        if module is not None or overrides:
            raise ConfigError("--expr checks a formula alone: drop --module and the overrides")
        from dlrun.gradcheck import check_expr

        report = check_expr(expr, at, h=1e-6 if h is None else h)
        _print_json(report) if as_json else _print_expr(report)
        return
    if at is not None:
        raise ConfigError("--at goes with --expr (the point to differentiate the formula at)")
    if batch < 1:
        raise ConfigError(f"--batch {batch}: use at least 1 example")
    if module is not None:
        if overrides:
            raise ConfigError("--module checks your module alone: drop the overrides")
        from dlrun.gradcheck import check_module

        report = check_module(module, coords=coords, h=h, seed=seed)
    else:
        from dlrun.config import compose
        from dlrun.gradcheck import check_config

        report = check_config(compose(overrides), batch=batch, coords=coords, h=h, reg=reg, seed=seed)
    _print_json(report) if as_json else _print_check(report)
    if report["wrong"]:
        raise RunFailed(f"gradcheck: the gradient of {', '.join(report['wrong'])} is wrong: {_why(report, 'wrong')}")
    if report["suspicious"]:
        import warnings

        from dlrun.models.base import DlrunWarning

        names, why = ", ".join(report["suspicious"]), _why(report, "suspicious")
        warnings.warn(f"gradcheck: the gradient of {names} is suspicious: {why}", DlrunWarning, 2)


def _why(report: dict, verdict: str) -> str:
    """Each reason once, with the tensors it holds for (unless one reason holds for all)."""
    names: dict[str, list[str]] = {}
    for r in report["tensors"]:
        if r["verdict"] == verdict:
            names.setdefault(r["why"], []).append(r["name"])
    if len(names) == 1:
        return next(iter(names))
    return "; ".join(f"{why} ({', '.join(n)})" for why, n in names.items())


def _print_json(report: dict) -> None:
    print(json.dumps(report, indent=2))


def _sci(v: float | None) -> str:
    return "" if v is None else f"{v:.1e}"


def _verdict(v: str) -> str:
    return f"[{COLORS[v]}]{v}[/]"


def _title(r: dict) -> str:
    if "module" in r:
        return f"gradient check: {r['class']} ({r['kind']}) from {r['module']}"
    reg = f" + {r['regularizer']} term" if r["regularizer"] != "none" else ""
    return (
        f"gradient check: model={r['model']} on data={r['data']} ({r['batch']} examples), "
        f"loss={r['loss']}{reg}, backprop={r['backprop']}"
    )


def _print_check(r: dict) -> None:
    console = Console()
    manual = r.get("backprop") == "manual"
    table = Table(title=_title(r), show_header=True, header_style="bold")
    table.add_column("tensor")
    table.add_column("shape")
    table.add_column("checked", justify="right")
    if manual:
        for col in ("autograd vs FD", "manual vs FD", "manual vs autograd"):
            table.add_column(f"{col}\nmax rel error", justify="right")
    else:
        table.add_column("max abs error", justify="right")
        table.add_column("max rel error", justify="right")
    table.add_column("verdict")
    table.add_column("notes")
    for row in r["tensors"]:
        checked = f"{row['checked']}" + (" (all)" if row["checked"] == row["numel"] else f" of {row['numel']:,}")
        notes = []
        if row["near_kinks"]:
            notes.append(f"{row['near_kinks']} near kinks (one-sided)")
        if row["at_kinks"]:
            notes.append(f"{row['at_kinks']} on a kink (not judged)")
        if manual:
            errors = [_sci(row["max_rel_error"]), _sci(row["manual_max_rel_error"])]
            errors.append(_sci(row["manual_vs_autograd_rel_error"]))
        else:
            errors = [_sci(row["max_abs_error"]), _sci(row["max_rel_error"])]
        shape = "(" + ", ".join(map(str, row["shape"])) + ")"
        table.add_row(row["name"], shape, checked, *errors, _verdict(row["verdict"]), "; ".join(notes))
    print_table(table, console)
    resolution = "1e-7" if r["dtype"] == "float64" else "1e-2"
    lines = [
        f"f = {r['value']:.10g} in {r['dtype']}; centered differences with h = {r['h']:g}; relative error = "
        f"|a - n| / max(|a|, |n|, {r['floor']:.1e}) (below {r['floor']:.1e}, h cannot resolve {resolution})",
        "kinks watched: " + (", ".join(r["kinks"]) if r["kinks"] else "none (a smooth objective)"),
    ]
    lines += [f"skipped {s['name']}: {s['reason']}" for s in r["skipped"]]
    t = r.get("torch_gradcheck")
    if t and t["status"] == "not run" and "eps" not in t:
        lines.append(f"torch.autograd.gradcheck: not run ({t['message']})")
    elif t:
        what = "the inputs and parameters" if "module" in r else "the parameters"
        scope = (
            f"every coordinate of {what} ({t['of']:,})"
            if t["mode"] == "full"
            else f"{t['coordinates']:,} of the {t['of']:,} coordinates of {what} "
            f"(sampled{', away from kinks' if r['kinks'] else ''})"
        )
        status = {
            "passed": "[green]passed[/]",
            "failed": f"[bold red]failed[/]: {t['message']}",
            "not run": f"not run: {t['message']}",
        }[t["status"]]
        lines.append(
            f"torch.autograd.gradcheck (eps {t['eps']:g}, atol {t['atol']:g}, rtol {t['rtol']:g}) on {scope}: {status}"
        )
    lines.append(f"verdict: {_verdict(r['verdict'])} ({r['rule']})")
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


def _num(v: float) -> str:
    return f"{v:.10g}" if math.isfinite(v) else str(v)


def _matrix(title: str, names: list[str], rows: list[list[float]], fmt, columns: list[str] | None = None) -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("")
    for n in columns or names:
        table.add_column(n, justify="right")
    for name, row in zip(names, rows, strict=True):
        table.add_row(name, *[fmt(v) for v in row])
    return table


def _print_expr(r: dict) -> None:
    console = Console()
    names = r["variables"]
    point = ", ".join(f"{n}={v:g}" for n, v in zip(names, r["at"], strict=True))
    for call in r["undefined"]:
        why = "its derivative is undefined (0 on either side); the differences across the jump are not a derivative"
        console.print(f"{call}: its argument is 0 here, at the jump, where {why}", highlight=False)
    if "jacobian" in r:
        outputs = [f"f{i + 1}" for i in range(len(r["outputs"]))]
        shown = ", ".join(f"{o} = {e}" for o, e in zip(outputs, r["outputs"], strict=True))
        values = ", ".join(_num(v) for v in r["value"])
        console.print(f"{shown}\nat {point}: f = ({values})", highlight=False)
        j, cols = r["jacobian"], [f"d/d{n}" for n in names]
        console.print(
            Columns(
                [
                    _matrix("Jacobian by autograd", outputs, j["autograd"], _num, cols),
                    _matrix(f"by finite differences (h = {r['h']:g})", outputs, j["numeric"], _num, cols),
                    _matrix("abs error", outputs, j["abs_error"], _sci, cols),
                ]
            )
        )
        return
    console.print(f"f = {r['expr']}\nat {point}: f = {_num(r['value'])}", highlight=False)
    g = r["gradient"]
    table = Table(title=f"gradient (finite differences: h = {r['h']:g})", show_header=True, header_style="bold")
    for col in ("variable", "autograd", "finite differences", "abs error"):
        table.add_column(col, justify="left" if col == "variable" else "right")
    for i, n in enumerate(names):
        table.add_row(f"df/d{n}", _num(g["autograd"][i]), _num(g["numeric"][i]), _sci(g["abs_error"][i]))
    print_table(table, console)
    hs = r["hessian"]
    console.print(
        Columns(
            [
                _matrix("Hessian by autograd", names, hs["autograd"], _num),
                _matrix(f"by finite differences (h = {r['h_hessian']:g})", names, hs["numeric"], _num),
                _matrix("abs error", names, hs["abs_error"], _sci),
            ]
        )
    )
