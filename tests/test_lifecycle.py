"""One run lifecycle (dlrun/train/lifecycle.py) for a single run and for every member of a vectorized group.

Every registered optimizer, regularizer and schedule, and a plugin's optimizer, regularizer and model,
trains as a member of a 3-seed group and alone: after 50 steps each member's weights equal its single
run's, or the group is refused before training with one line and exit 2. Nothing is silently different.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dlrun.config import compose
from dlrun.errors import ConfigError
from dlrun.optim import OPTIMIZERS, SCHEDULES
from dlrun.regularizers import REGULARIZERS
from dlrun.train import checkpoint as ckpt
from dlrun.train import members, train
from dlrun.train.summary import GroupSummary, RunSummary, find_runs, read
from tests.conftest import dlrun, quick

pytestmark = pytest.mark.filterwarnings("ignore::dlrun.models.DlrunWarning")

PLUGIN = textwrap.dedent('''
    """Options a user adds: an optimizer that says it is elementwise, one that says nothing, a regularizer, a model."""
    import math

    import torch
    from torch import nn

    from dlrun.models import MODELS
    from dlrun.optim import OPTIMIZERS
    from dlrun.options import ModelConfig, OptimConfig, RegularizerConfig, declare, opt, option
    from dlrun.regularizers import REGULARIZERS, Regularizer, weights


    class SignDescent(torch.optim.Optimizer):
        def __init__(self, params, lr):
            super().__init__(params, dict(lr=lr))

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.sub_(group["lr"] * p.grad.sign())


    declare("optim", "signdescent", OptimConfig, "theta -= lr sign(g)", elementwise=True)
    OPTIMIZERS.register("signdescent")(lambda params, cfg: SignDescent(params, cfg.lr))

    declare("optim", "tensorwise", OptimConfig, "theta -= lr g / ||g|| per tensor (declares nothing)")


    class Tensorwise(SignDescent):
        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.sub_(group["lr"] * p.grad / (p.grad.norm() + 1e-12))


    OPTIMIZERS.register("tensorwise")(lambda params, cfg: Tensorwise(params, cfg.lr))

    declare("regularizer", "quartic", RegularizerConfig, "lambda sum w^4", defaults={"strength": 1e-3})


    @REGULARIZERS.register("quartic")
    def quartic(cfg, model):
        penalty = lambda ws, lam: lam * sum(w.pow(4).sum() for w in ws)  # noqa: E731
        return Regularizer("quartic", weights(model), cfg.strength, penalty=penalty)


    @option("model", "widenet", inputs=("tabular",))
    class WideNet(ModelConfig):
        """One wide hidden layer of tanh units and a dropout (a plugin's model)."""

        width: int = opt(32, ge=1)


    @MODELS.register("widenet")
    def build_widenet(cfg, input_shape, out_features):
        return nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(input_shape), cfg.width), nn.Tanh(), nn.Dropout(0.2),
            nn.Linear(cfg.width, out_features),
        )
