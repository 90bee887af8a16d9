"""Runs as conditions: flat configs, the keys that differ between them, and repeats of one configuration.

A leaf module (yaml, json and the option declarations only), so that results, compare, the curves' bands
and a group's margin charts share one definition of "the same configuration but the seed".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}; lists stay lists."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for k, v in node.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def varying_keys(params: list[dict[str, Any]], keys: list[str]) -> list[str]:
    """The keys whose values differ between configurations, less those that only follow another: a key
    missing from some (`optim.beta1` of an Adam run beside SGD runs) whose value is fixed by a key that
    every configuration has (`optim.name`) says nothing that key does not, and would be a column of blanks."""

    def value(p: dict[str, Any], key: str) -> str:
        return json.dumps(p[key], default=str) if key in p else "\0missing"

    vary = [k for k in keys if len({value(p, k) for p in params}) > 1]
    complete = [k for k in vary if all(k in p for p in params)]

    def follows(key: str, leader: str) -> bool:
        seen: dict[str, str] = {}
        return all(seen.setdefault(value(p, leader), value(p, key)) == value(p, key) for p in params)

    return [k for k in vary if k in complete or not any(follows(k, j) for j in complete if j != k)]


def hyperparameters(flat: dict[str, Any]) -> dict[str, Any]:
    """A flat config less the keys that do not change what a run learns (the seed, threads, progress)."""
    from dlrun.options import not_hyperparameters

    skip = not_hyperparameters()
    return {k: v for k, v in flat.items() if k not in skip}


def key_of(params: dict[str, Any]) -> str:
    """One string per configuration: runs with equal keys are repeats."""
    return json.dumps(params, sort_keys=True, default=str)


def cell(value: Any) -> str:
    """A value as a table shows it: 0.003162 for a float, [16] for a list."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    return "null" if value is None else str(value)


def label(params: dict[str, Any], varying: list[str]) -> str:
    """`optim.lr=0.01, optim.name=adam`: a configuration by the keys that set it apart ("-": it lacks the key)."""
    return ", ".join(f"{k}={cell(params[k]) if k in params else '-'}" for k in varying)


def run_config(run_dir: Path) -> dict[str, Any] | None:
    """A run's config.yaml, flat; None when it is missing or not a mapping."""
    try:
        config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    except (OSError, yaml.YAMLError, ValueError):
        return None
    return flatten(config) if isinstance(config, dict) else None
