"""`dlrun neuron`: a McCulloch-Pitts unit's truth table (the library is dlrun/neuron.py)."""

from __future__ import annotations

import typer
from rich.table import Table

from dlrun.commands.base import app, handle_errors, print_table


@app.command(
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun neuron --weights 1,1 --threshold 2              [dim]# AND[/]\n\n"
        "  dlrun neuron --weights 1,2,-1 --threshold 2 --expr 'x2 and (x1 or not x3)'"
    )
)
@handle_errors
def neuron(
    weights: str = typer.Option(..., "--weights", help="Comma-separated weights, one per binary input (x1, x2, ...)."),
    threshold: float = typer.Option(..., "--threshold", help="The unit fires (y = 1) when sum w_i x_i >= threshold."),
    expr: str | None = typer.Option(
        None, "--expr", help="A boolean expression of x1..xn (and, or, not) to check the unit against."
    ),
):
    """A McCulloch-Pitts threshold unit: its truth table, and whether it computes --expr."""
    from dlrun.errors import ConfigError
    from dlrun.neuron import truth_table

    try:
        w = [float(v) for v in weights.split(",")]
    except ValueError:
        raise ConfigError(f"--weights {weights}: give comma-separated numbers, e.g. --weights 1,1") from None
    rows = truth_table(w, threshold, expr)
    table = Table(
        show_header=True,
        header_style="bold",
        title=f"y = [ {' + '.join(f'{v:g} x{i + 1}' for i, v in enumerate(w))} >= {threshold:g} ]",
    )
    for i in range(len(w)):
        table.add_column(f"x{i + 1}", justify="right")
    table.add_column("sum", justify="right")
    table.add_column("y", justify="right")
    if expr:
        table.add_column(expr, justify="right")
    for r in rows:
        cells = [str(v) for v in r.x] + [f"{r.total:g}", str(r.y)]
        if expr:
            cells.append(str(r.wanted) if r.wanted == r.y else f"[red]{r.wanted}[/]")
        table.add_row(*cells)
    print_table(table)
    if expr:
        wrong = [r for r in rows if r.wanted != r.y]
        if wrong:
            print(f"the unit does not compute {expr}: {len(wrong)} of {len(rows)} rows differ")
            raise typer.Exit(1)
        print(f"the unit computes {expr}")
