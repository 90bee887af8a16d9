"""Damaged run files and disk faults: one `error:` line (exit 2, or 1 for a disk that fills mid-run), no
traceback, and nothing written or lost. Listings skip a damaged run with one `warning:` line instead.

One digits MLP run is trained once per module and copied for each test; the commands run as `dlrun` in a
fresh process. Disk faults are simulated by a plugin (tests may run as root, for whom chmod stops nothing).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from pathlib import Path

import pytest

from tests.conftest import dlrun, quick

# loaded with `dlrun --plugin`; $DLRUN_FAULT is readonly:FOLDER (making a file or folder under FOLDER
# fails with EACCES) or full:NAME (writing a file called NAME fails with ENOSPC when it is synced)
FAULTS = """
import errno
import os

kind, _, target = os.environ["DLRUN_FAULT"].partition(":")


def refuse(code, path):
    raise OSError(code, os.strerror(code), path)


def under(path):
    path = os.path.abspath(os.fspath(path))
    return path == target or path.startswith(target + os.sep)


if kind == "readonly":
    real_open, real_mkdir = os.open, os.mkdir

    def guarded_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and under(path):
            refuse(errno.EACCES, path)
        return real_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if under(path):
            refuse(errno.EACCES, path)
        return real_mkdir(path, *args, **kwargs)

    os.open, os.mkdir = guarded_open, guarded_mkdir
elif kind == "full":
    real_fsync = os.fsync

    def full_fsync(fd):
        # atomic_file syncs .NAME.<random>.tmp before renaming it over NAME
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(f".{target}."):
            refuse(errno.ENOSPC, None)
        return real_fsync(fd)

    os.fsync = full_fsync
"""


# ----------------------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(a finished digits MLP run, the last.pt of a logistic regression: another model's weights)."""
    from dlrun.config import compose
    from dlrun.train import train

    root = tmp_path_factory.mktemp("damaged-runs")
    mlp = train(compose(quick(root, "trainer.epochs=1", "trainer.threads=1")))
    linear = train(compose(quick(root, "trainer.epochs=1", "trainer.threads=1", "model=linear", "name=linear")))
    assert mlp["status"] == linear["status"] == "completed"
    return Path(mlp["run_dir"]), Path(linear["run_dir"]) / "checkpoints" / "last.pt"


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A copy of the trained run, at tmp_path/runs/mlp-digits/run."""
    path = tmp_path / "runs" / "mlp-digits" / "run"
    shutil.copytree(trained[0], path)
    return path


@pytest.fixture
def sweep(tmp_path) -> Path:
    """A sweep directory as `dlrun sweep` leaves it: sweep.yaml and its study in study.db."""
    import optuna

    from dlrun.sweep.study import SweepSpec, quiet_optuna

    path = tmp_path / "sweep"
    path.mkdir()
    quiet_optuna()
    optuna.create_study(storage=f"sqlite:///{path / 'study.db'}", study_name="s", direction="maximize")
    SweepSpec(["trainer.epochs=1", "optim.lr=0.01,0.1"], "grid", 2, "val/acc", "maximize", "s").save(path)
    return path


def fault(tmp_path: Path, monkeypatch, spec: str) -> list[str]:
    """`--plugin FILE` arguments that make this disk fault happen in the dlrun process."""
    plugin = tmp_path / "faults.py"
    plugin.write_text(FAULTS)
    monkeypatch.setenv("DLRUN_FAULT", spec)
    return ["--plugin", str(plugin)]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error(result, code: int = 2, *words: str) -> str:
    """The only line on stderr: `error: ...` with these words; no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert "weights_only" not in lines[0]  # never the advice to load a pickle unsafely
    return lines[0]


def resume(run: Path, *extra: str):
    return dlrun(*extra, "train", f"resume={run}", "trainer.epochs=2", "trainer.progress=none")


