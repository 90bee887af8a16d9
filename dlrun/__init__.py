"""dlrun: a command-line lab bench for deep-learning experiments.

The library is usable without the CLI:

    from dlrun.config import compose
    from dlrun.train import train
    summary = train(compose(["model.hidden=[64]", "trainer.epochs=5"]))
"""

__version__ = "0.1.0"
