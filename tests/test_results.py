"""`dlrun results` on a folder of ordinary runs: grouped by config, mean ± std over seeds, best first;
and the csv / markdown / json formats."""

from __future__ import annotations

import csv
import io
import json
import shutil
import statistics
from pathlib import Path

import pytest
import yaml

from dlrun.config import compose
from dlrun.sweep.results import Row, collect, sort_rows, to_csv, to_json, to_markdown
from dlrun.train import members, train
from tests.conftest import dlrun, quick

LRS = (0.003, 0.05)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two configurations (optim.lr) x two seeds, on XOR for one epoch."""
    root = tmp_path_factory.mktemp("results") / "runs"
    for lr in LRS:
        for seed in (0, 1):
            overrides = quick(root, "data=xor", "model.hidden=[8]", "trainer.epochs=1", "trainer.checkpoint=false")
            overrides += [f"optim.lr={lr}", f"trainer.seed={seed}"]
            train(compose(overrides), overrides=overrides)
    return root


def by_lr(root) -> dict[float, list[dict]]:
    out: dict[float, list[dict]] = {}
    for path in sorted(root.rglob("summary.json")):
        overrides = yaml.safe_load((path.parent / "overrides.yaml").read_text())
        (lr,) = [float(o.split("=")[1]) for o in overrides if o.startswith("optim.lr=")]
        out.setdefault(lr, []).append(json.loads(path.read_text()))
    return out


def test_runs_group_by_config_with_mean_and_std_over_seeds(runs):
    found = collect(runs)
    assert (found.metric, found.direction) == ("val/acc", "maximize")  # the runs' monitor
    assert found.varying == ["optim.lr"]  # trainer.seed differs too, but it is not a hyperparameter
    assert len(found.rows) == 2
    reference = by_lr(runs)
    for row in found.rows:
        values = [s["metrics"]["val/acc"] for s in reference[row.params["optim.lr"]]]
        assert sorted(row.values) == sorted(values)
        assert row.mean == pytest.approx(statistics.fmean(values))
        assert row.std == pytest.approx(statistics.stdev(values))
        assert sorted(row.seeds) == [0, 1] and row.status == "completed"
    assert found.rows[0].mean >= found.rows[1].mean  # best first
    command = found.command(found.best)
    assert command.startswith("dlrun train ") and f"optim.lr={found.best.params['optim.lr']}" in command
    assert "trainer.seed" not in command


def test_a_loss_metric_sorts_ascending(runs):
    found = collect(runs, metric="val/loss")
    assert found.direction == "minimize"
    assert found.rows[0].mean <= found.rows[1].mean


def test_a_failed_repeat_marks_its_configuration_and_keeps_the_others_values(runs, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(runs, root)
    source = next(p.parent for p in root.rglob("summary.json"))
    broken = source.parent / "diverged-copy"
    shutil.copytree(source, broken)
    summary = json.loads((broken / "summary.json").read_text())
    summary.update(status="diverged", message="the training loss became nan at or before step 3")
    (broken / "summary.json").write_text(json.dumps(summary))
    found = collect(root)
    (row,) = [r for r in found.rows if len(r.runs) == 3]
    assert row.status == "diverged" and "nan" in row.reason
    assert len(row.values) == 2  # the diverged run's metrics are left out
    assert found.rows[-1] is row  # after the completed configuration


def test_sort_puts_completed_first_by_direction():
    rows = [
        Row({"a": 1}, "failed", []),
        Row({"a": 2}, "completed", [0.5]),
        Row({"a": 3}, "pruned", [0.9]),
        Row({"a": 4}, "completed", [0.7, 0.9]),
        Row({"a": 5}, "completed", []),
    ]
    assert [r.params["a"] for r in sort_rows(rows, "maximize")] == [4, 2, 5, 3, 1]
    assert [r.params["a"] for r in sort_rows(rows, "minimize")] == [2, 4, 5, 3, 1]


def test_csv_markdown_and_json_hold_the_same_numbers(runs):
    found = collect(runs)
    table = list(csv.DictReader(io.StringIO(to_csv(found))))
    assert [float(r["val/acc mean"]) for r in table] == pytest.approx([r.mean for r in found.rows])
    assert [float(r["val/acc std"]) for r in table] == pytest.approx([r.std for r in found.rows])
    assert [float(r["optim.lr"]) for r in table] == [r.params["optim.lr"] for r in found.rows]
    lines = to_markdown(found).splitlines()
    assert len(lines) == 4 and lines[0].startswith("| run | optim.lr | val/acc |") and "±" in lines[2]
    data = json.loads(to_json(found))
    assert data["best"]["mean"] == pytest.approx(found.rows[0].mean)
    assert data["best"]["command"] == found.command(found.rows[0])


def test_results_command_on_a_runs_folder(runs):
    out = dlrun("results", str(runs))
    assert out.returncode == 0, out.stderr
    assert sum(line.startswith("│") and "±" in line for line in out.stdout.splitlines()) == 2
    assert "best: val/acc" in out.stdout and "dlrun train" in out.stdout
    bad = dlrun("results", str(runs), "--format", "xml")
    assert (
        bad.returncode == 2
        and bad.stderr.strip() == "error: --format xml: unknown; choose from: table, csv, markdown, json"
    )
    missing = dlrun("results", str(runs / "nowhere"))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- dlrun diff
def test_diff_shows_only_the_keys_that_differ_and_nothing_for_a_resumed_twin(tmp_path):
    from dlrun.diff import diff

    runs = tmp_path / "runs"
    base = [f"runs_dir={runs}", "trainer.progress=none", "trainer.hist_every=0", "trainer.epochs=2"]
    a = train(compose([*base, "optim.lr=0.001"]))
    b = train(compose([*base, "optim.lr=0.01"]))
    d = diff(a["run_dir"], b["run_dir"])
    assert [(k, va, vb) for k, va, vb in d.config] == [("optim.lr", 0.001, 0.01)]
    assert ("test/acc", a["metrics"]["test/acc"], b["metrics"]["test/acc"]) in d.metrics
    versions = json.loads((Path(a["run_dir"]) / "versions.json").read_text())
    assert "git" in versions and "torch" in versions  # what else could explain a difference

    class StopAt:
        def on_eval(self, step, epoch, metrics):
            return "interrupted"

    cut = train(compose(base), callbacks=[StopAt()])
    resumed = train(compose([f"resume={cut['run_dir']}", *base[1:]]))
    whole = train(compose(base))
    twin = diff(whole["run_dir"], resumed["run_dir"])
    assert twin.config == [] and twin.environment == []
    assert all(va == pytest.approx(vb) for _, va, vb in twin.metrics)


def test_diff_of_two_groups_and_the_cli(tmp_path):
    runs = tmp_path / "runs"
    args = [f"runs_dir={runs}", "trainer.progress=none", "trainer.epochs=1", "trainer.seeds=[0,1]"]
    a = train(members.parse([*args, "optim.lr=0.001"]))
    b = train(members.parse([*args, "optim.lr=0.003"]))
    r = dlrun("diff", a.run_dir, b.run_dir, "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [c["key"] for c in out["config"]] == ["optim.lr"]
    assert {m["key"] for m in out["metrics"]} >= {"test/acc", "val/acc"}
    table = dlrun("diff", a.run_dir, b.run_dir)
    assert table.returncode == 0 and "optim.lr" in table.stdout and "environment: no difference" in table.stdout
    bad = dlrun("diff", a.run_dir, str(tmp_path))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a run or a group" in bad.stderr
