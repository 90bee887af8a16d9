"""`dlrun runs`: the runs under a folder, as a table, csv or json (the library is dlrun/runs.py)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from dlrun.commands.base import app, handle_errors, print_table

FORMATS = ("table", "csv", "json")
STATUS_COLORS = {"completed": "green", "running": "yellow", "interrupted": "yellow", "diverged": "red", "failed": "red"}


@app.command(
    epilog="[bold]Examples[/]\n\n  dlrun runs\n\n  dlrun runs runs/mlp-xor\n\n  dlrun runs --format csv > runs.csv"
)
@handle_errors
def runs(
    directory: Path = typer.Argument(Path("runs"), help="A folder of runs (searched recursively)."),
    fmt: str = typer.Option(
        "table", "--format", help="table, csv (every metric) or json (a list of runs, every metric)."
    ),
):
    """A table of runs: status, steps, final metrics and wall time."""
    from dlrun.errors import ConfigError
    from dlrun.runs import collect, table_metrics, to_csv, to_json

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: unknown; choose from: {', '.join(FORMATS)}")
    rows = collect(directory)
    if fmt == "csv":
        print(to_csv(rows), end="")
        return
    if fmt == "json":
        print(to_json(rows), end="")
        return
    if not rows:
        print(f"no runs under {directory} (a run has a summary.json)")
        return
    metric_keys = table_metrics(rows)
    table = Table(show_header=True, header_style="bold")
    for col in ("run", "status", "steps", *metric_keys, "time"):
        table.add_column(col, justify="left" if col in ("run", "status") else "right")
    for r in rows:
        cells = [f"{r['metrics'][k]:.4f}" if k in r["metrics"] else "" for k in metric_keys]
        status = r["status"]
        table.add_row(
            escape(r["run"]),
            f"[{STATUS_COLORS.get(status, 'white')}]{escape(status)}[/]",
            str(r["step"]),
            *cells,
            f"{r['wall_time_s']:.1f} s" if r.get("wall_time_s") is not None else "",
        )
    print_table(table)
