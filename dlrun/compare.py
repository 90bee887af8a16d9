"""`dlrun compare`: conditions (runs grouped by what differs between them), each with its mean and
interval over seeds, and pairs of conditions with the difference, its interval, a p-value, an effect
size and the seeds that would detect it (the statistics are dlrun/stats.py's).

Runs are grouped as `dlrun results` groups them: by their config.yaml, every key but the seed (and
keys that do not change a result); a sweep's conditions are its trials, each with its seeds.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlrun import stats
from dlrun.errors import ConfigError
from dlrun.grouping import label
from dlrun.sweep.results import Results, Row, collect, from_found

PAIRINGS = ("best", "all")


@dataclass
class Condition:
    label: str
    row: Row
    estimate: stats.Estimate
    values: list[float]  # the metric per seed, as compared

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "params": self.row.params,
            "values": self.row.values,
            "seeds": self.row.seeds,
            "runs": self.row.runs,
            **self.estimate.as_dict(),
        }


@dataclass
class Pair:
    a: int  # indices into Comparison.conditions
    b: int
    difference: stats.Difference
    verdict: str  # "b better", "b worse", "no difference", "inconclusive at N+M seeds"


@dataclass
class Comparison:
    source: str
    metric: str
    direction: str
    confidence: float
    interval: str  # t or bootstrap: the conditions' intervals
    conditions: list[Condition]
    pairs: list[Pair]
    left_out: list[str]  # conditions without a value of the metric (failed runs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "metric": self.metric,
            "direction": self.direction,
            "confidence": self.confidence,
            "interval": self.interval,
            "conditions": [c.as_dict() for c in self.conditions],
            "pairs": [
                {
                    "a": self.conditions[p.a].label,
                    "b": self.conditions[p.b].label,
                    **p.difference.as_dict(),
                    "verdict": p.verdict,
                }
                for p in self.pairs
            ],
            "left_out": self.left_out,
        }


def gather(paths: list[Path], metric: str | None = None) -> Results:
    """One sweep directory, or runs: run directories, groups and folders of runs, grouped together."""
    from dlrun.train.summary import find_runs

    paths = [Path(p) for p in paths]
    for path in paths:
        if not path.is_dir():
            raise ConfigError(f"{path}: no such directory; give run directories, folders of runs or a sweep")
    sweeps = [p for p in paths if (p / "sweep.yaml").is_file()]
    if sweeps:
        if len(paths) > 1:
            raise ConfigError(f"{sweeps[0]}: a sweep is compared on its own; give it as the only folder")
        return collect(sweeps[0], metric)
    found, seen = [], set()
    for path in paths:
        for run_dir, summary in find_runs(path):
            if run_dir.resolve() not in seen:
                seen.add(run_dir.resolve())
                found.append((run_dir, summary))
    root = paths[0] if len(paths) == 1 else None
    return from_found(found, ", ".join(map(str, paths)), metric, root)


def label_of(row: Row, varying: list[str]) -> str:
    if varying:
        return label(row.params, varying)
    return str(row.trial) if row.trial is not None else row.runs[0]


def compare(
    paths: list[Path],
    metric: str | None = None,
    pairs: str = "best",
    interval: str = "t",
    test: str = "auto",
    confidence: float = stats.CONFIDENCE,
) -> Comparison:
    """The conditions under paths and their pairs: the best against each other one, or all pairs."""
    if pairs not in PAIRINGS:
        raise ConfigError(f"--pairs {pairs}: unknown; choose from: {', '.join(PAIRINGS)}")
    if interval not in stats.INTERVALS:
        raise ConfigError(f"--interval {interval}: unknown; choose from: {', '.join(stats.INTERVALS)}")
    if test not in stats.TESTS:
        raise ConfigError(f"--test {test}: unknown; choose from: {', '.join(stats.TESTS)}")
    if not 0 < confidence < 1:
        raise ConfigError(f"--confidence {confidence}: give a level between 0 and 1, e.g. 0.95")
    results = gather(paths, metric)
    conditions, left_out = [], []
    for row in results.rows:
        label = label_of(row, results.varying)
        values = [float(v) for v in row.values if v is not None]
        if not values:
            left_out.append(f"{label} ({row.status})")
            continue
        conditions.append(Condition(label, row, stats.estimate(values, confidence, interval), values))
    if not conditions:
        raise ConfigError(f"{results.source}: no run has a value of {results.metric}; give --metric")
    index_pairs = (
        [(0, j) for j in range(1, len(conditions))]
        if pairs == "best"
        else [(i, j) for i in range(len(conditions)) for j in range(i + 1, len(conditions))]
    )
    out = []
    for i, j in index_pairs:
        a, b = conditions[i].values, conditions[j].values
        d = stats.difference(a, b, confidence, test)
        out.append(Pair(i, j, d, _verdict(d, results.direction, len(a), len(b), 1 - confidence)))
    return Comparison(
        results.source, results.metric, results.direction, confidence, interval, conditions, out, left_out
    )


def _verdict(d: stats.Difference, direction: str, na: int, nb: int, alpha: float) -> str:
    """Decided when the interval leaves out 0 and the printed test agrees (p < alpha, where it has one):
    with 3 seeds a side a permutation test cannot go below p = 0.1, and then the verdict waits too."""
    low, high = d.interval.low, d.interval.high
    if d.interval.method == "point" and low == high == 0:
        return "no difference"
    if math.isnan(low) or math.isnan(high) or low <= 0 <= high or (d.p == d.p and d.p >= alpha):
        return f"inconclusive at {na}+{nb} seeds"
    higher = low > 0
    return "b better" if higher == (direction == "maximize") else "b worse"


# ----------------------------------------------------------------------------- formats
def num(x: float, digits: int = 4) -> str:
    if isinstance(x, float) and math.isnan(x):
        return ""
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def p_text(p: float) -> str:
    if math.isnan(p):
        return ""
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def condition_rows(c: Comparison) -> list[list[str]]:
    """condition, n, mean, std, interval: what the first table shows."""
    return [
        [k.label, str(k.estimate.n), num(k.estimate.mean), num(k.estimate.std), k.estimate.interval.text()]
        for k in c.conditions
    ]


def pair_rows(c: Comparison) -> list[list[str]]:
    """a, b, b - a, its interval, p (test), d, seeds for 80% power, verdict: what the second table shows."""
    rows = []
    for p in c.pairs:
        d = p.difference
        needed = (
            "" if math.isnan(d.seeds_needed) else "never" if math.isinf(d.seeds_needed) else f"{d.seeds_needed:.0f}"
        )
        rows.append(
            [
                c.conditions[p.a].label,
                c.conditions[p.b].label,
                num(d.delta),
                d.interval.text(),
                f"{p_text(d.p)} ({d.test})" if not math.isnan(d.p) else "",
                num(d.d, 3),
                needed,
                p.verdict,
            ]
        )
    return rows


CONDITION_COLUMNS = ("condition", "n", "mean", "std", "interval")
PAIR_COLUMNS = ("a", "b", "b - a", "interval", "p", "d", "seeds for 80% power", "verdict")


def to_csv(c: Comparison) -> str:
    """One line per condition, then one per pair; a `kind` column says which (numbers keep every digit)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["kind", "a", "b", "n", "mean", "std", "low", "high", "p", "test", "d", "seeds_needed", "verdict"])
    for k in c.conditions:
        e = k.estimate
        w.writerow(["condition", k.label, "", e.n, e.mean, e.std, e.interval.low, e.interval.high, "", "", "", "", ""])
    for p in c.pairs:
        d = p.difference
        w.writerow(
            [
                "pair",
                c.conditions[p.a].label,
                c.conditions[p.b].label,
                "",
                d.delta,
                "",
                d.interval.low,
                d.interval.high,
                d.p,
                d.test,
                d.d,
                d.seeds_needed,
                p.verdict,
            ]
        )
    return buf.getvalue()


def to_json(c: Comparison) -> str:
    def clean(x):  # JSON has no inf or nan: they are written as strings
        if isinstance(x, float) and not math.isfinite(x):
            return str(x)
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(c.as_dict()), indent=2, default=str) + "\n"
