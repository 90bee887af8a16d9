"""dlrun lrfind: registered on dlrun.cli.app."""
