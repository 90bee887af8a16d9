"""dlrun viz: registered on dlrun.cli.app."""
