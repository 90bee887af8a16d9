"""Shared fixtures: every test that trains writes its runs under a temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields, is_dataclass

import pytest
from hypothesis import HealthCheck, settings

# Property tests: `make test` draws the same examples every run (derandomize) so that a pass or a failure is
# reproducible; `make fuzz` draws fresh random ones, many more, to look for new failures.
HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile(
    "test", max_examples=100, deadline=5000, derandomize=True, database=None, suppress_health_check=HEALTH
)
settings.register_profile(
    "fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "5000")), deadline=None, suppress_health_check=HEALTH
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "test"))


@pytest.fixture(autouse=True, scope="session")
def data_cache(tmp_path_factory):
    """Generated data (MNIST-1D) is cached once per test session, away from the user's cache."""
    path = tmp_path_factory.mktemp("dlrun-data")
    old = os.environ.get("DLRUN_DATA")
    os.environ["DLRUN_DATA"] = str(path)
    yield path
    if old is None:
        os.environ.pop("DLRUN_DATA", None)
    else:
        os.environ["DLRUN_DATA"] = old


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
    env = {**os.environ, "COLUMNS": "200"}  # wide tables: no wrapped cells to trip over
    return subprocess.run([sys.executable, "-m", "dlrun.cli", *args], capture_output=True, text=True, env=env)


def start(*args: str) -> subprocess.Popen:
    """`dlrun ARGS` in its own process group, as a cluster job runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "dlrun.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def leaves(schema: type, prefix: str = ""):
    """(dotted key, field, default) for every leaf field but `name`, nested dataclasses included."""
    instance = schema()
    for f in fields(schema):
        value = getattr(instance, f.name)
        if is_dataclass(value):
            yield from leaves(type(value), f"{prefix}{f.name}.")
        elif f.name != "name":
            yield f"{prefix}{f.name}", f, value
