"""The trainer end to end: what it learns, what it logs, how it resumes, how it fails."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlrun.config import compose
from dlrun.train import Diverged, train
from dlrun.train import checkpoint as ckpt
from tests.conftest import dlrun, quick


def run(runs, *overrides, callbacks=()):
    return train(compose(quick(runs, *overrides)), callbacks=callbacks)


# ----------------------------------------------------------------------------- what it learns
def test_logistic_regression_cannot_fit_xor(runs):
    s = run(runs, "data=xor", "model=linear", "trainer.epochs=40", "optim.lr=0.01")
    assert s["loss"] == "bce"
    assert s["metrics"]["test/acc"] <= 0.80


def test_one_hidden_layer_fits_xor(runs):
    s = run(runs, "experiment=xor_hidden")
    assert s["metrics"]["test/acc"] >= 0.98


def test_diabetes_is_a_regression_with_mse(runs):
    s = run(runs, "data=diabetes", "trainer.epochs=20", "model.hidden=[32]")
    assert s["loss"] == "mse"
    assert {"val/mse", "test/mse", "val/loss"} <= set(s["metrics"])
    # standardized targets: predicting the mean scores about 1.0; a trained model does better
    assert s["metrics"]["test/mse"] < 0.8
    scalars = EventAccumulator(s["run_dir"]).Reload().Tags()["scalars"]
    assert "val/mse" in scalars and "val/acc" not in scalars


def test_tiny_model_overfits_a_tiny_set(runs):
    s = run(
        runs,
        "data=moons",
        "data.n_samples=40",
        "model.hidden=[32,32]",
        "optim.lr=0.01",
        "trainer.epochs=150",
        "trainer.batch_size=8",
    )
    assert s["metrics"]["train/loss"] < 0.05


def test_full_batch_gd_takes_one_step_per_epoch(runs):
    s = run(runs, "data=iris", "optim=gd", "trainer.epochs=7")
    assert s["step"] == 7 and s["steps_per_epoch"] == 1


# ----------------------------------------------------------------------------- what it logs
def test_tensorboard_events_hold_the_scalars(runs):
    s = run(runs, "trainer.epochs=2", "trainer.hist_every=20", "trainer.log_every=10")
    acc = EventAccumulator(s["run_dir"], size_guidance={"scalars": 0, "histograms": 0, "tensors": 0}).Reload()
    tags = acc.Tags()
    for tag in (
        "train/loss",
        "val/loss",
        "val/acc",
        "test/acc",
        "test/loss",
        "lr",
        "grad/norm",
        "weights/fc1/norm",
        "weights/fc2/norm",
        "weights/out/norm",
        "perf/samples_per_s",
    ):
        assert tag in tags["scalars"], tag
    assert "hist/weights/layers.fc1.weight" in tags["histograms"]
    assert "hist/grads/layers.fc1.weight" in tags["histograms"]
    assert any(t.startswith("config") for t in tags["tensors"])  # the config as text
    events = acc.Scalars("train/loss")
    spe = s["steps_per_epoch"]
    # every 10 steps, and before each evaluation (end of each epoch)
    assert [e.step for e in events] == sorted(set(range(10, s["step"] + 1, 10)) | {spe, 2 * spe})
    assert events[-1].value < events[0].value
    # the values in TensorBoard are the ones in summary.json
    assert acc.Scalars("test/acc")[-1].value == pytest.approx(s["metrics"]["test/acc"], abs=1e-6)


def test_hparams_entry_has_the_real_final_metrics(runs):
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    s = run(runs, "data=iris", "trainer.epochs=3", "optim.lr=0.003")
    acc = EventAccumulator(s["run_dir"], size_guidance={"tensors": 0, "scalars": 0}).Reload()
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["optim.lr"].number_value == pytest.approx(0.003)
    assert hp["data.name"].string_value == "iris" and hp["model.hidden"].string_value == "[256, 256]"
    end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"])
    assert end.session_end_info.status == api_pb2.STATUS_SUCCESS
    # no per-run experiment summary: TensorBoard builds the table across every run in the logdir
    assert "_hparams_/experiment" not in content
    # the metric columns are the run's real final values
    assert acc.Scalars("test/acc")[-1].value == pytest.approx(s["metrics"]["test/acc"], abs=1e-6)
    assert acc.Scalars("val/acc")[-1].value == pytest.approx(s["metrics"]["val/acc"], abs=1e-6)


def test_run_directory_is_self_describing(runs):
    s = run(runs, "data=iris", "trainer.epochs=2", "name=described")
    path = runs / "described"
    (run_dir,) = list(path.iterdir())
    assert str(run_dir) == s["run_dir"]
    for name in (
        "config.yaml",
        "overrides.yaml",
        "command.txt",
        "versions.json",
        "metrics.jsonl",
        "summary.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (run_dir / name).is_file(), name
    assert "torch" in json.loads((run_dir / "versions.json").read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*records)
    assert {"step", "train/loss", "val/loss", "val/acc", "lr", "test/acc"} <= keys
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["params"] > 0 and summary["wall_time_s"] > 0
    assert all("/" in k for k in summary["metrics"])
    assert not list(run_dir.rglob("*.tmp"))  # atomic writes leave no temporaries
    payload = ckpt.load(run_dir / "checkpoints" / "last.pt")  # weights_only=True
    assert payload["state"]["step"] == s["step"] and "rng" in payload and "optimizer" in payload


# ----------------------------------------------------------------------------- resume
def final_weights(run_dir) -> dict[str, torch.Tensor]:
    return ckpt.load(os.path.join(run_dir, "checkpoints", "last.pt"))["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# dropout makes the global RNG part of the state that a resume must restore
RESUME = ("data=digits", "model.hidden=[64]", "model.dropout=0.2", "trainer.batch_size=64")


def test_resume_after_two_of_four_epochs_equals_an_uninterrupted_run(runs):
    whole = run(runs, *RESUME, "trainer.epochs=4", "name=whole")
    half = run(runs, *RESUME, "trainer.epochs=2", "name=half")
    assert half["step"] * 2 == whole["step"]
    resumed = train(compose([f"resume={half['run_dir']}", "trainer.epochs=4"]))
    assert resumed["run_dir"] == half["run_dir"] and resumed["step"] == whole["step"] and resumed["resumed"]
    assert_same_weights(final_weights(whole["run_dir"]), final_weights(half["run_dir"]))
    assert resumed["metrics"]["test/acc"] == pytest.approx(whole["metrics"]["test/acc"])
    # one TensorBoard log, continued: every logged step appears once
    steps = [e.step for e in EventAccumulator(half["run_dir"]).Reload().Scalars("val/acc")]
    assert steps == sorted(set(steps)) and len(steps) == 4
    # one metrics.jsonl: the first part's test record is replaced by the final one
    records = [json.loads(line) for line in open(os.path.join(half["run_dir"], "metrics.jsonl"))]
    assert [r["step"] for r in records if "test/acc" in r] == [whole["step"]]
    # times and start cover the whole run, both processes
    assert resumed["started"] == half["started"]
    assert resumed["train_time_s"] > half["train_time_s"] and resumed["wall_time_s"] > half["wall_time_s"]


class InterruptAt:
    """Sends this process a SIGINT (a Ctrl-C) after the evaluation at `step`."""

    def __init__(self, step: int):
        self.step = step

    def on_eval(self, step, epoch, metrics):
        if step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_mid_epoch_then_resume_equals_an_uninterrupted_run(runs):
    # evaluations every 5 steps, so the interrupt lands inside an epoch (digits: 19 steps of 64)
    common = (*RESUME, "trainer.epochs=3", "trainer.eval_every=5")
    whole = run(runs, *common, "name=whole")
    cut = run(runs, *common, "name=cut", callbacks=[InterruptAt(25)])
    assert cut["status"] == "interrupted" and cut["step"] == 25
    assert json.loads(open(os.path.join(cut["run_dir"], "summary.json")).read())["status"] == "interrupted"
    resumed = train(compose([f"resume={cut['run_dir']}", "trainer.progress=none"]))
    assert resumed["status"] == "completed" and resumed["step"] == whole["step"]
    assert_same_weights(final_weights(whole["run_dir"]), final_weights(cut["run_dir"]))
    steps = [
        json.loads(line)["step"] for line in open(os.path.join(cut["run_dir"], "metrics.jsonl")) if "val/acc" in line
    ]
    assert steps == sorted(set(steps))  # no evaluation logged twice after the resume


# ----------------------------------------------------------------------------- failures
def test_divergence_stops_with_status_and_keeps_the_last_good_checkpoint(runs):
    # linear regression: with lr far above 2 / (largest Hessian eigenvalue) every step multiplies the error
    good = run(runs, "data=diabetes", "model=linear", "optim=sgd", "trainer.epochs=2")
    step = good["step"]
    with pytest.raises(Diverged, match="last good checkpoint"):  # MSE with a huge step size blows up
        train(compose([f"resume={good['run_dir']}", "trainer.epochs=50", "optim.lr=5"]))
    summary = json.loads(open(os.path.join(good["run_dir"], "summary.json")).read())
    assert summary["status"] == "diverged" and ("nan" in summary["message"] or "inf" in summary["message"])
    kept = ckpt.load(os.path.join(good["run_dir"], "checkpoints", "last.pt"))
    assert kept["state"]["step"] == step
    assert all(torch.isfinite(v).all() for v in kept["model"].values())


def test_divergence_exits_1_from_the_cli(runs):
    result = dlrun(
        "train",
        *quick(runs, "data=diabetes", "model=linear", "optim=sgd", "optim.lr=5", "trainer.epochs=5"),
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: the training loss became")
    assert "Traceback" not in result.stderr


def test_early_stopping_on_a_named_metric(runs):
    s = run(
        runs, "data=iris", "trainer.epochs=50", "trainer.monitor=val/loss", "trainer.patience=2", "trainer.min_delta=10"
    )  # nothing improves by 10: stop after the 3rd evaluation
    assert s["status"] == "completed" and "early stop" in s["message"]
    assert s["step"] == 3 * s["steps_per_epoch"]


def test_unknown_monitor_is_a_config_error(runs):
    from dlrun.errors import ConfigError

    with pytest.raises(ConfigError, match="val/acc"):
        run(runs, "data=iris", "trainer.monitor=val/f1")


def test_test_with_best_uses_the_best_weights(runs):
    s = run(runs, "data=iris", "trainer.epochs=6", "trainer.test_with=best", "trainer.monitor=val/loss")
    best = ckpt.load(os.path.join(s["run_dir"], "checkpoints", "best.pt"))
    assert best["state"]["best_step"] == s["best_step"]
    assert s["metrics"]["best/val/loss"] == pytest.approx(best["state"]["best_value"])


def test_batches_cover_the_split_and_none_holds_a_single_example(runs):
    # iris: 97 train examples; batch 32 would leave one lone example, which batch norm cannot train on
    s = run(runs, "data=iris", "model.norm=batch", "trainer.batch_size=32", "trainer.epochs=2")
    assert s["steps_per_epoch"] == 3 and s["status"] == "completed"
    assert s["metrics"]["train/loss"] == s["metrics"]["train/loss"]  # finite, trained on every example
    assert run(runs, "data=iris", "trainer.batch_size=48", "trainer.epochs=1")["steps_per_epoch"] == 2  # 48 + 49
