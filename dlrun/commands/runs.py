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


@app.command(
    "diff",
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun diff runs/mlp-digits/2026-01-01_12-00-00 runs/mlp-digits/2026-01-02_09-30-00\n\n"
        "  dlrun diff runs/sweeps/lr/trials/0 runs/sweeps/lr/trials/1 --format json"
    ),
)
@handle_errors
def diff(
    a: Path = typer.Argument(..., help="A run's folder (or a group's, or a sweep trial's)."),
    b: Path = typer.Argument(..., help="The other run's folder."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
):
    """What differs between two runs: config keys, final metrics, and versions, device and git commit."""
    import json

    from dlrun.diff import diff as compute
    from dlrun.errors import ConfigError

    if fmt not in ("table", "json"):
        raise ConfigError(f"--format {fmt}: unknown; choose from: table, json")
    d = compute(a, b)
    if fmt == "json":
        print(json.dumps(d.as_dict(), indent=2, default=str))
        return
    for title, rows in (("config", d.config), ("environment", d.environment)):
        if not rows:
            print(f"{title}: no difference")
            continue
        table = Table(title=title, show_header=True, header_style="bold", title_justify="left")
        for col in ("key", "a", "b"):
            table.add_column(col)
        for key, va, vb in rows:
            table.add_row(escape(key), escape(str(va)), escape(str(vb)))
        print_table(table)
    table = Table(title="metrics", show_header=True, header_style="bold", title_justify="left")
    for col in ("metric", "a", "b", "b - a"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, va, vb in d.metrics:
        delta = f"{vb - va:+.4f}" if va is not None and vb is not None else ""
        table.add_row(escape(key), *(f"{v:.4f}" if v is not None else "" for v in (va, vb)), delta)
    print_table(table)


@app.command(
    "compare",
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun compare runs/mlp-digits                  [dim]# its runs, grouped by config; seeds are repeats[/]\n\n"
        "  dlrun compare runs/adam runs/sgd --metric test/acc --pairs all\n\n"
        "  dlrun compare runs/sweeps/lr --format csv > compare.csv"
    ),
)
@handle_errors
def compare(
    paths: list[Path] = typer.Argument(
        ..., help="Run directories, groups, folders of runs, or one sweep directory.", show_default=False
    ),
    metric: str | None = typer.Option(None, help="The metric to compare (default: the runs' monitor)."),
    pairs: str = typer.Option("best", help="best: the best condition against each other one; all: every pair."),
    interval: str = typer.Option("t", help="The conditions' intervals: t (Student's t) or bootstrap (percentile)."),
    test: str = typer.Option(
        "auto", help="welch (Welch's t-test), permutation (exact), or auto: permutation below 5 seeds a side."
    ),
    confidence: float = typer.Option(0.95, help="The intervals' confidence level."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
):
    """Conditions with mean, std and interval over seeds; pairs with difference, interval, p-value, effect
    size (Cohen's d) and the seeds per condition a test needs to detect it with 80% power."""
    from dlrun import compare as lib
    from dlrun.errors import ConfigError

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: unknown; choose from: {', '.join(FORMATS)}")
    c = lib.compare(paths, metric, pairs, interval, test, confidence)
    if fmt == "csv":
        print(lib.to_csv(c), end="")
        return
    if fmt == "json":
        print(lib.to_json(c), end="")
        return
    level = f"{c.confidence:.0%}"
    title = f"{c.metric} ({c.direction}): mean and {level} interval ({c.interval}) over seeds"
    table = Table(title=title, show_header=True, header_style="bold")
    for col in lib.CONDITION_COLUMNS:
        table.add_column(
            col if col != "interval" else f"{level} interval", justify="left" if col == "condition" else "right"
        )
    for row in lib.condition_rows(c):
        table.add_row(*(escape(x) for x in row))
    print_table(table)
    if c.pairs:
        table = Table(title=f"differences b - a, Welch's {level} interval", show_header=True, header_style="bold")
        for col in lib.PAIR_COLUMNS:
            table.add_column(
                col if col != "interval" else f"{level} interval",
                justify="left" if col in ("a", "b", "verdict") else "right",
            )
        for row in lib.pair_rows(c):
            table.add_row(*(escape(x) for x in row))
        print_table(table)
    for label in c.left_out:
        print(f"left out, no value of {c.metric}: {label}")
