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
    steps = have[0][0]
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


def conditions(run_dirs: list[Path]) -> list[tuple[str, list[Path]]]:
    """Runs grouped as `dlrun results` groups them (config.yaml less the seed), labelled by the keys that
    differ; a run without a readable config is a condition of its own."""
    from dlrun.compare import label_of
    from dlrun.sweep.results import from_found
    from dlrun.train import summary as summaries

    found = [(Path(d), summaries.read(Path(d)) or {}) for d in run_dirs]
    grouped = [(d, s) for d, s in found if (d / "config.yaml").is_file()]
    out: list[tuple[str, list[Path]]] = []
    if grouped:
        results = from_found(grouped, "runs", metric="train/loss")
        rows = sorted(results.rows, key=lambda r: min(run_dirs.index(Path(p)) for p in r.runs))
        for row in rows:
            label = label_of(row, results.varying) if len(rows) > 1 else _common_name([Path(p) for p in row.runs])
            out.append((label, [Path(p) for p in row.runs]))
    inside = {d for d, _ in grouped}
    out += [("/".join(d.resolve().parts[-2:]), [d]) for d, _ in found if d not in inside]
    return out


def _common_name(runs: list[Path]) -> str:
    if len(runs) == 1:
        return "/".join(runs[0].resolve().parts[-2:])
    parents = {r.resolve().parent for r in runs}
    return f"{next(iter(parents)).name} ({len(runs)} runs)" if len(parents) == 1 else f"{len(runs)} runs"


def _tag_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=/-]+", "_", text).strip("_") or "runs"


def write_margin_charts(group_dir: Path, run_dirs: list[Path], confidence: float = 0.95) -> Path | None:
    """<group_dir>/bands: per condition and metric, the mean over its members with the 95% interval as
    three scalars (<tag>/mean, /low, /high) and a custom-scalars layout that draws them as margin charts.
    Written again from the members' metrics.jsonl each time (a resumed group included)."""
    from torch.utils.tensorboard import SummaryWriter

    from dlrun.viz.curves import read_metrics

    out = Path(group_dir) / "bands"
    shutil.rmtree(out, ignore_errors=True)
    groups = conditions(run_dirs)
    several = len(groups) > 1
    layout: dict[str, dict[str, list]] = {}
    writer = None
    for label, dirs in groups:
        if len(dirs) < 2:
            continue
        series = [read_metrics(d) for d in dirs]
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
