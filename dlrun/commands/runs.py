"""`dlrun runs`: a table of the runs under a folder (the library is dlrun/runs.py)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dlrun.commands.base import app, handle_errors


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
