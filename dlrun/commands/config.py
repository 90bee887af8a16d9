"""`dlrun config`, `dlrun summary`, `dlrun list`: a composed config, its model's layers, the groups' options.

Nothing is trained; the libraries are dlrun/config/ and dlrun/models/summary.py.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from dlrun.commands.base import PASS_THROUGH, app, handle_errors, overrides_argument, print_table


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
def config(overrides: list[str] | None = overrides_argument()):
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
        "  dlrun summary model=resnet20 data=cifar10      [dim]# from the set's known shape: nothing downloaded[/]\n\n"
        "  dlrun summary model=cnn data=iris              [dim]# refused: no order to convolve[/]"
    ),
)
@handle_errors
def summary(overrides: list[str] | None = overrides_argument()):
    """Per-layer table (output shape, parameters, conv output sizes) and a check that model and data fit."""
    from dlrun.config import compose

    cfg = compose(list(overrides or []))
    from dlrun.models.summary import summarize
    from dlrun.train.loop import summary_model

    model, task, loss_name = summary_model(cfg)
    info = summarize(model, task.input_shape)
    table = Table(show_header=True, header_style="bold")
    for col in ("layer", "type", "output shape", "parameters", "conv output size"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for row in info["rows"]:
        params = f"{row['params']:,}" if row["params"] else ""
        table.add_row(row["layer"], row["type"], str(row["output"]), params, row["formula"])
    console = Console()
    print_table(table, console)
    head = f"{task.n_classes} classes" if task.is_classification else f"{task.n_targets} targets"
    console.print(
        f"total parameters: {info['params']:,}\n"
        f"fits data={cfg.data.name}: input {task.input_shape} ({task.input_kind}) -> {head}, loss={loss_name}",
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
    print_table(table)
