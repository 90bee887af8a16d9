"""The lectures' claims as experiments: conditions x seeds -> measures -> verdicts -> a report.

An experiment file (experiments/NAME.yaml, a Hydra `@package _global_` config that `dlrun train
experiment=NAME` also runs) may carry a `claim:` block:

    claim:
      statement: XOR is not linearly separable; one hidden layer separates it
      runtime_s: 20                  # expected wall time on 2 CPU cores, at the default seeds
      seeds: [0, 1, 2]
      measure: test/acc              # or {name: spec, ...}; see `measure_value`
      conditions:                    # label -> overrides on top of the experiment
        linear: [model=linear]
        hidden: [model=mlp, "model.hidden=[8]"]
      expect: ["linear <= 0.80", "hidden >= 0.98"]
      quick: [trainer.epochs=20]     # overrides for a reduced budget (tests, --quick)

`check: NAME` instead of `conditions` runs a registered Python check (no training) that returns
{measure: value} per seed. Expectations compare `label` or `label.measure` (mean over seeds), a
number, or `k * label`, with <, <=, >, >=.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dlrun import stats
from dlrun.errors import ConfigError, suggest
from dlrun.files import atomic_write
from dlrun.registry import Registry

CHECKS: Registry[Callable[[int], dict[str, float]]] = Registry("check")
MEASURES: Registry[Callable[[Path, dict], float]] = Registry("measure")
_OPS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
_OP_TEXT = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_BY_TEXT = {text: _OPS[node] for node, text in _OP_TEXT.items()}


@dataclass
class Claim:
    name: str
    statement: str
    runtime_s: float
    seeds: list[int]
    measures: dict[str, str]  # measure name -> spec; the first is the default
    conditions: dict[str, list[str]]
    expect: list[str]
    quick: list[str] = field(default_factory=list)
    check: str | None = None
    figure: str = "bar"  # bar: the first measure per condition; curve:<tag>: that metric over steps

    @property
    def measure(self) -> str:
        return next(iter(self.measures))


# ----------------------------------------------------------------------------- loading
def experiments_dir() -> Path:
    from dlrun.config.compose import conf_dir

    return conf_dir() / "experiment"


def describe(path: Path) -> str:
    from dlrun.config.compose import _description

    return _description(path)


def load(name: str) -> Claim:
    """The claim of experiments/NAME.yaml; one-line errors for a missing file or a malformed block."""
    root = experiments_dir()
    path = root / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in root.glob("*.yaml"))
        raise ConfigError(
            f"experiment '{name}': no such file in {root};{suggest(name, names)} choose from: {', '.join(names)}"
        )
    raw = (yaml.safe_load(path.read_text()) or {}).get("claim")
    if raw is None:
        raise ConfigError(f"experiment '{name}' states no claim ({path}); train it with: dlrun train experiment={name}")
    try:
        measure = raw.get("measure", "test/acc")
        measures = dict(measure) if isinstance(measure, dict) else {str(measure): str(measure)}
        claim = Claim(
            name=name,
            statement=str(raw["statement"]),
            runtime_s=float(raw.get("runtime_s", 0)),
            seeds=[int(s) for s in raw.get("seeds", [0])],
            measures=measures,
            conditions={str(k): [str(o) for o in v] for k, v in (raw.get("conditions") or {}).items()},
            expect=[str(e) for e in raw.get("expect", [])],
            quick=[str(o) for o in raw.get("quick", [])],
            check=raw.get("check"),
            figure=str(raw.get("figure", "bar")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{path}: malformed claim block ({type(e).__name__}: {e})") from None
    if not claim.conditions and not claim.check:
        raise ConfigError(f"{path}: claim.conditions or claim.check is required")
    for text in claim.expect:
        parse_expectation(text, claim)  # fail now, not after the runs
    return claim


def listing() -> list[dict[str, Any]]:
    """Every experiment file: name, description, claim statement (or None), the runtime its file expects, and
    the wall time the committed report measured (experiments/report/NAME/results.json; None before a report)."""
    rows = []
    for path in sorted(experiments_dir().glob("*.yaml")):
        raw = (yaml.safe_load(path.read_text()) or {}).get("claim") or {}
        try:
            measured = json.loads((path.parent / "report" / path.stem / "results.json").read_text())["wall_time_s"]
        except (OSError, ValueError, KeyError, TypeError):
            measured = None
        rows.append(
            {
                "name": path.stem,
                "description": describe(path),
                "claim": raw.get("statement"),
                "runtime_s": raw.get("runtime_s"),
                "measured_s": measured,
            }
        )
    return rows


# ----------------------------------------------------------------------------- expectations
@dataclass
class Term:
    factor: float = 1.0
    label: str | None = None  # None: a plain number (factor)
    measure: str | None = None

    def text(self) -> str:
        if self.label is None:
            return f"{self.factor:g}"
        ref = self.label + (f".{self.measure}" if self.measure else "")
        return ref if self.factor == 1.0 else f"{self.factor:g} * {ref}"


def parse_expectation(text: str, claim: Claim) -> tuple[Term, Callable[[float, float], bool], str, Term]:
    """'a <= 0.8', 'adam.loss < 0.5 * sgd.loss' -> (left, op, op text, right); labels checked."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise ConfigError(f"claim '{claim.name}': cannot parse expectation '{text}'") from None
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _OPS):
        raise ConfigError(f"claim '{claim.name}': expectation '{text}' must be one comparison with <, <=, > or >=")
    left, right = _term(node.left, text, claim), _term(node.comparators[0], text, claim)
    return left, _OPS[type(node.ops[0])], _OP_TEXT[type(node.ops[0])], right


