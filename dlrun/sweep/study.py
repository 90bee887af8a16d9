"""What the sweep loop and the results both read: the sweep's arguments, the study's storage, retried trials.

runner.py runs a study and results.py reads one back; both import from here, and results never from runner.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial

from dlrun.errors import ConfigError
from dlrun.files import atomic_write

HEARTBEAT_S = 10  # a running trial's sweep process writes a heartbeat this often
GRACE_S = 60  # a trial whose heartbeat is older than this is taken as lost (another machine died)
MAX_RETRY = 3  # a lost trial is queued again at most this many times
SQLITE_TIMEOUT_S = 60  # how long a process waits for another's SQLite write lock


# ----------------------------------------------------------------------------- the sweep's arguments
@dataclass
class SweepSpec:
    """Everything a sweep runs by; saved as <sweep>/sweep.yaml so that --resume needs nothing else."""

    overrides: list[str]  # Hydra's grammar, sweeps and fixed overrides (an experiment's sweeps included)
    sampler: str  # grid, random, tpe
    trials: int  # the budget: configurations tried (see the module docstring)
    metric: str  # e.g. val/acc: its final value in each run's summary.json
    direction: str  # maximize or minimize
    study: str  # the Optuna study's name
    seeds: list[int] | None = None  # trainer.seed of each repeat; None: one run with the config's seed
    pruner: str = "none"
    storage: str | None = None  # an Optuna storage URL; None: sqlite in the sweep directory
    max_failures: int | None = None  # stop after this many failed trials
    jobs: int = 1  # trainings at once
    plugins: list[str] = field(default_factory=list)  # plugin files and modules the trials load
    vectorize: int = 1  # trials packed in one vectorized process (their seeds always are); 0: one per seed
    warm: bool = True  # trials fork from a server that has imported torch and dlrun; False: new processes

    def url(self, sweep_dir: Path) -> str:
        return self.storage or f"sqlite:///{(Path(sweep_dir) / 'study.db').resolve()}"

    def save(self, sweep_dir: Path) -> None:
        atomic_write(Path(sweep_dir) / "sweep.yaml", yaml.safe_dump(asdict(self), sort_keys=False))

    @classmethod
    def load(cls, sweep_dir: Path) -> SweepSpec:
        path = Path(sweep_dir) / "sweep.yaml"
        if not path.is_file():
            raise ConfigError(f"{sweep_dir}: no sweep.yaml there; give a sweep directory (runs/sweeps/<name>-<time>)")
        import dataclasses

        try:
            saved, why = yaml.safe_load(path.read_text()), None
        except (yaml.YAMLError, ValueError):  # ValueError: not UTF-8
            saved, why = None, "not valid YAML"
        keys = {f.name for f in dataclasses.fields(cls)}
        none = dataclasses.MISSING
        needed = [f.name for f in dataclasses.fields(cls) if f.default is none and f.default_factory is none]
        if isinstance(saved, dict):
            unknown, missing = sorted(set(saved) - keys, key=str), [k for k in needed if k not in saved]
            why = f"unknown key {unknown[0]}" if unknown else f"no {missing[0]}: in it" if missing else None
        elif why is None:
            why = "empty" if saved is None else "not a mapping of keys"
        if why:
            raise ConfigError(f"{path}: damaged ({why}); restore it from a copy, or start a new sweep")
        spec = cls(**saved)
        db = Path(sweep_dir) / "study.db"
        if spec.storage is None and db.is_file():
            with open(db, "rb") as f:
                header = f.read(16)
            if header != b"SQLite format 3\x00":  # sweep.yaml is saved after the study's tables: empty is lost too
                raise ConfigError(
                    f"{db}: {'empty' if not header else 'not an SQLite database'}: the record of the sweep's trials "
                    "is damaged; restore it from a copy, or start a new sweep"
                )
        if spec.plugins:
            from dlrun import plugins

            plugins.load(spec.plugins)  # the trials inherit them through $DLRUN_PLUGINS
        return spec

    def same_sweep(self, other: dict[str, Any]) -> bool:
        keys = ("overrides", "sampler", "metric", "direction", "seeds", "pruner")
        return all(other.get(k) == getattr(self, k) for k in keys)


# ----------------------------------------------------------------------------- Optuna pieces
def quiet_optuna() -> None:
    """Optuna's per-trial log lines and experimental-feature warnings stay out of the sweep's output."""
    import warnings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    # this loop asks and tells, and records the heartbeats itself
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


# A URL's scheme as users write it -> (the driver modules it may use, first choice first; the SQLAlchemy
# scheme of each). SQLAlchemy 2.1 reads postgresql:// as psycopg 3 and mysql:// as mysqlclient, and
# refuses postgres:// (Heroku's spelling); psycopg2 is used where it is the only driver installed.
POSTGRES = (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2"))
DRIVERS = {
    "postgresql": POSTGRES,
    "postgres": POSTGRES,
    "postgresql+psycopg": POSTGRES[:1],
    "postgresql+psycopg2": POSTGRES[::-1],
    "mysql": (("pymysql", "mysql+pymysql"),),
    "mysql+pymysql": (("pymysql", "mysql+pymysql"),),
}
INSTALL = {
    "psycopg": "pip install 'dlrun[postgres]' or pip install 'psycopg[binary]'",
    "pymysql": "pip install pymysql",
}


def storage_url(url: str) -> str:
    """The SQLAlchemy URL for a storage URL as users write it: its scheme names a driver that is installed.

    Other schemes (sqlite://, mysql+mysqldb://, ...) pass unchanged. No driver: ConfigError naming the package.
    """
    scheme, sep, rest = url.partition("://")
    drivers = DRIVERS.get(scheme.lower()) if sep else None
    if drivers is None:
        return url
    for module, name in drivers:
        if _installed(module):
            return f"{name}://{rest}"
    wanted = next(module for module, _ in drivers if module in INSTALL)
    raise ConfigError(f"--storage {url}: its database driver {wanted} is not installed; {INSTALL[wanted]}")


def _installed(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)  # psycopg imports only with a libpq (its [binary] extra brings one)
    except ImportError:
        return False
    return True


def open_storage(url: str, heartbeat: bool = True) -> optuna.storages.RDBStorage:
    """An RDB storage that waits for other processes' locks and, with heartbeat, finds lost trials."""
    import sqlalchemy.exc

    given, url = url, storage_url(url)
    engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
    if not url.startswith("sqlite"):
        engine_kwargs["pool_pre_ping"] = True  # a shared server may drop idle connections
    beat = {}
    if heartbeat:
        beat = {
            "heartbeat_interval": HEARTBEAT_S,
            "grace_period": GRACE_S,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
        }
    for attempt in range(10):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **beat)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as e:
            # workers creating a fresh database's tables at once: the losers find them made and retry
            if isinstance(e, sqlalchemy.exc.ProgrammingError) and _sqlstate(e.orig) not in CREATED_AT_ONCE:
                raise damaged(_where(url, given), e) from None
            if attempt == 9:
                raise ConfigError(f"--storage {given}: {str(e.orig).splitlines()[0]}") from None
            time.sleep(0.2 * (attempt + 1))
        except sqlalchemy.exc.DatabaseError as e:  # not a lock to wait for: a damaged database (SQLite cut short)
            raise damaged(_where(url, given), e) from None
        except ImportError as e:  # a driver of a scheme that storage_url leaves alone
            raise ConfigError(f"--storage {given}: its database driver is not installed ({e})") from None
        except (sqlalchemy.exc.ArgumentError, ValueError) as e:
            raise ConfigError(f"--storage {given}: {str(e).splitlines()[0]}") from None
    raise AssertionError("unreachable")


# PostgreSQL's duplicate_object and duplicate_table: another worker created the type or table a moment ago
CREATED_AT_ONCE = ("42710", "42P07")


def _sqlstate(error: BaseException | None) -> str | None:
    return getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)  # psycopg 3, psycopg2


def _where(url: str, given: str) -> str:
    """A study database as the user knows it: an SQLite file's path, else the --storage they gave."""
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else f"--storage {given}"


def damaged(where: object, e: Exception) -> ConfigError:
    """The one line for a study database that cannot be read: where it is, and the driver's first line."""
    first = next(iter(str(getattr(e, "orig", e)).splitlines()), "")
    return ConfigError(
        f"{where}: the study's database is damaged ({first}); restore it from a copy, or start a new sweep"
    )


PRUNERS = ("none", "median", "hyperband")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":  # stop a trial whose metric is worse than the median of earlier trials at that step
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    raise ConfigError(f"--pruner {name}: unknown; choose from: {', '.join(PRUNERS)}")


def retried(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the failed trials that were queued again (their retry takes their place)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}
