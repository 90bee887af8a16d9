"""A run directory -> its config, data and model with trained weights, ready to be looked at.

    run = load_run("runs/mlp-digits/2026-01-01_12-00-00", weights="last")
    run.model(run.data.test.x)          # eval mode, on the run's device

`weights`: last (checkpoints/last.pt, the weights the run's test metrics come from by default),
best (checkpoints/best.pt, the best monitored validation metric) or init (the freshly initialized
model of the run's seed, no checkpoint read).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dlrun import losses
from dlrun.config import Config
from dlrun.data import Dataset, Task
from dlrun.errors import ConfigError, suggest
from dlrun.train import Setup

WEIGHTS = ("last", "best", "init")


@dataclass
class LoadedRun:
    run_dir: Path
    setup: Setup
    weights: str  # last | best | init
    step: int  # training step of the weights (0 for init): the step the TensorBoard images are logged at

    @property
    def cfg(self) -> Config:
        return self.setup.cfg

    @property
    def model(self) -> nn.Module:
        return self.setup.model

    @property
    def data(self) -> Dataset:
        return self.setup.data

    @property
    def task(self) -> Task:
        return self.setup.data.task

    @property
    def device(self) -> torch.device:
        return self.setup.device


def check_run_dir(run_dir: str | Path) -> Path:
    """The path as a run directory (it holds config.yaml), or a one-line ConfigError."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such directory; give a run directory such as runs/mlp-digits/<time>")
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"{path}: not a run directory (no config.yaml); list runs with `dlrun runs`")
    return path


def load_run(run_dir: str | Path, weights: str = "last") -> LoadedRun:
    """Build the run's setup from its config.yaml and load checkpoints/<weights>.pt; model in eval mode."""
    from dlrun.config.compose import flat, load_run_config
    from dlrun.train import build
    from dlrun.train import checkpoint as ckpt

    path = check_run_dir(run_dir)
    if weights not in WEIGHTS:
        raise ConfigError(f"--weights {weights}: unknown;{suggest(weights, WEIGHTS)} choose from: {', '.join(WEIGHTS)}")
    file = path / "checkpoints" / f"{weights}.pt"
    if weights != "init" and not file.is_file():
        others = [w for w in ("last", "best") if w != weights and (path / "checkpoints" / f"{w}.pt").is_file()]
        hint = f"; try --weights {others[0]}" if others else " (was it trained with trainer.checkpoint=false?)"
        raise ConfigError(f"{path}: no checkpoint checkpoints/{weights}.pt{hint}")
    setup = build(load_run_config(path))  # seeds and initializes the model as the run did
    step = 0
    if weights != "init":
        payload = ckpt.load(file, setup.device)
        ckpt.load_weights(setup.model, payload, file, flat(setup.cfg))
        state = payload.get("state") if isinstance(payload.get("state"), dict) else {}
        step = int(state.get("best_step" if weights == "best" else "step", 0) or 0)
    setup.model.eval()
    setup.model.score_cut = losses.threshold(setup.loss_fn)
    return LoadedRun(path, setup, weights, max(step, 0))


def class_scores(z: torch.Tensor, cut: float = 0.0) -> torch.Tensor:
    """Unnormalized class scores (B, K) from a model's output: one logit z (binary, bce) becomes [0, z - cut].

    softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)], so every classifier reads as K logits. `cut` is where a
    single score splits the classes (1/2 for squared error against 0 / 1 targets, else 0).
    """
    return torch.cat([torch.zeros_like(z), z - cut], dim=-1) if z.shape[-1] == 1 else z


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class (N,), class probabilities (N, K)) in the model's current mode, without gradients."""
    cut = getattr(model, "score_cut", 0.0)  # set by load_run from the run's loss
    with torch.no_grad():
        probs = torch.cat(
            [F.softmax(class_scores(model(x[i : i + batch_size]), cut), -1) for i in range(0, len(x), batch_size)]
        )
    return probs.argmax(-1), probs


def require_classification(run: LoadedRun, what: str) -> None:
    """A classifier's run; soft labels are read as each example's most likely class (what the pictures show)."""
    if not run.task.is_classification:
        raise ConfigError(f"{run.run_dir}: {what} needs a classifier; data={run.cfg.data.name} is a regression task")
    if run.task.soft_labels:
        from dataclasses import replace

        from dlrun.data import Split

        d = run.setup.data
        hard = {s: Split(getattr(d, s).x, getattr(d, s).y.argmax(-1)) for s in ("train", "val", "test")}
        run.setup.data = replace(d, task=replace(d.task, soft_labels=False), **hard)
