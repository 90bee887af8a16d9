"""The run directory: everything needed to read, compare and reproduce a run.

runs/<name>/<YYYY-MM-DD_HH-MM-SS>/
    config.yaml  overrides.yaml  command.txt  versions.json
    metrics.jsonl  summary.json  checkpoints/{last,best}.pt  events.out.tfevents.*
    .lock                                   while a process trains the run: its pid
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import platform
import sys
import time
import warnings
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from dlrun.config import Config, to_yaml
from dlrun.errors import ConfigError
from dlrun.files import atomic_write, check_writable


def run_name(cfg: Config) -> str:
    return cfg.name or cfg.experiment or f"{cfg.model.name}-{cfg.data.name}"


def new_run_dir(cfg: Config) -> Path:
    """runs/<name>/<timestamp>/, with a -1, -2, ... suffix when two runs start in the same second."""
    check_writable(Path(cfg.runs_dir), f"runs_dir={cfg.runs_dir}")  # a file or a read-only folder: one line
    parent = Path(cfg.runs_dir) / run_name(cfg)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    for i in range(1000):
        path = parent / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot create a run directory under {parent}")


class RunLock:
    """An exclusive flock on <run>/.lock, the file that holds the pid of the process training the run.

    The kernel drops a flock when its process dies, so the file a killed run leaves behind holds
    nothing: the next process locks it and writes its own pid.
    """

    def __init__(self, path: Path, fd: int | None):
        self.path, self.fd = path, fd

    def release(self) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # before unlocking: who opened this file already sees it gone
        os.close(self.fd)
        self.fd = None


def lock(run_dir: Path) -> RunLock:
    """Take the run's lock; a ConfigError names the live process that holds it."""
    path = Path(run_dir) / ".lock"
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:  # the run's first write: a run directory that cannot be written fails here
            raise ConfigError(
                f"{run_dir}: cannot write in the run directory ({e.strerror}); check its permissions"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(
                f"{run_dir}: process {holder} is training this run (it holds {path}); wait until it ends"
            ) from None
        except OSError:  # a file system without flock: the run trains unlocked
            os.close(fd)
            return RunLock(path, None)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder released and removed the file between our open and flock: lock the new one
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return RunLock(path, fd)


def versions() -> dict[str, Any]:
    """The versions of Python, the platform and the packages a run depends on, and the project's git state."""
    return {**_versions(), "git": git_state()}


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """The commit of the git repository the run was started in (the user's project) and whether its tracked files
    had changes; {} outside a repository or without git. Read once per process."""
    import subprocess

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    changes = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(changes)} if changes is not None else {"commit": commit}


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("dlrun", "torch", "numpy", "scikit-learn", "hydra-core", "omegaconf", "tensorboard"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    try:
        import torch

        out["cuda"] = str(torch.version.cuda)
    except ImportError:
        pass
    return out


def write_start(path: Path, cfg: Config, overrides: list[str] | None, resumed: bool) -> None:
    """config.yaml (resolved), overrides.yaml, command.txt (appended on resume), versions.json."""
    atomic_write(path / "config.yaml", to_yaml(replace(cfg, resume=None)))
    if not resumed or not (path / "overrides.yaml").exists():
        atomic_write(path / "overrides.yaml", yaml.safe_dump(list(overrides or []), default_flow_style=False))
    with open(path / "command.txt", "a") as f:
        f.write(" ".join(sys.argv) + "\n")
    atomic_write(path / "versions.json", json.dumps(versions(), indent=2) + "\n")


def warn_damaged(file: Path, what: str = "a JSON object") -> None:
    """The one-line warning of a listing that skips a run whose file is damaged."""
    from dlrun.models.base import DlrunWarning

    warnings.warn(
        f"{file}: damaged (not {what}); skipping {file.parent}: restore the file, or remove the run",
        DlrunWarning,
        3,
    )


def read_metrics(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(line, record) of each readable line of metrics.jsonl; a line cut short by a kill is left out."""
    from dlrun.files import read_jsonl

    return read_jsonl(path / "metrics.jsonl")


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop metrics.jsonl lines logged after the checkpoint's step, and the old test record."""
    file = path / "metrics.jsonl"
    if not file.exists():
        return
    records = read_metrics(path)
    keep = [line for line, r in records if r.get("step", 0) <= step and not any(k.startswith("test/") for k in r)]
    atomic_write(file, "".join(line + "\n" for line in keep))