''')

BASE = ("data=iris", "trainer.batch_size=16", "trainer.steps=50", "trainer.eval_every=10")
LAMBDA = "regularizer.strength=0.01"
CASES = [
    *[(f"optim={name}",) for name in sorted(OPTIMIZERS) if name not in ("newton",)],
    ("optim=newton", "model=linear"),
    *[(f"regularizer={name}", *([LAMBDA] if name not in ("none", "dropout") else [])) for name in sorted(REGULARIZERS)],
    *[(f"sched={name}", "optim=momentum") for name in sorted(SCHEDULES)],
]
PLUGIN_CASES = [("optim=signdescent",), ("optim=tensorwise",), ("regularizer=quartic",), ("model=widenet",)]


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The plugin's file; its options are loaded only in the processes the tests start, never in this one."""
    path = tmp_path_factory.mktemp("plugin") / "mine.py"
    path.write_text(PLUGIN)
    return path


def weights(run_dir) -> dict[str, torch.Tensor]:
    return ckpt.load(Path(run_dir) / "checkpoints" / "last.pt")["model"]


REFUSED = ("optim=newton", "optim=tensorwise", "sched=plateau")  # what cannot train in a group, and says why


def check_case(runs: Path, args: list[str], plugin: Path | None = None) -> str:
    """Train args as a 3-seed group and each member alone: "equal" when every member's weights are its single
    run's within 1e-5 after 50 steps; "refused" when the group is refused in one line, exit 2, before training."""
    try:
        specs = members.parse([*args, "trainer.seeds=[0,1,2]"])
    except ConfigError:  # refused before training: the CLI says so in one line, exit 2, and writes nothing
        r = dlrun(*(["--plugin", str(plugin)] if plugin else []), "train", *args, "trainer.seeds=[0,1,2]")
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "vectorized group" in r.stderr, r.stderr
        assert not any(runs.iterdir())
        return "refused"
    summary = train(specs, run_dir=runs / "group")
    assert summary["status"] == "completed" and [m["status"] for m in summary["members"]] == ["completed"] * 3
    for spec, m in zip(specs, summary["members"], strict=True):
        alone = train(compose([*spec.overrides]), run_dir=runs / f"alone-{spec.label}")
        assert alone.metrics.keys() == read(m["run_dir"]).metrics.keys()  # train/reg_loss too
        mine, theirs = weights(m["run_dir"]), weights(alone["run_dir"])
        for key in theirs:
            assert torch.allclose(mine[key], theirs[key], atol=1e-5, rtol=0), (spec.label, key)
    return "equal"


def _args(runs: Path, case: tuple[str, ...]) -> list[str]:
    mlp = () if any(c.startswith("model=") for c in case) else ("model.hidden=[16]",)
    return quick(runs, *BASE, *mlp, *case)


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_every_option_trains_in_a_group_as_alone_or_is_refused_in_one_line(runs, case):
    outcome = check_case(runs, _args(runs, case))
    assert outcome == ("refused" if case[0] in REFUSED else "equal"), outcome


@pytest.mark.parametrize("case", PLUGIN_CASES, ids=["-".join(c) for c in PLUGIN_CASES])
def test_every_plugin_option_trains_in_a_group_as_alone_or_is_refused_in_one_line(runs, plugin, case):
    """The same check in a process of its own that loads the plugin (this one stays as it was)."""
    code = (
        "import sys; from pathlib import Path; from dlrun import plugins; plugins.load([sys.argv[1]]); "
        "from tests.test_lifecycle import check_case; "
        "print(check_case(Path(sys.argv[2]), sys.argv[3:], Path(sys.argv[1])))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(plugin), str(runs), *_args(runs, case)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[-1] == ("refused" if case[0] in REFUSED else "equal"), r.stdout


def test_a_plugin_regularizer_logs_its_term_in_a_group_as_alone(runs, plugin):
    r = dlrun("--plugin", str(plugin), "train", *quick(runs, *BASE, "regularizer=quartic", "trainer.seeds=[0,1]"))
    assert r.returncode == 0, r.stderr
    (member,) = [p for p in runs.rglob("seed0") if p.is_dir()]
    logged = [json.loads(line) for line in (member / "metrics.jsonl").open()]
    assert any("train/reg_loss" in record for record in logged)


def test_a_list_of_values_for_an_optimizer_without_a_per_member_step_is_one_line(runs, plugin):
    r = dlrun("--plugin", str(plugin), "train", *quick(runs, "optim=signdescent", "optim.lr=[0.1,0.01]"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "optim=signdescent has no per-member step" in r.stderr


# ----------------------------------------------------------------------------- one entry point
def test_the_library_entry_point_trains_a_group_from_a_config_with_seeds(runs):
    summary = train(compose(quick(runs, "trainer.epochs=1", "trainer.seeds=[0,1,2]")))
    assert isinstance(summary, GroupSummary) and summary.kind == "group" and len(summary.members) == 3
    assert summary["metrics"]["test/acc"]["n"] == 3
    alone = train(compose(quick(runs, "trainer.epochs=1")))
    assert isinstance(alone, RunSummary) and alone.kind == "run" and alone.version == 1


def test_the_cli_sweep_trials_and_packs_all_call_the_one_entry_point(runs, monkeypatch):
    """The commands only print: `dlrun train`, a sweep trial and a sweep pack train through dlrun.train.train."""
    from dlrun.cli import app
    from dlrun.sweep import trial
    from dlrun.train import loop

    calls = []
    real = loop.train

    def spy(what, *args, **kwargs):
        calls.append("group" if isinstance(what, list) else "run")
        return real(what, *args, **kwargs)

    monkeypatch.setattr(loop, "train", spy)
    import dlrun.train as package

    monkeypatch.setattr(package, "train", spy)
    from typer.testing import CliRunner

    monkeypatch.setattr("sys.argv", ["dlrun"])  # a trial records its command from sys.argv
    assert CliRunner().invoke(app, ["train", *quick(runs, "trainer.steps=3")]).exit_code == 0
    assert CliRunner().invoke(app, ["train", *quick(runs, "trainer.steps=3", "trainer.seeds=[0,1]")]).exit_code == 0
    assert trial.main(["--run-dir", str(runs / "t0"), "--", *quick(runs, "trainer.steps=3")]) == 0
    pack = runs / "pack.json"
    members_ = [
        {"trial": n, "trial_id": n, "run_dir": str(runs / "p" / f"t{n}"), "overrides": [*quick(runs), f"optim.lr={lr}"]}
        for n, lr in ((0, 0.01), (1, 0.001))
    ]
    pack.write_text(json.dumps({"group_dir": str(runs / "p"), "members": members_}))
    assert trial.main(["--pack", str(pack)]) == 0
    assert calls == ["run", "group", "run", "group"]


# ----------------------------------------------------------------------------- what groups now have
def test_a_group_without_a_validation_split_trains_and_tests(runs):
    summary = train(members.parse(quick(runs, "trainer.epochs=2", "data.val_fraction=0", "trainer.seeds=[0,1]")))
    assert summary.status == "completed"
    for m in summary.members:
        metrics = read(m["run_dir"]).metrics
        assert "test/acc" in metrics and not any(k.startswith("val/") or k.startswith("best/") for k in metrics)


def test_a_finished_group_resumed_with_more_epochs_equals_the_longer_group(runs):
    shared = quick(runs, "trainer.seeds=[0,1]", "model.dropout=0.2")
    whole = train(members.parse([*shared, "trainer.epochs=2"]), run_dir=runs / "whole")
    short = train(members.parse([*shared, "trainer.epochs=1"]), run_dir=runs / "short")
    assert short.step == 37 and short.status == "completed"
    longer = train(members.parse([f"resume={runs / 'short'}", "trainer.epochs=2"]))
    assert longer.status == "completed" and longer.step == 74
    for a, b in zip(whole.members, longer.members, strict=True):
        wa, wb = weights(a["run_dir"]), weights(b["run_dir"])
        assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6, rtol=0) for k in wa), a["label"]
        assert read(a["run_dir"]).metrics["test/acc"] == pytest.approx(read(b["run_dir"]).metrics["test/acc"])


def test_a_group_holds_the_lock_of_its_folder_and_of_each_member(runs):
    seen = []

    class Look:
        def on_start(self, info):
            folder = Path(info["run_dir"])
            seen.extend(sorted(p.relative_to(folder).as_posix() for p in folder.rglob(".lock")))

    train(members.parse(quick(runs, "trainer.steps=2", "trainer.seeds=[0,1]")), callbacks=[Look()])
    assert seen == [".lock", "seed0/.lock", "seed1/.lock"]
    assert not list(runs.rglob(".lock"))  # released at the end


def test_a_foreign_checkpoint_in_a_group_member_is_one_line(runs):
    summary = train(members.parse(quick(runs, "trainer.steps=2", "trainer.seeds=[0,1]")))
    other = train(compose(quick(runs, "trainer.steps=2", "model.hidden=[8]")))
    member = Path(summary.members[1]["run_dir"]) / "checkpoints" / "last.pt"
    member.write_bytes((Path(other.run_dir) / "checkpoints" / "last.pt").read_bytes())
    r = dlrun("train", f"resume={summary.run_dir}", "trainer.steps=4", "trainer.progress=none")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "do not fit the run's model" in r.stderr, r.stderr


# ----------------------------------------------------------------------------- summary.json
def test_summaries_have_one_schema_with_a_version_and_old_ones_still_read(runs):
    summary = train(compose(quick(runs, "trainer.steps=2")))
    written = json.loads((Path(summary.run_dir) / "summary.json").read_text())
    assert written["version"] == 1 and written["kind"] == "run" and written == summary.as_dict()
    old = Path(summary.run_dir).parent / "old"
    old.mkdir()
    legacy = {k: v for k, v in written.items() if k not in ("version", "kind", "world_size", "group")}
    (old / "summary.json").write_text(json.dumps(legacy))
    back = read(old)
    assert isinstance(back, RunSummary) and back.version == 0 and back.metrics == summary.metrics
    assert {p for p, _ in find_runs(runs)} == {Path(summary.run_dir), old}  # the one way to find runs


def test_the_resolved_config_is_what_config_yaml_records(runs):
    import yaml

    summary = train(compose(quick(runs, "trainer.steps=2", "regularizer=dropout", "regularizer.p=0.3")))
    recorded = yaml.safe_load((Path(summary.run_dir) / "config.yaml").read_text())
    assert recorded["loss"]["name"] == "cross_entropy" and recorded["trainer"]["monitor"] == "val/acc"
    assert recorded["model"]["dropout"] == 0.3


def test_every_declared_task_is_the_task_its_data_has():
    """A sweep picks its metric from the declaration, without building the data: the declarations must be true."""
    from dlrun import options
    from dlrun.data import build
    from dlrun.options.data import known_task

    for name, decl in options.declared("data").items():
        if decl.caps.download or decl.caps.local or name == "files":
            continue
        cfg = compose([f"data={name}"]).data
        task = known_task(cfg)
        assert task, f"data={name} declares no task"
        assert (task == "classification") == build(cfg).task.is_classification, name


def test_the_trainer_stays_short_functions_and_files():
    """The lifecycle exists once: no function under dlrun/train longer than 60 lines, no file longer than 600."""
    import ast

    import dlrun.train

    for path in sorted(Path(dlrun.train.__file__).parent.glob("*.py")):
        source = path.read_text()
        assert source.count("\n") <= 600, path.name
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno - node.lineno + 1 <= 60, f"{path.name}: {node.name}"
