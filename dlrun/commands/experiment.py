"""`dlrun experiment list|run|report`: the lectures' claims, run across seeds, with verdicts."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dlrun.commands.base import app, handle_errors, overrides_argument, print_table

experiment_app = typer.Typer(
    help="The lectures' claims as experiments: run them across seeds and see whether they hold.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(experiment_app, name="experiment")

SEEDS_HELP = "Comma-separated seeds (default: the claim's own, e.g. 0,1,2)."
COLORS = {"holds": "green", "does not hold": "red", "inconclusive": "yellow"}
QUICK_HELP = "A reduced budget (the claim's `quick` overrides): for a fast look, not for the record."


def _seeds(text: str | None) -> list[int] | None:
    from dlrun.errors import ConfigError

    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {text}: give comma-separated integers, e.g. --seeds 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text}: give distinct comma-separated integers, e.g. --seeds 0,1,2")
    return seeds


@experiment_app.command("list", epilog="[bold]Examples[/]\n\n  dlrun experiment list")
@handle_errors
def list_():
    """Every experiment: its claim (if it states one) and its wall time in the last report (make reproduce)."""
    from dlrun.experiments import listing

    table = Table(show_header=True, header_style="bold")
    table.add_column("experiment")
    table.add_column("claim / description")
    table.add_column("runtime", justify="right")
    for row in listing():
        text = row["claim"] or f"[dim]{row['description']}[/] (no claim; dlrun train experiment={row['name']})"
        if row["measured_s"] is not None:  # measured by the last report, without the process's start
            runtime = f"{row['measured_s']:.0f} s"
        else:
            runtime = f"~{row['runtime_s']:.0f} s (expected)" if row["runtime_s"] else ""
        table.add_row(row["name"], text, runtime)
    print_table(table)


@experiment_app.command(
    "run",
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun experiment run xor_hidden\n\n"
        "  dlrun experiment run learning_rate --seeds 0,1,2,3,4\n\n"
        "  dlrun experiment run optimizers --quick\n\n"
        "  dlrun experiment run overfitting --settle --max-seeds 10"
    ),
)
@handle_errors
def run_(
    name: str = typer.Argument(..., help="An experiment with a claim (see dlrun experiment list)."),
    overrides: list[str] | None = overrides_argument("Extra overrides for every run."),
    seeds: str | None = typer.Option(None, help=SEEDS_HELP),
    quick: bool = typer.Option(False, "--quick", help=QUICK_HELP),
    runs_dir: Path = typer.Option(Path("runs"), help="Runs go to RUNS_DIR/experiments/NAME/<condition>/."),
    out: Path = typer.Option(Path("reports"), help="Where results.json and the figure go."),
    settle: bool = typer.Option(
        False, "--settle", help="While an expectation is inconclusive, add seeds (up to --max-seeds in all)."
    ),
    max_seeds: int = typer.Option(10, help="With --settle: the budget, in seeds per condition."),
):
    """Run every condition of a claim at every seed, print the verdict table and write one figure."""
    from dlrun import experiments
    from dlrun.errors import ConfigError

    claim = experiments.load(name)
    wanted = _seeds(seeds)
    if settle and max_seeds < len(wanted or claim.seeds):
        raise ConfigError(f"--max-seeds {max_seeds}: fewer than the {len(wanted or claim.seeds)} seeds to start with")
    _check_writable(out, runs_dir, [claim])
    console = Console()
    console.print(f"[bold]{claim.name}[/]: {claim.statement}", highlight=False)
    folder = out / claim.name
    if overrides:  # the claim is stated for its own settings: a changed run is reported apart, never over it
        folder = out / f"{claim.name}+{_slug(overrides)}"
        console.print(
            f"with {' '.join(overrides)}: the claim above is stated for its own settings; this is a variation of "
            f"it (reported in {folder}, not in {out / claim.name})",
            highlight=False,
        )

    def on_run(label, seed, value):
        console.print(f"  {label} seed {seed}: {claim.measure} = {experiments.fmt(value)}", highlight=False)

    result = experiments.run(claim, wanted, runs_dir, list(overrides or []), quick, on_run=on_run)
    if settle and not experiments.settle(
        claim,
        result,
        max_seeds,
        runs_dir,
        on_run,
        on_more=lambda have, more: console.print(
            f"inconclusive at {have} seeds; adding seeds {', '.join(map(str, more))}", highlight=False
        ),
    ):
        console.print(f"still inconclusive at {len(result.seeds)} seeds: the budget (--max-seeds {max_seeds}) is spent")
    experiments.save(result, folder / "results.json")
    fig = experiments.figure(claim, result, folder / f"{claim.name}.png")
    ok = _print_verdicts(console, claim, result)
    console.print(f"figure: {fig}\nresults: {folder / 'results.json'}", highlight=False)
    if not ok:
        raise typer.Exit(1)


def _slug(overrides: list[str]) -> str:
    """A folder name for a claim run with overrides: `optim.lr=0.1 trainer.epochs=3` -> optim.lr=0.1,trainer.epochs=3
    (long ones shortened, with a hash of the whole)."""
    import hashlib
    import re

    text = ",".join(re.sub(r"[^A-Za-z0-9._=+-]", "_", o) for o in overrides)
    return text if len(text) <= 80 else text[:60] + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def _check_writable(out: Path, runs_dir: Path, claims) -> None:
    """Before any claim runs: the report's folder and, where a claim trains, the runs' folder can be written."""
    from dlrun.files import check_writable

    check_writable(out, f"--out {out}")
    if any(not claim.check for claim in claims):  # a check claim computes its values without runs
        check_writable(runs_dir, f"--runs-dir {runs_dir}")


def _print_verdicts(console: Console, claim, result) -> bool:
    from dlrun import experiments

    table = Table(title=f"{claim.name} ({result.wall_time_s:.0f} s, seeds {result.seeds})", header_style="bold")
    table.add_column("condition")
    for m in claim.measures:
        table.add_column(f"{m} (mean ± std)", justify="right")
    for label, cells in experiments.table_rows(claim, result):
        table.add_row(label, *cells)
    print_table(table, console)
    verdicts = experiments.verdicts(claim, result)
    table = Table(header_style="bold")
    table.add_column("expectation")
    table.add_column("measured (mean ± std)")
    table.add_column("95% interval of left − right", justify="right")
    table.add_column("verdict")
    for v in verdicts:
        table.add_row(v.expectation, v.measured, v.interval_text, f"[{COLORS[v.status]}]{v.text}[/]")
    print_table(table, console)
    verdict = experiments.overall(verdicts)
    color = COLORS[verdict if verdict in COLORS else experiments.INCONCLUSIVE]
    console.print(f"claim [{color}]{verdict}[/]: {claim.statement}", highlight=False)
    need = experiments.seeds_to_settle(verdicts)
    if verdict.startswith(experiments.INCONCLUSIVE):
        hint = f"about {need:.0f} seeds would settle it at this spread; " if 0 < need < float("inf") else ""
        console.print(f"{hint}add seeds with --seeds or --settle", highlight=False)
    return verdict == experiments.HOLDS


@experiment_app.command(
    "report",
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun experiment report                          [dim]# every claim; reuses earlier results[/]\n\n"
        "  dlrun experiment report xor_hidden --rerun"
    ),
)
@handle_errors
def report_(
    names: list[str] | None = typer.Argument(
        None, help="Claims to include (default: every claim).", show_default=False
    ),
    rerun: bool = typer.Option(False, "--rerun", help="Run again even where results exist."),
    quick: bool = typer.Option(False, "--quick", help=QUICK_HELP),
    runs_dir: Path = typer.Option(Path("runs"), help="Runs go to RUNS_DIR/experiments/NAME/<condition>/."),
    out: Path = typer.Option(Path("reports"), help="report.md, figures and results.json go here."),
):
    """Run (or reuse) every claim and write OUT/report.md with the verdict table and one figure per claim."""
    from dlrun import experiments

    wanted = list(names or [r["name"] for r in experiments.listing() if r["claim"]])
    claims = [experiments.load(name) for name in wanted]  # an unknown name fails before anything runs
    _check_writable(out, runs_dir, claims)
    console = Console()
    entries = []
    for name, claim in zip(wanted, claims, strict=True):
        path = out / name / "results.json"
        result = None if rerun else experiments.load_result(path)
        if result is not None and (result.seeds[: len(claim.seeds)] != claim.seeds or bool(result.overrides) != quick):
            result = None  # other seeds or budget than asked: run again
        if result is None:
            console.print(f"running {name} (~{claim.runtime_s:.0f} s)...", highlight=False)
            result = experiments.run(claim, None, runs_dir, [], quick)
            experiments.save(result, path)
        else:
            console.print(f"reusing {path}", highlight=False)
        fig = experiments.figure(claim, result, out / name / f"{name}.png")
        _print_verdicts(console, claim, result)
        entries.append((claim, result, fig))
    report = experiments.report(entries, out / "report.md")
    console.print(f"report: {report}", highlight=False)
