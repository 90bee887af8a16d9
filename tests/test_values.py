"""Values no run can use are refused before anything is written: NaN and inf for every float key, integers past
64 bits, bad --resume arguments of a sweep, a resume below the steps already done, and a second process on a
run that trains (its <run>/.lock). Each refusal is one `error:` line and exit status 2."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlrun import options
from dlrun.cli import app
from dlrun.config import compose, to_dict
from dlrun.config.compose import validate
from dlrun.errors import ConfigError
from dlrun.options import GROUPS, declared
from dlrun.sweep.runner import SweepSpec
from dlrun.train import Diverged, rundir, train
from tests.conftest import leaves, quick

runner = CliRunner()
SPELLINGS = ("nan", "inf", "-inf")
PAST_INT64 = (2**63, -(2**63) - 1)
OPTIONS = [(group, name) for group in GROUPS for name in declared(group)]


def number_keys(schema: type):
    """(dotted key, type) of every float and int leaf and list of them, nested dataclasses included."""
    for key, f, _ in leaves(schema):
        kind = str(f.type).removeprefix("<class '").removesuffix("'>")  # float, list[float], ...
        if "choices" not in f.metadata and kind in ("float", "int", "list[float]", "list[int]"):
            yield key, kind


@functools.cache
def composed(group: str, name: str) -> dict:
    """The default config with option group=name, as plain dicts (validate() does not change it)."""
    return to_dict(compose([f"{group}={name}"]))


def with_value(raw: dict, group: str, key: str, value) -> dict:
    """A copy of a composed config (plain dicts) with group.key set."""
    raw = {**raw, group: dict(raw[group])}
    node = raw[group]
    *parents, leaf = key.split(".")
    for part in parents:
        node[part] = dict(node[part])
        node = node[part]
    node[leaf] = value
    return raw


def refused(key: str, call, *args) -> str:
    """The one-line ConfigError of call(*args), which names the key."""
    with pytest.raises(ConfigError) as e:
        call(*args)
    message = str(e.value)
    assert key in message and "\n" not in message, message
    return message


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`dlrun ARGS` in a fresh process in `cwd` (whose default runs/ must stay unwritten)."""
    return subprocess.run(
        [sys.executable, "-m", "dlrun.cli", *args], capture_output=True, text=True, cwd=cwd, env=dict(os.environ)
    )


