"""`dlrun sweep --seeds` and `--vectorize K`: a trial's seeds, and trials that differ only in vectorizable
keys, train in one process as one vectorized group; every run keeps its own directory; the budget holds."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dlrun.config import compose
from dlrun.sweep.results import collect
from dlrun.sweep.study import SweepSpec
from dlrun.sweep.trial import PackPruning
from dlrun.train.group import train_group
from dlrun.train.members import members, packable, split
from tests.conftest import dlrun, quick

TINY = ["model.hidden=[16]", "trainer.progress=none", "trainer.hist_every=0", "trainer.checkpoint=false"]


def load_study(sweep_dir: Path) -> optuna.Study:
    spec = SweepSpec.load(sweep_dir)
    return optuna.load_study(study_name=spec.study, storage=spec.url(sweep_dir))


def sweep(sweep_dir: Path, *args: str):
    result = dlrun("sweep", *args, "--dir", str(sweep_dir))
    assert result.returncode == 0, result.stderr
    return result


def test_a_trials_seeds_train_as_one_group_and_the_value_is_their_mean(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = sweep(sweep_dir, "optim.lr=0.01,0.1", "trainer.epochs=1", *TINY, "--seeds", "0,1,2")
    study = load_study(sweep_dir)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for t in study.trials:
        trial_dir = sweep_dir / "trials" / str(t.number)
        group = json.loads((trial_dir / "summary.json").read_text())
        assert group["kind"] == "group" and [m["label"] for m in group["members"]] == ["seed0", "seed1", "seed2"]
        runs = [json.loads((trial_dir / f"seed{k}" / "summary.json").read_text()) for k in range(3)]
        assert all(r["status"] == "completed" and r["group"] == str(trial_dir) for r in runs)
        assert t.value == pytest.approx(statistics.fmean(r["metrics"]["val/acc"] for r in runs))
        assert len({r["metrics"]["val/loss"] for r in runs}) == 3  # three seeds, three runs
        assert (trial_dir / "seed1" / "overrides.yaml").read_text().endswith("trainer.seed=1\n")
    assert "(3 seeds)" in result.stdout
    rows = collect(sweep_dir).rows
    assert len(rows) == 2 and all(len(r.values) == 3 for r in rows)  # results: mean and std over 3 seeds


def test_vectorize_packs_trials_up_to_k_and_keeps_the_exact_budget(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep(
        sweep_dir,
        "optim.lr=0.01,0.02,0.05,0.1,0.2",
        "trainer.epochs=1",
        *TINY,
        "--seeds",
        "0,1",
        "--vectorize",
        "2",
    )
    study = load_study(sweep_dir)
    assert len(study.trials) == 5 and all(t.state == TrialState.COMPLETE for t in study.trials)
    packs = sorted((sweep_dir / "packs").iterdir())
    sizes = sorted(len(json.loads((p / "pack.json").read_text())["members"]) for p in packs)
    assert sizes == [4, 4]  # two packs of 2 trials x 2 seeds; the fifth trial's seeds are a group of their own
    lone = [t for t in study.trials if (sweep_dir / "trials" / str(t.number) / "summary.json").exists()]
    assert len(lone) == 1
    for t in study.trials:
        runs = [json.loads((sweep_dir / r / "summary.json").read_text()) for r in t.user_attrs["runs"]]
        assert [r["status"] for r in runs] == ["completed", "completed"]
        assert t.value == pytest.approx(statistics.fmean(r["metrics"]["val/acc"] for r in runs))
        lrs = {json.loads((sweep_dir / r / "summary.json").read_text())["run_dir"] for r in t.user_attrs["runs"]}
        assert all(f"trials/{t.number}/seed" in d for d in lrs)
    for p in packs:
        group = json.loads((p / "summary.json").read_text())
        assert len(group["configurations"]) == 2  # per trial: mean and std over its seeds
        assert all(set(c["values"]) == {"optim.lr"} for c in group["configurations"])


def test_vectorize_packs_only_configurations_that_differ_in_vectorizable_keys(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep(sweep_dir, "model.hidden=[8],[16]", "optim.lr=0.01,0.1", "trainer.epochs=1", *TINY[1:], "--vectorize", "4")
    packs = [json.loads((p / "pack.json").read_text()) for p in (sweep_dir / "packs").iterdir()]
    assert sorted(len(p["members"]) for p in packs) == [2, 2]
    for p in packs:
        hidden = {next(o for o in m["overrides"] if o.startswith("model.hidden")) for m in p["members"]}
        assert len(hidden) == 1  # one architecture per pack
    assert all(t.state == TrialState.COMPLETE for t in load_study(sweep_dir).trials)


def test_a_configuration_that_cannot_vectorize_runs_its_seeds_apart(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep(sweep_dir, "backprop=manual", "optim.lr=0.01,0.1", "trainer.epochs=1", *TINY, "--seeds", "0,1")
    study = load_study(sweep_dir)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    for t in study.trials:
        trial_dir = sweep_dir / "trials" / str(t.number)
        assert not (trial_dir / "summary.json").exists()  # no group
        assert (trial_dir / "seed0" / "output.log").exists() and (trial_dir / "seed1" / "output.log").exists()


def test_packable_names_the_key_that_differs(runs):
    a = compose(quick(runs, "optim.lr=0.1"))
    assert packable(a, compose(quick(runs, "optim.lr=0.01", "trainer.seed=3"))) is None
    assert "model.hidden" in packable(a, compose(quick(runs, "model.hidden=[8]")))
    assert "Hessian" in packable(a, compose(quick(runs, "optim=newton")))


class FakeTrial:
    def __init__(self, prune: bool):
        self.reports, self.prune = [], prune

    def report(self, value, step):
        self.reports.append((value, step))

    def should_prune(self):
        return self.prune


def test_pack_pruning_reports_each_trials_mean_and_prunes_its_members():
    trials = {3: FakeTrial(prune=False), 4: FakeTrial(prune=True)}
    cb = PackPruning(trials, trial_of=[3, 3, 4, 4], metric="val/acc")
    ended = cb.on_eval_members(10, {0: {"val/acc": 0.5}, 1: {"val/acc": 0.7}, 3: {"val/acc": 0.2}})
    assert ended == [3]  # member 2 already ended; trial 4's running member 3 is pruned
    assert trials[3].reports == [(pytest.approx(0.6), 10)] and trials[4].reports == [(0.2, 10)]


class PruneAt:
    """Prunes member 1 at the first evaluation."""

    def on_eval_members(self, step, results):
        return [1] if 1 in results else []


def test_a_pruned_member_stops_and_the_others_go_on(runs):
    shared, varied = split(quick(runs, "trainer.seeds=[0,1]", "trainer.epochs=3", "model.hidden=[16]"))
    summary = train_group(members(compose(shared), shared, varied), callbacks=[PruneAt()], group_dir=runs / "g")
    by_label = {m["label"]: m["status"] for m in summary["members"]}
    assert by_label == {"seed0": "completed", "seed1": "pruned"}
    pruned = json.loads((runs / "g" / "seed1" / "summary.json").read_text())
    done = json.loads((runs / "g" / "seed0" / "summary.json").read_text())
    assert pruned["step"] < done["step"] and "test/acc" not in pruned["metrics"] and "test/acc" in done["metrics"]
