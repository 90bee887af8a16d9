"""Results of a sweep, or of a folder of ordinary runs: one row per configuration, best first.

A row holds the configuration's hyperparameters, the metric of each seed, their mean and
sample standard deviation (n - 1 in the denominator), the status and the training time. A
sweep's rows come from its Optuna study; a folder's rows group its runs by their config.yaml,
every key but trainer.seed (and keys that do not change the result, such as trainer.progress).
"""

from __future__ import annotations

import csv
import io
import json
import shlex
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dlrun.errors import ConfigError
from dlrun.grouping import cell, flatten, hyperparameters, key_of, varying_keys

# keys of the overrides that the best command leaves out
NOT_IN_COMMAND = ("trainer.seed", "resume")
STATUS_ORDER = {"completed": 0, "pruned": 1, "running": 2, "interrupted": 3}


@dataclass
class Row:
    """One configuration: its hyperparameters and the metric of each seed."""

    params: dict[str, Any]  # key -> value (a list value as its override text, "[16]")
    status: str  # completed, pruned, running, failed, diverged, interrupted
    values: list[float]  # the metric, one per seed that has it
    metrics: dict[str, list[float]] = field(default_factory=dict)  # every final metric, one value per seed
    seeds: list[int] = field(default_factory=list)
    time_s: float | None = None  # training wall time, summed over the seeds
    runs: list[str] = field(default_factory=list)  # run directories
    overrides: list[str] = field(default_factory=list)  # `dlrun train OVERRIDES` reruns it (without the seed)
    trial: int | None = None  # the Optuna trial number (sweeps)
    reason: str = ""  # why it failed

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "params": self.params,
            "status": self.status,
            "mean": self.mean,
            "std": self.std,
            "values": self.values,
            "seeds": self.seeds,
            "metrics": {k: statistics.fmean(v) for k, v in self.metrics.items() if v},
            "time_s": self.time_s,
            "runs": self.runs,
            "overrides": self.overrides,
            "reason": self.reason,
        }


@dataclass
class Results:
    source: str  # the sweep directory or the folder of runs
    metric: str
    direction: str  # maximize or minimize
    rows: list[Row]  # best first
    varying: list[str]  # the hyperparameters that differ between rows
    plugins: list[str] = field(default_factory=list)  # loaded by the sweep's trials, so by its commands too

    @property
    def best(self) -> Row | None:
        return self.rows[0] if self.rows and self.rows[0].status == "completed" and self.rows[0].values else None

    def command(self, row: Row) -> str:
        """The shell command that trains this configuration on its own."""
        loads = [arg for plugin in self.plugins for arg in ("--plugin", plugin)]
        return shlex.join(["dlrun", *loads, "train", *row.overrides])


def direction_of(metric: str, *, direction_option: bool = False, known: list[str] | None = None) -> str:
    """acc: maximize; loss, mse: minimize; else a ConfigError that says what to give instead.

    `known`, the metrics the runs have, names the choices; `direction_option` offers --direction
    to a command that has it.
    """
    leaf = metric.rsplit("/", 1)[-1]
    if leaf == "acc":
        return "maximize"
    if leaf in ("loss", "mse"):
        return "minimize"
    from dlrun.errors import suggest

    known = sorted(set(known or []))
    if known and metric not in known:  # most likely a typo: the runs' own names help more than the suffixes
        raise ConfigError(
            f"--metric {metric}: no run has this metric;{suggest(metric, known)} the runs have: {', '.join(known)}"
        )
    ordered = [k for k in known if k.rsplit("/", 1)[-1] in ("acc", "loss", "mse")]
    examples = f": {', '.join(ordered)}" if ordered else " (val/acc, test/loss, best/val/acc)"
    option = ", or give --direction maximize|minimize" if direction_option else ""
    raise ConfigError(
        f"--metric {metric}: cannot tell whether to maximize or minimize it; "
        f"name a metric that ends in acc, loss or mse{examples}{option}"
    )


def sort_rows(rows: list[Row], direction: str) -> list[Row]:
    """Completed rows by their mean (best first), then pruned, running and failed ones."""
    sign = -1.0 if direction == "maximize" else 1.0

    def key(row: Row):
        return (STATUS_ORDER.get(row.status, 9), row.mean is None, sign * row.mean if row.mean is not None else 0.0)

    return sorted(rows, key=key)


