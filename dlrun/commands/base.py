"""What every command module uses: the Typer `app`, error and warning display.

Only typer and rich are imported at the top, so `dlrun --help` stays fast.
"""

from __future__ import annotations

import functools
import sys
import warnings

import typer

app = typer.Typer(
    name="dlrun",
    help="A command-line lab bench for deep learning: train, compare and look inside neural networks.\n\n"
    "Configs compose from groups (model, data, loss, optim, sched, regularizer, init, trainer) with "
    "Hydra's override grammar: [bold]group=option[/] picks an option, [bold]key=value[/] sets a value.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
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
                _fail(str(e), e.exit_code)
            except KeyboardInterrupt:
                _fail("interrupted", 130)

    return wrapper


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if category.__name__ == "DlrunWarning":
        print(f"warning: {message}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), file=sys.stderr, end="")
