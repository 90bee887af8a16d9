"""summary.json, the record every reader of a run depends on: its schema, its one writer and its one reader.

A run's summary (kind "run": a single run, or one member of a vectorized group) and a group's
summary (kind "group": its members, and mean and std of every final metric per configuration) are
typed dataclasses that also read like the dict they are written as (`summary["metrics"]`).

    version 1   the fields below, with "kind" and "version"
    version 0   summaries written before the version field: the same keys, some of them missing;
                they read with the missing fields at their defaults

`find_runs(root)` is the one answer to "which runs are under this folder": every readable summary of
kind "run", in the order the runs started; a damaged summary is skipped with a warning.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dlrun.files import atomic_write

VERSION = 1
FILE = "summary.json"


class Record(Mapping):
    """A dataclass read as the dict it is written as: summary["status"], summary.get("metrics", {})."""

    def __getitem__(self, key: str) -> Any:
        if key in self._names():
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._names()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """From a summary.json of any version: unknown keys are left out, missing ones take their defaults."""
        known = {k: v for k, v in d.items() if k in cls._names()}
        known["version"] = d.get("version", 0)
        hints = _hints(cls)
        wrong = next((k for k, v in known.items() if not _conforms(v, hints[k])), None)
        if wrong is not None:  # valid JSON of the wrong shape (metrics null, a time as text): damaged
            raise TypeError(f"{wrong}: {known[wrong]!r} is not {hints[wrong]}")
        return cls(**known)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    import typing

    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _conforms(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the declared type (a float field takes an int; a bool is no number)."""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is dict:
        return isinstance(value, dict) and all(_conforms(v, args[1]) for v in value.values())
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    return isinstance(value, hint)


@dataclass(eq=False)
class RunSummary(Record):
    """One run: what it is, how far it got, its final metrics and its times."""

    status: str = "running"  # running, completed, diverged, interrupted, pruned, failed
    message: str = ""  # why it ended as it did (an early stop, a divergence, an error)
    run_dir: str = ""
    name: str = ""
    experiment: str | None = None
    total_steps: int = 0
    steps_per_epoch: int = 1
    step: int = 0
    epoch: float = 0.0
    params: int = 0
    device: str = ""
    loss: str = ""  # the loss that ran (loss=auto resolved)
    resumed: bool = False
    monitor: str = ""  # the metric that chose the best weights and stopped early: val/acc or val/loss
    world_size: int = 1  # processes that trained it (torchrun)
    classes: list[str] = field(default_factory=list)  # label i is classes[i]; [] for regression
    group: str | None = None  # the folder of the vectorized group it trained in, if any
    started: str = ""
    started_at: float = 0.0  # seconds since the epoch, for sorting runs
    metrics: dict[str, float] = field(default_factory=dict)
    best_step: int = -1
    wall_time_s: float = 0.0
    train_time_s: float = 0.0
    samples_per_s: float | None = None
    compile: dict[str, Any] | None = None  # trainer.compile: mode, seconds (the first step), graphs, graph_breaks
    ended: str = ""
    kind: str = "run"
    version: int = VERSION


@dataclass(eq=False)
class GroupSummary(Record):
    """A vectorized group: its members (label, run_dir, status, seed, values, message) and per configuration
    ({values, seeds, members, metrics: {key: {mean, std, n}}}) the spread of every final metric."""

    status: str = "running"  # completed, diverged (all members), partial, running, pruned, interrupted
    name: str = ""
    run_dir: str = ""
    vectorized: str = ""  # stacked, vmap or loop: how the members' forward ran
    device: str = ""
    params: int = 0
    step: int = 0
    total_steps: int = 0
    members: list[dict[str, Any]] = field(default_factory=list)
    configurations: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # the one configuration's, else {}
    wall_time_s: float = 0.0
    started: str = ""
    started_at: float = 0.0
    ended: str = ""
    kind: str = "group"
    version: int = VERSION


Summary = RunSummary | GroupSummary


def write(run_dir: Path, summary: Summary) -> None:
    """<run_dir>/summary.json, written atomically."""
    atomic_write(Path(run_dir) / FILE, json.dumps(summary.as_dict(), indent=2, default=str) + "\n")


def read(run_dir: Path) -> Summary | None:
    """The summary of a run or a group; None if summary.json is missing or damaged (not a JSON object)."""
    path = Path(run_dir) / FILE
    if not path.is_file():  # missing, or a named pipe that would be read forever
        return None
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):  # ValueError: not JSON, or not UTF-8
        return None
    if not isinstance(d, dict):
        return None
    try:
        return (GroupSummary if d.get("kind") == "group" else RunSummary).from_dict(d)
    except TypeError:
        return None


def is_group(path: Path) -> bool:
    """Whether the folder holds a vectorized group (its summary.json has kind "group")."""
    s = read(path)
    return isinstance(s, GroupSummary)


def find_runs(root: Path) -> list[tuple[Path, RunSummary]]:
    """(run directory, summary) of every readable run under root (a group's members, not the group), in the
    order they were started. A run whose summary.json is damaged is skipped with a warning."""
    from dlrun.train.rundir import warn_damaged

    runs = []
    for p in Path(root).rglob(FILE):
        summary = read(p.parent)
        if summary is None:
            warn_damaged(p, "a JSON object of the fields and types dlrun writes")
        elif isinstance(summary, RunSummary):
            runs.append((p.parent, summary))
    return sorted(runs, key=lambda run: run[1].started_at or run[0].stat().st_mtime)
