"""The model registry: builders by the names users type, each against its declaration in dlrun.options."""

from dlrun.registry import Registry

MODELS: Registry = Registry("model")  # name -> builder(cfg, input_shape, out_features) -> nn.Module


class DlrunWarning(UserWarning):
    """Something the user should know before training (printed as one line by the CLI)."""