# ----------------------------------------------------------------------------- damaged checkpoints
def damage_checkpoint(path: Path, how: str, foreign: Path) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random":
        path.write_bytes(random.Random(0).randbytes(4096))  # the same bytes each run: a failure repeats
    else:  # another model's state dict (model=linear)
        shutil.copyfile(foreign, path)


KINDS = ["truncated", "empty", "random", "foreign"]
CHECKPOINT_WORDS = {"truncated": "damaged", "empty": "empty", "random": "not a checkpoint", "foreign": "do not fit"}


@pytest.mark.parametrize("how", KINDS)
def test_resume_refuses_a_damaged_checkpoint(run, trained, how):
    last = run / "checkpoints" / "last.pt"
    damage_checkpoint(last, how, trained[1])
    before = snapshot(run)
    line = one_error(resume(run), 2, str(last), CHECKPOINT_WORDS[how], "restore it from a copy")
    if how == "foreign":
        assert "model.hidden=[]" in line  # what the weights were saved with
    assert snapshot(run) == before  # metrics.jsonl not cut back, config.yaml not rewritten, no lock left


@pytest.mark.parametrize("how", ["truncated", "foreign"])
def test_viz_refuses_a_damaged_checkpoint(run, trained, how):
    last = run / "checkpoints" / "last.pt"
    damage_checkpoint(last, how, trained[1])
    before = snapshot(run)
    one_error(dlrun("viz", "confusion", str(run)), 2, str(last), CHECKPOINT_WORDS[how])
    assert snapshot(run) == before


