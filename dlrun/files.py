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


NAME_MAX, PATH_MAX = 255, 4096  # bytes in one file name and in a whole path (Linux)
PATH_ROOM = 200  # what a run directory's own files add below its folder


def check_writable(folder: Path, what: str, hint: str = "give a folder you can write to") -> None:
    """A ConfigError naming `what` (e.g. `--out x.png`) unless files can be made in `folder` or, where it
    does not exist yet, in its nearest existing parent. Checked before a command's work; nothing is left behind."""
    from dlrun.errors import ConfigError

    existing = Path(folder).absolute()
    too_long = [part for part in existing.parts if len(os.fsencode(part)) > NAME_MAX]
    if too_long or len(os.fsencode(str(existing))) > PATH_MAX - PATH_ROOM:
        what_is = (
            f"the name {too_long[0][:40]}... is longer than {NAME_MAX} bytes"
            if too_long
            else (
                f"the path is {len(os.fsencode(str(existing)))} bytes, and files below it need {PATH_ROOM} of the "
                f"{PATH_MAX} a path may have"
            )
        )
        raise ConfigError(f"{what}: {what_is}; {hint}")
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a link to nothing: mkdir would fail on it
            raise ConfigError(
                f"{what}: {existing} is a symbolic link to {os.readlink(existing)}, which does not exist; {hint}"
            )
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


def read_jsonl(file: Path) -> list[tuple[str, dict]]:
    """(line, record) of each line of a JSON-lines file that holds an object; a line cut short by a kill
    (or any other unreadable line) is left out, and a missing file has none."""
    import json

    records = []
    for line in Path(file).read_text(errors="replace").splitlines() if Path(file).is_file() else []:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append((line, record))
    return records
