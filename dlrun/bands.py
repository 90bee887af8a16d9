"""Curves over seeds: runs grouped into conditions, each metric's mean per step with a band (the standard
deviation, or the 95% interval of the mean), for `dlrun viz curves`, the claims' curve figures and a
group's TensorBoard margin charts (`<group>/bands`, under CUSTOM SCALARS).
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlrun.errors import ConfigError

BANDS = ("ci", "std", "none")
NOT_BANDED = ("epoch", "lr", "perf/")  # the same in every run, or the machine's speed: no band to draw
Series = dict[str, tuple[np.ndarray, np.ndarray]]  # metric -> (steps, values)


@dataclass
class Band:
    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: int  # runs behind each point


def band(runs: list[Series], tag: str, kind: str = "ci", confidence: float = 0.95) -> Band | None:
    """The mean of `tag` over runs at the steps every run logged it, with mean ± std (`std`) or Student's t
    interval of the mean (`ci`); one run gives a band of no width. None when no run has the tag."""
    if kind not in BANDS:
        raise ConfigError(f"--band {kind}: unknown; choose from: {', '.join(BANDS)}")
    have = [s[tag] for s in runs if tag in s]
    if not have:
        return None
    steps = np.unique(have[0][0])  # a resumed run logs some steps twice
    for st, _ in have[1:]:
        steps = np.intersect1d(steps, st)
    if steps.size == 0:
        return None
    rows = []
    for st, vals in have:
        last = {int(s): v for s, v in zip(st, vals, strict=True)}  # a resumed run logs a step again: the last counts
        rows.append([last[int(s)] for s in steps])
    values = np.asarray(rows, dtype=float)
    mean = values.mean(axis=0)
    n = values.shape[0]
    if n < 2 or kind == "none":
        return Band(steps, mean, mean, mean, n)
    std = values.std(axis=0, ddof=1)
    if kind == "std":
        half = std
    else:
        from scipy import stats

        half = stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    return Band(steps, mean, mean - half, mean + half, n)


def read_series(run_dir: Path) -> Series:
    """Every numeric metric of a run's metrics.jsonl as (steps, values); non-finite values ('nan') are dropped."""
    from dlrun.files import read_jsonl

    if not (Path(run_dir) / "metrics.jsonl").is_file():
        raise ConfigError(f"{run_dir}: no metrics.jsonl there; give run directories (see `dlrun runs`)")
    points: dict[str, list[tuple[int, float]]] = {}
    for _, record in read_jsonl(Path(run_dir) / "metrics.jsonl"):  # a line cut short by a kill is left out
        step = record.get("step", 0)
        for key, value in record.items():
            if key in ("step", "time") or not isinstance(value, int | float) or not math.isfinite(value):
                continue
            points.setdefault(key, []).append((step, float(value)))
    return {k: (np.array([s for s, _ in v]), np.array([x for _, x in v])) for k, v in points.items()}


def conditions(run_dirs: list[Path]) -> list[tuple[str, list[Path]]]:
    """Runs grouped as `dlrun results` groups them (config.yaml less the seed), in the order given, labelled
    by the keys that differ; a run without a readable config is a condition of its own."""
    from dlrun.grouping import hyperparameters, key_of, label, run_config, varying_keys

    groups: dict[str, tuple[dict, list[Path]]] = {}
    for d in map(Path, run_dirs):
        flat = run_config(d)
        params = hyperparameters(flat) if flat is not None else {"run": str(d)}
        groups.setdefault(key_of(params), (params, []))[1].append(d)
    params = [p for p, _ in groups.values()]
    varying = varying_keys(params, sorted({k for p in params for k in p}))
    out = []
    for p, dirs in groups.values():
        name = "/".join(dirs[0].resolve().parts[-2:]) if len(dirs) == 1 else _common_name(dirs)
        out.append((label(p, varying) if len(groups) > 1 and "run" not in p else name, dirs))
    return out


def _common_name(runs: list[Path]) -> str:
    parents = {r.resolve().parent for r in runs}
    return f"{next(iter(parents)).name} ({len(runs)} runs)" if len(parents) == 1 else f"{len(runs)} runs"


def _tag_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=/-]+", "_", text).strip("_") or "runs"


def write_margin_charts(group_dir: Path, run_dirs: list[Path], confidence: float = 0.95) -> Path | None:
    """<group_dir>/bands: per condition and metric, the mean over its members with the 95% interval as
    three scalars (<tag>/mean, /low, /high) and a custom-scalars layout that draws them as margin charts.
    Written again from the members' metrics.jsonl each time (a resumed group included)."""
    from torch.utils.tensorboard import SummaryWriter

    out = Path(group_dir) / "bands"
    shutil.rmtree(out, ignore_errors=True)
    groups = conditions(run_dirs)
    several = len(groups) > 1
    layout: dict[str, dict[str, list]] = {}
    writer = None
    for label, dirs in groups:
        if len(dirs) < 2:
            continue
        series = [read_series(d) for d in dirs]
        tags = sorted(t for t in set.intersection(*(set(s) for s in series)) if not t.startswith(NOT_BANDED))
        category = f"{label}: " if several else ""
        category += f"mean and {confidence:.0%} interval over {len(dirs)} runs"
        for tag in tags:
            b = band(series, tag, "ci", confidence)
            if b is None:
                continue
            writer = writer or SummaryWriter(log_dir=str(out))
            base = f"{_tag_part(label)}/{tag}" if several else tag
            for step, m, lo, hi in zip(b.steps, b.mean, b.low, b.high, strict=True):
                writer.add_scalar(f"{base}/mean", float(m), int(step))
                writer.add_scalar(f"{base}/low", float(lo), int(step))
                writer.add_scalar(f"{base}/high", float(hi), int(step))
            layout.setdefault(category, {})[tag] = ["Margin", [f"{base}/mean", f"{base}/low", f"{base}/high"]]
    if writer is None:
        return None
    writer.add_custom_scalars(layout)
    writer.close()
    return out