class Payload:
    """A pickle that runs code when loaded: it would create a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_malicious_pickle_is_refused_not_run(run, tmp_path):
    marker = tmp_path / "pwned"
    (run / "checkpoints" / "last.pt").write_bytes(pickle.dumps({"model": Payload(marker)}))
    one_error(dlrun("viz", "confusion", str(run)), 2, "not a checkpoint dlrun can load")
    assert not marker.exists()


# ----------------------------------------------------------------------------- damaged config.yaml
CONFIGS = {"garbage": "model: [mlp\n  : :\n", "list": "- model\n- data\n", "empty": ""}
CONFIG_WORDS = {"garbage": "not valid YAML", "list": "not a mapping", "empty": "empty"}


@pytest.mark.parametrize("how", list(CONFIGS))
def test_resume_refuses_a_damaged_config(run, how):
    (run / "config.yaml").write_text(CONFIGS[how])
    before = snapshot(run)
    one_error(resume(run), 2, str(run / "config.yaml"), CONFIG_WORDS[how], "command.txt")
    assert snapshot(run) == before


def test_viz_refuses_a_damaged_config(run):
    (run / "config.yaml").write_text(CONFIGS["garbage"])
    before = snapshot(run)
    one_error(dlrun("viz", "layers", str(run)), 2, str(run / "config.yaml"), "not valid YAML")
    assert snapshot(run) == before


# ----------------------------------------------------------------------------- damaged summary.json
@pytest.mark.parametrize("command", ["runs", "results"])
def test_listings_skip_a_damaged_summary_with_a_warning(run, command):
    runs = run.parent.parent
    damaged = {"garbage": "{not json", "list": "[1, 2]", "empty": ""}
    for name, text in damaged.items():
        shutil.copytree(run, run.parent / name)
        (run.parent / name / "summary.json").write_text(text)
    before = snapshot(runs)
    result = dlrun(command, str(runs))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 3 and all(line.startswith("warning: ") for line in lines), result.stderr
    for name in damaged:
        assert any(str(run.parent / name / "summary.json") in line for line in lines), result.stderr
    assert "mlp-digits/run" in result.stdout  # the undamaged run is listed
    assert snapshot(runs) == before


# ----------------------------------------------------------------------------- a cut metrics.jsonl line
CUT = '{"step": 99999, "train/lo'  # what a kill in the middle of a line leaves


def test_resume_drops_a_cut_metrics_line(run):
    with open(run / "metrics.jsonl", "a") as f:
        f.write(CUT)
    last = (run / "checkpoints" / "last.pt").read_bytes()
    result = resume(run)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]  # all parse
    assert max(r["step"] for r in records) < 99999
    assert (run / "checkpoints" / "last.pt").read_bytes() != last  # it trained on


@pytest.mark.parametrize("command", ["curves", "results"])
def test_readers_skip_a_cut_metrics_line(run, command):
    with open(run / "metrics.jsonl", "a") as f:
        f.write(CUT)
    args = ["viz", "curves", str(run)] if command == "curves" else ["results", str(run.parent.parent)]
    result = dlrun(*args)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


# ----------------------------------------------------------------------------- damaged sweep files
SWEEP_YAMLS = {"garbage": "overrides: [a\n: :\n", "list": "- grid\n", "unknown key": None}


@pytest.mark.parametrize("command", ["resume", "results"])
@pytest.mark.parametrize("how", list(SWEEP_YAMLS))
def test_a_damaged_sweep_yaml_is_one_line(sweep, command, how):
    spec = sweep / "sweep.yaml"
    text = SWEEP_YAMLS[how]
    spec.write_text(text if text is not None else spec.read_text() + "colour: blue\n")
    before = snapshot(sweep)
    args = ["sweep", "--resume", str(sweep), "--cold"] if command == "resume" else ["results", str(sweep)]
    line = one_error(dlrun(*args), 2, str(spec), "damaged")
    if how == "unknown key":
        assert "colour" in line
    assert snapshot(sweep) == before


def damage_db(path: Path, how: str) -> None:
    path.write_bytes(os.urandom(8192) if how == "random" else path.read_bytes()[:4096])


@pytest.mark.parametrize("how", ["random", "truncated"])
def test_results_of_a_damaged_study_db_is_one_line(sweep, how):
    damage_db(sweep / "study.db", how)
    before = snapshot(sweep)
    one_error(dlrun("results", str(sweep)), 2, str(sweep / "study.db"), "start a new sweep")
    assert snapshot(sweep) == before


@pytest.mark.parametrize(
    "how",
    [
        "random",
        "truncated",
    ],
)
def test_sweep_resume_of_a_damaged_study_db_is_one_line(sweep, how):
    damage_db(sweep / "study.db", how)
    before = snapshot(sweep)
    one_error(dlrun("sweep", "--resume", str(sweep), "--cold"), 2, str(sweep / "study.db"))
    assert snapshot(sweep) == before


# ----------------------------------------------------------------------------- disks
def test_a_runs_dir_that_is_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("not a folder\n")
    for runs_dir, group in ((tmp_path / "file", []), (tmp_path / "file" / "below", ["trainer.seeds=[0,1]"])):
        result = dlrun("train", *quick(runs_dir, "trainer.epochs=1", *group))
        one_error(result, 2, f"runs_dir={runs_dir}", "is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no runs/ in the current folder either
    assert (tmp_path / "file").read_text() == "not a folder\n"


def test_a_sweep_into_a_file_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("not a folder\n")
    grid = ["optim.lr=0.1,0.01", "trainer.epochs=1", "--cold"]
    one_error(dlrun("sweep", *grid, f"runs_dir={tmp_path / 'file'}"), 2, "runs_dir=", "is a file")
    one_error(dlrun("sweep", *grid, "--dir", str(tmp_path / "file" / "s")), 2, "--dir", "is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_read_only_runs_dir(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    plugin = fault(tmp_path, monkeypatch, f"readonly:{runs}")
    one_error(dlrun(*plugin, "train", *quick(runs, "trainer.epochs=1")), 2, f"runs_dir={runs}", "cannot write")
    assert list(runs.iterdir()) == []


def test_a_read_only_runs_dir_for_real(tmp_path):
    """A folder that cannot be written: chmod 555, or for root (whom permissions do not stop) a read-only
    file system mounted there."""
    import subprocess

    runs = tmp_path / "runs"
    runs.mkdir()
    mounted = os.geteuid() == 0
    if mounted:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(runs)], capture_output=True)
        assert r.returncode == 0, f"root needs a read-only mount for this test: {r.stderr.decode()}"
    else:
        runs.chmod(0o555)
    try:
        result = dlrun("train", *quick(runs, "trainer.epochs=1"))
        one_error(result, 2, f"runs_dir={runs}", "Read-only file system" if mounted else "Permission denied")
        assert list(runs.iterdir()) == []
    finally:
        if mounted:
            subprocess.run(["umount", str(runs)], check=True)
        else:
            runs.chmod(0o755)


def test_resume_of_a_read_only_run(run, tmp_path, monkeypatch):
    before = snapshot(run)
    plugin = fault(tmp_path, monkeypatch, f"readonly:{run}")
    one_error(resume(run, *plugin), 2, str(run), "cannot write in the run directory")
    assert snapshot(run) == before


def test_a_disk_that_fills_mid_run_keeps_the_last_checkpoint(run, tmp_path, monkeypatch):
    last = run / "checkpoints" / "last.pt"
    before = last.read_bytes()
    plugin = fault(tmp_path, monkeypatch, "full:last.pt")
    line = one_error(resume(run, *plugin), 1, str(last), "no space left", f"resume={run}")
    assert "intact" in line
    assert last.read_bytes() == before
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.pt", "last.pt"]  # no temporary file left
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"


def out_commands(run: Path, out: Path) -> dict[str, list[str]]:
    return {
        "viz": ["viz", "confusion", str(run), "--out", str(out / "confusion.png")],
        "viz curves": ["viz", "curves", str(run), "--out", str(out / "curves.png")],
        "lr-find": ["lr-find", f"runs_dir={run.parent.parent}", "--steps", "5", "--out", str(out / "lr.png")],
        "experiment report": ["experiment", "report", "convolution", "--out", str(out)],
    }


@pytest.mark.parametrize("command", ["viz", "viz curves", "lr-find", "experiment report"])
def test_an_out_under_a_file(run, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "pictures"
    before = snapshot(tmp_path)
    one_error(dlrun(*out_commands(run, out)[command]), 2, f"--out {out}", "is a file, not a folder")
    assert snapshot(tmp_path) == before


def test_a_read_only_out_folder(run, tmp_path, monkeypatch):
    out = tmp_path / "pictures"
    out.mkdir()
    plugin = fault(tmp_path, monkeypatch, f"readonly:{out}")
    before = snapshot(tmp_path)
    one_error(dlrun(*plugin, *out_commands(run, out)["viz"]), 2, f"--out {out}", "cannot write")
    assert snapshot(tmp_path) == before


def test_a_read_only_run_gets_no_picture(run, tmp_path, monkeypatch):
    """The default --out is the run's own viz/ folder, and the picture goes to its TensorBoard too."""
    before = snapshot(run)
    plugin = fault(tmp_path, monkeypatch, f"readonly:{run}")
    one_error(dlrun(*plugin, "viz", "confusion", str(run)), 2, str(run), "make the run writable")
    assert snapshot(run) == before


def test_experiment_report_checks_its_out_before_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "reports"
    result = dlrun("experiment", "report", "xor_hidden", "--quick", "--runs-dir", "runs", "--out", str(out))
    one_error(result, 2, f"--out {out}")
    assert "running" not in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing trained into runs/


# ----------------------------------------------------------------------------- viz curves' default
def test_viz_curves_writes_into_the_run_not_the_current_folder(run, tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    result = dlrun("viz", "curves", str(run))
    assert result.returncode == 0, result.stderr
    assert (run / "viz" / "curves.png").is_file() and list(here.iterdir()) == []
