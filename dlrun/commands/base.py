"""What every command module uses: the Typer `app`, its global options, error and warning display, tables.

Only typer and rich are imported at the top, so `dlrun --help` stays fast.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import warnings
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

try:  # typer 0.2x carries its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, NoSuchOption, UsageError
except ImportError:
    from click.exceptions import ClickException, NoSuchOption, UsageError

    NoArgsIsHelpError = ()  # older click prints the help itself and exits


class DlrunGroup(TyperGroup):
    """The `dlrun` group: Click's usage errors (a wrong command, option or value) become one line too."""

    def parse_args(self, ctx, args):
        with _one_line_errors(ctx):
            return super().parse_args(ctx, args)

    def invoke(self, ctx):
        with _one_line_errors(ctx):  # every subcommand and nested group is parsed and run in here
            return super().invoke(ctx)


@contextmanager
def _one_line_errors(ctx):
    try:
        yield
    except NoArgsIsHelpError:
        raise  # `dlrun viz` alone: the help is the answer
    except UsageError as e:
        _fail(_usage_message(e, ctx), 2)
    except ClickException as e:
        _fail(_lower(e.format_message()), e.exit_code)


def _usage_message(e: UsageError, group_ctx) -> str:
    """`dlrun viz nosuch: no such command; ... choose from: ...`, `dlrun sweep --trials abc: ...; try: ...`."""
    from dlrun.errors import suggest

    ctx = e.ctx
    if ctx is not None:
        path = ctx.command_path
    else:  # click raises some parse errors (an option without its value) without a context
        path = " ".join(filter(None, (group_ctx.command_path, group_ctx.invoked_subcommand)))
    hint = f"try: {path} --help"
    unknown = re.match(r"No such command '(.*?)'\.", e.message)
    if unknown and ctx is not None and isinstance(ctx.command, TyperGroup):
        name = unknown.group(1)
        names = [n for n in ctx.command.list_commands(ctx) if not ctx.command.get_command(ctx, n).hidden]
        return f"{path} {name}: no such command;{suggest(name, names)} choose from: {', '.join(names)}"
    if isinstance(e, NoSuchOption):
        close = sorted(e.possibilities or [])
        did_you_mean = f" did you mean {close[0]}?" if len(close) == 1 else ""
        return f"{path} {e.option_name}: no such option;{did_you_mean} {hint}"
    param = getattr(e, "param", None)
    if isinstance(e, typer.BadParameter) and param is not None and e.message:
        name = (getattr(param, "opts", None) or [param.human_readable_name])[0]
        return f"{path} {name}{_bad_value(e)}: {_lower(e.message)}; {hint}"
    return f"{path}: {_lower(e.format_message())}; {hint}"


def _bad_value(e: UsageError) -> str:
    # typer validates with pydantic, whose error keeps the input (click's own messages quote it instead)
    errors = e.__cause__.errors() if hasattr(e.__cause__, "errors") else []
    value = errors[0].get("input") if errors else None
    return f" {value}" if isinstance(value, str) else ""


def _lower(message: str) -> str:
    """Click's "Got unexpected extra argument (b)." in dlrun's style: "got unexpected extra argument (b)"."""
    message = message.strip().rstrip(".")
    return message[:1].lower() + message[1:]


app = typer.Typer(
    name="dlrun",
    cls=DlrunGroup,
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


def _complete_override(ctx: typer.Context, incomplete: str) -> list[str]:
    """zsh and fish pass `model=re` whole; bash splits it at `=` (COMP_WORDBREAKS): `model`, `=`, `re`, and
    replaces only the last word, so there the values come without their `key=`."""
    from dlrun.config.complete import complete

    before = ctx.params.get("overrides") or ()
    args = [str(a) for a in before]

    if incomplete == "=" and args:  # the cursor right after `model=`
        return ["=" + c.split("=", 1)[1] for c in complete(args[-1] + "=")]
    if len(args) >= 2 and args[-1] == "=":
        return [c.split("=", 1)[1] for c in complete(f"{args[-2]}={incomplete}")]
    return complete(incomplete)


def overrides_argument(help: str = OVERRIDES_HELP):
    """The overrides argument of a command, completed in the shell (model=<TAB>, optim.<TAB>)."""
    return typer.Argument(None, help=help, show_default=False, autocompletion=_complete_override)


def _fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


RANK_GRACE_S = 3.0  # how long a rank other than 0 waits before exiting on an error every rank raised


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
                    # rank 0 prints what every rank raised: the others wait a moment before they exit, or
                    # torchrun, seeing them fail first, could stop rank 0 before its line is written
                    import time

                    time.sleep(RANK_GRACE_S)
                    raise SystemExit(e.exit_code) from None
                _fail(str(e), e.exit_code)
            except OSError as e:  # a write that failed outside a training's own handling: one line, exit 1
                import errno

                from dlrun.files import write_error

                if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG):
                    raise
                what, todo = write_error(e)
                _fail(f"{what}; {todo} (nothing was left half-written)", 1)
            except KeyboardInterrupt as e:
                from dlrun.errors import Terminated

                if isinstance(e, Terminated):
                    _fail("terminated (SIGTERM)", 143)
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
