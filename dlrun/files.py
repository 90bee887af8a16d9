"""Files written whole or not at all: a temporary file in the same directory, fsync, then rename.

Also the check that a folder can be written before a command starts its work, and what an OSError
of a write says.
"""

from __future__ import annotations

import errno
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

    An exception inside the block (a failed check, Ctrl-C, a full disk) removes the temporary file and
    leaves `path` as it was. An OSError of the write itself names `path` (a full disk's has no file name).
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
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(path)
        raise


def atomic_write(path: Path, data: str | bytes) -> None:
    """Replace `path` with `data` atomically."""
    with atomic_file(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def check_writable(folder: Path, what: str, hint: str = "give a folder you can write to") -> None:
    """A ConfigError naming `what` (e.g. `--out x.png`) unless files can be made in `folder` or, where it
    does not exist yet, in its nearest existing parent. Checked before a command's work; nothing is left behind."""
    from dlrun.errors import ConfigError

    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{what}: {existing} is a file, not a folder; {hint}")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".dlrun-write-check-")
    except OSError as e:
        raise ConfigError(f"{what}: cannot write in {existing} ({e.strerror}); {hint}") from None
    os.close(fd)
    os.unlink(probe)


def check_writable_file(path: Path, what: str) -> None:
    """check_writable for a file to be written: its folder, and that no folder stands in its place."""
    from dlrun.errors import ConfigError

    if Path(path).is_dir():
        raise ConfigError(f"{what}: {path} is a folder; give a file name such as {Path(path) / 'plot.png'}")
    check_writable(Path(path).parent, what)


def write_error(e: OSError) -> tuple[str, str]:
    """(what failed: the file and why, what to do about it) for an OSError of a write."""
    where = e.filename or "a file"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}: no space left on the device", "free some space"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}: not writable ({e.strerror})", "make the folder writable"
    return f"{where}: cannot write ({e.strerror or e})", "check the disk"