# ----------------------------------------------------------------------------- a sweep
def collect(path: Path | str, metric: str | None = None) -> Results:
    """The results of a sweep directory (it has sweep.yaml) or of a folder of runs."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such directory; give a sweep directory or a folder of runs")
    if (path / "sweep.yaml").is_file():
        return from_sweep(path, metric)
    return from_runs(path, metric)


def from_sweep(sweep_dir: Path, metric: str | None = None) -> Results:
    import optuna
    import sqlalchemy.exc

    from dlrun.sweep.study import SweepSpec, damaged, open_storage, quiet_optuna

    spec = SweepSpec.load(sweep_dir)
    quiet_optuna()
    try:
        study = optuna.load_study(study_name=spec.study, storage=open_storage(spec.url(sweep_dir), heartbeat=False))
    except KeyError:
        raise ConfigError(f"{sweep_dir}: the study {spec.study} is not in {spec.url(sweep_dir)}") from None
    except sqlalchemy.exc.DatabaseError as e:  # a damaged file, e.g. an SQLite database cut short
        raise damaged(spec.storage or sweep_dir / "study.db", e) from None
    return from_study(study, spec, str(sweep_dir), metric)


def from_study(study, spec, source: str, metric: str | None = None) -> Results:
    """One row per trial of the study (a failed trial that was queued again gives way to its retry)."""
    from optuna.trial import TrialState

    from dlrun.sweep.space import parse
    from dlrun.sweep.study import retried

    space = parse(spec.overrides)
    metric = metric or spec.metric
    trials = study.get_trials(deepcopy=False)
    known = [k for t in trials for k in t.user_attrs.get("metrics", {})]
    direction = spec.direction if metric == spec.metric else direction_of(metric, known=known)
    again = retried(trials)
    states = {
        TrialState.COMPLETE: "completed",
        TrialState.PRUNED: "pruned",
        TrialState.FAIL: "failed",
        TrialState.RUNNING: "running",
    }
    rows = []
    for t in trials:
        if t.state not in states or (t.state == TrialState.FAIL and t.number in again):
            continue
        if any(axis.name not in t.params for axis in space.axes):
            continue  # stopped before its parameters were drawn
        attrs = t.user_attrs
        metrics = attrs.get("metrics", {})
        rows.append(
            Row(
                params={axis.name: t.params[axis.name] for axis in space.axes},
                status=states[t.state],
                values=list(metrics.get(metric, [])),
                metrics=metrics,
                seeds=attrs.get("seeds", []),
                time_s=attrs.get("time_s"),
                runs=attrs.get("runs", []),
                overrides=attrs.get("overrides") or space.overrides(t.params),
                trial=t.number,
                reason=attrs.get("reason", ""),
            )
        )
    names = [axis.name for axis in space.axes]
    varying = varying_keys([r.params for r in rows], names) or names
    return Results(source, metric, direction, sort_rows(rows, direction), varying, list(spec.plugins))


# ----------------------------------------------------------------------------- a folder of runs
def from_runs(root: Path, metric: str | None = None) -> Results:
    """Group the runs under root by configuration (every config key but the seed); one row per group."""
    from dlrun.train.summary import find_runs

    return from_found(list(find_runs(root)), str(root), metric, root)


def from_found(found: list[tuple[Path, Any]], source: str, metric: str | None = None, root: Path | None = None):
    """Group runs (run directory, summary) by configuration; runs are named relative to root when given."""
    from dlrun.train.rundir import warn_damaged

    runs = []
    for run_dir, summary in found:
        try:
            config = yaml.safe_load((run_dir / "config.yaml").read_text())
        except OSError:  # a run without its config.yaml cannot be grouped
            continue
        except (yaml.YAMLError, ValueError):
            config = None
        if not isinstance(config, dict):
            warn_damaged(run_dir / "config.yaml", "a YAML mapping")
            continue
        runs.append((run_dir, summary, flatten(config)))
    if not runs:
        raise ConfigError(f"{source}: no runs there (a run has a summary.json and a config.yaml)")
    runs.sort(key=lambda r: r[1].get("started_at") or 0)
    if metric is None:
        monitors = Counter(s.get("monitor") for _, s, _ in runs if s.get("monitor"))
        metric = monitors.most_common(1)[0][0] if monitors else "val/loss"
    direction = direction_of(metric, known=[k for _, s, _ in runs for k in s.get("metrics", {})])

    groups: dict[str, list] = {}  # runs that differ only in keys that change nothing learned are repeats
    for run in runs:
        groups.setdefault(key_of(hyperparameters(run[2])), []).append(run)
    rows = []
    for members in groups.values():
        statuses = [s.get("status", "?") for _, s, _ in members]
        done = [(d, s, c) for d, s, c in members if s.get("status") == "completed"]
        metrics: dict[str, list[float]] = {}
        for _, s, _ in done:
            for name, value in s.get("metrics", {}).items():
                metrics.setdefault(name, []).append(value)
        first_dir, first_summary, first_config = members[0]
        rows.append(
            Row(
                params=hyperparameters(first_config),
                status="completed" if all(s == "completed" for s in statuses) else _worst(statuses),
                values=[s["metrics"][metric] for _, s, _ in done if metric in s.get("metrics", {})],
                metrics=metrics,
                seeds=[c.get("trainer.seed") for _, _, c in members],
                time_s=round(sum(s.get("wall_time_s") or 0.0 for _, s, _ in members), 3),
                runs=[str(d.relative_to(root)) if root is not None and d != root else str(d) for d, _, _ in members],
                overrides=_command_overrides(first_dir),
                reason=next((s.get("message", "") for _, s, _ in members if s.get("status") != "completed"), ""),
            )
        )
    keys = sorted({k for r in rows for k in r.params})
    return Results(source, metric, direction, sort_rows(rows, direction), varying_keys([r.params for r in rows], keys))


def _worst(statuses: list[str]) -> str:
    for status in ("failed", "diverged", "interrupted", "running", "pruned"):
        if status in statuses:
            return status
    return statuses[0]


def _command_overrides(run_dir: Path) -> list[str]:
    try:
        overrides = yaml.safe_load((run_dir / "overrides.yaml").read_text()) or []
    except (OSError, yaml.YAMLError):
        return []
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+") not in NOT_IN_COMMAND]


# ----------------------------------------------------------------------------- formats
def param_cell(row: Row, key: str) -> str:
    """A row's value of a key; "-" where its config does not have the key."""
    return cell(row.params[key]) if key in row.params else "-"