def _term(node: ast.AST, text: str, claim: Claim) -> Term:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return Term(factor=float(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return Term(factor=-float(node.operand.value))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and isinstance(node.left, ast.Constant):
        inner = _term(node.right, text, claim)
        return Term(factor=float(node.left.value) * inner.factor, label=inner.label, measure=inner.measure)
    if isinstance(node, ast.Name):
        return _ref(node.id, None, text, claim)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return _ref(node.value.id, node.attr, text, claim)
    raise ConfigError(f"claim '{claim.name}': expectation '{text}': use labels, label.measure, numbers and k * label")


def _ref(label: str, measure: str | None, text: str, claim: Claim) -> Term:
    labels = labels_of(claim)
    if label not in labels:
        raise ConfigError(
            f"claim '{claim.name}': expectation '{text}' names '{label}';{suggest(label, labels)} "
            f"labels: {', '.join(labels)}"
        )
    if measure is not None and claim.check is None and measure not in claim.measures:
        raise ConfigError(
            f"claim '{claim.name}': expectation '{text}' names measure '{measure}'; "
            f"measures: {', '.join(claim.measures)}"
        )
    return Term(label=label, measure=measure)


def labels_of(claim: Claim) -> list[str]:
    """Conditions, or for a check the names of the values it returns (read from `expect`)."""
    if claim.conditions:
        return list(claim.conditions)
    names = []
    for text in claim.expect:
        for node in ast.walk(ast.parse(text, mode="eval")):
            if isinstance(node, ast.Name) and node.id not in names:
                names.append(node.id)
    return names


# ----------------------------------------------------------------------------- measures
def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    from dlrun.train.rundir import read_metrics as records

    return [record for _, record in records(run_dir)]


def last_logged(run_dir: Path, tag: str) -> float:
    values = [r[tag] for r in read_metrics(run_dir) if tag in r]
    return float(values[-1]) if values else math.nan


def measure_value(spec: str, run_dir: Path, summary: dict) -> float:
    """A number for one run: a final metric (`test/acc`), `last:TAG` (last logged value of a scalar),
    or a registered measure (`fn:NAME`). A loss of a diverged run is +inf."""
    if spec.startswith("last:"):
        return last_logged(run_dir, spec[5:])
    if spec.startswith("fn:"):
        return float(MEASURES.get(spec[3:])(run_dir, summary))
    if summary.get("status") == "diverged" and ("loss" in spec or "mse" in spec):
        return math.inf
    value = summary.get("metrics", {}).get(spec)
    return float(value) if value is not None else math.nan


@MEASURES.register("gap")
def gap(run_dir: Path, summary: dict) -> float:
    """Train-split accuracy minus test accuracy at the end of training (the generalization gap)."""
    m = summary.get("metrics", {})
    return m.get("train_final/acc", math.nan) - m.get("test/acc", math.nan)


@MEASURES.register("grad_ratio")
def grad_ratio(run_dir: Path, summary: dict) -> float:
    """First layer's gradient norm over the last layer's, at the first diagnostics step (diag/grad_norm/*)."""
    for record in read_metrics(run_dir):
        norms = [(k, v) for k, v in record.items() if k.startswith("diag/grad_norm/")]
        if norms:
            return float(norms[0][1]) / max(float(norms[-1][1]), 1e-30)
    return math.nan


@MEASURES.register("steps_to_converge")
def steps_to_converge(run_dir: Path, summary: dict) -> float:
    """Steps until train/loss first falls below 0.1 (inf if never)."""
    for record in read_metrics(run_dir):
        loss = record.get("train/loss")
        if isinstance(loss, int | float) and loss < 0.1:
            return float(record["step"])
    return math.inf


def final_weights(run_dir: Path) -> list:
    """The weight matrices and kernels (ndim > 1) of a run's last checkpoint, first layer first."""
    from dlrun.train import checkpoint

    state = checkpoint.load(run_dir / "checkpoints" / "last.pt")["model"]
    return [t.double() for name, t in state.items() if name.endswith("weight") and t.ndim > 1]


@MEASURES.register("sparsity")
def sparsity(run_dir: Path, summary: dict) -> float:
    """Fraction of final weights with |w| < 1e-3."""
    from dlrun.regularizers import sparsity as fraction_below

    return float(fraction_below(final_weights(run_dir), 1e-3))


@MEASURES.register("weight_norm")
def weight_norm(run_dir: Path, summary: dict) -> float:
    """L2 norm of all final weights together (biases left out)."""
    return math.sqrt(sum(float(w.pow(2).sum()) for w in final_weights(run_dir)))


@MEASURES.register("distinct_units")
def distinct_units(run_dir: Path, summary: dict) -> float:
    """Distinct hidden units of the first layer after training (rows of W1 equal to 1e-6 count once)."""
    w = final_weights(run_dir)[0].flatten(1)
    distinct: list = []
    for row in w:
        if not any((row - d).abs().max() < 1e-6 for d in distinct):
            distinct.append(row)
    return float(len(distinct))


# ----------------------------------------------------------------------------- running
@dataclass
class Result:
    """Per label, per measure: the values over seeds (and the run directories behind them)."""

    claim: str
    seeds: list[int]
    values: dict[str, dict[str, list[float]]]  # label -> measure -> [value per seed]
    runs: dict[str, list[str]] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0
    machine: str = ""  # where it was measured (dlrun.machine.describe), for the times the report quotes

    def stat(self, label: str, measure: str) -> tuple[float, float]:
        """Mean and sample standard deviation over the seeds (dlrun/stats.py's: exact for equal values,
        infinite with a diverged run's loss, nan when a value is missing)."""
        e = stats.estimate(self.values[label][measure])
        return e.mean, e.std


def run(
    claim: Claim,
    seeds: list[int] | None = None,
    runs_dir: Path = Path("runs"),
    overrides: list[str] = (),
    quick: bool = False,
    on_run: Callable[[str, int, float], None] | None = None,
    into: Result | None = None,
) -> Result:
    """Train every condition at every seed (in this process) and measure each run; with `into`, add
    the seeds to an earlier result of the same claim (its overrides are used again)."""
    seeds = list(seeds if seeds is not None else claim.seeds)
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ConfigError(f"seeds {seeds}: give distinct seeds, at least one (a repeated seed repeats a run)")
    if into is not None:
        seeds = [s for s in seeds if s not in into.seeds]  # a seed the result has is not run again
    extra = into.overrides if into is not None else [*(claim.quick if quick else []), *overrides]
    from dlrun.machine import describe

    started = time.perf_counter()
    result = into or Result(claim=claim.name, seeds=[], values={}, overrides=extra)
    result.machine = describe()
    result.seeds = [*result.seeds, *seeds]
    if claim.check:
        fn = CHECKS.get(claim.check)
        for seed in seeds:
            for name, value in fn(seed).items():
                result.values.setdefault(name, {}).setdefault(claim.measure, []).append(float(value))
        result.wall_time_s += time.perf_counter() - started
        return result
    from dlrun.config import compose
    from dlrun.train import summary as summaries
    from dlrun.train import train
    from dlrun.train.state import Diverged

    for label, cond in claim.conditions.items():
        values = result.values.setdefault(label, {m: [] for m in claim.measures})
        runs = result.runs.setdefault(label, [])
        for seed in seeds:
            cfg = compose(
                [
                    f"experiment={claim.name}",
                    *cond,
                    *extra,
                    f"trainer.seed={seed}",
                    f"runs_dir={runs_dir}",
                    f"name=experiments/{claim.name}/{label}",
                    "trainer.progress=none",
                ]
            )
            try:
                summary = train(cfg)
                run_dir = Path(summary["run_dir"])
                if summary["status"] == "interrupted":  # Ctrl-C stops the claim, not only this training
                    raise KeyboardInterrupt
            except Diverged:  # a divergence is a result here (the learning-rate claim needs it); a full disk is not
                run_dir = _latest_run(runs_dir / "experiments" / claim.name / label)
                summary = summaries.read(run_dir) or {}
            for m, spec in claim.measures.items():
                values[m].append(measure_value(spec, run_dir, summary))
            runs.append(str(run_dir))
            if on_run:
                on_run(label, seed, values[claim.measure][-1])
    result.wall_time_s += time.perf_counter() - started
    return result


def settle(
    claim: Claim,
    result: Result,
    max_seeds: int,
    runs_dir: Path = Path("runs"),
    on_run: Callable[[str, int, float], None] | None = None,
    on_more: Callable[[int, list[int]], None] | None = None,
) -> bool:
    """Add seeds while an expectation is inconclusive, up to max_seeds in all: as many as the spread seen
    so far says would settle it, at least one at a time. True when every verdict is settled.

    Adding seeds until a verdict settles tests the data more than once, so the chance that a verdict
    settles on noise is somewhat above the 5% of one look; `max_seeds` bounds it."""
    while True:
        vs = verdicts(claim, result)
        if not any(v.status == INCONCLUSIVE for v in vs):
            return True
        have = len(result.seeds)
        if have >= max_seeds:
            return False
        need = seeds_to_settle(vs)
        if not math.isfinite(need) and have >= 2:  # no spread to go by (a diverged run's inf): more seeds won't tell
            return False
        target = min(max_seeds, max(have + 1, math.ceil(need) if math.isfinite(need) else have + 1))
        more = next_seeds(result, target - have)
        if on_more:
            on_more(have, more)
        run(claim, more, runs_dir, on_run=on_run, into=result)


def next_seeds(result: Result, count: int) -> list[int]:
    """`count` seeds that the result does not have yet, after its largest."""
    start = max(result.seeds, default=-1) + 1
    return list(range(start, start + count))


def _latest_run(folder: Path) -> Path:
    return max((p for p in folder.iterdir() if (p / "summary.json").is_file()), key=lambda p: p.stat().st_mtime)


# ----------------------------------------------------------------------------- verdicts
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


@dataclass
class Verdict:
    """An expectation `left op right`, judged on the 95% interval of left - right (Welch's for two
    conditions, Student's t for one against a number): `holds` when the whole interval satisfies it,
    `does not hold` when none of it does, `inconclusive` when it straddles 0 (the threshold)."""

    expectation: str
    measured: str
    status: str  # holds, does not hold, inconclusive
    interval: stats.Interval  # of left - right
    seeds: int
    settle_at: float = math.inf  # seeds at which the spread seen so far would settle an inconclusive one
    delta: float = math.nan  # left - right, from the means
    op: str = "<"

    @property
    def holds(self) -> bool:
        return self.status == HOLDS

    @property
    def means_agree(self) -> bool:
        """Whether the means alone point the way the expectation says (what a verdict without spread was)."""
        return not math.isnan(self.delta) and _BY_TEXT[self.op](self.delta, 0.0)

    @property
    def text(self) -> str:
        return f"inconclusive at {self.seeds} seeds" if self.status == INCONCLUSIVE else self.status

    @property
    def interval_text(self) -> str:
        return "" if math.isnan(self.interval.low) else self.interval.text()


def verdicts(claim: Claim, result: Result) -> list[Verdict]:
    out = []
    for text in claim.expect:
        left, op, op_text, right = parse_expectation(text, claim)
        lvals, rvals = _values(left, claim, result), _values(right, claim, result)
        interval, settle = _difference(left, lvals, right, rvals)
        if math.isnan(interval.low) or math.isnan(interval.high):
            status = FAILS  # a value is missing: a run failed or a measure could not be taken
        else:
            below = op_text.startswith("<")  # the expectation asks left - right to be below 0
            inner, outer = (interval.high, interval.low) if below else (interval.low, interval.high)
            status = HOLDS if op(inner, 0.0) else FAILS if not op(outer, 0.0) else INCONCLUSIVE
        parts, means = [], []
        for t in (left, right):
            if t.label is None:
                means.append(t.factor)
                continue
            mean, std = result.stat(t.label, t.measure or claim.measure)
            means.append(t.factor * mean)
            parts.append(_show(t, t.factor * mean, abs(t.factor) * std))
        with np.errstate(invalid="ignore"):
            delta = float(np.float64(means[0]) - np.float64(means[1]))
        out.append(Verdict(text, "; ".join(parts), status, interval, len(result.seeds), settle, delta, op_text))
    return out


def _values(term: Term, claim: Claim, result: Result) -> list[float] | None:
    """The term's value per seed (factor included), or None for a plain number."""
    if term.label is None:
        return None
    measure = term.measure or claim.measure
    values = result.values.get(term.label, {}).get(measure)
    if values is None:  # a check that does not return this value, or results of an older claim file
        have = ", ".join(f"{k}.{m}" for k, ms in result.values.items() for m in ms)
        raise ConfigError(
            f"claim '{claim.name}': no values of {term.label}.{measure} in its results (they have: {have}); "
            "fix the expectation, or run the claim again (--rerun)"
        )
    return [term.factor * v for v in values]


def _difference(left: Term, lvals, right: Term, rvals) -> tuple[stats.Interval, float]:
    """The interval of left - right and the seeds that would settle it at the spread seen so far."""
    if lvals is None and rvals is None:
        d = left.factor - right.factor
        return stats.Interval(d, d, "point"), math.inf
    if rvals is None or lvals is None:
        vals, const, sign = (lvals, right.factor, 1.0) if rvals is None else (rvals, left.factor, -1.0)
        e = stats.estimate(vals)
        with np.errstate(invalid="ignore"):
            ends = sorted(float(sign * (np.float64(x) - const)) for x in (e.interval.low, e.interval.high))
        return stats.Interval(*ends, e.interval.method), stats.seeds_to_separate(None, vals, e.mean - const)
    interval = stats.welch_interval(rvals, lvals)
    delta = statistics.fmean(lvals) - statistics.fmean(rvals) if interval.method == "welch" else math.nan
    return interval, stats.seeds_to_separate(rvals, lvals, delta)


def _show(term: Term, value: float, std: float) -> str:
    ref = term.label + (f".{term.measure}" if term.measure else "")
    if term.factor != 1.0:
        ref = f"{term.factor:g} * {ref}"
    return f"{ref} = {fmt(value)}" + (f" ± {fmt(std)}" if std == std and std > 0 else "")


def fmt(v: float) -> str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4g}"


def table_rows(claim: Claim, result: Result) -> list[tuple[str, list[str]]]:
    """(label, ['mean ± std' per measure]) for every condition (or every value of a check)."""
    measures = [claim.measure] if claim.check else list(claim.measures)
    rows = []
    for label in result.values:
        cells = []
        for m in measures:
            mean, std = result.stat(label, m)
            cells.append(fmt(mean) + (f" ± {fmt(std)}" if std == std and std > 0 else ""))
        rows.append((label, cells))
    return rows


def holds(claim: Claim, result: Result) -> bool:
    return all(v.holds for v in verdicts(claim, result))


def overall(vs: list[Verdict]) -> str:
    """The claim's verdict: `does not hold` if any expectation fails, `inconclusive at N seeds` if any is
    unsettled, else `holds`."""
    if any(v.status == FAILS for v in vs):
        return FAILS
    unsettled = [v for v in vs if v.status == INCONCLUSIVE]
    return unsettled[0].text if unsettled else HOLDS


def seeds_to_settle(vs: list[Verdict]) -> float:
    """The most seeds any inconclusive expectation would need at the spread seen so far (inf: unknown)."""
    return max((v.settle_at for v in vs if v.status == INCONCLUSIVE), default=0.0)


# ----------------------------------------------------------------------------- storing and reporting
def save(result: Result, path: Path) -> None:
    atomic_write(path, json.dumps(asdict(result), indent=2, default=str))


def load_result(path: Path) -> Result | None:
    if not path.is_file():
        return None
    try:
        return Result(**json.loads(path.read_text()))
    except (ValueError, TypeError):  # not JSON, or not an object of Result's fields
        raise ConfigError(f"{path}: damaged (not a claim's results); run the claim again with --rerun") from None


def figure(claim: Claim, result: Result, path: Path) -> Path:
    """One summary figure: the first measure per condition (mean ± std over seeds, seeds as dots),
    or for `figure: curve:TAG` that metric over steps per condition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    if claim.figure.startswith("curve:") and result.runs:
        from dlrun.bands import band
        from dlrun.bands import read_series as series_of

        tag = claim.figure[6:]
        for k, (label, run_dirs) in enumerate(result.runs.items()):
            b = band([series_of(Path(d)) for d in run_dirs], tag, "ci")
            if b is not None:
                ax.plot(b.steps, b.mean, color=f"C{k}", alpha=0.9, label=label)
                if b.n > 1:
                    ax.fill_between(b.steps, b.low, b.high, color=f"C{k}", alpha=0.2, lw=0)
        ax.set_xlabel("step")
        ax.set_ylabel(f"{tag} (mean, 95% interval over seeds)")
        if tag.endswith("loss"):
            ax.set_yscale("log")
            starts = [line.get_ydata()[0] for line in ax.get_lines()]
            if starts:  # a diverging run would flatten every other curve: clip it, and say so
                top = 30 * max(starts) if min(starts) > 0 else None
                if top and ax.get_ylim()[1] > top:
                    ax.set_ylim(top=top)
                    ax.text(
                        0.98,
                        0.95,
                        "curves above the top diverged",
                        transform=ax.transAxes,
                        ha="right",
                        va="top",
                        fontsize=8,
                        color="red",
                    )
        ax.legend(fontsize=8)
    else:
        labels = list(result.values)
        estimates = [stats.estimate(result.values[lbl][claim.measure]) for lbl in labels]
        means = [e.mean for e in estimates]
        finite = [m if math.isfinite(m) else 0.0 for m in means]
        err = [
            [m - e.interval.low, e.interval.high - m] if math.isfinite(m) and e.interval.method == "t" else [0, 0]
            for m, e in zip(finite, estimates, strict=True)
        ]
        ax.bar(range(len(labels)), finite, yerr=np.array(err).T, color="#8fb3d9", capsize=4)
        _thresholds(ax, claim, labels)
        for i, lbl in enumerate(labels):
            vals = [v for v in result.values[lbl][claim.measure] if math.isfinite(v)]
            ax.plot([i] * len(vals), vals, "k.", ms=4)
            if not math.isfinite(means[i]):
                ax.annotate(fmt(means[i]), (i, 0), ha="center", va="bottom", color="red")
        ax.set_xticks(range(len(labels)), labels, rotation=20 if len(labels) > 4 else 0, fontsize=8)
        spec = claim.measures[claim.measure]
        ax.set_ylabel(
            (claim.measure if claim.measure == spec else f"{claim.measure} ({spec})") + ", mean and 95% interval"
        )
        if all(m > 0 for m in finite) and max(finite) / max(min(finite), 1e-300) > 1e3:
            ax.set_yscale("log")
    ax.set_title(f"{claim.name}: {claim.statement}", fontsize=9, wrap=True)
    fig.tight_layout()
    from dlrun.files import atomic_file

    with atomic_file(path) as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return path


def _thresholds(ax, claim: Claim, labels: list[str]) -> None:
    """Over each bar, the number its condition is expected to beat (`label op number`) as a dashed line."""
    for text in claim.expect:
        left, _, op_text, right = parse_expectation(text, claim)
        for term, other, op in ((left, right, op_text), (right, left, _FLIP[op_text])):
            if term.label in labels and other.label is None and (term.measure or claim.measure) == claim.measure:
                i, y = labels.index(term.label), other.factor / term.factor
                ax.hlines(y, i - 0.4, i + 0.4, colors="red", linestyles="--", lw=1)
                ax.annotate(f"{op} {y:g}", (i + 0.4, y), fontsize=7, color="red", va="bottom", ha="right")


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


def report(entries: list[tuple[Claim, Result, Path]], path: Path) -> Path:
    """report.md: a verdict table of every claim, then per claim its statement, table and figure."""
    lines = ["# dlrun: the lectures' claims, measured", ""]
    lines += [
        "Each expectation is judged on the 95% interval of its left side minus its right side (Welch's "
        "interval for two conditions, Student's t for a condition against a number): it **holds** when the "
        "whole interval is on the expected side of 0, **does not hold** when none of it is, and is "
        "**inconclusive** at its seeds when the interval straddles 0.",
        "",
    ]
    machines = sorted({result.machine or "not recorded" for _, result, _ in entries})
    lines += [f"Measured with `make reproduce` on: {'; '.join(machines)}.", ""]
    lines += ["| experiment | claim | verdict | seeds | wall time |", "|---|---|---|---|---|"]
    for claim, result, _ in entries:
        verdict = overall(verdicts(claim, result))
        lines.append(
            f"| [{claim.name}](#{claim.name}) | {claim.statement} | **{verdict}** "
            f"| {', '.join(map(str, result.seeds))} | {result.wall_time_s:.0f} s |"
        )
    for claim, result, fig_path in entries:
        lines += ["", f"## {claim.name}", "", claim.statement, ""]
        cmd = f"dlrun experiment run {claim.name}" + (
            f" --seeds {','.join(map(str, result.seeds))}" if result.seeds != claim.seeds else ""
        )
        lines += [f"`{cmd}`" + (f" with `{' '.join(result.overrides)}`" if result.overrides else ""), ""]
        lines += ["| condition | " + " | ".join(claim.measures) + " |", "|---" * (len(claim.measures) + 1) + "|"]
        for label, cells in table_rows(claim, result):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", "| expectation | measured (mean ± std) | 95% interval of left − right | verdict |"]
        lines += ["|---|---|---|---|"]
        for v in verdicts(claim, result):
            lines.append(f"| `{v.expectation}` | {v.measured} | {v.interval_text} | {v.text} |")
        lines += ["", f"![{claim.name}]({fig_path.relative_to(path.parent).as_posix()})"]
    atomic_write(path, "\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------- checks (no training)
@CHECKS.register("convolution_facts")
def convolution_facts(seed: int) -> dict[str, float]:
    """Convolution as a Toeplitz (doubly block-Toeplitz in 2-D) matrix product; shift equivariance of
    convolution and shift invariance of max pooling, on the digits images (float64).

    toeplitz_err_1d / _2d: max |conv(x) - T x| over a batch; equivariance_err: max |conv(shift x) -
    shift(conv x)| with circular padding; conv_changed / pool_changed: fraction of outputs that
    change under a one-pixel (circular) shift, after a convolution and after a global max pooling.
    """
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    g = torch.Generator().manual_seed(seed)
    x2 = torch.tensor(load_digits().images[:64], dtype=torch.float64).unsqueeze(1) / 16  # (64, 1, 8, 8)
    k2 = torch.randn(4, 1, 3, 3, generator=g, dtype=torch.float64)
    x1 = x2.flatten(2)  # (64, 1, 64): each image as a 1-D signal
    k1 = torch.randn(4, 1, 5, generator=g, dtype=torch.float64)

    t1 = toeplitz_1d(k1, x1.shape[-1])  # (4 * 60, 64)
    err1 = (F.conv1d(x1, k1).flatten(1) - x1.flatten(1) @ t1.T).abs().max()
    t2 = toeplitz_2d(k2, x2.shape[-2:])
    err2 = (F.conv2d(x2, k2).flatten(1) - x2.flatten(1) @ t2.T).abs().max()

    def conv(x):  # circular padding: exact equivariance to circular shifts
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), k2)

    def shift(x):
        return torch.roll(x, shifts=1, dims=-1)

    equivariance = (conv(shift(x2)) - shift(conv(x2))).abs().max()
    changed = lambda a, b: ((a - b).abs() > 1e-9).double().mean()  # noqa: E731
    conv_changed = changed(conv(shift(x2)), conv(x2))
    pool = lambda x: conv(x).amax(dim=(-2, -1))  # noqa: E731
    pool_changed = changed(pool(shift(x2)), pool(x2))
    return {
        "toeplitz_err_1d": err1.item(),
        "toeplitz_err_2d": err2.item(),
        "equivariance_err": equivariance.item(),
        "conv_changed": conv_changed.item(),
        "pool_changed": pool_changed.item(),
    }


def toeplitz_1d(kernel, n: int):
    """The matrix T with conv1d(x, kernel) = T x (valid padding, stride 1): row (c, i) holds kernel c at i."""
    import torch

    c_out, c_in, f = kernel.shape
    m = n - f + 1
    t = torch.zeros(c_out, m, c_in, n, dtype=kernel.dtype)
    for i in range(m):
        t[:, i, :, i : i + f] = kernel
    return t.reshape(c_out * m, c_in * n)


def toeplitz_2d(kernel, size):
    """The doubly block-Toeplitz matrix T with conv2d(x, kernel) = T vec(x) (valid padding, stride 1)."""
    import torch

    c_out, c_in, fh, fw = kernel.shape
    h, w = size
    mh, mw = h - fh + 1, w - fw + 1
    t = torch.zeros(c_out, mh, mw, c_in, h, w, dtype=kernel.dtype)
    for i in range(mh):
        for j in range(mw):
            t[:, i, j, :, i : i + fh, j : j + fw] = kernel
    return t.reshape(c_out * mh * mw, c_in * h * w)


@CHECKS.register("pooling_invariance")
def pooling_invariance(seed: int) -> dict[str, float]:
    """How much a small rotation (10 degrees) or scaling (1.15x) of the digits, upsampled to 32x32, changes a
    layer of 8 random 5x5 convolutions with ReLU (conv_*), and the same after 4x4 max pooling (pool_*): the
    relative change ||f(T x) - f(x)|| / ||f(x)|| over 256 images. Pooling keeps the strongest response of each
    window wherever in it the response moved, so it changes less, but not zero: the invariance is partial."""
    import math

    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    g = torch.Generator().manual_seed(seed)
    x = torch.tensor(load_digits().images[:256], dtype=torch.float64).unsqueeze(1) / 16
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    kernels = torch.randn(8, 1, 5, 5, generator=g, dtype=torch.float64)

    def warp(x, angle: float, scale: float):
        a = math.radians(angle)
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=x.dtype) / scale
        grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)

    def conv(x):
        return torch.relu(F.conv2d(x, kernels, padding=2))

    def change(f, t):
        return ((f(t) - f(x)).flatten(1).norm(dim=1) / f(x).flatten(1).norm(dim=1).clamp_min(1e-12)).mean().item()

    pool = lambda x: F.max_pool2d(conv(x), 4)  # noqa: E731
    rotated, scaled = warp(x, 10.0, 1.0), warp(x, 0.0, 1.15)
    return {
        "conv_rotation": change(conv, rotated),
        "pool_rotation": change(pool, rotated),
        "conv_scaling": change(conv, scaled),
        "pool_scaling": change(pool, scaled),
    }


@CHECKS.register("threshold_units")
def threshold_units(seed: int) -> dict[str, float]:
    """Whether one McCulloch-Pitts unit computes AND, OR, NOT, NAND and XOR (1 or 0), decided exactly by a
    linear program (dlrun/neuron.py); the seed does not enter: the answer is the same at every seed."""
    from dlrun.neuron import GATES, gate_table, separable

    return {name: float(separable(gate_table(name))) for name in GATES}
