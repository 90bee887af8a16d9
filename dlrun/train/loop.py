"""Training: `train(cfg) -> summary`, the one entry point for a single run, a vectorized group and a torchrun job.

`dlrun train`, sweep trials and packs, experiments and Python users all call `train`; it decides
what kind of run a config is and hands it to the one run lifecycle (dlrun/train/lifecycle.py),
whose stepper is a single model (dlrun/train/single.py) or a stacked group (dlrun/train/vector.py,
through dlrun/train/group.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from dlrun.config import Config
from dlrun.errors import ConfigError
from dlrun.files import check_writable
from dlrun.train import dist, group, members, rundir
from dlrun.train.callbacks import Callbacks
from dlrun.train.dist import World
from dlrun.train.lifecycle import fit, fit_and_finish, info
from dlrun.train.members import MemberSpec
from dlrun.train.plan import cpu_settings, resolve_device  # noqa: F401  (the library's names)
from dlrun.train.session import Run, guard, open_run
from dlrun.train.single import (  # noqa: F401  (the library's names)
    Setup,
    Single,
    batch,
    build,
    build_model,
    epoch_order,
    evaluate,
    model_for_task,
    summary_model,
    train_step,
)
from dlrun.train.state import Diverged, TrainState
from dlrun.train.summary import GroupSummary, RunSummary

__all__ = ["Diverged", "Setup", "TrainState", "build", "evaluate", "fit", "train"]


def train(
    what: Config | list[MemberSpec], callbacks=(), overrides: list[str] | None = None, run_dir: Path | None = None
) -> RunSummary | GroupSummary:
    """Train a config, or the members of a group, and return the summary (also in summary.json).

    what: a config (with `trainer.seeds=[...]`, a group of those seeds), or the members of a group
    (dlrun.train.members.parse of the overrides, which also reads list values and resume=<group>).
    overrides: how the run was asked for (overrides.yaml; a group's members' rerun commands).
    run_dir: where a new run or group goes, e.g. a sweep's trial; default <runs_dir>/<name>/<time>/.

    Raises Diverged (exit 1) when a single run's loss becomes NaN/inf; the last good checkpoint stays.
    Under torchrun every rank trains its share (see dlrun/train/dist.py) and returns the summary;
    rank 0 alone writes the run directory and calls the callbacks.
    """
    world = dist.world()
    specs = what if isinstance(what, list) else None
    if specs is None and what.trainer.seeds:
        specs = members.members(what, list(overrides or []), {})
    if specs is not None:
        if world.active:
            raise ConfigError(
                "trainer.seeds or a list of values under torchrun: train a vectorized group in one process"
            )
        return group.train_group(specs, callbacks, group_dir=run_dir)
    with guard(world) as held:
        return _single(what, callbacks if world.main else (), overrides, run_dir, world, held)


def _single(cfg: Config, callbacks, overrides, run_dir, world: World, held: list) -> RunSummary:
    started, hooks = time.time(), Callbacks(callbacks)
    resumed, writes = cfg.resume is not None, world.main  # rank 0 writes; the other ranks train and evaluate
    if writes and not resumed and run_dir is None:  # a runs_dir that cannot hold the run fails before the work
        check_writable(Path(cfg.runs_dir), f"runs_dir={cfg.runs_dir}")
    sp = Single(build(cfg, world))
    if resumed:
        run_dir = Path(cfg.resume)
    elif writes:
        run_dir = Path(run_dir) if run_dir else rundir.new_run_dir(cfg)
    run_dir = Path(dist.from_main(str(run_dir), world))
    run = Run(sp.cfg, run_dir, writes, list(overrides or []), resumed=resumed, state=TrainState(wall_start=started))
    open_run(sp, 0, run, held, started)
    if world.active:  # each rank its own dropout and augmentation draws, a pure function of (seed, rank, step)
        torch.manual_seed(cfg.trainer.seed * 1_000_003 + 7919 * (world.rank + 1) + run.state.step)
    sp.logger = run.logger
    hooks.start(info(sp, run_dir, run.state.step, resumed))
    fit_and_finish(sp, [run], hooks)
    hooks.end(run.summary)
    if run.status == "diverged":
        last = run_dir / "checkpoints" / "last.pt"
        kept = f"; last good checkpoint: {last}" if last.exists() else ""
        raise Diverged(f"{run.summary.message}{kept}; try a smaller optim.lr or trainer.grad_clip")
    return run.summary
