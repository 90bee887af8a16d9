"""`dlrun sweep` and `dlrun results` (the library is dlrun/sweep/)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from dlrun.commands.base import OVERRIDES_HELP, PASS_THROUGH, app, handle_errors, overrides_argument, print_table

SWEEP_HELP = (
    OVERRIDES_HELP + " Sweeps: optim=sgd,adam, choice(a,b), range(1,4), interval(a,b), "
    "tag(log,interval(a,b)), int(interval(a,b))."
)
FORMATS = ("table", "csv", "markdown", "json")
STATUS_COLORS = {"completed": "green", "pruned": "yellow", "running": "yellow", "interrupted": "yellow"}


@app.command(
    context_settings=PASS_THROUGH,
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun sweep optim=sgd,adam optim.lr=0.01,0.1 --seeds 0,1 --jobs 2   [dim]# grid: 4 configs x 2 seeds[/]\n\n"
        "  dlrun sweep 'optim.lr=tag(log,interval(1e-4,1e-1))' 'model.hidden=[64],[256,256]' --trials 30 --jobs 4\n\n"
        "  dlrun sweep experiment=xor_hidden 'model.hidden=[2],[4],[8]' --seeds 0,1,2,3,4\n\n"
        "  dlrun sweep 'optim.lr=interval(1e-4,1e-1)' --pruner median --trials 50\n\n"
        "  dlrun sweep --resume runs/sweeps/mlp-digits-2026-01-01_12-00-00   [dim]# continue a killed sweep[/]\n\n"
        "  dlrun sweep optim.lr=0.001,0.01 --storage postgresql://user@db/optuna --study lr   [dim]# one worker[/]"
    ),
)
@handle_errors
def sweep(
    overrides: list[str] | None = overrides_argument(SWEEP_HELP),
    sampler: str = typer.Option(
        "auto", "--sampler", help="grid, random or tpe; auto = grid when every swept key is a list or range, else tpe."
    ),
    trials: int | None = typer.Option(
        None,
        "--trials",
        help="Configurations to try. Default: the whole grid (grid), 20 (random, tpe).",
        show_default=False,
    ),
    metric: str = typer.Option(
        "auto",
        "--metric",
        help="The final metric to optimize, from each run's summary (val/acc, val/loss, best/val/acc, test/acc). "
        "auto = the run's trainer.monitor: val/acc for classification, val/loss for regression.",
    ),
    direction: str = typer.Option("auto", "--direction", help="maximize or minimize; auto: acc up, loss and mse down."),
    seeds: str | None = typer.Option(
        None,
        "--seeds",
        help="Repeat every configuration with each trainer.seed (0,1,2); a trial's value is the mean over seeds.",
        show_default=False,
    ),
    jobs: int | None = typer.Option(
        None,
        "--jobs",
        "-j",
        help="Trainings at once, each in its own process on one core. Default 1.",
        show_default=False,
    ),
    pruner: str = typer.Option(
        "none", "--pruner", help="none, median or hyperband: stop a trial whose metric lags at an evaluation."
    ),
    max_failures: int | None = typer.Option(
        None, "--max-failures", help="Stop after this many failed trials (exit 1). Default: never.", show_default=False
    ),
    storage: str | None = typer.Option(
        None,
        "--storage",
        help="A shared Optuna storage URL (postgresql://..., mysql+pymysql://..., sqlite:///...) that several "
        "workers use; default: sqlite in the sweep directory.",
        show_default=False,
    ),
    study: str | None = typer.Option(
        None, "--study", help="The study's name; with --storage, the study the workers share.", show_default=False
    ),
    directory: Path | None = typer.Option(
        None, "--dir", help="The sweep directory. Default: <runs_dir>/sweeps/<name>-<time>/.", show_default=False
    ),
    vectorize: int = typer.Option(
        1,
        "--vectorize",
        help="Train up to K configurations, with their seeds, in one process as one vectorized model when they "
        "differ only in optim.lr, weight_decay, momentum, gamma, beta1, beta2 or regularizer.strength. "
        "1: each configuration's seeds together; 0: every seed in a process of its own.",
    ),
    cold: bool = typer.Option(
        False,
        "--cold",
        help="Start every training as a new Python process instead of forking a warm one "
        "(that has imported torch and dlrun once).",
    ),
    resume: Path | None = typer.Option(
        None,
        "--resume",
        help="Continue the sweep in this directory (its sweep.yaml holds the arguments); "
        "--jobs, --trials, --max-failures and --cold may change.",
        show_default=False,
    ),
):
    """Sweep hyperparameters with an Optuna study: resumable, parallel, failed trials recorded and skipped.

    Every trial is a normal run under [bold]<sweep>/trials/<n>/[/]; the study is the ledger."""
    import os

    from dlrun.errors import ConfigError, RunFailed
    from dlrun.sweep import runner, warm

    if os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1"):  # its trials would all join one process group
        raise ConfigError(
            "dlrun sweep under torchrun: start the sweep itself without torchrun (several workers share a study "
            "through --storage)"
        )
    for flag, value in (("--jobs", jobs), ("--trials", trials), ("--max-failures", max_failures)):
        if value is not None and value < 1:  # checked for a new sweep and a resume alike
            raise ConfigError(f"{flag} {value}: must be >= 1")
    if not cold:
        warm.start()  # its imports overlap composing and checking the sweep
    if resume is not None:
        given = [
            flag
            for flag, value, default in (
                ("OVERRIDES", overrides, None),
                ("--sampler", sampler, "auto"),
                ("--metric", metric, "auto"),
                ("--direction", direction, "auto"),
                ("--seeds", seeds, None),
                ("--pruner", pruner, "none"),
                ("--storage", storage, None),
                ("--study", study, None),
                ("--dir", directory, None),
                ("--vectorize", vectorize, 1),
            )
            if value not in (default, [])
        ]
        if given:
            raise ConfigError(
                f"--resume takes its arguments from sweep.yaml; {given[0]} cannot change "
                "(only --jobs, --trials, --max-failures and --cold can)"
            )
        spec, sweep_dir = runner.resume(
            resume, jobs=jobs, trials=trials, max_failures=max_failures, warm=False if cold else None
        )
    else:
        spec, sweep_dir = runner.plan(
            list(overrides or []),
            sampler=sampler,
            trials=trials,
            metric=metric,
            direction=direction,
            seeds=_seeds(seeds),
            pruner=pruner,
            storage=storage,
            study=study,
            directory=directory,
            max_failures=max_failures,
            jobs=jobs or 1,
            warm=not cold,
            vectorize=vectorize,
        )
    seeds_text = f", seeds {','.join(map(str, spec.seeds))}" if spec.seeds else ""
    print(
        f"sweep {sweep_dir}: {spec.trials} trials, {spec.sampler}, {spec.direction} {spec.metric}{seeds_text}, "
        f"{spec.jobs} at once",
        flush=True,
    )
    try:
        summary = runner.run(spec, sweep_dir, on_trial=_print_trial)
    except KeyboardInterrupt:
        print(f"interrupted; continue with: dlrun sweep --resume {sweep_dir}", file=sys.stderr)
        raise typer.Exit(130) from None
    finally:
        warm.stop()  # no fork server outlives the sweep

    from dlrun.sweep.results import collect

    results = collect(sweep_dir)
    if results.rows:
        _print_table(results)
    _print_best(results)
    print(f"tensorboard --logdir {sweep_dir / 'tensorboard'}")
    if summary["running_elsewhere"]:
        print(f"{summary['running_elsewhere']} trials are still running in other processes of study {spec.study}")
    if summary["stopped"] == "failures":
        raise RunFailed(
            f"stopped after {summary['failed']} failed trials (--max-failures {spec.max_failures}); "
            f"last: {summary['last_failure']}"
        )
    if summary["failed"] and not summary["completed"] and not summary["pruned"]:
        raise RunFailed(f"every trial failed; last: {summary['last_failure']}")


def _seeds(text: str | None) -> list[int] | None:
    from dlrun.errors import ConfigError

    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {text}: give whole numbers separated by commas, e.g. --seeds 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text}: give distinct whole numbers, e.g. --seeds 0,1,2")
    return seeds


def _print_trial(info: dict) -> None:
    values = info["values"]
    if info["status"] == "failed":
        result = info["reason"]
    elif len(values) > 1:
        import statistics

        result = f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f} ({len(values)} seeds)"
    else:
        result = f"{values[0]:.4f}" if values else ""
    print(
        f"[{info['done']}/{info['budget']}] trial {info['trial']} {info['status']}: "
        f"{' '.join(info['overrides'])}  {result}  {info['time_s']:.1f} s",
        flush=True,
    )


@app.command(
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun results runs/sweeps/mlp-digits-2026-01-01_12-00-00\n\n"
        "  dlrun results runs/mlp-digits          [dim]# ordinary runs, grouped by config: mean ± std over seeds[/]\n\n"
        "  dlrun results runs/sweeps/mlp-digits-2026-01-01_12-00-00 --metric test/acc --format markdown"
    )
)
@handle_errors
def results(
    directory: Path = typer.Argument(
        Path("runs"), help="A sweep directory, or a folder of runs (searched recursively)."
    ),
    metric: str | None = typer.Option(
        None,
        "--metric",
        help="The metric to show and sort by. Default: the sweep's, or the runs' monitor.",
        show_default=False,
    ),
    fmt: str = typer.Option("table", "--format", help="table, csv, markdown or json."),
):
    """A sweep's trials (or runs grouped by config), best first, and the best as a [bold]dlrun train[/] command.

    Columns: the hyperparameters that vary, the metric's mean ± std over seeds, status and time."""
    from dlrun.errors import ConfigError
    from dlrun.sweep import results as res

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: unknown; choose from: {', '.join(FORMATS)}")
    found = res.collect(directory, metric)
    if fmt == "csv":
        print(res.to_csv(found), end="")
    elif fmt == "markdown":
        print(res.to_markdown(found), end="")
    elif fmt == "json":
        print(res.to_json(found), end="")
    else:
        _print_table(found)
        _print_best(found)


def _print_table(found) -> None:
    from dlrun.sweep.results import columns, table_rows

    table = Table(
        title=f"{found.metric} ({found.direction}): mean ± std over seeds",
        show_header=True,
        header_style="bold",
    )
    for col in columns(found):
        table.add_column(col, justify="right" if col in (found.metric, "seeds", "time") else "left")
    for row, cells in zip(found.rows, table_rows(found), strict=True):
        cells = [escape(c) for c in cells]  # "[16]" is a value, not markup
        cells[-2] = f"[{STATUS_COLORS.get(row.status, 'red')}]{cells[-2]}[/]"
        table.add_row(*cells)
    print_table(table)


def _print_best(found) -> None:
    best = found.best
    if best is None:
        print("no completed configuration yet")
        return
    spread = f" ± {best.std:.4f}" if best.std is not None else ""
    where = f"trial {best.trial}" if best.trial is not None else best.runs[0]
    print(f"best: {found.metric} {best.mean:.4f}{spread} over {len(best.values)} run(s) ({where})")
    print(found.command(best))
