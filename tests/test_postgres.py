"""`dlrun sweep --storage` on a real PostgreSQL server, and how storage URLs and missing drivers are read.

The server is pgserver's (PostgreSQL binaries in a pip package) in a temporary folder, reached
through its Unix socket. PostgreSQL refuses to run as root: there pgserver runs it as a system
user `pgserver` that it creates. Each test has a fresh database, so its workers also race to
create the tables.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dlrun.errors import ConfigError
from dlrun.sweep.study import storage_url
from tests.conftest import dlrun, start

TINY = ["model.hidden=[16]", "trainer.progress=none", "trainer.hist_every=0", "trainer.checkpoint=false"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns where XDG_RUNTIME_DIR is unset (CI, root)
        import pgserver

    srv = pgserver.get_server(tmp_path_factory.mktemp("postgres") / "data", cleanup_mode="stop")
    yield srv
    srv.cleanup()


def database(server, name: str) -> str:
    """A new database on the server; its URL as pgserver writes it (postgresql://postgres:@/NAME?host=SOCKET)."""
    import psycopg

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.get_uri(name)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out


@functools.cache
def storage(url: str) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(storage_url(url))  # one connection pool for all the polling


def load(url: str) -> optuna.Study:
    return optuna.load_study(study_name="s", storage=storage(url))


def trial_dirs(sweep_dir: Path) -> set[int]:
    """The trials whose training this worker started."""
    return {int(p.name) for p in (sweep_dir / "trials").iterdir()} if (sweep_dir / "trials").is_dir() else set()


# ----------------------------------------------------------------------------- two workers, one server
def test_two_workers_at_once_run_the_grid_once(server, tmp_path):
    url = database(server, "grid")
    args = ["data=xor", "optim=sgd,adam", "optim.lr=0.01,0.02,0.05", "trainer.epochs=1", *TINY]
    flags = ["--trials", "6", "--metric", "val/acc", "--storage", url, "--study", "s"]  # a grid of 6
    workers = [start("sweep", *args, *flags, "--dir", str(tmp_path / f"worker{i}")) for i in range(2)]
    for w in workers:
        finish(w)

    study = load(url)
    trials = study.trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.FAIL)]
    grid = {(o, lr) for o in ("sgd", "adam") for lr in (0.01, 0.02, 0.05)}
    assert sorted((t.params["optim"], t.params["optim.lr"]) for t in complete) == sorted(grid)  # each point once
    mine = [trial_dirs(tmp_path / f"worker{i}") for i in range(2)]
    assert all(mine) and not mine[0] & mine[1]  # both worked, and no trial trained twice ...
    assert mine[0] | mine[1] == {t.number for t in complete}  # ... and every one by a worker
    assert study.metric_names == ["val/acc"]  # optuna-dashboard's label for the value

    found = dlrun("results", str(tmp_path / "worker0"), "--format", "json")
    assert found.returncode == 0, found.stderr
    rows = json.loads(found.stdout)["rows"]  # one worker's directory reads the whole study
    assert sorted((r["params"]["optim"], r["params"]["optim.lr"]) for r in rows) == sorted(grid)


def open_fresh(url: str) -> str:
    """One worker's start on a new database (in its own process): "ok", or the one line it would print."""
    from dlrun.sweep.study import open_storage

    try:
        open_storage(url, heartbeat=False)
    except ConfigError as e:
        return str(e)
    return "ok"


