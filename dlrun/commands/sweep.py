"""dlrun sweep: registered on dlrun.cli.app."""
