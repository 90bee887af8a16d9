"""The `dlrun` entry point; the commands are in dlrun/commands/ (one module per command or family).

Heavy modules (torch, hydra) are imported inside the commands, so `dlrun --help` stays fast.
"""

from __future__ import annotations

from dlrun.commands import app


def main(argv: list[str] | None = None) -> None:
    app(args=argv, prog_name="dlrun")


__all__ = ["app", "main"]

if __name__ == "__main__":  # python -m dlrun.cli
    main()
