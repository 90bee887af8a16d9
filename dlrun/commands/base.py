"""What every command module uses: the Typer `app`, its global options, error and warning display, tables.

Only typer and rich are imported at the top, so `dlrun --help` stays fast.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="dlrun",
    help="A command-line lab bench for deep learning: train, compare and look inside neural networks.\n\n"
    "Configs compose from groups (model, data, loss, optim, sched, regularizer, init, trainer) with "
    "Hydra's override grammar: [bold]group=option[/] picks an option, [bold]key=value[/] sets a value.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
OVERRIDES_HELP = (
    "Overrides in Hydra's grammar: group=option (model=mlp), key=value (optim.lr=3e-3, 'model.hidden=[64,64]')."
)
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def _fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def handle_errors(fn):
    """DlrunError -> one line on stderr and its exit status (2 for bad input, 1 for a failed run)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from dlrun.errors import DlrunError

        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            try:
                return fn(*args, **kwargs)
            except DlrunError as e:
                if not e.own and os.environ.get("RANK", "0") != "0" and os.environ.get("WORLD_SIZE", "1") != "1":
                    raise SystemExit(e.exit_code) from None  # rank 0 prints what every rank raised
                _fail(str(e), e.exit_code)
            except KeyboardInterrupt:
                _fail("interrupted", 130)

    return wrapper


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if category.__name__ == "DlrunWarning":
        print(f"warning: {message}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), file=sys.stderr, end="")


def print_table(table: Table, console: Console | None = None) -> None:
    """Print a rich table; when stdout is not a terminal it is as wide as its cells, not cut to 80 columns."""
    console = console or Console()
    if not console.is_terminal:
        natural = console.measure(table, options=console.options.update_width(10**6)).maximum
        console.width = max(console.width, natural)
    console.print(table)


def _print_version(value: bool) -> None:
    if value:
        from dlrun import __version__

        print(f"dlrun {__version__}")
        raise typer.Exit()


@app.callback()
@handle_errors
def global_options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print dlrun's version and exit."
    ),
    plugin: list[str] | None = typer.Option(
        None,
        "--plugin",
        metavar="PATH",
        help=f"A Python file to load before the command (repeatable); also $DLRUN_PLUGINS, '{os.pathsep}'-separated.",
        show_default=False,
    ),
):
    """Global options: they go before the command."""
    from dlrun import plugins

    plugins.load([*plugins.from_environment(), *(plugin or [])])
