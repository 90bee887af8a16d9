"""Commands that live in their own modules: each module registers its commands on `dlrun.cli.app`.

A command module imports only typer and rich at the top, so `dlrun --help` stays fast.
"""
