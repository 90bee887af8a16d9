"""Plugins: Python files loaded before a command (`dlrun --plugin PATH`, $DLRUN_PLUGINS)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from dlrun.errors import ConfigError


def load(paths: list[str]) -> None:
    """Import each file as a module (named after the file); any failure is a ConfigError naming the file."""
    for path in paths:
        name = f"dlrun_plugin_{Path(path).stem}"
        try:
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ImportError("not a Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(name, None)
            raise ConfigError(f"plugin {path}: {type(e).__name__}: {e}") from None
