"""Plugins: a model, a dataset and a loss of the user's own, in one file outside the package, used by
train, sweep (trial processes) and gradcheck; recorded in the run so a resume finds them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

PLUGIN = '''
"""A user's own model, dataset and loss."""
import math

import numpy as np
import torch
from torch import nn

from dlrun.data import DATASETS
from dlrun.data.bundled import split_and_standardize
from dlrun.losses import LOSSES
from dlrun.models import MODELS
from dlrun.options import DataConfig, LossConfig, ModelConfig, declare, opt, option


@option("model", "tinynet", inputs=("tabular",))
class TinyNet(ModelConfig):
    """One hidden layer of tanh units (a plugin's model)."""

    width: int = opt(8, ge=1)


@MODELS.register("tinynet")
def build_tinynet(cfg, input_shape, out_features):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(math.prod(input_shape), cfg.width), nn.Tanh(), nn.Linear(cfg.width, out_features)
    )


@option("data", "rings", input_kind="tabular", shape=(2,), classes=2)
class Rings(DataConfig):
    """Two noisy concentric rings (a plugin's dataset)."""

    n_samples: int = opt(400, ge=20)
    standardize: str = "feature"


@DATASETS.register("rings")
def rings(cfg):
    rng = np.random.default_rng(cfg.seed)
    y = rng.integers(0, 2, cfg.n_samples)
    angle = rng.uniform(0, 2 * np.pi, cfg.n_samples)
    radius = 1.0 + y + 0.1 * rng.standard_normal(cfg.n_samples)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return split_and_standardize("rings", x, y, "binary", cfg)


declare("loss", "huber", LossConfig, "Huber loss (a plugin's loss)", tasks=("regression",))


@LOSSES.register("huber")
def huber(cfg):
    return torch.nn.functional.huber_loss
'''


@pytest.fixture
def plugin(tmp_path) -> Path:
    path = tmp_path / "mine" / "myplugin.py"
    path.parent.mkdir()
    path.write_text(PLUGIN)
    return path


def run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "COLUMNS": "200", **(env or {})}
    full.pop("DLRUN_PLUGINS", None) if env is None or "DLRUN_PLUGINS" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "dlrun", *args], cwd=cwd, capture_output=True, text=True, env=full, timeout=600
    )


QUIET = ["trainer.progress=none", "trainer.hist_every=0", "trainer.diag_every=0"]


def test_train_resume_and_gradcheck_with_a_plugin_model_and_dataset(tmp_path, plugin):
    runs = tmp_path / "runs"
    train = run(
        "--plugin", "mine/myplugin.py", "train", "model=tinynet", "model.width=16", "data=rings",
        "trainer.epochs=30", "optim.lr=0.03", f"runs_dir={runs}", *QUIET, cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    (run_dir,) = runs.glob("tinynet-rings/*")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["plugins"] == [str(plugin)] and config["model"] == {"name": "tinynet", "width": 16}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["metrics"]["test/acc"] > 0.9  # the rings are separable by one tanh layer

    # a resume from elsewhere, without --plugin, finds the plugin in config.yaml
    resumed = run("train", f"resume={run_dir}", "trainer.epochs=32", *QUIET[:1], cwd=Path("/"))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "summary.json").read_text())["epoch"] == 32

    check = run("--plugin", str(plugin), "gradcheck", "model=tinynet", "data=rings", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "tinynet" in check.stdout or "0." in check.stdout


def test_a_sweep_over_a_plugin_model_runs_its_trials_in_their_own_processes(tmp_path, plugin):
    runs = tmp_path / "runs"
    sweep = run(
        "--plugin", str(plugin), "sweep", "model=tinynet", "data=rings", "model.width=4,8", "trainer.epochs=2",
        f"runs_dir={runs}", *QUIET, cwd=tmp_path,
    )  # fmt: skip
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    (sweep_dir,) = (runs / "sweeps").iterdir()
    summaries = [json.loads(p.read_text()) for p in (sweep_dir / "trials").rglob("summary.json")]
    assert len(summaries) == 2 and all(s["status"] == "completed" for s in summaries)
    assert yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["plugins"] == [str(plugin)]


def test_a_plugin_loss_and_several_plugins_from_the_environment(tmp_path, plugin):
    other = tmp_path / "other.py"
    other.write_text(
        textwrap.dedent("""
        from dlrun.options import declare, SchedConfig
        from dlrun.optim import SCHEDULES

        declare("sched", "halfway", SchedConfig, "Half the learning rate after half the steps (a plugin's schedule)")
        SCHEDULES.register("halfway")(lambda optimizer, cfg, total: lambda step: 1.0 if step < total // 2 else 0.5)
        """)
    )
    env = {"DLRUN_PLUGINS": os.pathsep.join([str(plugin), str(other)])}
    listed = run("list", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    for name in ("tinynet", "rings", "huber", "halfway"):
        assert name in listed.stdout
    runs = tmp_path / "runs"
    train = run(
        "train", "model=tinynet", "data=sine", "loss=huber", "trainer.epochs=2", f"runs_dir={runs}", *QUIET,
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    refused = run("train", "model=tinynet", "data=iris", "loss=huber", f"runs_dir={runs}", cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "loss=huber does not fit a multiclass task" in refused.stderr


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("import not_a_module_anywhere\n", ["ModuleNotFoundError", "not_a_module_anywhere"]),
        ("def broken(:\n", ["SyntaxError", "line 1"]),
        ("raise SystemExit(3)\n", ["sys.exit(3)"]),
        (
            "from dlrun.options import option, ModelConfig\n@option('model', 'mlp')\nclass Mine(ModelConfig):\n"
            "    '''a second mlp'''\n",
            ["model=mlp is declared twice"],
        ),
    ],
)
def test_a_plugin_that_fails_to_load_is_one_line_naming_the_file(tmp_path, source, words):
    path = tmp_path / "broken.py"
    path.write_text(source)
    result = run("--plugin", str(path), "list", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: plugin {path}"), result.stderr
    for w in words:
        assert w in lines[0]


def test_a_missing_plugin_file_is_bad_input(tmp_path):
    result = run("--plugin", "nowhere.py", "train", cwd=tmp_path)
    assert result.returncode == 2 and "plugin nowhere.py: no such file" in result.stderr


def test_installed_packages_register_through_the_entry_point_group(tmp_path, plugin):
    site = tmp_path / "site"
    dist = site / "dlrun_demo-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dlrun-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[dlrun.plugins]\ndemo = demo_plugin\n")
    (site / "demo_plugin.py").write_text(PLUGIN)
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listed = run("list", "model", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "tinynet" in listed.stdout


def test_the_plugin_tutorial_shows_the_plugins_it_runs(tmp_path):
    """The tutorial includes experiments/plugins/*.py as they are (a snippet, not a copy), and its command
    trains them."""
    root = Path(__file__).resolve().parent.parent
    page = (root / "docs" / "tutorials" / "your-model.md").read_text()
    for name in ("transformer.py", "peaks.py"):
        assert f'--8<-- "experiments/plugins/{name}"' in page, name
    runs = tmp_path / "runs"
    plugins = root / "experiments" / "plugins"
    result = run(
        "--plugin", str(plugins / "transformer.py"), "--plugin", str(plugins / "peaks.py"), "train",
        "model=tiny_transformer", "data=peaks", "trainer.epochs=10", f"runs_dir={runs}", *QUIET, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (summary,) = runs.rglob("summary.json")
    assert json.loads(summary.read_text())["metrics"]["test/acc"] >= 0.9
