"""Configs: Hydra composition of conf/ and experiments/, validated into typed dataclasses."""

from dlrun.config.compose import compose, flat, list_options, load_run_config, to_dict, to_yaml, validate
from dlrun.config.schema import Config

__all__ = ["Config", "compose", "flat", "list_options", "load_run_config", "to_dict", "to_yaml", "validate"]
