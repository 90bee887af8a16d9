"""The `dlrun` entry point; the commands are in dlrun/commands/ (one module per command or family).

Heavy modules (torch, hydra) are imported inside the commands, so `dlrun --help` stays fast.
"""

from __future__ import annotations

import gc

from dlrun.commands import app


def main(argv: list[str] | None = None) -> None:
    """Run the command line; `argv` defaults to sys.argv[1:].

    Called without `argv` it is the program (the `dlrun` script, `python -m dlrun`), and the process ends
    when it returns: gc.freeze() then spares the interpreter's shutdown its garbage collections over every
    object torch and torch._dynamo created (about 0.5 s after a training run; the memory goes with the
    process). Atexit handlers and the flushing of open files run as usual.
    """
    try:
        app(args=argv, prog_name="dlrun")
    finally:
        if argv is None:
            gc.freeze()


__all__ = ["app", "main"]

if __name__ == "__main__":  # python -m dlrun.cli
    main()