def files(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file under folder and its bytes (but `skip`)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


# ----------------------------------------------------------------------------- NaN, inf and 64 bits, every key
def test_the_cases_cover_every_group_and_the_float_keys():
    keys = {(g, n, k, kind) for g, n in OPTIONS for k, kind in number_keys(options.schema(g, n))}
    assert {g for g, *_ in keys} == set(GROUPS)  # every group takes a number (the losses: label_smoothing)
    assert len([k for k in keys if "float" in k[3]]) > 100  # (option, float key) pairs
    floats = {(g, k) for g, _, k, kind in keys if "float" in kind}
    assert ("optim", "lr") in floats and ("sched", "milestones") in floats and ("data", "augment.noise") in floats
    assert ("optim", "beta2") in floats and ("regularizer", "strength") in floats and ("trainer", "grad_clip") in floats
    assert ("loss", "label_smoothing") in floats and ("trainer", "ema") in floats


@pytest.mark.parametrize(("group", "name"), OPTIONS, ids=[f"{g}={n}" for g, n in OPTIONS])
def test_every_float_key_refuses_nan_and_inf(group, name):
    raw = composed(group, name)
    keys = [(key, kind) for key, kind in number_keys(options.schema(group, name)) if "float" in kind]
    for i, (key, kind) in enumerate(keys):
        for value in SPELLINGS:  # the checks of the option system (what compose validates with), every value
            number = [float(value)] if "list" in kind else float(value)
            assert "is not a finite number" in refused(key, validate, with_value(raw, group, key, number))
        # and through compose, from the command line's spelling, one of the three per key in turn
        value = SPELLINGS[i % len(SPELLINGS)]
        refused(key, compose, [f"{group}={name}", f"{group}.{key}={f'[{value}]' if 'list' in kind else value}"])


@pytest.mark.parametrize(("group", "name"), OPTIONS, ids=[f"{g}={n}" for g, n in OPTIONS])
def test_every_integer_key_refuses_integers_past_64_bits(group, name):
    raw = composed(group, name)
    for key, kind in number_keys(options.schema(group, name)):
        if "int" in kind:
            for value in PAST_INT64:
                refused(key, validate, with_value(raw, group, key, [value] if "list" in kind else value))


def test_a_list_names_the_element_that_is_not_a_number():
    text = refused("sched.milestones", compose, ["sched=step", "sched.milestones=[0.5,-inf]"])
    assert text == "sched.milestones: -inf at position 1 is not a finite number"
    text = refused("model.widths", compose, ["model=resnet", f"model.widths=[16,{2**63},64]"])
    assert text.startswith(f"model.widths: {2**63} at position 1 does not fit in 64 bits")


def test_an_integer_past_64_bits_names_the_valid_range():
    text = refused("trainer.epochs", compose, ["trainer.epochs=99999999999999999999"])
    assert text == f"trainer.epochs: 99999999999999999999 does not fit in 64 bits; valid: [1, {2**63 - 1}]"
    text = refused("trainer.seed", compose, ["trainer.seed=99999999999999999999"])
    assert text.endswith(f"valid: [0, {2**32})")  # the seeds' own range, that numpy and scikit-learn take
    refused("data.seed", compose, ["data.seed=-1"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "optim.lr=nan"], "error: optim.lr: nan is not a finite number"),
        (["train", "trainer.seed=99999999999999999999"], "error: trainer.seed: 99999999999999999999 is out of range"),
        (["lr-find", "--end", "inf"], "error: --end inf is not a finite number"),
    ],
    ids=["lr", "seed", "lr-find-end"],
)
def test_the_cli_refuses_them_before_a_run_directory_exists(tmp_path, args, message):
    r = cli(*args, "trainer.progress=none", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert one_error_line(r.stderr).startswith(message), r.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "trainer.grad_clip=inf"], "error: trainer.grad_clip: inf is not a finite number"),
        (["train", "data=iris", "data.val_fraction=-inf"], "error: data.val_fraction: -inf is not a finite number"),
        (["train", "regularizer=l2", "regularizer.strength=nan"], "error: regularizer.strength: nan is not a finite"),
        (["train", "optim=adam", "optim.beta2=nan"], "error: optim.beta2: nan is not a finite number"),
        (["train", "optim=sgd", "optim.lr=[0.1,inf]"], "error: optim.lr"),  # a vectorized group's values
        (["lr-find", "--start", "nan"], "error: --start nan is not a finite number"),
        (["lr-find", "--start", "-inf", "--end", "1"], "error: --start -inf is not a finite number"),
        (["lr-find", "--steps", "99999999999999999999"], "error: --steps 99999999999999999999 does not fit in 64"),
        (["lr-find", "optim=momentum", "optim.momentum=nan"], "error: optim.momentum: nan is not a finite number"),
    ],
)
def test_each_refusal_is_one_line_and_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, [*args, "trainer.progress=none"])
    assert r.exit_code == 2, r.output
    assert one_error_line(r.stderr).startswith(message), r.stderr
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- resume
@pytest.fixture
def done(runs) -> Path:
    """A finished run of 2 epochs (3 steps each) on iris."""
    return Path(train(compose(quick(runs, "data=iris", "trainer.epochs=2")))["run_dir"])


def test_a_resume_with_nan_is_refused_and_the_run_is_untouched(done, tmp_path):
    before = files(done)
    r = cli("train", f"resume={done}", "optim.lr=nan", cwd=tmp_path)
    assert r.returncode == 2
    assert one_error_line(r.stderr) == "error: optim.lr: nan is not a finite number"
    assert files(done) == before


