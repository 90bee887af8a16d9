"""The `dlrun` command line: each command composes the config and calls one library function.

Heavy modules (torch, hydra) are imported inside the commands, so `dlrun --help` stays fast.
"""

from __future__ import annotations

import functools
import sys
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="dlrun",
    help="A command-line lab bench for deep learning: train, compare and look inside neural networks.\n\n"
    "Configs compose from groups (model, data, loss, optim, sched, regularizer, init, trainer) with "
    "Hydra's override grammar: [bold]group=option[/] picks an option, [bold]key=value[/] sets a value.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
OVERRIDES_HELP = (
    "Overrides in Hydra's grammar: group=option (model=mlp), key=value (optim.lr=3e-3, 'model.hidden=[64,64]')."
)
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def _fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def handle_errors(fn):
    """DlrunError -> one line on stderr and its exit status (2 for bad input, 1 for a failed run)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from dlrun.errors import DlrunError

        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            try:
                return fn(*args, **kwargs)
            except DlrunError as e:
                _fail(str(e), e.exit_code)
            except KeyboardInterrupt:
                _fail("interrupted", 130)

    return wrapper


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if category.__name__ == "DlrunWarning":
        print(f"warning: {message}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), file=sys.stderr, end="")


@app.command(
    context_settings=PASS_THROUGH,
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun train                                   [dim]# MLP on digits[/]\n\n"
        "  dlrun train model=linear data=xor             [dim]# logistic regression on XOR[/]\n\n"
        "  dlrun train 'model.hidden=[64,64]' optim=sgd optim.lr=0.1 trainer.epochs=50\n\n"
        "  dlrun train data=diabetes                     [dim]# regression: MSE, logs val/mse[/]\n\n"
        "  dlrun train experiment=xor_hidden\n\n"
        "  dlrun train resume=runs/mlp-digits/2026-01-01_12-00-00 trainer.epochs=60"
    ),
)
@handle_errors
def train(overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP, show_default=False)):
    """Train a model; the run goes to [bold]runs/<name>/<time>/[/] (config, metrics, checkpoints, TensorBoard)."""
    from dlrun.config import compose

    overrides = list(overrides or [])
    cfg = compose(overrides)
    from dlrun.train import progress
    from dlrun.train import train as run_training

    view = progress.make(cfg.trainer.progress, Console())
    try:
        summary = run_training(cfg, callbacks=[view] if view else [], overrides=overrides)
    finally:
        if view:
            view.close()
    _print_summary(summary)
    if summary["status"] == "interrupted":
        print(
            f"interrupted at step {summary['step']}; continue with: dlrun train resume={summary['run_dir']}",
            file=sys.stderr,
        )
        raise typer.Exit(130)


def _print_summary(summary: dict) -> None:
    console = Console()
    table = Table(title=f"{summary['name']}: {summary['status']}", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary["metrics"].items():
        table.add_row(key, f"{value:.4f}")
    table.add_row("parameters", f"{summary['params']:,}")
    table.add_row("steps", f"{summary['step']} ({summary['epoch']:g} epochs)")
    table.add_row("train time", f"{summary['train_time_s']:.2f} s")
    table.add_row("wall time", f"{summary['wall_time_s']:.2f} s")
    if summary.get("samples_per_s"):
        table.add_row("samples/s", f"{summary['samples_per_s']:,.0f}")
    table.add_row("device", summary["device"])
    console.print(table)
    console.print(f"run directory: {summary['run_dir']}", highlight=False, soft_wrap=True)
    console.print(f"tensorboard --logdir {Path(summary['run_dir']).parent.parent}", highlight=False, soft_wrap=True)


@app.command(
    context_settings=PASS_THROUGH,
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun config\n\n"
        "  dlrun config model=linear data=iris optim=sgd\n\n"
        "  dlrun config experiment=xor_hidden"
    ),
)
@handle_errors
def config(overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP, show_default=False)):
    """Print the composed, validated config as YAML (nothing is trained)."""
    from dlrun.config import compose, to_yaml

    print(to_yaml(compose(list(overrides or []))), end="")


@app.command(
    context_settings=PASS_THROUGH,
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun summary                                  [dim]# the default MLP on digits[/]\n\n"
        "  dlrun summary model=lenet5\n\n"
        "  dlrun summary model=mnist1d_cnn data=mnist1d\n\n"
        "  dlrun summary model=cnn data=iris              [dim]# refused: no order to convolve[/]"
    ),
)
@handle_errors
def summary(overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP, show_default=False)):
    """Per-layer table (output shape, parameters, conv output sizes) and a check that model and data fit."""
    from dlrun.config import compose

    cfg = compose(list(overrides or []))
    from dlrun.models.summary import summarize
    from dlrun.train import build

    setup = build(cfg)
    info = summarize(setup.model, setup.task.input_shape)
    table = Table(show_header=True, header_style="bold")
    for col in ("layer", "type", "output shape", "parameters", "conv output size"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for row in info["rows"]:
        params = f"{row['params']:,}" if row["params"] else ""
        table.add_row(row["layer"], row["type"], str(row["output"]), params, row["formula"])
    console = Console()
    console.print(table)
    task = setup.task
    head = f"{task.n_classes} classes" if task.is_classification else f"{task.n_targets} targets"
    console.print(
        f"total parameters: {info['params']:,}\n"
        f"fits data={cfg.data.name}: input {task.input_shape} ({task.input_kind}) -> {head}, loss={setup.loss_name}",
        highlight=False,
    )


@app.command("list", epilog="[bold]Examples[/]\n\n  dlrun list\n\n  dlrun list optim")
@handle_errors
def list_(group: str | None = typer.Argument(None, help="Show only this group (model, data, optim, ...).")):
    """List every config group's options with a one-line description; * marks the default."""
    from dlrun.config import list_options
    from dlrun.config.compose import defaults

    chosen = defaults()
    table = Table(show_header=True, header_style="bold")
    table.add_column("group")
    table.add_column("option")
    table.add_column("description")
    for g, options in list_options(group).items():
        for i, (name, desc) in enumerate(options):
            mark = " *" if chosen.get(g) == name else ""
            table.add_row(g if i == 0 else "", name + mark, desc)
        table.add_section()
    Console().print(table)


