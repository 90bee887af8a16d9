"""Errors that the CLI turns into one line and an exit status (see README, 'Exit status')."""

import difflib


def suggest(word: str, choices) -> str:
    """' did you mean X?' when a close match (or a unique prefix match) exists, else ''."""
    choices = [str(c) for c in choices]
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not match:
        match = [c for c in choices if c.startswith(word)] if word else []
    return f" did you mean '{match[0]}'?" if len(match) == 1 else ""


class DlrunError(Exception):
    """A failure the user can act on; `exit_code` is what the CLI exits with.

    Under torchrun every rank raises the same errors (a config error, a divergence: the decisions are
    all-reduced), and rank 0 alone prints them; `own` marks an error of one rank, which it prints itself.
    """

    exit_code = 1
    own = False

    def __str__(self) -> str:  # one line, whatever a quoted value held (a newline, a NUL)
        return visible(super().__str__())


def first_line(e: BaseException) -> str:
    """The first non-blank line of an exception's message, or its type's name when it has none."""
    return next(iter(str(e).strip().splitlines()), "") or type(e).__name__


def visible(text: str) -> str:
    """Control characters as escapes (`\\n`, `\\x00`); letters of every script stay as they are."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


class ConfigError(DlrunError):
    """Bad input: an unknown option or key, a wrong type, an out-of-range value, a missing file."""

    exit_code = 2


class RunFailed(DlrunError):
    """The run itself failed on its merits (for example the loss diverged)."""

    exit_code = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM, outside the loops that stop on it gracefully: the command ends with exit status 143."""
