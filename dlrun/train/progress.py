"""What a run shows while it trains: a rich progress bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from dlrun.train.callbacks import Callback


def _fmt(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())


class ProgressBar(Callback):
    """A bar over optimizer steps with the latest train loss and validation metrics."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task = None
        self.train_info = ""
        self.val_info = ""

    def on_start(self, info: dict[str, Any]) -> None:
        self.progress.start()
        self.task = self.progress.add_task("train", total=info["total_steps"], completed=info["step"], info="")

    def on_log(self, step: int, scalars: dict[str, float]) -> None:
        self.train_info = f"loss {scalars['train/loss']:.4g}"
        self.progress.update(self.task, completed=step, info=f"{self.train_info}  {self.val_info}")

    def on_eval(self, step: int, epoch: float, metrics: dict[str, float]) -> None:
        self.val_info = _fmt(metrics)
        self.progress.update(self.task, completed=step, info=f"{self.train_info}  {self.val_info}")

    def on_end(self, summary: dict[str, Any]) -> None:
        self.progress.stop()

    def close(self) -> None:
        self.progress.stop()


class LinePrinter(Callback):
    """One plain line per evaluation (for logs and CI: no bar redraws)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.total = 0
        self.train_loss = float("nan")

    def on_start(self, info: dict[str, Any]) -> None:
        self.total = info["total_steps"]

    def on_log(self, step: int, scalars: dict[str, float]) -> None:
        self.train_loss = scalars["train/loss"]

    def on_eval(self, step: int, epoch: float, metrics: dict[str, float]) -> None:
        print(
            f"step {step}/{self.total}  epoch {epoch:.2f}  train/loss {self.train_loss:.4g}  {_fmt(metrics)}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        pass


def make(kind: str, console: Console | None = None):
    """auto: a bar when stdout is a terminal, lines otherwise; bar; lines; none (None)."""
    if kind == "auto":
        kind = "bar" if sys.stdout.isatty() else "lines"
    return {"bar": lambda: ProgressBar(console), "lines": LinePrinter, "none": lambda: None}[kind]()
