"""Vectorized groups (dlrun/train/vector.py, members.py, optim/stacked.py): each member equals its single run.

Tolerances: float32, and batched kernels may sum in another order than a single run's, so no bitwise
claim. Adam divides by the root of the squared gradient, so a coordinate whose gradient is zero up to
rounding (the bias of a layer that batch norm follows) takes a full-size step in the direction of the
rounding, and a ReLU or max-pool input that the other rounding puts on the other side of its kink changes
a small gradient by a relative amount that Adam's normalization turns into lr-sized steps (measured: the
CNN on digits under Adam, seed 3, 3e-8 apart after 25 steps, 1e-4 after 30). So the members are compared
with their twins under momentum SGD (1e-7 apart after 50 steps); per-member Adam is compared slice by
slice on the same gradients (test_stacked_optimizer_...), and over the whole default run (Adam, 30 epochs)
by test accuracy. (An MLP without norm layers runs as batched matmuls, whose sums round unlike the single
run's matmul: under Adam, one fc1 weight whose gradient is near Adam's eps ends its first step 4e-5 off.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dlrun.config import compose, load_run_config
from dlrun.errors import ConfigError
from dlrun.optim import build_optimizer
from dlrun.optim.stacked import StackedOptimizer
from dlrun.train import checkpoint as ckpt
from dlrun.train import train
from dlrun.train.group import train_group
from dlrun.train.members import from_group, members, split
from tests.conftest import dlrun, quick

pytestmark = pytest.mark.filterwarnings("ignore::dlrun.models.DlrunWarning")
SEEDS = "trainer.seeds=[0,1,2,3]"


def group(runs, *overrides: str):
    shared, varied = split(quick(runs, *overrides))
    specs = members(compose(shared), shared, varied)
    return specs, train_group(specs, group_dir=runs / "group")


def weights(run_dir) -> dict[str, torch.Tensor]:
    return ckpt.load(Path(run_dir) / "checkpoints" / "last.pt")["model"]


def twin(runs, spec, name: str) -> dict:
    """The member's single run: its own overrides, in its own directory."""
    return train(compose([*spec.overrides, "trainer.progress=none", "trainer.hist_every=0"]), run_dir=runs / name)


def assert_twins(runs, specs, summary, atol=1e-5):
    for spec, m in zip(specs, summary["members"], strict=True):
        alone = twin(runs, spec, f"alone-{spec.label}")
        mine, theirs = weights(m["run_dir"]), weights(alone["run_dir"])
        assert mine.keys() == theirs.keys()
        for key in mine:
            if mine[key].is_floating_point():
                assert torch.allclose(mine[key], theirs[key], atol=atol, rtol=0), (spec.label, key)
            else:
                assert torch.equal(mine[key], theirs[key]), (spec.label, key)  # num_batches_tracked


@pytest.mark.parametrize(
    "overrides, how",
    [
        (("model.norm=batch", "model.dropout=0.3", "optim=momentum", "trainer.hist_every=0"), "vmap"),
        (("model=cnn", "optim=momentum", "trainer.hist_every=0"), "vmap"),
        (("model=cnn", "model.pool=max", "model.hidden=[32]", "model.dropout=0.3", "optim=momentum"), "vmap"),
        (("model=cnn", "data=mnist1d", "optim=momentum"), "vmap"),
    ],
    ids=["mlp-batchnorm-dropout", "cnn", "cnn-pool-dropout", "cnn-1d"],
)
def test_four_seeds_match_their_single_runs_after_50_steps(runs, overrides, how):
    specs, summary = group(runs, *overrides, SEEDS, "trainer.steps=50")
    assert summary["vectorized"] == how and [m["status"] for m in summary["members"]] == ["completed"] * 4
    assert_twins(runs, specs, summary)


@pytest.mark.parametrize(
    "overrides",
    [("model=cnn", "model.pool=max", "model.hidden=[32]", "model.dropout=0.3"), ("model=cnn", "data=mnist1d")],
)
def test_cnn_members_as_one_grouped_convolution_match_their_single_runs(runs, overrides, monkeypatch):
    from dlrun.train import vector

    monkeypatch.setattr(vector, "STACK_CONVS", True)
    specs, summary = group(runs, *overrides, "optim=momentum", SEEDS, "trainer.steps=50")
    assert summary["vectorized"] == "stacked"
    assert_twins(runs, specs, summary)


def test_a_list_of_lrs_matches_single_runs_with_those_lrs(runs):
    args = ("optim=momentum", "model.dropout=0.3", "optim.lr=[0.001,0.003]", "trainer.seeds=[0,1]")
    specs, summary = group(runs, *args, "trainer.steps=50")
    assert summary["vectorized"] == "stacked"  # an MLP without norm layers: batched matmuls, no vmap
    assert [s.label for s in specs] == ["lr0.001-seed0", "lr0.001-seed1", "lr0.003-seed0", "lr0.003-seed1"]
    assert [s.cfg.optim.lr for s in specs] == [0.001, 0.001, 0.003, 0.003]
    assert_twins(runs, specs, summary)
    assert [c["values"] for c in summary["configurations"]] == [{"optim.lr": 0.001}, {"optim.lr": 0.003}]


