"""Reading run directories back: the rows of `dlrun runs`, as a table's columns, csv or json."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from dlrun.errors import ConfigError
from dlrun.train.summary import find_runs

TABLE_METRICS = ("test/acc", "test/mse", "test/loss", "val/acc", "val/mse", "val/loss")


def collect(root: Path | str) -> list[dict[str, Any]]:
    """One dict per run under root: run (path relative to root), status, step, metrics, wall_time_s."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such directory; give a folder of runs (default: runs)")
    rows = []
    for path, summary in find_runs(root):
        rows.append(
            {
                "run": str(path.relative_to(root)) if path != root else str(path),
                "path": str(path),
                "status": summary.get("status", "?"),
                "step": summary.get("step", 0),
                "metrics": summary.get("metrics", {}),
                "wall_time_s": summary.get("wall_time_s"),
            }
        )
    return rows


def table_metrics(rows: list[dict[str, Any]]) -> list[str]:
    """The final metrics the table shows: those of TABLE_METRICS that some run has."""
    return [k for k in TABLE_METRICS if any(k in r["metrics"] for r in rows)]


def all_metrics(rows: list[dict[str, Any]]) -> list[str]:
    """Every metric some run has, sorted."""
    return sorted({k for r in rows for k in r["metrics"]})


def to_csv(rows: list[dict[str, Any]]) -> str:
    """One line per run: run, path, status, step, every metric (empty where a run lacks it), wall_time_s."""
    metrics = all_metrics(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["run", "path", "status", "step", *metrics, "wall_time_s"])
    for r in rows:
        cells = [r["metrics"].get(k, "") for k in metrics]
        wall = "" if r["wall_time_s"] is None else r["wall_time_s"]
        writer.writerow([r["run"], r["path"], r["status"], r["step"], *cells, wall])
    return buf.getvalue()


def to_json(rows: list[dict[str, Any]]) -> str:
    """A list of the runs as collect() gives them (metrics as an object)."""
    return json.dumps(rows, indent=2, default=str) + "\n"
