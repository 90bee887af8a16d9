"""What a run will do, decided once before anything is built: the resolved config and the plan of steps.

`resolve(cfg, task)` completes the config for the task: loss=auto becomes the loss that runs,
trainer.monitor=auto the metric that chooses the best weights, and regularizer=dropout sets the
model's own dropout to p. The result is what config.yaml records, so a resume, a sweep and the
results table read what ran. `make_plan` turns the config and the data's sizes into the batch
size, the steps and the evaluation split, for a single run and a group alike.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from dlrun import losses, options, regularizers
from dlrun.config import Config
from dlrun.data import Task
from dlrun.errors import ConfigError
from dlrun.train import trainer_options


def resolve_device(name: str) -> torch.device:
    """auto = cuda, then mps, then cpu; an explicit device that is not here is a config error."""
    mps = getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name}: no CUDA device here; use trainer.device=auto or cpu")
    if name == "mps" and not mps:
        raise ConfigError("trainer.device=mps: no MPS device here; use trainer.device=auto or cpu")
    return torch.device(name)


def cpu_settings(t, device: torch.device) -> None:
    """The device's settings for a run: threads, denormals (below) and trainer.deterministic."""
    trainer_options.settings(t, device)
    _threads(t, device)


def _threads(t, device: torch.device) -> None:
    """trainer.threads, and trainer.flush_denormal: float32 values below 1.2e-38 (an Adam's squared gradients late
    in training) as zeros. Each op on denormals is ~50x slower on the CPU: 16 digits MLPs trained as one group
    went from 4.5 to 11 ms per step after epoch 20; flushed, they stay at 4.5."""
    if t.threads:
        torch.set_num_threads(t.threads)
    if device.type == "cpu":
        torch.set_flush_denormal(t.flush_denormal)


def resolved_loss_config(loss_cfg, name: str):
    """The loss config of the resolved loss (auto -> cross_entropy keeps no mse-only keys)."""
    resolved = options.schema("loss", name)
    kept = {f: getattr(loss_cfg, f) for f in resolved.__dataclass_fields__ if f != "name" and hasattr(loss_cfg, f)}
    return resolved(name=name, **kept)


def default_monitor(task: Task) -> str:
    return "val/acc" if task.is_classification else "val/loss"


def resolve(cfg: Config, task: Task, has_val: bool = True) -> Config:
    """The config as it runs on this task: loss, monitor and dropout resolved (a new Config; cfg is kept)."""
    loss_name, _ = losses.build(cfg.loss, task)  # a loss that does not fit the task is refused here
    models_cfg = regularizers.model_config(cfg.model, cfg.regularizer)  # regularizer=dropout: the model's dropout
    trainer = cfg.trainer
    if has_val and trainer.monitor == "auto":  # with no val split nothing is chosen by a metric: auto stays
        trainer = dataclasses.replace(trainer, monitor=default_monitor(task))
    return dataclasses.replace(cfg, loss=resolved_loss_config(cfg.loss, loss_name), model=models_cfg, trainer=trainer)


@dataclass(frozen=True)
class Plan:
    """The steps of a run, the same for every member of a group."""

    n_train: int
    batch_size: int
    steps_per_epoch: int
    total_steps: int
    monitor: str  # val/acc or val/loss: chooses the best weights and stops early
    eval_split: str = "val"  # what the evaluations during training use: val, or test when there is no val split

    @property
    def maximize(self) -> bool:
        return self.monitor.endswith("acc")

    def batch_range(self, b: int) -> tuple[int, int]:
        """[start, end) of batch b in an epoch's order; the last batch takes the remainder."""
        end = (b + 1) * self.batch_size if b < self.steps_per_epoch - 1 else self.n_train
        return b * self.batch_size, end

    def better(self, value: float, best: float | None, min_delta: float) -> bool:
        """Whether `value` of the monitor improves on `best` by more than min_delta."""
        if best is None:
            return True
        return value > best + min_delta if self.maximize else value < best - min_delta


def make_plan(cfg: Config, n_train: int, n_val: int, task: Task) -> Plan:
    """Batch size, steps and evaluation split from the config and the split sizes; bad combinations refused."""
    t = cfg.trainer
    full_batch = options.caps("optim", cfg.optim.name).full_batch
    batch_size = n_train if full_batch else min(t.batch_size * t.accumulate, n_train)  # examples per optimizer step
    # the last batch takes the remainder; a lone last example joins the batch before (batch norm needs 2)
    steps_per_epoch = max(1, math.ceil((n_train - 1) / batch_size))
    total_steps = t.steps if t.steps > 0 else t.epochs * steps_per_epoch
    eval_split = "val" if n_val else "test"
    if eval_split == "test":  # data.val_fraction=0: nothing to choose weights or to stop by
        for key, bad in (
            ("trainer.patience", t.patience > 0),
            ("trainer.test_with", t.test_with == "best"),
            ("trainer.monitor", t.monitor != "auto"),
            ("sched", cfg.sched.name == "plateau"),
        ):
            if bad:
                value = getattr(t, key.split(".")[1]) if key.startswith("trainer.") else cfg.sched.name
                raise ConfigError(f"{key}={value} needs a validation split; data.val_fraction=0 leaves none")
    valid = ["val/loss", "val/acc"] if task.is_classification else ["val/loss", "val/mse"]
    monitor = t.monitor if t.monitor != "auto" else default_monitor(task)
    if monitor not in valid:
        raise ConfigError(f"trainer.monitor={monitor}: not a metric of this run; choose from: auto, {', '.join(valid)}")
    if t.test_with == "best" and not t.checkpoint:
        raise ConfigError("trainer.test_with=best needs trainer.checkpoint=true (best weights live in best.pt)")
    return Plan(n_train, batch_size, steps_per_epoch, total_steps, monitor, eval_split)
