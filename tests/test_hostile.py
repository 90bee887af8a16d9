"""Hostile inputs, round two: files, plugin models, huge values, signals, output that cannot be written, and
sweeps pointed at other folders. Each case ends with one `error:` line (exit 2, or 143 for SIGTERM), no
traceback, and nothing lost."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import dlrun

QUICK = ["trainer.epochs=1", "trainer.progress=none"]


def one_error(r: subprocess.CompletedProcess, code: int = 2) -> str:
    assert r.returncode == code, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


# ----------------------------------------------------------------------------- data files
def npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def bad_crc(path: Path) -> Path:
    npz(path, x=np.random.randn(40, 3), y=np.arange(40) % 2)
    data = bytearray(path.read_bytes())
    data[data.find(b"NUMPY") + 200] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def absurd_header(path: Path) -> Path:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 10**12)})
    labels = io.BytesIO()
    np.save(labels, np.arange(40) % 2)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", header.getvalue() + b"\0" * 64)
        z.writestr("y.npy", labels.getvalue())
    return path


def text(path: Path, content: str) -> Path:
    path.write_text(content)
    return path


FILES = {
    "object arrays": (
        lambda p: npz(p / "o.npz", x=np.array([[1, 2], [3, 4]], dtype=object), y=np.array([0, 1])),
        "object arrays, which only pickle can load",
    ),
    "a bad CRC": (lambda p: bad_crc(p / "c.npz"), "Bad CRC-32"),
    "an absurd header": (lambda p: absurd_header(p / "a.npz"), "cannot read its arrays"),
    "zero features": (lambda p: npz(p / "z.npz", x=np.ones((40, 0)), y=np.arange(40) % 2), "no features"),
    "a 0-d y": (lambda p: npz(p / "y.npz", x=np.ones((40, 3)), y=np.array(3)), "y is a single value"),
    "complex x": (lambda p: npz(p / "j.npz", x=np.ones((40, 3)) * (1 + 2j), y=np.arange(40) % 2), "complex numbers"),
    "1e308 in an npz": (
        lambda p: npz(p / "h.npz", x=np.r_[np.ones((39, 2)), [[1e308, 1]]], y=np.arange(40) % 2),
        "overflow when standardized",
    ),
    "1e308 in a CSV": (
        lambda p: text(
            p / "h.csv", "a,b,label\n" + "".join(f"{1e308 if i == 3 else i},{i},{i % 2}\n" for i in range(40))
        ),
        "overflow when standardized",
    ),
    "a NUL byte in a CSV": (
        lambda p: text(p / "n.csv", "a,b,label\n" + "".join(f"{i}\0,{i},{i % 2}\n" for i in range(40))),
        "line 2 holds a NUL byte",
    ),
    "a named pipe": (lambda p: (os.mkfifo(p / "pipe.csv"), p / "pipe.csv")[1], "not a regular file"),
}


@pytest.mark.parametrize("case", list(FILES))
def test_damaged_or_strange_data_files_are_one_line(case, tmp_path):
    make, message = FILES[case]
    path = make(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "dlrun.cli", "train", "data=files", f"data.path={path}", f"runs_dir={tmp_path}", *QUICK],
        capture_output=True,
        text=True,
        timeout=120,  # a named pipe must not be read forever
    )
    assert message in one_error(r)
    assert not (tmp_path / "mlp-files").exists() or not any((tmp_path / "mlp-files").rglob("summary.json"))


def test_a_one_step_signal_is_refused_by_a_cnn(tmp_path):
    path = npz(tmp_path / "one.npz", x=np.random.randn(40, 1, 1), y=np.arange(40) % 2)
    line = one_error(dlrun("train", "data=files", f"data.path={path}", "model=cnn", f"runs_dir={tmp_path}", *QUICK))
    assert "no neighbours to convolve; try model=mlp" in line


def test_hidden_files_in_an_image_folder_are_not_examples(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "img" / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((8, 8), 40 * i + (cls == "dog") * 20, dtype=np.uint8)).save(
                tmp_path / "img" / cls / f"{i}.png"
            )
        (tmp_path / "img" / cls / "._0.png").write_bytes(b"\0\5\26\7 mac resource fork")
    r = dlrun("train", "data=files", f"data.path={tmp_path / 'img'}", f"runs_dir={tmp_path / 'runs'}", *QUICK)
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------------- plugin models
BAD_MODELS = '''
import os

import torch
from torch import nn

from dlrun.data import DATASETS
from dlrun.models import MODELS
from dlrun.options import DataConfig, ModelConfig, option

KIND = os.environ["BAD"]


@option("model", "bad", reads="reads feature vectors")
class BadConfig(ModelConfig):
    """a model that is wrong in the way $BAD says"""


class Bad(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.lin = nn.Linear(n_in, n_out)

    def forward(self, x):
        y = self.lin(x)
        out = {"shape": y[:, :1], "scalar": y.sum(), "int": y.long(), "tuple": (y, y), "none": None}
        if KIND == "raises":
            raise ValueError("broken forward")
        if KIND == "memory":
            raise MemoryError()
        return out.get(KIND, y)


class Empty(nn.Module):
    def forward(self, x):
        return torch.zeros(x.shape[0], 3)


@MODELS.register("bad")
def build_bad(cfg, input_shape, out_features):
    if KIND == "builder_none":
        return None
    return Empty() if KIND == "no_params" else Bad(input_shape[0], out_features)


@option("data", "nothing", input_kind="tabular")
class NothingConfig(DataConfig):
    """a dataset function that returns None"""


@DATASETS.register("nothing")
def nothing(cfg):
    return None
'''

PLUGIN_CASES = {
    "shape": "its forward returned shape (2, 1) for 2 examples; this task needs (batch, 3)",
    "scalar": "its forward returned shape () for 2 examples",
    "int": "its forward returned a torch.int64 tensor",
    "tuple": "its forward returned tuple; return one tensor",
    "none": "its forward returned NoneType",
    "raises": "its forward raised ValueError: broken forward",
    "memory": "its forward ran out of memory",
    "builder_none": "its builder returned NoneType, not a torch.nn.Module",
    "no_params": "it has no trainable parameter",
}


@pytest.fixture(scope="module")
def bad_plugin(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plugins") / "bad_models.py"
    path.write_text(BAD_MODELS)
    return path


def run_with(kind: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BAD": kind, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "dlrun.cli", *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("kind", list(PLUGIN_CASES))
def test_a_broken_plugin_model_is_refused_before_training(kind, bad_plugin, tmp_path):
    r = run_with(kind, "--plugin", str(bad_plugin), "train", "model=bad", "data=iris", f"runs_dir={tmp_path}", *QUICK)
    assert PLUGIN_CASES[kind] in one_error(r)
    assert not list(tmp_path.rglob("summary.json"))


@pytest.mark.parametrize("command", [["summary"], ["gradcheck"]])
def test_summary_and_gradcheck_check_a_plugin_model_too(command, bad_plugin):
    r = run_with("shape", "--plugin", str(bad_plugin), *command, "model=bad", "data=iris")
    assert PLUGIN_CASES["shape"] in one_error(r)


def test_a_dataset_function_that_returns_none(bad_plugin, tmp_path):
    r = run_with("ok", "--plugin", str(bad_plugin), "train", "data=nothing", f"runs_dir={tmp_path}", *QUICK)
    assert "data=nothing: its dataset function returned NoneType, not a dlrun Dataset" in one_error(r)


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "model.hidden=[3000000000]", "data=iris"], "24,000,000,003 parameters"),
        (["summary", "model.hidden=[3000000000]", "data=iris"], "GiB of memory; give a smaller model"),
        (["config", "data=moons", "data.n_samples=3000000000"], "data.n_samples"),
        (["config", "trainer.checkpoint=2"], "trainer.checkpoint: 2 is not a boolean; write trainer.checkpoint=true"),
        (["config", "trainer.threads=100000"], "trainer.threads: 100000 is more than 8 per core"),
        (["config", "name=" + "a" * 300], "name: 'aaaa"),
        (["config", "data=files", "data.image_size=[60000,60000]"], "data.image_size"),
    ],
)
def test_values_past_what_the_machine_holds(args, message, tmp_path):
    r = dlrun(*args, f"runs_dir={tmp_path}")
    assert message in one_error(r)
    assert not list(tmp_path.rglob("*"))


def test_runs_dir_that_is_a_dangling_link_or_too_long(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    line = one_error(dlrun("train", "data=iris", f"runs_dir={tmp_path / 'link'}", *QUICK))
    assert "is a symbolic link to" in line and "which does not exist" in line
    deep = tmp_path.joinpath(*["d" * 200] * 20)
    line = one_error(dlrun("train", "data=iris", f"runs_dir={deep}", *QUICK))
    assert "files below it need 200 of the 4096 a path may have" in line


# ----------------------------------------------------------------------------- summaries of the wrong shape
@pytest.mark.parametrize(
    "summary",
    [
        {"status": "completed", "metrics": None},
        {"status": "completed", "metrics": [1, 2]},
        {"status": "completed", "metrics": {"test/acc": "high"}},
        {"status": "completed", "wall_time_s": "slow", "metrics": {}},
        {"status": 5, "metrics": {}},
    ],
)
@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_runs_skips_a_summary_of_the_wrong_types(summary, fmt, tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "summary.json").write_text(json.dumps(summary))
    r = dlrun("runs", str(tmp_path), "--format", fmt)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "damaged (not a JSON object of the fields and types dlrun writes)" in r.stderr


def test_runs_does_not_wait_on_a_named_pipe(tmp_path):
    (tmp_path / "r").mkdir()
    os.mkfifo(tmp_path / "r" / "summary.json")
    r = subprocess.run(
        [sys.executable, "-m", "dlrun.cli", "runs", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "damaged" in r.stderr


# ----------------------------------------------------------------------------- output that cannot be written
def finished(runs: Path) -> dict:
    (summary,) = runs.rglob("summary.json")
    assert (summary.parent / "checkpoints" / "last.pt").is_file()
    return json.loads(summary.read_text())


def test_a_reader_that_goes_away_does_not_stop_the_training(tmp_path):
    """`dlrun train ... | head -1`: the run trains to the end, completed, with its checkpoint."""
    p = subprocess.Popen(
        [sys.executable, "-m", "dlrun.cli", "train", "data=digits", "trainer.epochs=3", f"runs_dir={tmp_path}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    p.stdout.readline()
    p.stdout.close()  # the reader is gone: every later write fails with EPIPE
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-2000:]
    assert b"Traceback" not in err and b"BrokenPipe" not in err
    s = finished(tmp_path)
    assert s["status"] == "completed" and s["step"] == s["total_steps"]


def test_stdout_on_a_full_device_or_closed(tmp_path):
    with open("/dev/full", "w") as full:
        r = subprocess.run(
            [sys.executable, "-m", "dlrun.cli", "train", "data=iris", f"runs_dir={tmp_path / 'a'}", *QUICK],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "warning: stdout: No space left on device" in r.stderr
    assert finished(tmp_path / "a")["status"] == "completed"
    r = subprocess.run(
        [sys.executable, "-m", "dlrun.cli", "train", "data=iris", f"runs_dir={tmp_path / 'b'}", *QUICK],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.close(1),  # `>&-`
    )
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert finished(tmp_path / "b")["status"] == "completed"


# ----------------------------------------------------------------------------- signals
def test_sigterm_to_lr_find_says_so(tmp_path):
    p = subprocess.Popen(
        [sys.executable, "-m", "dlrun.cli", "lr-find", "data=digits", "--end", "1e-6", "--steps", "10000000"]
        + [f"runs_dir={tmp_path}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(8)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and err.strip().splitlines()[-1] == "error: terminated (SIGTERM)", err
    assert not list(tmp_path.rglob("*.png"))


def test_ctrl_c_stops_a_claim_and_writes_no_verdict(tmp_path):
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dlrun.cli",
            "experiment",
            "run",
            "overfitting",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--out",
            str(tmp_path / "out"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not list((tmp_path / "runs").rglob("metrics.jsonl")) and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, (out[-1000:], err[-1000:])
    assert not any(v in out for v in ("claim holds", "does not hold", "inconclusive")), out  # no verdict
    assert not (tmp_path / "out" / "overfitting" / "results.json").exists()


# ----------------------------------------------------------------------------- sweeps and their folders
def test_sweep_refuses_jobs_0_and_other_folders(tmp_path):
    assert "--jobs 0: must be >= 1" in one_error(dlrun("sweep", "data=xor", "optim.lr=0.1,0.01", "--jobs", "0"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text("{}")
    line = one_error(dlrun("sweep", "data=xor", "optim.lr=0.1,0.01", "--dir", str(run)))
    assert "a run's folder; give a new folder" in line
    other = tmp_path / "other"
    r = dlrun("sweep", "data=xor", "trainer.epochs=1", "optim.lr=0.1,0.01", "--dir", str(other), "--cold")
    assert r.returncode == 0, r.stderr
    before = {p: p.stat().st_mtime_ns for p in other.rglob("*") if p.is_file()}
    line = one_error(dlrun("sweep", "data=xor", "trainer.epochs=1", "optim.lr=0.5,0.05", "--dir", str(other), "--cold"))
    assert "holds another sweep" in line and f"dlrun sweep --resume {other}" in line
    assert {p: p.stat().st_mtime_ns for p in other.rglob("*") if p.is_file()} == before


def session_processes(sid: int) -> list[str]:
    """The command lines of the processes in session sid (a sweep started in its own session and what it
    started: trainings, the fork server, multiprocessing's resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields[3]: the session; Z: a zombie, already gone
            found.append(cmd)
    return found


def none_left(sid: int) -> list[str]:
    deadline = time.time() + 15  # the resource tracker ends when it reads the end of its pipe
    while (left := session_processes(sid)) and time.time() < deadline:
        time.sleep(0.3)
    return left


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_stopped_and_resumed_sweep_leaves_no_process(sig, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["sweep", "data=digits", "trainer.epochs=40", "optim.lr=0.1,0.01", "--jobs", "2", "--dir", str(sweep)]
    p = subprocess.Popen(
        [sys.executable, "-m", "dlrun.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while not list(sweep.rglob("metrics.jsonl")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    p.send_signal(sig)
    p.wait(timeout=120)
    assert none_left(p.pid) == []
    r = subprocess.Popen(
        [sys.executable, "-m", "dlrun.cli", "sweep", "--resume", str(sweep)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    out, err = r.communicate(timeout=300)
    assert r.returncode == 0, err[-2000:]
    assert "best: val/acc" in out
    assert none_left(r.pid) == []


DISK_FULL = """
import errno
import os

if os.environ.get("DISK_FULL") == "1":
    real_fsync = os.fsync

    def full_fsync(fd):  # a checkpoint's temporary file cannot be synced: the disk is full
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".last.pt."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    os.fsync = full_fsync
"""


def test_trials_the_disk_failed_run_again_on_resume(tmp_path, monkeypatch):
    plugin = tmp_path / "disk_full.py"
    plugin.write_text(DISK_FULL)
    sweep = tmp_path / "sweep"
    args = ["--plugin", str(plugin), "sweep", "data=xor", "trainer.epochs=2", "optim.lr=0.1,0.01", "--dir", str(sweep)]
    monkeypatch.setenv("DISK_FULL", "1")
    r = dlrun(*args, "--cold")
    assert "no space left on" in (r.stdout + r.stderr).lower(), r.stdout[-2000:] + r.stderr[-2000:]
    monkeypatch.setenv("DISK_FULL", "0")  # space freed
    r = dlrun("--plugin", str(plugin), "sweep", "--resume", str(sweep))
    assert r.returncode == 0, r.stderr[-2000:]
    # in a separate process: reading the sweep here would load its plugin into this test process
    rows = json.loads(dlrun("results", str(sweep), "--format", "json").stdout)["rows"]
    assert sorted(row["status"] for row in rows) == ["completed", "completed"], rows


def test_a_signal_between_ask_and_open_waits_for_the_trial_to_be_owned():
    """The sweep holds SIGTERM while it asks for a trial and records it as its own: the handler runs after,
    and finds the trial to fail and queue again (before, one SIGTERM in about 55 left it RUNNING)."""
    from dlrun.sweep.runner import signals_held

    seen = []
    old = signal.signal(signal.SIGTERM, lambda *a: seen.append("handled"))
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            seen.append("owned")
        time.sleep(0.1)
    finally:
        signal.signal(signal.SIGTERM, old)
    assert seen == ["owned", "handled"]


FULL = """
import errno
import os

target = os.environ["FULL"]
real_fsync = os.fsync


def full_fsync(fd):  # the file's temporary twin cannot be synced: the disk is full
    if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(f".{target}."):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_fsync(fd)


os.fsync = full_fsync
"""


def test_a_full_disk_under_lr_find_and_viz_is_one_line(tmp_path, monkeypatch):
    plugin = tmp_path / "full.py"
    plugin.write_text(FULL)
    monkeypatch.setenv("FULL", "lr.png")
    out = tmp_path / "lr.png"
    r = dlrun("--plugin", str(plugin), "lr-find", "data=iris", "--steps", "20", "--out", str(out))
    assert "lr.png: no space left on the device; free some space" in one_error(r, 1)
    assert not list(tmp_path.glob("lr.*")) and not list(tmp_path.glob(".lr.*"))
    r = dlrun("train", "data=xor", "trainer.epochs=1", f"runs_dir={tmp_path / 'runs'}", "trainer.progress=none")
    assert r.returncode == 0, r.stderr
    (run,) = (tmp_path / "runs").glob("*/*")
    monkeypatch.setenv("FULL", "boundary.png")
    r = dlrun("--plugin", str(plugin), "viz", "boundary", str(run))
    assert "boundary.png: no space left on the device" in one_error(r, 1)
    assert not list((run / "viz").glob("*boundary*"))


def test_a_trial_its_sweep_never_signed_is_queued_again(tmp_path, monkeypatch):
    """A kill -9 between Optuna's ask and the worker's signature leaves a RUNNING trial with no worker; the
    next sweep (after UNSIGNED_S) fails it and queues it again, where it used to wait for it forever."""
    import optuna
    from optuna.trial import TrialState

    from dlrun.sweep import runner

    monkeypatch.setattr(runner, "UNSIGNED_S", 60)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s")
    study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # never signed: its process was killed
    assert runner.recover(study) == []  # too young: another worker may be signing it now
    time.sleep(0.3)
    monkeypatch.setattr(runner, "UNSIGNED_S", 0.2)  # now it is older than that
    assert runner.recover(study) == [0]
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert "stopped before it recorded itself" in trials[0].user_attrs["reason"]


def test_an_interrupt_a_library_turns_into_another_error_is_still_an_interrupt(monkeypatch):
    """Ctrl-C while Hydra or OmegaConf compose can surface as their own error (an unknown key, an
    UnboundLocalError from a cleanup); compose gives the KeyboardInterrupt back, so a claim stops with 130."""
    import importlib

    from dlrun.errors import ConfigError

    compose_module = importlib.import_module("dlrun.config.compose")

    def validate(raw):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ConfigError("model.hidden: unknown key") from None

    monkeypatch.setattr(compose_module, "validate", validate)
    with pytest.raises(KeyboardInterrupt):
        compose_module.compose(["model=mlp"])
    assert compose_module._interrupted(ValueError()) is False
