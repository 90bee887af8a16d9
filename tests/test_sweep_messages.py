"""Sweep's overrides read as train's: an --option, a value the shell split and a bad list are one `error:` line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlrun.errors import ConfigError
from dlrun.sweep.results import direction_of
from dlrun.train import members


def run_in(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m dlrun ARGS...` in `cwd`, where a run would write its runs/ folder."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "dlrun", *args], cwd=cwd, env=env, capture_output=True, text=True)


SWEEP = "optim.lr=0.1,0.01"
# --cold: the warm server a sweep starts holds stdout until it has imported torch (seconds per case)
CASES = [
    (["sweep", "--epochs", "3", SWEEP], "--epochs 3: overrides are key=value, not options; write trainer.epochs=3"),
    (
        ["sweep", "--cold", "--lr", "0.1,0.01"],
        "--lr 0.1,0.01: overrides are key=value, not options; write optim.lr=0.1,0.01",
    ),
    # the key is looked up in every option of the swept group: adam has no momentum
    (["sweep", "--cold", "optim=adam,momentum", "--momentum", "0.9"], "write optim.momentum=0.9"),
    (
        ["sweep", "--cold", "model.hidden=[64,", "64]", SWEEP],
        "model.hidden=[64, 64]: the shell split this override at its spaces; quote it: 'model.hidden=[64,64]'",
    ),
    (["sweep", "--cold", "foo", SWEEP], "foo: not an override; write group=option"),
    (
        ["sweep", "--cold", "optim.lr=interval(0.1)"],
        "optim.lr=interval(0.1): cannot parse override: missing a required argument: 'end'",
    ),
    (["sweep", "--cold", "optim.lr=0.1;0.2"], "optim.lr=0.1;0.2: cannot parse override: unexpected ';' (character 13)"),
    (
        ["sweep", "--cold", "--metric", "val/f1", SWEEP],
        "--metric val/f1: cannot tell whether to maximize or minimize it",
    ),
    (["train", "optim.lr=[0.1,inf]"], "optim.lr: inf at position 1 is not a finite number"),
    (["train", "optim.lr=[nan,0.1]", "trainer.seeds=[0,1]"], "optim.lr: nan at position 0 is not a finite number"),
]


@pytest.mark.parametrize(("args", "says"), CASES, ids=[" ".join(args) for args, _ in CASES])
def test_a_bad_override_is_one_line(args, says, tmp_path):
    result = run_in(tmp_path, *args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert says in lines[0]
    assert not any(tmp_path.iterdir())  # no runs/ folder, no sweep directory


def test_direction_of_offers_direction_to_sweep():
    with pytest.raises(ConfigError) as e:
        direction_of("val/f1", direction_option=True)
    assert str(e.value).endswith("(val/acc, test/loss, best/val/acc), or give --direction maximize|minimize")
    with pytest.raises(ConfigError) as e:
        direction_of("val/f1")
    assert "--direction" not in str(e.value)


def test_direction_of_names_the_metrics_the_runs_have():
    known = ["val/acc", "val/loss", "val/f1", "test/acc", "val/acc"]
    with pytest.raises(ConfigError) as e:
        direction_of("val/f1", known=known)
    assert str(e.value).endswith("ends in acc, loss or mse: test/acc, val/acc, val/loss")
    with pytest.raises(ConfigError) as e:
        direction_of("val/ac", known=known)
    assert str(e.value) == (
        "--metric val/ac: no run has this metric; did you mean 'val/acc'? "
        "the runs have: test/acc, val/acc, val/f1, val/loss"
    )
    assert direction_of("best/val/acc", known=known) == "maximize"  # a metric's direction needs no run


def test_list_values_read_as_hydra_reads_them():
    shared, varied = members.split(["optim.lr=[1e-3,1e-2]", "model.hidden=[64,64]", "optim.weight_decay=[0],[0.1]"])
    assert varied == {"optim.lr": [0.001, 0.01]}
    assert shared == ["model.hidden=[64,64]", "optim.weight_decay=[0],[0.1]"]  # a sweep of lists is not a list
