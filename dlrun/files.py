"""Files written whole or not at all: a temporary file in the same directory, fsync, then rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_file(path: Path, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """A binary file to write `path`'s new contents into; renamed over `path` only if the block succeeds.

    An exception inside the block (a failed check, Ctrl-C) removes the temporary file and leaves
    `path` as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: str | bytes) -> None:
    """Replace `path` with `data` atomically."""
    with atomic_file(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)
