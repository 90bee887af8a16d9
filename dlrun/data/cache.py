"""Arrays computed once and kept in `cache_dir() / "arrays"` as .npz files, so a later run skips the work.

    arrays = cached("digits", {"sklearn": "1.5.2"}, ("x", "y"), lambda: {"x": ..., "y": ...})

The key (a dict of JSON values: the source, its parameters and the versions of the code that computes the
arrays) names the file and is stored inside it; a file whose key, names, or contents do not check out
(another version, a truncated or damaged file) is rebuilt and replaced. Files are written atomically, so
concurrent runs (a sweep's workers) never read half a file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from dlrun.data.base import cache_dir
from dlrun.files import atomic_file

FORMAT = 1  # bump to invalidate every cached file
_KEY = "__key__"


def package_version(name: str) -> str:
    """The installed version of a distribution (e.g. scikit-learn), without importing it."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "none"


def path_for(name: str, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(_key_text(name, key).encode()).hexdigest()[:16]
    return cache_dir() / "arrays" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-{digest}.npz"


def _key_text(name: str, key: dict[str, Any]) -> str:
    return json.dumps({"format": FORMAT, "name": name, **key}, sort_keys=True)


def read(path: Path, name: str, key: dict[str, Any], names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file, or None when it is missing, damaged or written for another key."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if set(f.files) != {_KEY, *names} or str(f[_KEY]) != _key_text(name, key):
                return None
            return {n: f[n] for n in names}  # reading a member checks its CRC
    except Exception:  # unreadable in any way (truncated, not a zip, a bad CRC, not even an .npz): rebuild it
        return None


def cached(
    name: str, key: dict[str, Any], names: tuple[str, ...], build: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The arrays `names` for this key: from the cache when a valid file is there, else `build()`'s, written."""
    path = path_for(name, key)
    if (hit := read(path, name, key, names)) is not None:
        return hit
    arrays = {n: np.asarray(a) for n, a in build().items()}
    if set(arrays) != set(names):
        raise ValueError(f"cache {name}: build() returned {sorted(arrays)}, expected {sorted(names)}")
    try:
        with atomic_file(path) as f:
            np.savez(f, **{_KEY: np.array(_key_text(name, key))}, **arrays)
    except OSError:  # a read-only or full cache directory: the arrays are still right, only not kept
        pass
    return arrays
