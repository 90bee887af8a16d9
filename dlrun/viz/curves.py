"""Training and validation curves of several runs in one figure, read from their metrics.jsonl files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlrun.errors import ConfigError

Series = dict[str, tuple[np.ndarray, np.ndarray]]  # metric -> (steps, values)


def read_metrics(run_dir: Path) -> Series:
    """Every numeric metric of a run's metrics.jsonl as (steps, values) (dlrun/bands.py)."""
    from dlrun.bands import read_series

    return read_series(run_dir)


def expand_runs(paths: list[Path]) -> list[Path]:
    """Run directories as given; a folder that is not a run stands for every run below it (in start order)."""
    from dlrun.train.summary import find_runs

    runs: list[Path] = []
    for path in paths:
        if (path / "metrics.jsonl").is_file():
            runs.append(path)
            continue
        found = [run for run, _ in find_runs(path)] if path.is_dir() else []
        if not found:
            raise ConfigError(f"{path}: not a run directory (no metrics.jsonl) and no runs below it")
        runs.extend(found)
    return runs


def default_out(paths: list[Path]) -> Path:
    """viz/curves.png in the one run or folder given, else in the folder that holds them all; in the first
    one's where that is the current folder or the file system's root (nothing is written there unasked)."""
    import os

    folder = Path(paths[0])
    if len(paths) > 1:
        common = Path(os.path.commonpath([Path(p).absolute() for p in paths]))
        if common not in (Path.cwd(), Path(common.anchor)):
            folder = common
    return folder / "viz" / "curves.png"


def run_labels(runs: list[Path]) -> list[str]:
    """Short, distinct labels: <name>/<time> (the run directory's last two parts)."""
    return ["/".join(Path(r).resolve().parts[-2:]) for r in runs]


def plot_curves(runs: list[tuple[str, list[Series]]], kind: str = "ci"):
    """Left: train/loss (solid) and val/loss (dashed) against the step, log scale; right: val/acc or val/mse.
    Each entry is a condition: its runs' mean per step, with a band (`ci`: the 95% interval of the mean,
    `std`: mean ± standard deviation) where it has several runs."""
    from dlrun.bands import band
    from dlrun.viz.picture import figure

    fig = figure(12.0, 4.6)
    loss_ax, metric_ax = fig.subplots(1, 2)
    metric = "val/acc" if any("val/acc" in s for _, group in runs for s in group) else "val/mse"
    banded = False
    for i, (label, group) in enumerate(runs):
        color = f"C{i % 10}"
        n = f" ({len(group)} runs)" if len(group) > 1 else ""
        for ax, key, style in ((loss_ax, "train/loss", "-"), (loss_ax, "val/loss", "--"), (metric_ax, metric, "-o")):
            b = band(group, key, kind)
            if b is None:
                continue
            name = f"{label}{n} {key.split('/')[0]}" if ax is loss_ax else f"{label}{n}"
            ax.plot(b.steps, b.mean, style, color=color, lw=1.3, ms=3, label=name)
            if b.n > 1 and kind != "none":
                ax.fill_between(b.steps, b.low, b.high, color=color, alpha=0.2, lw=0)
                banded = True
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("loss (log scale)")
    loss_ax.set_title("training (solid) and validation (dashed) loss")
    loss_ax.grid(alpha=0.3, which="both")
    loss_ax.legend(fontsize=7)
    metric_ax.set_xlabel("step")
    metric_ax.set_ylabel(metric)
    metric_ax.set_title(metric)
    metric_ax.grid(alpha=0.3)
    metric_ax.legend(fontsize=7)
    total = sum(len(g) for _, g in runs)
    title = f"Learning curves of {total} run{'s' if total != 1 else ''}"
    if banded:
        title += ": mean per condition, band " + ("95% interval of the mean" if kind == "ci" else "± 1 std")
    fig.suptitle(title, fontsize=11)
    return fig
