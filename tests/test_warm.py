"""Warm trial processes: forks of a server that imported torch once; each still ends alone."""

from __future__ import annotations

import json
import multiprocessing.forkserver
import os
import signal
import time
from pathlib import Path

import optuna
import pytest
from conftest import dlrun

from dlrun.sweep import warm
from dlrun.sweep.runner import outcome
from dlrun.sweep.study import SweepSpec

TINY = ["model.hidden=[16]", "trainer.progress=none", "trainer.hist_every=0", "trainer.checkpoint=false"]


def trial_args(run_dir: Path, *overrides: str) -> list[str]:
    return ["--run-dir", str(run_dir), "--parent", str(os.getpid()), "--", f"runs_dir={run_dir.parent}", *overrides]


def wait_running(run_dir: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if json.loads((run_dir / "summary.json").read_text())["status"] == "running":
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{run_dir} did not start training")


def test_a_trial_is_a_fork_of_the_server_that_holds_torch(tmp_path):
    run_dir = tmp_path / "a"
    worker = warm.Worker(trial_args(run_dir, *TINY, "trainer.epochs=30"), run_dir.parent / "a.log")
    wait_running(run_dir)
    server = multiprocessing.forkserver._forkserver._forkserver_pid
    status = Path(f"/proc/{worker.pid}/status").read_text()
    parent = int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1])
    assert parent == server != os.getpid()  # forked by the server, not started by this process
    assert "libtorch" in Path(f"/proc/{server}/maps").read_text()  # the server has torch loaded
    worker.send_signal(signal.SIGTERM)  # a graceful stop, as the sweep's abort sends
    assert worker.wait(timeout=60) == 130  # interrupted, with its summary written
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"


def test_a_killed_trial_ends_alone_and_the_next_one_starts(tmp_path):
    doomed, other, after = tmp_path / "doomed", tmp_path / "other", tmp_path / "after"
    a = warm.Worker(trial_args(doomed, *TINY, "trainer.epochs=200"), tmp_path / "doomed.log")
    b = warm.Worker(trial_args(other, *TINY, "trainer.epochs=2"), tmp_path / "other.log")
    wait_running(doomed)
    a.kill()
    assert a.wait(timeout=30) == -signal.SIGKILL
    assert b.wait(timeout=120) == 0
    c = warm.Worker(trial_args(after, *TINY, "trainer.epochs=1"), tmp_path / "after.log")
    assert c.wait(timeout=120) == 0
    assert outcome(doomed, a.poll(), "val/acc")["reason"] == "the training process was killed by SIGKILL"
    assert outcome(other, b.poll(), "val/acc")["status"] == "completed"
    assert outcome(after, c.poll(), "val/acc")["status"] == "completed"
    a.send_signal(signal.SIGTERM)  # a finished trial ignores signals (no stray kill of a reused pid)


def test_a_trial_gets_the_environment_and_the_output_of_its_start(tmp_path, monkeypatch):
    warm.start()  # the server's environment is from before this test's change
    monkeypatch.setenv("DLRUN_DATA", str(tmp_path / "data"))
    run_dir = tmp_path / "bad"
    worker = warm.Worker(trial_args(run_dir, "model.hiden=[3]"), tmp_path / "bad.log")
    assert worker.wait(timeout=60) == 2
    assert "model.hiden" in (tmp_path / "bad.log").read_text()
    good = warm.Worker(trial_args(tmp_path / "good", *TINY, "trainer.epochs=1"), tmp_path / "good.log")
    assert good.wait(timeout=120) == 0
    assert list((tmp_path / "data").rglob("*.npz"))  # the cache went where this test's DLRUN_DATA says
    assert "completed: step" in (tmp_path / "good.log").read_text()


def test_warm_and_cold_sweeps_give_the_same_results(tmp_path):
    values = {}
    for name, flag in (("warm", []), ("cold", ["--cold"])):
        sweep_dir = tmp_path / name
        result = dlrun("sweep", "optim.lr=0.01,0.1", "trainer.epochs=1", *TINY, "--dir", str(sweep_dir), *flag)
        assert result.returncode == 0, result.stderr
        assert SweepSpec.load(sweep_dir).warm is (name == "warm")
        study = optuna.load_study(study_name=sweep_dir.name, storage=f"sqlite:///{sweep_dir / 'study.db'}")
        values[name] = {t.params["optim.lr"]: t.value for t in study.trials}
    assert len(values["warm"]) == 2
    assert values["warm"] == pytest.approx(values["cold"], abs=1e-9)  # a fork trains what a new process does