def test_a_resume_below_the_steps_done_is_refused(done, tmp_path):
    before = files(done)
    r = cli("train", f"resume={done}", "trainer.epochs=1", "trainer.progress=none", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert one_error_line(r.stderr) == (
        f"error: resume={done}: the run is at step 6, past the 3 steps of trainer.epochs=1; give trainer.epochs>=2"
    )
    text = refused("trainer.steps>=6", train, compose([f"resume={done}", "trainer.steps=5"]))
    assert "the run is at step 6, past the 5 steps of trainer.steps=5" in text
    assert files(done) == before  # metrics.jsonl, command.txt and the checkpoints as they were
    # the refusal released the run's lock: a resume that goes on trains
    s = train(compose([f"resume={done}", "trainer.epochs=3", "trainer.progress=none"]))
    assert s["status"] == "completed" and s["step"] == 9 and not (done / ".lock").exists()


def test_a_resume_at_the_steps_done_still_runs(done):
    s = train(compose([f"resume={done}", "trainer.steps=6", "trainer.progress=none"]))
    assert s["status"] == "completed" and s["step"] == 6


# ----------------------------------------------------------------------------- sweep --resume
@pytest.fixture
def sweep_dir(tmp_path) -> Path:
    path = tmp_path / "sweep"
    path.mkdir()
    SweepSpec(["data=xor", "optim.lr=0.01,0.02"], "grid", 2, "val/acc", "maximize", "sweep", jobs=2).save(path)
    return path


@pytest.mark.parametrize(
    "args", [["--jobs", "0"], ["--jobs", "-3"], ["--trials", "0"], ["--max-failures", "0"], ["-j", "0"]]
)
def test_sweep_resume_checks_its_arguments_as_a_new_sweep_does(sweep_dir, args):
    before = files(sweep_dir)
    r = runner.invoke(app, ["sweep", "--resume", str(sweep_dir), "--cold", *args])
    assert r.exit_code == 2, r.output
    flag = "--jobs" if args[0] == "-j" else args[0]
    assert one_error_line(r.stderr) == f"error: {flag} {args[1]}: must be >= 1"
    assert files(sweep_dir) == before  # sweep.yaml keeps jobs 2; no study was opened


def test_sweep_resume_with_jobs_0_exits_2_from_the_cli(sweep_dir, tmp_path):
    before = files(sweep_dir)
    r = cli("sweep", "--resume", str(sweep_dir), "--jobs", "0", cwd=tmp_path)
    assert r.returncode == 2
    assert one_error_line(r.stderr) == "error: --jobs 0: must be >= 1"
    assert files(sweep_dir) == before


# ----------------------------------------------------------------------------- one process per run
class Probe:
    """At the first evaluation of a fresh run: try to resume the run from a second process, and from this one."""

    def __init__(self):
        self.run_dir, self.result, self.lock, self.nested = None, None, None, None

    def on_start(self, info):
        self.run_dir = Path(info["run_dir"])

    def on_eval(self, step, epoch, metrics):
        if self.result is None:
            self.lock = (self.run_dir / ".lock").read_text()
            self.result = cli("train", f"resume={self.run_dir}", "trainer.epochs=4", cwd=self.run_dir.parent)
            with pytest.raises(ConfigError) as e:
                train(compose([f"resume={self.run_dir}", "trainer.epochs=4"]))
            self.nested = str(e.value)


def test_a_run_that_trains_holds_its_lock_and_a_resume_of_it_is_refused(runs):
    probe = Probe()
    s = train(compose(quick(runs, "data=iris", "trainer.epochs=2")), callbacks=[probe])
    assert probe.lock.strip() == str(os.getpid())
    assert probe.result.returncode == 2
    line = one_error_line(probe.result.stderr)
    assert f"process {os.getpid()} is training this run" in line, line
    assert f"process {os.getpid()}" in probe.nested
    # the refused resumes changed nothing: the run went on and finished as one process
    assert s["status"] == "completed" and s["step"] == 6
    assert len((probe.run_dir / "command.txt").read_text().splitlines()) == 1
    assert not (probe.run_dir / ".lock").exists()  # released at the end


def hold(path: Path) -> subprocess.Popen:
    """A process that holds the flock on `path` (and wrote its pid there) until it is killed."""
    code = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, str(os.getpid()).encode())\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_resume_is_refused_while_another_process_holds_the_lock(done, tmp_path):
    before = files(done)
    holder = hold(done / ".lock")
    try:
        r = cli("train", f"resume={done}", "trainer.epochs=3", cwd=tmp_path)
        assert r.returncode == 2
        assert f"process {holder.pid} is training this run" in one_error_line(r.stderr)
        assert files(done, skip=(".lock",)) == before
        assert (done / ".lock").read_text() == str(holder.pid)  # the holder's lock stays
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_a_lock_left_by_a_dead_process_is_taken_over(done):
    holder = hold(done / ".lock")
    holder.kill()  # as a killed training leaves it: the file with its pid, no flock
    holder.wait()
    holder.stdout.close()
    assert (done / ".lock").read_text() == str(holder.pid)
    s = train(compose([f"resume={done}", "trainer.epochs=3", "trainer.progress=none"]))
    assert s["status"] == "completed" and s["step"] == 9
    assert not (done / ".lock").exists()


class EndAt:
    """Ends the run at its first evaluation: a Ctrl-C, a second Ctrl-C or an error."""

    def __init__(self, how: str):
        self.how, self.run_dir = how, None

    def on_start(self, info):
        self.run_dir = Path(info["run_dir"])

    def on_eval(self, step, epoch, metrics):
        assert (self.run_dir / ".lock").exists()
        if self.how == "ctrl-c":
            os.kill(os.getpid(), signal.SIGINT)
        elif self.how == "second ctrl-c":
            raise KeyboardInterrupt
        else:
            raise RuntimeError("a callback failed")


@pytest.mark.parametrize("how", ["ctrl-c", "second ctrl-c", "error"])
def test_the_lock_is_released_however_the_run_ends(runs, how):
    end = EndAt(how)
    cfg = compose(quick(runs, "data=iris", "trainer.epochs=3"))
    if how == "ctrl-c":
        assert train(cfg, callbacks=[end])["status"] == "interrupted"
    else:
        with pytest.raises(KeyboardInterrupt if how == "second ctrl-c" else RuntimeError):
            train(cfg, callbacks=[end])
    assert not (end.run_dir / ".lock").exists()
    rundir.lock(end.run_dir).release()  # free for the next process


def test_a_diverged_run_releases_its_lock(runs):
    cfg = compose(quick(runs, "data=diabetes", "model=linear", "optim=sgd", "optim.lr=5", "trainer.epochs=5"))
    with pytest.raises(Diverged):
        train(cfg)
    (run_dir,) = [p.parent for p in runs.rglob("summary.json")]
    assert not (run_dir / ".lock").exists()
