"""Plugins: user modules that register their own options with the decorators the built-ins use.

Three sources, each loaded once per process: `dlrun --plugin PATH` (a .py file or an importable
module name), $DLRUN_PLUGINS (several, separated like PATH), and the `dlrun.plugins` entry-point
group of installed packages. What was loaded goes back into $DLRUN_PLUGINS, so every process dlrun
starts (sweep trials, claims) loads it too, and into each run's config.yaml (`plugins:`), so a
resume or `dlrun viz` of the run finds it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

from dlrun.errors import ConfigError

ENTRY_POINTS = "dlrun.plugins"
_ENTRY_POINTS_DONE: list[bool] = []  # installed packages' plugins are looked up once per process
_LOADED: dict[str, str] = {}  # source as recorded (absolute file path or module name) -> module name


def load(sources: list[str] | tuple[str, ...] = (), *, entry_points: bool = True) -> list[str]:
    """Import each plugin (file path or module name) that is not loaded yet; return every loaded source."""
    for source in sources:
        _load_one(source)
    if entry_points and not _ENTRY_POINTS_DONE:
        _ENTRY_POINTS_DONE.append(True)
        for ep in importlib.metadata.entry_points(group=ENTRY_POINTS):
            if ep.value not in _LOADED:
                _import(ep.value, lambda ep=ep: _call(ep.load()), f"plugin {ep.name} (entry point {ep.value})")
                _LOADED[ep.value] = ENTRY_POINTS
    if loaded():
        os.environ["DLRUN_PLUGINS"] = os.pathsep.join(loaded())  # inherited by every process dlrun starts
    return loaded()


def loaded() -> list[str]:
    """The plugins of this process, as recorded in a run's config.yaml (entry points excluded)."""
    return [source for source, module in _LOADED.items() if module != ENTRY_POINTS]


def _call(obj) -> None:
    """An entry point names a module (importing it registers) or a function to call."""
    if callable(obj) and not isinstance(obj, type(sys)):
        obj()


def from_environment() -> list[str]:
    return [p for p in os.environ.get("DLRUN_PLUGINS", "").split(os.pathsep) if p]


def _load_one(source: str) -> None:
    is_file = source.endswith(".py") or os.sep in source or Path(source).is_file()
    if not is_file:
        if source not in _LOADED:
            _LOADED[source] = _import(source, lambda: importlib.import_module(source), f"plugin {source}")
        return
    path = Path(source).expanduser().resolve()
    if str(path) in _LOADED:
        return
    if not path.is_file():
        raise ConfigError(f"plugin {source}: no such file; give a .py file or an importable module name")
    # one module per file: two plugins named model.py in different folders do not collide
    name = f"dlrun_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"

    def run() -> None:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError("not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise

    _import(name, run, f"plugin {path}")
    _LOADED[str(path)] = name


class PluginExit(BaseException):
    def __init__(self, code: int):
        self.code = code


@contextlib.contextmanager
def no_exit():
    """os._exit inside a plugin's code (at import, or in the forward dlrun tries before training) raises
    instead of ending dlrun with no word; the caller names the plugin."""
    real = os._exit

    def refuse(code: int = 0):
        raise PluginExit(code)

    os._exit = refuse
    try:
        yield
    finally:
        os._exit = real


def exit_message(e: BaseException) -> str | None:
    """`called os._exit(3)` or `called sys.exit(3)` for an exit raised in a plugin's code, else None."""
    if isinstance(e, PluginExit):
        return f"called os._exit({e.code}); a plugin must not end the process"
    if isinstance(e, SystemExit):
        return f"called sys.exit({e.code}); a plugin must not end the process"
    return None


def _import(name: str, run, what: str) -> str:
    try:
        with no_exit():
            run()
    except PluginExit as e:
        raise ConfigError(f"{what}: {exit_message(e)} while loading") from None
    except ConfigError as e:
        raise ConfigError(f"{what}: {e}") from None
    except SystemExit as e:
        raise ConfigError(f"{what}: called sys.exit({e.code}) while loading") from None
    except Exception as e:
        where = ""
        if isinstance(e, SyntaxError) and e.lineno:
            where = f" (line {e.lineno})"
        message = str(e.msg if isinstance(e, SyntaxError) else e).splitlines()[0] if str(e) else ""
        raise ConfigError(f"{what}: {type(e).__name__}{where}: {message}") from None
    return name
