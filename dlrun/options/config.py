"""The whole config: one option of each group plus the run's own keys."""

from dataclasses import dataclass, field, fields
from typing import Any

from dlrun.options.core import GROUPS, FieldError, check_choice, declared, opt
from dlrun.options.data import DataConfig
from dlrun.options.model import MLPConfig
from dlrun.options.train import InitConfig, MSELossConfig, OptimConfig, RegularizerConfig, SchedConfig, TrainerConfig

BACKPROPS = ("autograd", "manual")
MAX_NAME_BYTES = 200  # a run name becomes a folder name: at most 255 bytes


@dataclass
class Config:
    """The composed, validated config that every library function reads."""

    model: Any = field(default_factory=MLPConfig)
    data: Any = field(default_factory=DataConfig)
    loss: Any = field(default_factory=MSELossConfig)
    optim: Any = field(default_factory=OptimConfig)
    sched: Any = field(default_factory=SchedConfig)
    regularizer: Any = field(default_factory=RegularizerConfig)
    init: Any = field(default_factory=InitConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    name: str | None = opt(None, hparam=False)  # run name; default: the experiment's name or <model>-<data>
    runs_dir: str = opt("runs", hparam=False)  # runs go to <runs_dir>/<name>/<timestamp>/
    resume: str | None = opt(None, hparam=False)  # a run directory to continue
    experiment: str | None = opt(None, hparam=False)  # set from `experiment=NAME`, recorded for the run directory
    backprop: str = "autograd"  # autograd, or manual: the lecture's fprop/bprop modules (MLP only)
    plugins: list[str] = opt([], hparam=False)  # plugin files and modules the run's options come from

    def __post_init__(self):
        check_choice("backprop", self.backprop, BACKPROPS)
        if self.name is not None:
            long = [part for part in str(self.name).split("/") if len(part.encode()) > MAX_NAME_BYTES]
            if long or not str(self.name).strip("/"):
                raise FieldError(
                    "name",
                    f"'{str(self.name)[:40]}...' has a part longer than {MAX_NAME_BYTES} bytes; give a shorter name"
                    if long
                    else "empty; give a name such as name=my-run",
                )


META_KEYS = tuple(f.name for f in fields(Config) if f.name not in GROUPS)


def not_hyperparameters() -> set[str]:
    """Flat keys (`trainer.seed`, `name`) that do not change what a run learns, from the declarations."""
    keys = {f.name for f in fields(Config) if not f.metadata.get("hparam", True)}
    for group in GROUPS:
        for decl in declared(group).values():
            keys |= {f"{group}.{f.name}" for f in fields(decl.schema) if not f.metadata.get("hparam", True)}
    return keys
