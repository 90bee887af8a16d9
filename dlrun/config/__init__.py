"""Configs: Hydra composition of the declared options, the presets in conf/ and experiments/."""

from dlrun.config.compose import compose, flat, list_options, load_run_config, to_dict, to_yaml, validate
from dlrun.options import Config

__all__ = ["Config", "compose", "flat", "list_options", "load_run_config", "to_dict", "to_yaml", "validate"]
