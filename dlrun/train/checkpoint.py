"""Checkpoints: model, optimizer, scheduler, step, RNG state and config, written atomically.

Loaded with `weights_only=True`: a checkpoint holds tensors and plain containers only. A file that
does not load (cut short, overwritten, another program's pickle) or whose weights do not fit the
run's model is a one-line ConfigError that names it.
"""

from __future__ import annotations

import io
import pickle
import warnings
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


AGAIN = "restore it from a copy, or train the run again (its command is in command.txt)"


def load(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The checkpoint's payload: a dict with the model's state dict under "model"."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint there (was the run started with trainer.checkpoint=false?)")
    if path.stat().st_size == 0:
        raise ConfigError(f"{path}: the checkpoint is empty (was the disk full when it was written?); {AGAIN}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols are not the user's business
            payload = torch.load(path, map_location=device, weights_only=True)
    except torch.OutOfMemoryError:
        raise  # the file is fine; the device is full
    except pickle.UnpicklingError:
        # random bytes fail here too; torch's own message would offer an unsafe load, which dlrun never does
        raise ConfigError(
            f"{path}: not a checkpoint dlrun can load (damaged, or it holds objects other than tensors); {AGAIN}"
        ) from None
    except Exception:  # a damaged file fails in many ways: the zip reader's RuntimeError, EOFError, IndexError, ...
        raise ConfigError(f"{path}: the checkpoint is damaged (cut short or overwritten); {AGAIN}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), dict):
        raise ConfigError(f"{path}: not a dlrun checkpoint (it holds no model weights); {AGAIN}")
    return payload


def load_weights(model: torch.nn.Module, payload: dict[str, Any], path: Path, config: dict[str, Any]) -> None:
    """Load payload["model"] into `model`; weights of another architecture are a ConfigError that says how
    they differ. `config`: the run's flat config, compared with the one the checkpoint was saved with."""
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, TypeError, ValueError, AttributeError):
        saved = payload.get("config") if isinstance(payload.get("config"), dict) else {}
        keys = [k for k in config if k.startswith("model.") and k in saved and saved[k] != config[k]]
        key = keys[0] if keys else None
        origin = f"saved with {key}={saved[key]}, the run has {key}={config[key]}" if key else "saved by another model"
        raise ConfigError(
            f"{path}: its weights do not fit the run's model ({mismatch(model.state_dict(), payload['model'])}; "
            f"{origin}); {AGAIN}"
        ) from None


def mismatch(expected: dict[str, Any], saved: dict[str, Any]) -> str:
    """The first difference between two state dicts: a missing or unexpected tensor, or a shape."""
    missing = [k for k in expected if k not in saved]
    if missing:
        return f"{len(missing)} tensors missing, e.g. {missing[0]}"
    unexpected = [k for k in saved if k not in expected]
    if unexpected:
        return f"{len(unexpected)} unexpected tensors, e.g. {unexpected[0]}"
    for k, v in expected.items():
        shape = tuple(getattr(saved[k], "shape", ()))
        if shape != tuple(v.shape):
            return f"{k} has shape {list(shape)}, the model's {list(v.shape)}"
    return "the tensors do not load"


def load_optimizer(optimizer: torch.optim.Optimizer, scheduler, payload: dict[str, Any]) -> None:
    """Load a checkpoint's optimizer and schedule state. The hyperparameters come from the run's config, not the
    checkpoint: a resume may change optim.lr, and the schedule's factor applies to the new rate."""
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    base_lrs = list(scheduler.base_lrs)
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    scheduler.base_lrs = base_lrs
    for i, (group, hyper) in enumerate(zip(optimizer.param_groups, fresh, strict=True)):
        group.update(hyper)
        group["lr"] = base_lrs[i] * scheduler.lr_lambdas[i](scheduler.last_epoch)
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
