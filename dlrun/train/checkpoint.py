"""Checkpoints: model, optimizer, scheduler, step, RNG state and config, written atomically.

Loaded with `weights_only=True`: a checkpoint holds tensors and plain containers only.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from dlrun.errors import ConfigError
from dlrun.files import atomic_write


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, payload: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, buffer.getvalue())


def load(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no checkpoint there (was the run started with trainer.checkpoint=false?)")
    return torch.load(path, map_location=device, weights_only=True)
