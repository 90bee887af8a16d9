"""The terminal is not the record: output that cannot be written never stops a command or changes a run.

`dlrun train ... | head -1`, a pipe whose reader went away, stdout on a full device or closed with `>&-`:
the run's files are its record, so printing to such a stream must not end the training. `guard()` wraps
stdout and stderr so that the first failed write (EPIPE, ENOSPC, EIO, a closed stream) switches that
stream off: the file descriptor is pointed at /dev/null (so the interpreter's flush at exit succeeds too)
and whatever follows is dropped. A descriptor that was closed before dlrun started is opened on
/dev/null first, so no file the command opens can land on it.
"""

from __future__ import annotations

import errno
import io
import os
import sys


class Quiet(io.TextIOBase):
    """A text stream that passes writes to `stream` until one fails, and drops them from then on."""

    def __init__(self, stream, fd: int):
        self._stream = stream
        self._fd = fd
        self.failed: str | None = None if stream is not None else "closed"
        self.gone = False  # the reader of a pipe went away (`| head -1`): nothing to say

    def _off(self, e: BaseException) -> None:
        self.failed = getattr(e, "strerror", None) or type(e).__name__
        self.gone = getattr(e, "errno", None) == errno.EPIPE
        try:  # the buffered bytes and the interpreter's last flush go to /dev/null, not to an error
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._fd)
            os.close(null)
        except OSError:
            pass

    def write(self, text: str) -> int:
        if self.failed is None:
            try:
                try:
                    return self._stream.write(text)
                except UnicodeEncodeError:  # an ASCII or Latin-1 terminal: ± and box lines as escapes
                    enc = self.encoding
                    return self._stream.write(text.encode(enc, "backslashreplace").decode(enc))
            except (OSError, ValueError) as e:  # ValueError: write to a closed file
                self._off(e)
        return len(text)

    def flush(self) -> None:
        if self.failed is None:
            try:
                self._stream.flush()
            except (OSError, ValueError) as e:
                self._off(e)

    def isatty(self) -> bool:
        try:
            return self.failed is None and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return self._fd

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:
        return getattr(self._stream, "errors", None)

    @property
    def buffer(self):
        """The byte stream under it while it works; a sink that drops everything once it failed."""
        return self._stream.buffer if self.failed is None else _Sink()


class _Sink(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return len(data)


def _open_closed(fd: int) -> bool:
    """Open /dev/null on fd if it is closed; True if it was (called for 0, 1, 2 in order, so that the
    lowest free descriptor, which os.open returns, is fd itself)."""
    try:
        os.fstat(fd)
        return False
    except OSError:
        null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        return True


def guard() -> None:
    """Wrap sys.stdout and sys.stderr in Quiet streams (once); a closed stdin reads /dev/null."""
    _open_closed(0)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        stream = getattr(sys, name)
        if isinstance(stream, Quiet):
            continue
        closed = _open_closed(fd)
        setattr(sys, name, Quiet(None if closed or stream is None else stream, fd))


def report() -> None:
    """One line on stderr when stdout failed for a reason other than a reader that left (`| head`)."""
    out, err = sys.stdout, sys.stderr
    if isinstance(out, Quiet) and out.failed and out.failed != "closed" and not out.gone:
        print(f"warning: stdout: {out.failed}; the output from then on was dropped (the files are complete)", file=err)