def test_recurrent_models_run_member_by_member(runs):
    specs, summary = group(runs, "model=rnn", "data=mnist1d", "trainer.seeds=[0,1]", "trainer.steps=20")
    assert summary["vectorized"] == "loop"  # torch's fused RNN kernels have no vmap batching rule
    assert_twins(runs, specs, summary)


def test_the_default_run_gives_each_member_its_single_runs_test_accuracy(runs):
    specs, summary = group(runs, SEEDS)  # MLP on digits, 30 epochs
    n_test = 360
    accs = []
    for spec, m in zip(specs, summary["members"], strict=True):
        mine = json.loads((runs / "group" / m["label"] / "summary.json").read_text())["metrics"]["test/acc"]
        theirs = twin(runs, spec, f"alone-{spec.label}")["metrics"]["test/acc"]
        assert abs(mine - theirs) <= 1 / n_test + 1e-9, spec.label
        accs.append(mine)
    stats = summary["metrics"]["test/acc"]
    assert stats["n"] == 4 and stats["mean"] == pytest.approx(sum(accs) / 4)
    mean = sum(accs) / 4
    assert stats["std"] == pytest.approx(math.sqrt(sum((a - mean) ** 2 for a in accs) / 3))


class StopAt:
    def __init__(self, step):
        self.step = step

    def on_eval(self, step, epoch, metrics):
        return "interrupted" if step >= self.step else None


def test_an_interrupted_group_resumes_to_the_uninterrupted_result(runs):
    args = quick(runs, "trainer.seeds=[0,1]", "model.dropout=0.2", "trainer.epochs=4")
    shared, varied = split(args)
    whole = train_group(members(compose(shared), shared, varied), group_dir=runs / "whole")
    cut = train_group(members(compose(shared), shared, varied), callbacks=[StopAt(37 * 2)], group_dir=runs / "cut")
    assert cut["status"] == "interrupted" and {m["status"] for m in cut["members"]} == {"interrupted"}
    resumed = train_group(from_group(runs / "cut", []), resume=runs / "cut")
    assert resumed["status"] == "completed"
    for a, b in zip(whole["members"], resumed["members"], strict=True):
        wa, wb = weights(a["run_dir"]), weights(b["run_dir"])
        assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6, rtol=0) for k in wa), a["label"]
        sa = json.loads((runs / "whole" / a["label"] / "summary.json").read_text())["metrics"]
        sb = json.loads((runs / "cut" / b["label"] / "summary.json").read_text())["metrics"]
        assert sa["test/acc"] == pytest.approx(sb["test/acc"], abs=1e-6)


def test_a_member_resumes_alone_as_a_single_run(runs):
    _, summary = group(runs, "trainer.seeds=[3,4]", "trainer.epochs=2")
    member = summary["members"][1]["run_dir"]
    cfg = load_run_config(member, ["trainer.epochs=3"], resume=True)
    assert cfg.trainer.seed == 4 and cfg.trainer.seeds == []
    alone = train(cfg)
    assert alone["status"] == "completed" and alone["step"] == 3 * alone["steps_per_epoch"]


def test_a_diverging_member_is_recorded_and_the_others_go_on(runs):
    overrides = ("data=diabetes", "model=linear", "optim=sgd", "optim.lr=[0.01,50.0]", "trainer.epochs=3")
    _, summary = group(runs, *overrides)
    statuses = {m["label"]: m["status"] for m in summary["members"]}
    assert statuses == {"lr0.01-seed0": "completed", "lr50-seed0": "diverged"}
    assert summary["status"] == "partial" and "test/mse" in summary["configurations"][0]["metrics"]
    assert summary["configurations"][1]["metrics"] == {}


