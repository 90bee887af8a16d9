"""Reading run directories back: the rows of `dlrun runs`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlrun.errors import ConfigError
from dlrun.train.rundir import find_runs


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
