"""Warm trial processes: each trial is a fork of a server that has already imported torch and dlrun.

A sweep's first trial starts Python's fork server (multiprocessing's "forkserver" start method)
with `dlrun.sweep.preload` imported; every trial after that is a fresh fork of it, so it skips
the 2-3 s of imports that a `python -m dlrun.sweep.trial` process pays, and it is still a
process of its own: a crash, a kill or a memory leak ends that trial only. The server holds no
tensors and no threads (it imports, nothing more), so forking it is safe.

`Worker` answers like `subprocess.Popen` (poll, wait, send_signal, kill, pid), so the sweep loop
treats warm and cold (`dlrun sweep --cold`) trials alike.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

_context = None


def context():
    """The fork-server context, started on first use with the heavy imports done once."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(["dlrun.sweep.preload"])
    return _context


def start() -> None:
    """Start the server now, so that its imports overlap the sweep's own start-up."""
    from multiprocessing import forkserver

    context()
    forkserver.ensure_running()


def stop() -> None:
    """End the fork server (it would otherwise outlive the sweep for a moment, until it notices the sweep is
    gone): close its lifeline and wait for it. Nothing to do when it was never started."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    if server is not None and getattr(server, "_forkserver_pid", None) and hasattr(server, "_stop"):
        server._stop()  # closes the pipe the server watches, then waitpid: it exits at once


def _child(argv: list[str], log: str, env: dict[str, str]) -> None:
    """In the forked trial: the sweep's environment now (the server's is from its start), output to log."""
    os.environ.clear()
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    from dlrun.sweep import trial

    code = trial.main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


class Worker:
    """One trial in a forked warm process; the same methods as subprocess.Popen."""

    def __init__(self, argv: list[str], log: Path):
        self.args = argv
        self.process = context().Process(target=_child, args=(argv, str(log), dict(os.environ)), name="dlrun-trial")
        self.process.start()
        self.pid = self.process.pid

    def poll(self) -> int | None:
        return self.process.exitcode  # negative: killed by that signal, as Popen.returncode

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.process.exitcode

    def send_signal(self, sig: int) -> None:
        if self.process.exitcode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
