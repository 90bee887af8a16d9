"""Shared fixtures: every test that trains writes its runs under a temporary directory."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.fixture
def runs(tmp_path):
    """A fresh runs directory; pass `f"runs_dir={runs}"` to compose / the CLI."""
    path = tmp_path / "runs"
    path.mkdir()
    return path


def quick(runs, *overrides: str) -> list[str]:
    """Overrides for a short, quiet run under `runs`."""
    return [f"runs_dir={runs}", "trainer.progress=none", "trainer.hist_every=0", *overrides]


def dlrun(*args: str) -> subprocess.CompletedProcess:
    """Run `dlrun ARGS...` in a fresh process (real exit status, stdout not a terminal)."""
    return subprocess.run([sys.executable, "-m", "dlrun.cli", *args], capture_output=True, text=True)
