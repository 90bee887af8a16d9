"""TensorBoard's HParams view of a runs folder that holds sweeps and ordinary runs side by side.

The view is read as TensorBoard's HParams plugin builds it (its experiment and its session groups,
from a multiplexer over the logdir), so what is checked is what `tensorboard --logdir runs` shows.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import optuna
import pytest
from tensorboard import context
from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups

from dlrun.config import compose
from dlrun.sweep.runner import SweepSpec
from dlrun.train import train
from tests.conftest import dlrun, quick

TINY = [
    "model.hidden=[16]",
    "trainer.epochs=1",
    "trainer.progress=none",
    "trainer.hist_every=0",
    "trainer.checkpoint=false",
]


def hparams_view(logdir: Path) -> tuple[api_pb2.Experiment, dict[str, api_pb2.SessionGroup]]:
    """The HParams plugin's experiment (its columns) and session groups (its rows) for a logdir."""
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    tb = base_plugin.TBContext(
        data_provider=MultiplexerDataProvider(multiplexer, str(logdir)), multiplexer=multiplexer, logdir=str(logdir)
    )
    backend, request = backend_context.Context(tb), context.RequestContext()
    experiment = get_experiment.Handler(request, backend, "", api_pb2.GetExperimentRequest()).run()
    query = api_pb2.ListSessionGroupsRequest(allowed_statuses=api_pb2.Status.values(), slice_size=10_000)
    groups = list_session_groups.Handler(request, backend, "", query).run().session_groups
    return experiment, {g.name: g for g in groups}


def trials(sweep_dir: Path) -> list[optuna.trial.FrozenTrial]:
    spec = SweepSpec.load(sweep_dir)
    return optuna.load_study(study_name=spec.study, storage=spec.url(sweep_dir)).trials


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """runs/: a sweep over optim.lr, a sweep over optim with two seeds a trial, and two ordinary runs."""
    runs = tmp_path_factory.mktemp("mixed") / "runs"
    for axes in (["optim.lr=0.01,0.1"], ["optim=sgd,adam", "--seeds", "0,1"]):
        result = dlrun("sweep", f"runs_dir={runs}", *axes, *TINY)
        assert result.returncode == 0, result.stderr
    plain = [train(compose(quick(runs, *TINY, "name=plain", f"optim.lr={lr}"))) for lr in (0.003, 0.03)]
    sweeps = sorted((runs / "sweeps").iterdir(), key=lambda p: "optim" in trials(p)[0].params)  # the lr sweep first
    return runs, sweeps, [Path(s["run_dir"]) for s in plain]


def test_every_trial_of_every_sweep_and_every_run_is_its_own_group(folder):
    runs, sweeps, plain = folder
    _, groups = hparams_view(runs)
    expected = {f"{sweep.name}/trial-{t.number}": (sweep, t) for sweep in sweeps for t in trials(sweep)}
    expected.update({run.relative_to(runs).as_posix(): (run, None) for run in plain})
    assert len(expected) == 2 + 2 + 2
    assert sorted(groups) == sorted(expected)
    for name, (where, trial) in expected.items():
        group = groups[name]
        if trial is None:  # an ordinary run: one session, the run itself
            assert [s.name for s in group.sessions] == [name]
            continue
        # a trial: its summary (the mean over its seeds) and the sessions of its seed runs
        sessions = {s.name for s in group.sessions}
        assert where.relative_to(runs).joinpath("tensorboard", f"trial-{trial.number}").as_posix() in sessions
        assert len(sessions) == 1 + len(trial.user_attrs["runs"])
        for key, value in trial.params.items():
            held = group.hparams[key]
            assert (held.string_value or held.number_value) == value
        metrics = {m.name.tag: m.value for m in group.metric_values}
        assert metrics["val/acc"] == pytest.approx(statistics.fmean(trial.user_attrs["metrics"]["val/acc"]), rel=1e-5)


def test_the_columns_hold_every_runs_config_keys_and_metrics(folder):
    runs, sweeps, _ = folder
    experiment, groups = hparams_view(runs)
    columns = {h.name for h in experiment.hparam_infos}
    assert {"optim", "optim.lr", "optim.name", "data.name", "model.hidden", "trainer.epochs"} <= columns
    assert {"val/acc", "test/acc", "test/loss", "std/val/acc"} <= {m.name.tag for m in experiment.metric_infos}
    # the sweeps' trials fill the same columns as the ordinary runs
    for name, group in groups.items():
        assert group.hparams["data.name"].string_value == "digits", name
        assert group.hparams["model.hidden"].string_value == "[16]", name
        assert "test/acc" in {m.name.tag for m in group.metric_values}, name


def test_one_sweeps_own_folder_shows_its_trials_and_swept_axes(folder):
    _, sweeps, _ = folder
    sweep = sweeps[1]
    experiment, groups = hparams_view(sweep / "tensorboard")
    assert sorted(groups) == sorted(f"{sweep.name}/trial-{t.number}" for t in trials(sweep))
    differs = {h.name for h in experiment.hparam_infos if h.differs}
    assert {"optim", "optim.name"} <= differs and "trainer.seed" not in differs
    assert {"val/acc", "test/acc", "std/val/acc"} <= {m.name.tag for m in experiment.metric_infos}