@app.command(epilog="[bold]Examples[/]\n\n  dlrun runs\n\n  dlrun runs runs/mlp-xor")
@handle_errors
def runs(directory: Path = typer.Argument(Path("runs"), help="A folder of runs (searched recursively).")):
    """A table of runs: status, steps, final metrics and wall time."""
    from dlrun.runs import collect

    rows = collect(directory)
    if not rows:
        print(f"no runs under {directory} (a run has a summary.json)")
        return
    metric_keys = [
        k
        for k in ("test/acc", "test/mse", "test/loss", "val/acc", "val/mse", "val/loss")
        if any(k in r["metrics"] for r in rows)
    ]
    table = Table(show_header=True, header_style="bold")
    for col in ("run", "status", "steps", *metric_keys, "time"):
        table.add_column(col, justify="left" if col in ("run", "status") else "right")
    colors = {"completed": "green", "running": "yellow", "interrupted": "yellow", "diverged": "red", "failed": "red"}
    for r in rows:
        cells = [f"{r['metrics'][k]:.4f}" if k in r["metrics"] else "" for k in metric_keys]
        status = r["status"]
        table.add_row(
            r["run"],
            f"[{colors.get(status, 'white')}]{status}[/]",
            str(r["step"]),
            *cells,
            f"{r['wall_time_s']:.1f} s" if r.get("wall_time_s") is not None else "",
        )
    Console().print(table)


# commands in their own modules register themselves on `app` (they import only typer and rich at the top)
from dlrun.commands import experiment, gradcheck, lrfind, sweep, viz  # noqa: E402, F401


def main(argv: list[str] | None = None) -> None:
    app(args=argv, prog_name="dlrun")


if __name__ == "__main__":  # python -m dlrun.cli: run the imported module, whose app the commands joined
    from dlrun.cli import main as imported_main

    imported_main()
