"""The command line: exit statuses, one-line errors, lazy imports, and the read-only commands."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from dlrun.cli import app
from tests.conftest import dlrun, quick

runner = CliRunner()
TEXT = {"capture_output": True, "text": True}


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from dlrun.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
        "print('HYDRA' if 'hydra' in sys.modules else 'NO-HYDRA')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Usage" in out and "train" in out
    assert "NO-TORCH" in out and "NO-HYDRA" in out


@pytest.mark.parametrize("command", ["train", "config", "list", "runs", "summary"])
def test_every_command_has_help_with_examples(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Examples" in result.output and f"dlrun {command}" in result.output


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["model=nope"], "model=nope"),
        (["optim.lr=abc"], "optim.lr"),
        (["trainer.epochs=-1"], "trainer.epochs"),
        (["model.hidden=[0]"], "model.hidden"),
        (["model.hiden=[64]"], "model.hiden"),
        (["loss=bce"], "loss=bce"),  # binary loss on a 10-class dataset: caught before training
    ],
)
def test_bad_input_exits_2_with_one_line(args, key, runs):
    result = dlrun("train", f"runs_dir={runs}", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not any(runs.rglob("summary.json"))  # nothing half-started


def test_config_prints_resolved_yaml():
    result = runner.invoke(app, ["config", "model=linear", "optim=sgd", "optim.lr=0.5"])
    assert result.exit_code == 0
    assert "hidden: []" in result.output and "name: sgd" in result.output and "lr: 0.5" in result.output


def test_list_shows_groups_options_and_descriptions():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for word in (
        "model",
        "data",
        "loss",
        "optim",
        "sched",
        "regularizer",
        "init",
        "trainer",
        "experiment",
        "digits",
        "xor",
        "adam",
        "cosine",
        "glorot_uniform",
        "xor_hidden",
    ):
        assert word in result.output
    one = runner.invoke(app, ["list", "optim"])
    assert "rmsprop" in one.output and "digits" not in one.output
    bad = runner.invoke(app, ["list", "optimm"])
    assert bad.exit_code == 2 and "did you mean 'optim'" in bad.output


def test_train_then_runs_table(runs):
    result = runner.invoke(app, ["train", *quick(runs, "data=iris", "trainer.epochs=3", "name=iris-check")])
    assert result.exit_code == 0, result.output
    assert "test/acc" in result.output and "run directory" in result.output
    table = runner.invoke(app, ["runs", str(runs)], env={"COLUMNS": "200"})
    assert table.exit_code == 0
    assert "iris-check" in table.output and "completed" in table.output and "test/acc" in table.output
    summary = json.loads(next(runs.rglob("summary.json")).read_text())
    assert summary["status"] == "completed" and 0.0 <= summary["metrics"]["test/acc"] <= 1.0


def test_runs_on_missing_directory_exits_2(tmp_path):
    result = runner.invoke(app, ["runs", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no such directory" in result.output


def test_plain_lines_when_not_a_terminal(runs):
    result = dlrun(
        "train",
        f"runs_dir={runs}",
        "data=iris",
        "trainer.epochs=2",
        "trainer.hist_every=0",
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert len(lines) == 2 and "val/acc" in lines[0]
    assert "\r" not in result.stdout and "\x1b[?25l" not in result.stdout  # no progress-bar redraws


def test_step_activation_warns_that_gradient_is_zero(runs):
    result = dlrun(
        "train",
        *quick(runs, "data=iris", "model.activation=step", "model.hidden=[8]", "trainer.epochs=1"),
    )
    assert result.returncode == 0
    assert "warning: model.activation=step" in result.stderr and "gradient is zero" in result.stderr


def test_version_and_python_m_dlrun():
    import dlrun as package

    for result in (dlrun("--version"), subprocess.run([sys.executable, "-m", "dlrun", "--version"], **TEXT)):
        assert result.returncode == 0 and result.stdout == f"dlrun {package.__version__}\n", result
    listed = subprocess.run([sys.executable, "-m", "dlrun", "list", "optim"], **TEXT)
    assert listed.returncode == 0 and "rmsprop" in listed.stdout


def test_only_the_program_freezes_the_heap_before_exit(monkeypatch):
    """main() without arguments is the program: gc.freeze() spares the exit its collections (the subprocess
    tests above show its output still arrives whole); called with arguments (tests, embedding) it does not."""
    import gc

    from dlrun import cli

    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    monkeypatch.setattr(sys, "argv", ["dlrun", "--version"])
    with pytest.raises(SystemExit):
        cli.main()
    assert frozen == [True]
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert frozen == [True]


def complete_bash(line: str, **env) -> list[str]:
    """What bash completes for `line` (its words split at spaces and at `=`, as COMP_WORDBREAKS does)."""
    words = line.replace("=", " = ").split() + ([""] if line.endswith((" ", "=")) else [])
    env = {**os.environ, **env, "_DLRUN_COMPLETE": "complete_bash", "COMP_WORDS": " ".join(words),
           "COMP_CWORD": str(len(words) - 1)}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "dlrun"], env=env, **TEXT).stdout.split()


def test_shell_completion():
    """The bash script (what --install-completion installs), commands, and overrides: groups and their options
    (plugins' too), a group's keys, a key's declared values."""
    env = {**os.environ, "_DLRUN_COMPLETE": "source_bash"}
    script = subprocess.run([sys.executable, "-m", "dlrun"], env=env, **TEXT)
    assert script.returncode == 0 and "_DLRUN_COMPLETE" in script.stdout
    assert complete_bash("dlrun tr") == ["train"]
    assert complete_bash("dlrun train model=vgg1") == ["vgg11", "vgg13", "vgg16", "vgg19"]  # bash: the value alone
    assert "optim.lr=" in complete_bash("dlrun train optim.l") and "model=" in complete_bash("dlrun train mod")
    assert complete_bash("dlrun train trainer.precision=") == ["32", "bf16", "16"]
    assert complete_bash("dlrun train model.bidirectional=") == ["true", "false"]
    plugin = complete_bash("dlrun train model=tiny", DLRUN_PLUGINS="experiments/plugins/transformer.py")
    assert plugin == ["tiny_transformer"] and complete_bash("dlrun train model=tiny") == []
    zsh = {**os.environ, "_DLRUN_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "dlrun summary data=mnist1"}
    assert '"data=mnist1d"' in subprocess.run([sys.executable, "-m", "dlrun"], env=zsh, **TEXT).stdout


def fake_runs(root) -> None:
    """Two run directories with a summary.json each, one with a name too long for 80 (or 200) columns."""
    long_name = "a-run-with-a-long-name-" * 8
    for name, metrics in ((long_name, {"test/acc": 0.9, "best/val/acc": 0.95}), ("short", {"val/loss": 0.5})):
        run = root / name / "2026-01-01_12-00-00"
        run.mkdir(parents=True)
        summary = {"status": "completed", "step": 10, "metrics": metrics, "wall_time_s": 1.5}
        (run / "summary.json").write_text(json.dumps(summary))


def test_runs_formats(tmp_path):
    fake_runs(tmp_path)
    table = dlrun("runs", str(tmp_path))
    assert table.returncode == 0
    assert any("a-run-with-a-long-name-" * 8 in line for line in table.stdout.splitlines()), table.stdout
    csv_out = dlrun("runs", str(tmp_path), "--format", "csv")
    rows = list(csv.DictReader(csv_out.stdout.splitlines()))
    assert [r["run"].split("/")[0] for r in rows] == ["a-run-with-a-long-name-" * 8, "short"]
    assert rows[0]["best/val/acc"] == "0.95" and rows[0]["val/loss"] == "" and rows[1]["val/loss"] == "0.5"
    runs_json = json.loads(dlrun("runs", str(tmp_path), "--format", "json").stdout)
    assert [r["metrics"] for r in runs_json] == [{"test/acc": 0.9, "best/val/acc": 0.95}, {"val/loss": 0.5}]
    bad = dlrun("runs", str(tmp_path), "--format", "xml")
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "table, csv, json" in lines[0]


def test_plugins_load_before_the_command(tmp_path):
    good = tmp_path / "good.py"
    good.write_text("import sys\nprint('plugin loaded', file=sys.stderr)\n")
    result = dlrun("--plugin", str(good), "list", "optim")
    assert result.returncode == 0 and result.stderr.count("plugin loaded") == 1 and "rmsprop" in result.stdout
    env = {**os.environ, "DLRUN_PLUGINS": f"{tmp_path / 'none.py'}{os.pathsep}{good}"}
    bad = subprocess.run([sys.executable, "-m", "dlrun", "list"], env=env, **TEXT)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: plugin ") and "none.py" in lines[0]


def test_piped_tables_are_not_cut_at_80_columns(tmp_path):
    """gradcheck's table is wider than 80 columns; piped (no terminal, no COLUMNS) it keeps every cell whole."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    r = subprocess.run(
        [sys.executable, "-m", "dlrun", "gradcheck", "model=mlp"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert "…" not in r.stdout and max(len(line) for line in r.stdout.splitlines()) > 80
