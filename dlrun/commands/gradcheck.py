"""dlrun gradcheck: registered on dlrun.cli.app."""
