"""`dlrun lr-find`: the learning-rate range test (the library is dlrun/lrfind.py)."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from dlrun.commands.base import PASS_THROUGH, app, handle_errors, overrides_argument


@app.command(
    "lr-find",
    context_settings=PASS_THROUGH,
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun lr-find                                 [dim]# MLP on digits with adam[/]\n\n"
        "  dlrun lr-find optim=sgd\n\n"
        "  dlrun lr-find data=moons optim=momentum --steps 100\n\n"
        "  dlrun lr-find --start 1e-5 --end 1 --out lr.png"
    ),
)
@handle_errors
def lr_find(
    overrides: list[str] | None = overrides_argument(),
    start: float = typer.Option(1e-7, "--start", help="The first learning rate."),
    end: float = typer.Option(10.0, "--end", help="The last learning rate (if the loss has not blown up before)."),
    steps: int = typer.Option(200, "--steps", help="Mini-batch steps from --start to --end (lr grows exponentially)."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Where to write the plot (a .json of the points goes beside it). "
        "Default: <runs_dir>/lr-find/<model>-<data>-<time>.png",
        show_default=False,
    ),
):
    """Learning-rate range test: plot loss against a growing lr and suggest an lr.

    A fresh model trains while lr grows exponentially from --start to --end; the suggestion is a tenth of the lr
    at the smoothed loss's minimum."""
    from dlrun.config import compose
    from dlrun.files import check_writable_file
    from dlrun.lrfind import check_bounds, default_path, lr_range_test, save

    check_bounds(start, end, steps)  # a bad flag is refused before composing and building
    overrides = list(overrides or [])
    cfg = compose(overrides)
    png = out if out is not None else default_path(cfg)
    check_writable_file(png, f"--out {png}" if out is not None else f"runs_dir={cfg.runs_dir}")

    result = lr_range_test(cfg, start=start, end=end, steps=steps)
    title = f"LR range test: model={cfg.model.name} data={cfg.data.name} optim={cfg.optim.name}"
    points = save(result, png, title)
    lr = f"{result.suggestion:.2g}"
    ended = "the loss passed 4x its minimum" if result.stopped_early else f"reached --end {end:g}"
    print(
        f"suggested lr: {lr} (the smoothed loss is lowest at lr {result.best_lr:.2g}; a tenth of that)\n"
        f"steps: {len(result.lrs)} of {steps}, lr {start:g} to {result.lrs[-1]:.2g} ({ended})\n"
        f"plot: {png}\n"
        f"points: {points}\n"
        f"train with: {shlex.join(['dlrun', 'train', *[o for o in overrides if not o.startswith('optim.lr=')]])}"
        f" optim.lr={lr}"
    )
