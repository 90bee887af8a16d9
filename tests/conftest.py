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


# ----------------------------------------------------------------------------- tiers: make test-fast, make durations
# `slow`: a test that took SLOW_S seconds or more in the last recorded full run (tests/durations.json, written by
# `make durations`); `process`: a test whose code starts a process (dlrun(...), start(...), subprocess, torchrun).
# `make test` runs everything (as CI does); `make test-fast` deselects `slow` for the edit-test loop.
DURATIONS = os.path.join(os.path.dirname(__file__), "durations.json")
SLOW_S = 1.0
STARTS_A_PROCESS = ("dlrun(", "start(", "subprocess.", "Popen(", "torchrun")


def pytest_addoption(parser):
    parser.addoption("--record-durations", metavar="PATH", help="write each test's seconds (setup + call) to PATH")


def pytest_collection_modifyitems(config, items):
    import inspect
    import json

    recorded = json.load(open(DURATIONS)) if os.path.exists(DURATIONS) else {}
    sources: dict = {}
    for item in items:
        if recorded.get(item.nodeid, 0.0) >= SLOW_S or _shares_a_built_fixture(item):
            item.add_marker(pytest.mark.slow)
        fn = getattr(item, "function", None)
        if fn is not None:
            if fn not in sources:
                try:
                    sources[fn] = inspect.getsource(fn)
                except (OSError, TypeError):
                    sources[fn] = ""
            if any(s in sources[fn] for s in STARTS_A_PROCESS):
                item.add_marker(pytest.mark.process)


def _shares_a_built_fixture(item) -> bool:
    """A test using a module- or session-scoped fixture of its own module (trained runs, a finished sweep): the
    fixture's setup, paid once per process, is recorded against whichever test ran first, so the others look
    fast but are not alone."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    module = getattr(item, "module", None)
    for defs in info.name2fixturedefs.values():
        d = defs[-1]
        if d.scope in ("module", "session") and module is not None and d.func.__module__ == module.__name__:
            return True
    return False


_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report):
    if report.when in ("setup", "call"):
        _seconds[report.nodeid] = _seconds.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
    import json

    path = session.config.getoption("--record-durations", None)
    if path and _seconds and not hasattr(session.config, "workerinput"):  # the controller, which sees every test
        with open(path, "w") as f:
            json.dump({k: round(v, 3) for k, v in sorted(_seconds.items())}, f, indent=0)
            f.write("\n")