def test_workers_creating_a_fresh_databases_tables_at_once_all_open_it(server):
    """Workers on a new database all create Optuna's tables; PostgreSQL tells the slower ones that a type or
    table already exists (duplicate_object), which is a wait-and-retry, never "the database is damaged".
    Without the retry one database in ten to forty failed here."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(str, range(4))  # the workers are up before the first database
        for i in range(20):
            url = database(server, f"fresh{i}")
            assert pool.map(open_fresh, [url] * 4) == ["ok"] * 4
    assert load_or_none(url) is None  # the tables are there, and hold no study


def load_or_none(url: str) -> optuna.Study | None:
    return next(iter(storage(url).get_all_studies()), None)


def test_a_killed_workers_trial_is_run_again_and_the_study_ends_with_n_trials(server, tmp_path):
    url = database(server, "kill").replace("postgresql://", "postgres://", 1)  # Heroku's spelling works too
    args = ["data=xor", "optim.lr=tag(log, interval(1e-3, 1e-1))", "trainer.epochs=2", *TINY]
    flags = ["--sampler", "random", "--trials", "4", "--metric", "val/acc", "--storage", url, "--study", "s"]
    doomed = start("sweep", *args, *flags, "--dir", str(tmp_path / "doomed"))
    other = start("sweep", *args, *flags, "--dir", str(tmp_path / "other"))

    deadline = time.time() + 120
    while True:
        assert doomed.poll() is None and time.time() < deadline, "the workers never ran a trial each"
        if all(running(url, w) for w in (doomed, other)):  # both are past their start (see runner.recover)
            os.killpg(doomed.pid, signal.SIGSTOP)  # frozen, its trial cannot finish between this look and the kill
            if running(url, doomed):
                break
            os.killpg(doomed.pid, signal.SIGCONT)
        time.sleep(0.2)
    os.killpg(doomed.pid, signal.SIGKILL)  # the sweep and its training, as a cluster's kill does
    doomed.communicate()
    (lost,) = running(url, doomed)

    out = finish(other)  # it fills the budget, counting the dead worker's trial as running
    assert "1 trials are still running in other processes of study s" in out
    assert [t.number for t in running(url)] == [lost.number]

    finish(start("sweep", "--resume", str(tmp_path / "doomed")))  # its sweep.yaml names the server
    trials = load(url).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    (failed,) = [t for t in trials if t.state == TrialState.FAIL]
    assert failed.number == lost.number and "stopped" in failed.user_attrs["reason"]
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == lost.number]
    assert retry.state == TrialState.COMPLETE and retry.params == lost.params  # run again as it was


def running(url: str, worker: subprocess.Popen | None = None) -> list[optuna.trial.FrozenTrial]:
    """The study's running trials (those of one worker's sweep process)."""
    try:
        trials = load(url).get_trials(states=(TrialState.RUNNING,))
    except KeyError:  # no study yet
        return []
    return [t for t in trials if worker is None or t.user_attrs.get("worker", "").endswith(f":{worker.pid}")]


# ----------------------------------------------------------------------------- URLs as users write them
@pytest.mark.parametrize(
    ("given", "read"),
    [
        ("postgresql://u:pw@db:5432/optuna", "postgresql+psycopg://u:pw@db:5432/optuna"),
        ("postgres://u@db/optuna", "postgresql+psycopg://u@db/optuna"),
        ("postgresql+psycopg://u@db/optuna", "postgresql+psycopg://u@db/optuna"),
        ("postgresql+psycopg2://u@db/optuna", "postgresql+psycopg://u@db/optuna"),  # no psycopg2: psycopg 3
        ("mysql://u@db/optuna", "mysql+pymysql://u@db/optuna"),
        ("mysql+pymysql://u@db/optuna", "mysql+pymysql://u@db/optuna"),
        ("sqlite:///a/study.db", "sqlite:///a/study.db"),
        ("mysql+mysqldb://u@db/optuna", "mysql+mysqldb://u@db/optuna"),  # a driver named: SQLAlchemy's to load
    ],
)
def test_storage_urls_name_an_installed_driver(monkeypatch, given, read):
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # None in sys.modules: the import fails
    monkeypatch.setitem(sys.modules, "pymysql", types.ModuleType("pymysql"))
    assert storage_url(given) == read


def test_psycopg2_is_used_where_it_is_installed_or_the_only_driver(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg2", types.ModuleType("psycopg2"))
    assert storage_url("postgresql+psycopg2://u@db/o") == "postgresql+psycopg2://u@db/o"
    assert storage_url("postgresql://u@db/o") == "postgresql+psycopg://u@db/o"  # psycopg 3 first
    monkeypatch.setitem(sys.modules, "psycopg", None)
    assert storage_url("postgres://u@db/o") == "postgresql+psycopg2://u@db/o"


@pytest.mark.parametrize("url", ["postgresql://u@db/o", "postgres://u@db/o", "postgresql+psycopg2://u@db/o"])
def test_no_postgres_driver_names_the_package_to_install(monkeypatch, url):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    with pytest.raises(ConfigError) as e:
        storage_url(url)
    assert str(e.value) == (
        f"--storage {url}: its database driver psycopg is not installed; "
        "pip install 'dlrun[postgres]' or pip install 'psycopg[binary]'"
    )


def test_no_mysql_driver_names_pymysql(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymysql", None)
    with pytest.raises(ConfigError, match=r"driver pymysql is not installed; pip install pymysql$"):
        storage_url("mysql://u@db/o")


def test_sweep_without_the_driver_fails_in_one_line_with_exit_2(tmp_path):
    hide = "import sys; sys.modules['psycopg'] = sys.modules['psycopg2'] = None; from dlrun.cli import main; main()"
    sweep_dir = tmp_path / "sweep"
    args = ["sweep", "data=xor", "optim.lr=0.01,0.1", "--storage", "postgresql://u@db/o", "--study", "s", "--cold"]
    result = subprocess.run(
        [sys.executable, "-c", hide, *args, "--dir", str(sweep_dir)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --storage postgresql://u@db/o: its database driver psycopg is not installed; "
        "pip install 'dlrun[postgres]' or pip install 'psycopg[binary]'"
    ]
    assert not sweep_dir.exists()  # refused before a directory is made


# ----------------------------------------------------------------------------- the README's Slurm job array
def test_the_slurm_array_script_runs_one_study_from_two_tasks(server, tmp_path):
    """experiments/cluster/sweep-array.sbatch as two array tasks at once (no Slurm here: bash runs it), sharing
    one database and one sweep folder, as on a cluster with a shared file system."""
    script = Path(__file__).parent.parent / "experiments" / "cluster" / "sweep-array.sbatch"
    url = database(server, "slurm")
    env = os.environ | {"DLRUN_STORAGE": url, "STUDY": "s", "SWEEP_DIR": str(tmp_path / "sweep"), "JOBS": "1"}
    env["DLRUN"] = f"{sys.executable} -m dlrun"
    args = ["data=xor", "optim.lr=0.01,0.02,0.05,0.1", "trainer.epochs=1", *TINY, "--trials", "4"]
    tasks = [
        subprocess.Popen(
            ["bash", str(script), *args],
            env=env | {"SLURM_ARRAY_TASK_ID": str(i)},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    for t in tasks:
        finish(t)
    complete = [t for t in load(url).trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["optim.lr"] for t in complete) == [0.01, 0.02, 0.05, 0.1]
    found = dlrun("results", str(tmp_path / "sweep"), "--format", "json")
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout)["rows"]) == 4
