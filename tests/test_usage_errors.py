"""Usage mistakes: each is one `error:` line and exit status 2, says what to write instead, and writes nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = {p.stem for p in (ROOT / "experiments").glob("*.yaml")}


def run_in(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m dlrun ARGS...` in `cwd`, where a run would write its runs/ folder."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "dlrun", *args], cwd=cwd, env=env, capture_output=True, text=True)


def finished_run(root: Path) -> None:
    """A folder with one completed run (summary.json and config.yaml), for `dlrun results`."""
    run = root / "mlp-digits" / "2026-01-01_12-00-00"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"status": "completed", "metrics": {"val/acc": 0.9}}))
    (run / "config.yaml").write_text("model:\n  name: mlp\n")


CASES = [
    (["viz", "nosuch"], ["dlrun viz nosuch: no such command", "choose from:", "landscape", "curves"]),
    (["viz", "landscap"], ["did you mean 'landscape'?"]),
    (["trian"], ["dlrun trian: no such command", "did you mean 'train'?"]),
    (["sweep", "--trials", "abc"], ["dlrun sweep --trials abc:", "integer", "try: dlrun sweep --help"]),
    (["sweep", "--seeds"], ["dlrun sweep: option '--seeds' requires an argument", "try: dlrun sweep --help"]),
    (["runs", "a", "b"], ["dlrun runs:", "extra argument", "(b)", "try: dlrun runs --help"]),
    (["runs", "--formt", "csv"], ["dlrun runs --formt: no such option", "did you mean --format?"]),
    (["viz", "landscape"], ["dlrun viz landscape: missing argument", "try: dlrun viz landscape --help"]),
    (["train", "~model"], ["~model:", "model=NAME", "lenet5", "mlp", "resnet20"]),
    (["train", "model="], ["model=: no option given", "lenet5", "mlp", "resnet20"]),
    (["train", "model=null"], ["model=null:", "model=NAME", "lenet5", "mlp"]),
    (["train", "--epochs", "3"], ["--epochs 3: overrides are key=value", "write trainer.epochs=3"]),
    (["train", "--epochs=3"], ["write trainer.epochs=3"]),
    (["train", "--model", "cnn"], ["write model=cnn"]),
    (["train", "--seed", "1"], ["write one of: data.seed=1, trainer.seed=1"]),
    (["train", "model.hidden=[64,", "64]"], ["model.hidden=[64, 64]:", "quote it: 'model.hidden=[64,64]'"]),
    (["train", "foo"], ["foo: not an override", "key=value"]),
    (["results", "done", "--metric", "nosuch"], ["--metric nosuch:", "val/acc"]),
]


@pytest.mark.parametrize(("args", "must_contain"), CASES, ids=[" ".join(args) for args, _ in CASES])
def test_usage_error_is_one_line(args, must_contain, tmp_path):
    finished_run(tmp_path / "done")
    before = sorted(tmp_path.rglob("*"))
    result = run_in(tmp_path, *args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    for part in must_contain:
        assert part in lines[0], (part, lines[0])
    assert "Traceback" not in result.stderr and "Usage:" not in result.stderr and "╭" not in result.stderr
    assert "--direction" not in lines[0]  # only `dlrun sweep` has it
    assert sorted(tmp_path.rglob("*")) == before  # no runs/ folder, nothing half-started


def test_a_quoted_value_with_spaces_composes(tmp_path):
    result = run_in(tmp_path, "config", "model.hidden=[64, 64]")
    assert result.returncode == 0, result.stderr
    assert "hidden:\n  - 64\n  - 64\n" in result.stdout


def test_a_group_alone_still_prints_its_help(tmp_path):
    result = run_in(tmp_path, "viz")
    assert result.returncode == 2 and "Usage:" in result.stdout + result.stderr and "landscape" in result.stdout


def test_examples_name_experiments_that_exist():
    """Every `experiment=NAME` and `dlrun experiment run|report NAME` in the help and the README."""
    from typer.main import get_command

    from dlrun.cli import app

    texts, commands = [(ROOT / "README.md").read_text()], [get_command(app)]
    while commands:
        command = commands.pop()
        texts.append(command.epilog or "")
        commands.extend(getattr(command, "commands", {}).values())
    text = "\n".join(texts)
    named = set(re.findall(r"experiment=([a-z0-9_]+)", text))
    claimed = set(re.findall(r"dlrun experiment (?:run|report) ([a-z0-9_]+)", text))
    assert named and claimed
    assert named <= EXPERIMENTS, named - EXPERIMENTS
    assert claimed <= EXPERIMENTS, claimed - EXPERIMENTS
    for name in claimed:  # `dlrun experiment run` needs a claim to check
        assert "\nclaim:" in (ROOT / "experiments" / f"{name}.yaml").read_text(), name
