"""`dlrun train`: compose the config, train, print the summary (the library is dlrun/train/)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dlrun.commands.base import PASS_THROUGH, app, handle_errors, overrides_argument, print_table


@app.command(
    context_settings=PASS_THROUGH,
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun train                                   [dim]# MLP on digits[/]\n\n"
        "  dlrun train model=linear data=xor             [dim]# logistic regression on XOR[/]\n\n"
        "  dlrun train 'model.hidden=[64,64]' optim=sgd optim.lr=0.1 trainer.epochs=50\n\n"
        "  dlrun train data=diabetes                     [dim]# regression: MSE, logs val/mse[/]\n\n"
        "  dlrun train experiment=xor_hidden\n\n"
        "  dlrun train resume=runs/mlp-digits/2026-01-01_12-00-00 trainer.epochs=60\n\n"
        "  dlrun train trainer.precision=bf16 trainer.ema=0.999   [dim]# bfloat16; evaluate the weights' EMA[/]\n\n"
        "  dlrun train trainer.accumulate=4 trainer.batch_size=16  [dim]# one step on 64 examples (batch norm and "
        "dropout: per 16)[/]\n\n"
        "  torchrun --standalone --nproc_per_node=2 -m dlrun train   [dim]# data-parallel, 2 processes[/]"
    ),
)
@handle_errors
def train(overrides: list[str] | None = overrides_argument()):
    """Train a model; the run goes to [bold]runs/<name>/<time>/[/] (config, metrics, checkpoints, TensorBoard)."""
    from dlrun.train import dist, members, progress
    from dlrun.train import train as run_training

    overrides = list(overrides or [])
    what = members.parse(overrides)  # one run's config, or a group's members
    cfg = what[0].cfg if isinstance(what, list) else what
    world = dist.world()
    view = progress.make(cfg.trainer.progress, Console()) if world.main else None
    try:
        summary = run_training(what, callbacks=[view] if view else [], overrides=overrides)
    finally:
        if view:
            view.close()
    if not world.main:  # rank 0 reports for the run
        raise typer.Exit(130 if summary["status"] == "interrupted" else 0)
    if summary["kind"] == "group":
        _print_group(summary)
        if summary["status"] == "interrupted":
            print(f"interrupted; continue with: dlrun train resume={summary['run_dir']}", file=sys.stderr)
            raise typer.Exit(130)
        if summary["status"] == "diverged":
            print("error: every member diverged; try a smaller optim.lr or trainer.grad_clip", file=sys.stderr)
            raise typer.Exit(1)
        return
    _print_summary(summary)
    if summary["status"] == "interrupted":
        print(
            f"interrupted at step {summary['step']}; continue with: dlrun train resume={summary['run_dir']}",
            file=sys.stderr,
        )
        raise typer.Exit(130)


def _print_group(summary: dict) -> None:
    """One row per configuration: mean ± std of each final metric over its seeds."""
    console = Console()
    confs = summary["configurations"]
    keys = [
        k
        for k in ("test/acc", "test/mse", "test/loss", "val/acc", "val/mse", "val/loss")
        if any(k in c["metrics"] for c in confs)
    ]
    title = f"{summary['name']}: {summary['status']}, {len(summary['members'])} members ({summary['vectorized']})"
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("configuration")
    table.add_column("seeds", justify="right")
    for k in keys:
        table.add_column(k, justify="right")
    for c in confs:
        label = " ".join(f"{k}={v:g}" for k, v in c["values"].items()) or "(all)"
        cells = []
        for k in keys:
            m = c["metrics"].get(k)
            cells.append(f"{m['mean']:.4f} ± {m['std']:.4f}" if m else "-")
        table.add_row(label, ",".join(str(s) for s in c["seeds"]), *cells)
    print_table(table, console)
    for m in summary["members"]:
        if m["status"] != "completed":
            console.print(f"{m['label']}: {m['status']} {m['message']}", highlight=False, soft_wrap=True)
    console.print(f"group directory: {summary['run_dir']}  ({summary['wall_time_s']:.2f} s)", highlight=False)
    console.print(f"tensorboard --logdir {summary['run_dir']}", highlight=False, soft_wrap=True)


def _print_summary(summary: dict) -> None:
    console = Console()
    table = Table(title=f"{summary['name']}: {summary['status']}", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary["metrics"].items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else f"{value:.4f}")  # counts stay integers
    table.add_row("parameters", f"{summary['params']:,}")
    table.add_row("steps", f"{summary['step']} ({summary['epoch']:g} epochs)")
    table.add_row("train time", f"{summary['train_time_s']:.2f} s")
    table.add_row("wall time", f"{summary['wall_time_s']:.2f} s")
    if summary.get("samples_per_s"):
        table.add_row("samples/s", f"{summary['samples_per_s']:,.0f}")
    table.add_row("device", summary["device"])
    print_table(table, console)
    if summary.get("message") and summary["status"] == "completed":  # why it ended before its last step
        console.print(summary["message"], highlight=False, soft_wrap=True)
    console.print(f"run directory: {summary['run_dir']}", highlight=False, soft_wrap=True)
    console.print(f"tensorboard --logdir {Path(summary['run_dir']).parent.parent}", highlight=False, soft_wrap=True)
