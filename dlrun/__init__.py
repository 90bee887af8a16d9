"""dlrun: a command-line lab bench for deep-learning experiments.

The library is usable without the CLI:

    from dlrun import compose, train
    summary = train(compose(["model.hidden=[64]", "trainer.epochs=5"]))

`compose` is dlrun.config.compose; `train` is the dlrun.train package, which called is dlrun.train.train.
Both are imported on first use, so `import dlrun` (and `dlrun --help`) does not import torch.
"""

__version__ = "0.1.0"
__all__ = ["__version__", "compose", "train"]


def __getattr__(name: str):
    if name == "compose":
        from dlrun.config import compose

        return compose
    if name == "train":
        import dlrun.train

        return dlrun.train
    raise AttributeError(f"module 'dlrun' has no attribute {name!r}")
