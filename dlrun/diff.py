"""`dlrun diff A B`: what differs between two runs (or two groups, or two sweep trials), and only that.

The config keys whose values differ, the final metrics side by side with their difference, and what else
could explain a difference: the versions of dlrun, torch and the other packages, the device, the processes,
the plugins, and the project's git commit and whether its tree was dirty (each run records them in
versions.json). A group is read as its members' shared config and the mean of its members' metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dlrun.errors import ConfigError
from dlrun.grouping import flatten
from dlrun.train import summary as summaries

MISSING = "(none)"


@dataclass
class Side:
    """One side of a diff: its flat config, final metrics and environment."""

    path: Path
    kind: str  # run or group
    config: dict[str, Any]
    metrics: dict[str, float]
    environment: dict[str, Any]


@dataclass
class Diff:
    a: Side
    b: Side
    config: list[tuple[str, Any, Any]] = field(default_factory=list)  # (key, a's value, b's value)
    metrics: list[tuple[str, float | None, float | None]] = field(default_factory=list)
    environment: list[tuple[str, Any, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": str(self.a.path),
            "b": str(self.b.path),
            "config": [{"key": k, "a": a, "b": b} for k, a, b in self.config],
            "metrics": [
                {"key": k, "a": a, "b": b, "delta": None if a is None or b is None else b - a}
                for k, a, b in self.metrics
            ],
            "environment": [{"key": k, "a": a, "b": b} for k, a, b in self.environment],
        }


def _yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError:
        raise ConfigError(f"{path.parent}: no {path.name} there; give a run's or a group's folder") from None
    except yaml.YAMLError:
        raise ConfigError(f"{path}: damaged (not YAML)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: damaged (not a YAML mapping)")
    return data


def _environment(run_dir: Path, summary) -> dict[str, Any]:
    try:
        versions = json.loads((run_dir / "versions.json").read_text())
    except (OSError, ValueError):
        versions = {}
    env = {k: v for k, v in versions.items() if not isinstance(v, dict)}
    env.update({f"git.{k}": v for k, v in (versions.get("git") or {}).items()})
    env["device"] = summary.get("device")
    env["world_size"] = summary.get("world_size", 1)
    return env


def side(path: Path | str) -> Side:
    """Read one side: a run's folder (summary.json and config.yaml) or a group's (its first member's config but
    the values its members differ in, and the mean of their metrics)."""
    path = Path(path)
    summary = summaries.read(path)
    if summary is None:
        raise ConfigError(f"{path}: not a run or a group (no readable summary.json); give a run's folder")
    if isinstance(summary, summaries.GroupSummary):
        first = path / summary.members[0]["label"] if summary.members else path
        config = flatten(_yaml(first / "config.yaml"))
        for m in summary.members:  # what the members differ in is not the group's config
            for key in [*m.get("values", {}), "trainer.seed"]:
                config.pop(key, None)
        config["trainer.seeds"] = sorted(m["seed"] for m in summary.members)
        metrics = {k: v["mean"] for k, v in summary.metrics.items()}
        return Side(path, "group", config, metrics, _environment(first, summaries.read(first) or {}))
    return Side(path, "run", flatten(_yaml(path / "config.yaml")), dict(summary.metrics), _environment(path, summary))


def diff(a: Path | str, b: Path | str) -> Diff:
    """The differences between two runs or groups: config keys, metrics and environment."""
    sa, sb = side(a), side(b)
    out = Diff(sa, sb)
    for key in sorted(set(sa.config) | set(sb.config)):
        va, vb = sa.config.get(key, MISSING), sb.config.get(key, MISSING)
        if va != vb:
            out.config.append((key, va, vb))
    for key in sorted(set(sa.metrics) | set(sb.metrics)):
        out.metrics.append((key, sa.metrics.get(key), sb.metrics.get(key)))
    for key in sorted(set(sa.environment) | set(sb.environment)):
        va, vb = sa.environment.get(key, MISSING), sb.environment.get(key, MISSING)
        if va != vb:
            out.environment.append((key, va, vb))
    return out
