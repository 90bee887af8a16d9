"""The commands: each module registers its commands on `app` (dlrun/commands/base.py).

A command module imports only typer and rich at the top, so `dlrun --help` stays fast.
"""

from dlrun.commands.base import app

# isort: off
# the order of these imports is the order of the commands in `dlrun --help`
from dlrun.commands import train, config, runs  # noqa: F401
from dlrun.commands import gradcheck, lrfind, sweep, experiment, viz, neuron, conv  # noqa: F401

# isort: on

__all__ = ["app"]
