"""The `dlrun` entry point; the commands are in dlrun/commands/ (one module per command or family).

Heavy modules (torch, hydra) are imported inside the commands, so `dlrun --help` stays fast.
"""

from __future__ import annotations

import gc
import os
import signal

from dlrun.commands import app


def main(argv: list[str] | None = None) -> None:
    """Run the command line; `argv` defaults to sys.argv[1:].

    Called without `argv` it is the program (the `dlrun` script, `python -m dlrun`), and the process ends
    when it returns: gc.freeze() then spares the interpreter's shutdown its garbage collections over every
    object torch and torch._dynamo created (about 0.5 s after a training run; the memory goes with the
    process). Atexit handlers and the flushing of open files run as usual.
    """
    if argv is None:  # the program: output that cannot be written never stops it (dlrun/outputs.py)
        from dlrun.outputs import guard

        guard()
        if os.environ.get("WORLD_SIZE", "1") in ("", "0", "1"):  # torchrun stops its ranks its own way
            signal.signal(signal.SIGTERM, _terminated)  # training and sweeps put their own in place while they run
    try:
        app(args=argv, prog_name="dlrun")
    finally:
        if argv is None:
            from dlrun.outputs import report

            report()
            gc.freeze()


def _terminated(signum, frame):
    """SIGTERM outside a training (lr-find, viz, a claim between runs): one line and exit 143, as Ctrl-C's 130."""
    from dlrun.errors import Terminated

    raise Terminated


__all__ = ["app", "main"]

if __name__ == "__main__":  # python -m dlrun.cli
    main()