def mean_std(row: Row) -> str:
    if row.mean is None:
        return ""
    return f"{row.mean:.4f} ± {row.std:.4f}" if row.std is not None else f"{row.mean:.4f}"


def columns(results: Results) -> list[str]:
    first = "trial" if any(r.trial is not None for r in results.rows) else "run"
    return [first, *results.varying, results.metric, "seeds", "status", "time"]


def table_rows(results: Results) -> list[list[str]]:
    """The rows as strings, in the order of columns(): what the table and the markdown show."""
    out = []
    for r in results.rows:
        name = str(r.trial) if r.trial is not None else r.runs[0] + (f" (+{len(r.runs) - 1})" if r.runs[1:] else "")
        time_s = f"{r.time_s:.1f} s" if r.time_s is not None else ""
        status = r.status + (f": {r.reason}" if r.reason and r.status != "completed" else "")
        out.append(
            [name, *(param_cell(r, k) for k in results.varying), mean_std(r), str(len(r.values)), status, time_s]
        )
    return out


def to_markdown(results: Results) -> str:
    head = columns(results)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table_rows(results)]
    return "\n".join(lines) + "\n"


def to_csv(results: Results) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    first = columns(results)[0]
    metric = results.metric
    writer.writerow([first, *results.varying, f"{metric} mean", f"{metric} std", "n", "status", "time_s", "reason"])
    for r in results.rows:
        name = r.trial if r.trial is not None else ";".join(r.runs)
        writer.writerow(
            [
                name,
                *(_csv_value(r.params[k]) if k in r.params else "" for k in results.varying),
                "" if r.mean is None else r.mean,
                "" if r.std is None else r.std,
                len(r.values),
                r.status,
                "" if r.time_s is None else r.time_s,
                r.reason,
            ]
        )
    return buf.getvalue()


def _csv_value(value: Any) -> Any:
    return value if isinstance(value, float) else cell(value)  # floats keep every digit


def to_json(results: Results) -> str:
    best = results.best
    return (
        json.dumps(
            {
                "source": results.source,
                "metric": results.metric,
                "direction": results.direction,
                "varying": results.varying,
                "best": {**best.as_dict(), "command": results.command(best)} if best else None,
                "rows": [r.as_dict() for r in results.rows],
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