# ----------------------------------------------------------------------------- the members and refusals
def test_members_pair_the_lists_and_repeat_each_configuration_per_seed():
    shared, varied = split(["optim.lr=[0.1,0.01]", "optim.weight_decay=[0,0.5]", "trainer.seeds=[1,2]"])
    specs = members(compose(shared), shared, varied)
    assert [(s.cfg.optim.lr, s.cfg.optim.weight_decay, s.cfg.trainer.seed) for s in specs] == [
        (0.1, 0.0, 1),
        (0.1, 0.0, 2),
        (0.01, 0.5, 1),
        (0.01, 0.5, 2),
    ]
    assert specs[3].overrides == ["optim.lr=0.01", "optim.weight_decay=0.5", "trainer.seed=2"]
    assert all(s.cfg.trainer.seeds == [] for s in specs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optim.lr=[0.1,0.01]", "optim.weight_decay=[0,0.1,0.2]"], "same number of values"),
        (["trainer.seeds=[1,1]"], "a seed appears twice"),
        (["optim=newton", "model=linear", "trainer.seeds=[0,1]"], "exact Hessian"),
        (["backprop=manual", "trainer.seeds=[0,1]"], "backprop=manual"),
        (["optim.lr=[0.1,-1]"], "optim.lr=-1: -1.0 is out of range"),
        (["optim=adam", "optim.momentum=[0.5,0.9]"], "optim=adam has no key momentum"),
    ],
)
def test_groups_that_cannot_be_vectorized_are_refused(args, message):
    shared, varied = split(args)
    with pytest.raises(ConfigError, match=message):
        members(compose(shared), shared, varied)


def test_cli_a_list_for_a_key_that_cannot_vary_names_the_keys_that_can(runs):
    r = dlrun("train", f"runs_dir={runs}", "model.dropout=[0.1,0.2]")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "model.dropout takes one value per run" in r.stderr and "optim.lr" in r.stderr and "dlrun sweep" in r.stderr


def test_cli_trains_a_group_and_runs_lists_its_members(runs):
    r = dlrun("train", f"runs_dir={runs}", "trainer.seeds=[0,1]", "trainer.epochs=1", "trainer.progress=none")
    assert r.returncode == 0, r.stderr
    assert "2 members (stacked)" in r.stdout and "±" in r.stdout
    (folder,) = (runs / "mlp-digits").iterdir()
    group_summary = json.loads((folder / "summary.json").read_text())
    assert group_summary["kind"] == "group" and sorted(p.name for p in folder.iterdir() if p.is_dir()) == [
        "bands",  # the members' mean and interval for TensorBoard's margin charts
        "seed0",
        "seed1",
    ]
    for member in ("seed0", "seed1"):
        files = {p.name for p in (folder / member).iterdir()}
        assert {"config.yaml", "metrics.jsonl", "summary.json", "checkpoints", "overrides.yaml"} <= files
        assert any(f.startswith("events.out.tfevents") for f in files)
    listed = dlrun("runs", str(runs), "--format", "json")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 2  # the members, not the group


# ----------------------------------------------------------------------------- the stacked optimizer's formulas
OPTIMS = [
    ("sgd", "torch", {"weight_decay": [0.0, 0.1]}),
    ("momentum", "torch", {"momentum": [0.5, 0.9]}),
    ("nesterov", "torch", {"momentum": [0.5, 0.9], "weight_decay": [0.0, 0.01]}),
    ("adagrad", "torch", {"lr": [0.1, 0.01]}),
    ("rmsprop", "torch", {"gamma": [0.8, 0.99]}),
    ("adam", "torch", {"beta1": [0.8, 0.9], "beta2": [0.99, 0.999], "weight_decay": [0.0, 0.1]}),
    ("adamw", "torch", {"weight_decay": [0.01, 0.1]}),
    ("sgd", "lecture", {"lr": [0.1, 0.01]}),
    ("momentum", "lecture", {"momentum": [0.5, 0.9]}),
    ("adagrad", "lecture", {"lr": [0.1, 0.01]}),
    ("rmsprop", "lecture", {"gamma": [0.8, 0.99]}),
    ("adam", "lecture", {"beta1": [0.8, 0.9]}),
]


@pytest.mark.parametrize(("name", "impl", "varied"), OPTIMS, ids=[f"{n}-{i}" for n, i, _ in OPTIMS])
def test_stacked_optimizer_steps_each_slice_as_its_own_optimizer(name, impl, varied):
    base = compose([f"optim={name}", f"optim.impl={impl}", "optim.lr=0.05"]).optim
    configs = []
    for k in range(2):
        c = SimpleNamespace(**vars(base))
        for key, values in varied.items():
            setattr(c, key, values[k])
        configs.append(c)
    torch.manual_seed(0)
    stacked = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    singles = [stacked[k].detach().clone().requires_grad_() for k in range(2)]
    optimizer = StackedOptimizer([stacked], configs)
    references = [build_optimizer([p], c) for p, c in zip(singles, configs, strict=True)]
    schedules = [torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1.0 / (1 + t)) for o in [optimizer, *references]]
    for t in range(30):
        grad = torch.randn(2, 4, 3, dtype=torch.float64) * (1e-3 if t % 3 else 1.0)
        stacked.grad = grad.clone()
        optimizer.step()
        for k in range(2):
            singles[k].grad = grad[k].clone()
            references[k].step()
        for s in schedules:
            s.step()
    for k in range(2):
        assert torch.allclose(stacked[k], singles[k], atol=1e-12, rtol=0), k
