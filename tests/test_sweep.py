"""`dlrun sweep` end to end: parallel seeds, kill and resume, failures, shared storage, pruning, HParams.

Every training here is tiny (a 16-unit MLP, 1-2 epochs, no checkpoints); most of the time is the
start-up of each training process.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from dlrun.config import compose
from dlrun.sweep.results import collect
from dlrun.sweep.runner import SweepSpec
from dlrun.sweep.trial import PruningReport
from dlrun.train import train
from tests.conftest import dlrun, quick, start

TINY = ["model.hidden=[16]", "trainer.progress=none", "trainer.hist_every=0", "trainer.checkpoint=false"]


def load_study(sweep_dir: Path) -> optuna.Study:
    spec = SweepSpec.load(sweep_dir)
    return optuna.load_study(study_name=spec.study, storage=spec.url(sweep_dir))


def summaries(folder: Path) -> dict[Path, dict]:
    return {p.parent: json.loads(p.read_text()) for p in folder.rglob("summary.json")}


def wait_for_a_trial(sweep_dir: Path, completed: int, training: bool = False, timeout: float = 300) -> None:
    """Until `completed` trials are complete and another is running (with training: its run has started)."""
    deadline = time.time() + timeout
    while not (sweep_dir / "sweep.yaml").exists():
        assert time.time() < deadline, f"no sweep started in {sweep_dir}"
        time.sleep(0.2)
    study = load_study(sweep_dir)
    while time.time() < deadline:
        trials = study.get_trials(deepcopy=False)
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if sum(t.state == TrialState.COMPLETE for t in trials) >= completed and running:
            runs = summaries(sweep_dir / "trials" / str(running[0].number)).values()
            if not training or any(s.get("status") == "running" for s in runs):
                return
        time.sleep(0.2)
    raise AssertionError(f"no trial running in {sweep_dir} within {timeout} s")


# ----------------------------------------------------------------------------- a grid with seeds, two at once
@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    runs = tmp_path_factory.mktemp("grid") / "runs"
    result = dlrun(
        "sweep",
        f"runs_dir={runs}",
        "optim=sgd,adam",
        "optim.lr=0.01,0.1",
        "trainer.epochs=1",
        *TINY,
        "--seeds",
        "0,1",
        "--jobs",
        "2",
    )
    assert result.returncode == 0, result.stderr
    (sweep_dir,) = (runs / "sweeps").iterdir()
    return sweep_dir, result


def test_grid_with_seeds_runs_every_config_for_every_seed(grid):
    sweep_dir, result = grid
    found = summaries(sweep_dir / "trials")
    runs = {p: s for p, s in found.items() if s.get("kind") != "group"}
    groups = sorted(p.relative_to(sweep_dir).as_posix() for p, s in found.items() if s.get("kind") == "group")
    assert groups == [f"trials/{n}" for n in range(4)]  # each trial's two seeds trained as one vectorized group
    assert len(runs) == 8 and all(s["status"] == "completed" for s in runs.values())
    assert sorted(p.relative_to(sweep_dir).as_posix() for p in runs) == [
        f"trials/{n}/seed{k}" for n in range(4) for k in range(2)
    ]
    for path in runs:  # each seed directory trained with its own trainer.seed
        assert f"seed: {path.name.removeprefix('seed')}\n" in (path / "config.yaml").read_text()
    spec = SweepSpec.load(sweep_dir)
    assert (spec.sampler, spec.trials, spec.metric, spec.direction, spec.seeds) == (
        "grid",
        4,
        "val/acc",
        "maximize",
        [0, 1],
    )
    configs = {tuple(t.params.items()) for t in load_study(sweep_dir).trials}
    assert configs == {(("optim", o), ("optim.lr", lr)) for o in ("sgd", "adam") for lr in (0.01, 0.1)}
    assert "[4/4]" in result.stdout and "best: val/acc" in result.stdout


def test_results_shows_four_configurations_with_mean_and_std(grid):
    sweep_dir, _ = grid
    out = dlrun("results", str(sweep_dir))
    assert out.returncode == 0, out.stderr
    assert sum(line.startswith("│") and "±" in line for line in out.stdout.splitlines()) == 4  # four rows
    found = json.loads(dlrun("results", str(sweep_dir), "--format", "json").stdout)
    assert len(found["rows"]) == 4 and found["varying"] == ["optim", "optim.lr"]
    runs = summaries(sweep_dir / "trials")
    means = []
    for row in found["rows"]:
        values = [runs[sweep_dir / r]["metrics"]["val/acc"] for r in row["runs"]]
        assert row["mean"] == pytest.approx(statistics.fmean(values))
        assert row["std"] == pytest.approx(statistics.stdev(values))
        means.append(row["mean"])
    assert means == sorted(means, reverse=True)  # best first
    best = found["rows"][0]
    assert found["best"]["command"].startswith("dlrun train ")
    assert f"optim={best['params']['optim']} optim.lr={best['params']['optim.lr']}" in found["best"]["command"]
    assert found["best"]["command"] in out.stdout


def test_hparams_sessions_hold_each_trials_final_metrics(grid):
    sweep_dir, _ = grid
    logdir = sweep_dir / "tensorboard"
    assert not list(logdir.glob("events.out.tfevents.*"))  # no experiment summary to hide other runs' columns

    runs = summaries(sweep_dir / "trials")
    study = load_study(sweep_dir)
    for trial in study.trials:
        session = EventAccumulator(str(logdir / f"trial-{trial.number}"))
        session.Reload()
        content = session.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        hparams = start.session_start_info.hparams
        assert hparams["optim"].string_value == trial.params["optim"]
        assert hparams["optim.lr"].number_value == trial.params["optim.lr"]
        end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"])
        assert end.session_end_info.status == api_pb2.STATUS_SUCCESS
        seeds = [runs[sweep_dir / "trials" / str(trial.number) / f"seed{k}"]["metrics"] for k in (0, 1)]
        for metric in ("val/acc", "test/acc", "test/loss"):
            (event,) = session.Scalars(metric)
            assert event.value == pytest.approx(statistics.fmean(s[metric] for s in seeds), rel=1e-6)
        (spread,) = session.Scalars("std/val/acc")
        assert spread.value == pytest.approx(statistics.stdev(s["val/acc"] for s in seeds), rel=1e-6)


# ----------------------------------------------------------------------------- kill, interrupt, resume
def test_killed_tpe_sweep_resumes_to_exactly_n_complete_trials(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["data=xor", "optim.lr=tag(log, interval(1e-3, 1e-1))", "trainer.epochs=2", *TINY]
    proc = start("sweep", *args, "--sampler", "tpe", "--trials", "2", "--metric", "val/acc", "--dir", str(sweep_dir))
    wait_for_a_trial(sweep_dir, completed=1)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its trainings, as a cluster's kill does
    proc.communicate()
    assert any(t.state == TrialState.RUNNING for t in load_study(sweep_dir).trials)  # left by the dead process

    result = dlrun("sweep", "--resume", str(sweep_dir))
    assert result.returncode == 0, result.stderr
    trials = load_study(sweep_dir).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(complete) == 2
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    retries = {t.system_attrs["failed_trial"]: t for t in trials if "failed_trial" in t.system_attrs}
    assert failed and all(t.number in retries for t in failed)  # every killed trial was run again ...
    for t in failed:
        assert "stopped" in t.user_attrs["reason"]
        assert retries[t.number].params == t.params and retries[t.number].state == TrialState.COMPLETE  # ... as it was
    assert len(collect(sweep_dir).rows) == 2  # results shows the two, not the killed one


def test_sigterm_stops_the_trainings_and_queues_their_trials(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["data=xor", "optim.lr=0.01,0.02", "trainer.epochs=1000", *TINY]
    proc = start("sweep", *args, "--metric", "val/acc", "--dir", str(sweep_dir))
    wait_for_a_trial(sweep_dir, completed=0, training=True)
    proc.send_signal(signal.SIGTERM)  # the sweep process only: it stops its trainings itself
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert f"continue with: dlrun sweep --resume {sweep_dir}" in stderr
    trials = load_study(sweep_dir).trials
    (stopped,) = [t for t in trials if t.state == TrialState.FAIL]
    assert "interrupted" in stopped.user_attrs["reason"]
    (queued,) = [t for t in trials if t.state == TrialState.WAITING]
    assert queued.params == stopped.params and queued.system_attrs["failed_trial"] == stopped.number
    (run,) = summaries(sweep_dir / "trials" / str(stopped.number)).values()
    assert run["status"] == "interrupted"  # the training stopped cleanly, not killed


# ----------------------------------------------------------------------------- failures
def test_a_diverging_trial_is_recorded_as_failed_and_the_sweep_completes(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["data=xor", "optim=sgd", "optim.lr=1e9,0.01", "trainer.epochs=2", *TINY, "--metric", "val/acc"]
    result = dlrun("sweep", *args, "--dir", str(sweep_dir))
    assert result.returncode == 0, result.stderr
    by_lr = {t.params["optim.lr"]: t for t in load_study(sweep_dir).trials}
    assert by_lr[0.01].state == TrialState.COMPLETE
    assert by_lr[1e9].state == TrialState.FAIL
    assert "the training loss became" in by_lr[1e9].user_attrs["reason"]
    (run,) = summaries(sweep_dir / "trials" / str(by_lr[1e9].number)).values()
    assert run["status"] == "diverged"
    rows = collect(sweep_dir).rows
    assert [r.status for r in rows] == ["completed", "failed"]


def test_max_failures_stops_the_sweep_with_exit_1(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["data=xor", "optim=sgd", "optim.lr=1e9,2e9", "trainer.epochs=2", *TINY, "--metric", "val/acc"]
    result = dlrun("sweep", *args, "--max-failures", "1", "--dir", str(sweep_dir))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: stopped after 1 failed trials (--max-failures 1)")
    (trial,) = load_study(sweep_dir).trials  # the first point failed; the second never started
    assert trial.state == TrialState.FAIL and "the training loss became" in trial.user_attrs["reason"]


# ----------------------------------------------------------------------------- two workers, one study
def test_two_processes_share_one_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    args = ["data=xor", "optim.lr=tag(log, interval(1e-3, 1e-1))", "trainer.epochs=1", *TINY]
    flags = ["--sampler", "random", "--trials", "2", "--metric", "val/acc", "--storage", url, "--study", "s"]
    workers = [start("sweep", *args, *flags, "--dir", str(tmp_path / f"worker{i}")) for i in range(2)]
    for w in workers:
        _, stderr = w.communicate(timeout=600)
        assert w.returncode == 0, stderr
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.FAIL)]
    runs = {**summaries(tmp_path / "worker0" / "trials"), **summaries(tmp_path / "worker1" / "trials")}
    numbers = sorted(int(p.name) for p in runs)
    assert numbers == sorted(t.number for t in trials if t.state == TrialState.COMPLETE)  # each trial ran once


# ----------------------------------------------------------------------------- pruning
def test_a_pruned_training_stops_after_the_evaluation_with_status_pruned(runs):
    # val/acc is always below 2, so the pruner stops the trial at its first report
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    trial = study.ask()
    cfg = compose(quick(runs, "data=xor", "trainer.epochs=3", "trainer.checkpoint=false"))
    summary = train(cfg, callbacks=[PruningReport(trial, "val/acc")])
    assert summary["status"] == "pruned"
    assert summary["step"] == summary["steps_per_epoch"]  # one epoch of three: stopped at the first evaluation
    assert study.trials[0].intermediate_values == {summary["step"]: summary["metrics"]["val/acc"]}
    assert "test/acc" not in summary["metrics"]  # no final test on a pruned run


def test_train_writes_into_the_given_run_directory(runs):
    target = runs / "trials" / "7" / "seed3"
    summary = train(compose(quick(runs, "data=xor", "trainer.epochs=1", "trainer.checkpoint=false")), run_dir=target)
    assert Path(summary["run_dir"]) == target and (target / "summary.json").is_file()


def test_sweep_and_results_have_help_with_examples():
    for command in ("sweep", "results"):
        out = dlrun(command, "--help")
        assert out.returncode == 0 and "Examples" in out.stdout and f"dlrun {command}" in out.stdout
