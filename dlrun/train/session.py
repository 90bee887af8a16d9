"""A run's files from start to end, the same for a single run and each member of a group.

open_run: the run's lock, its resume from last.pt, config.yaml and the other start files, its
TensorBoard logger and the "running" summary. save: last.pt and best.pt. close_run: the final
summary. group_summary: the group folder's summary.json.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlrun.config import Config, flat, to_yaml
from dlrun.errors import ConfigError, RunFailed
from dlrun.train import checkpoint as ckpt
from dlrun.train import dist, rundir
from dlrun.train import summary as summaries
from dlrun.train.dist import World
from dlrun.train.logger import RunLogger
from dlrun.train.state import WRITE_ERRORS, TrainState, write_failed
from dlrun.train.summary import GroupSummary, RunSummary

LAST, BEST = Path("checkpoints") / "last.pt", Path("checkpoints") / "best.pt"


@dataclass
class Run:
    """One run of the lifecycle: a single run, or one member of a vectorized group."""

    cfg: Config  # as it runs (resolved)
    run_dir: Path | None  # None: nothing is written (fit on a bare Setup)
    writes: bool = True  # this process writes the run's files (under torchrun: rank 0)
    overrides: list[str] = field(default_factory=list)  # how to rerun it: dlrun train OVERRIDES
    label: str = ""  # a member's folder name in its group
    group: Path | None = None  # its group's folder
    resumed: bool = False
    state: TrainState = field(default_factory=TrainState)
    status: str = "running"
    logger: RunLogger | None = None
    summary: RunSummary = field(default_factory=RunSummary)


@contextmanager
def guard(world: World) -> Iterator[list[rundir.RunLock]]:
    """Around a training: the run directories' locks it takes (the yielded list) are released however it ends;
    a write that fails mid-run (a full disk) is one line; under torchrun a peer's failure is named."""
    held: list[rundir.RunLock] = []
    try:
        yield held
        if world.active:
            # the run's DistributedDataParallel holds the process group in a reference cycle: free it while the
            # group is whole (a group torn down at the interpreter's exit can abort in gloo's threads), and leave
            # together. Only on success: after a failure the line that says why must come out at once.
            gc.collect()
            dist.barrier(world)
    except OSError as e:
        if e.errno not in WRITE_ERRORS or not held:
            raise
        raise RunFailed(write_failed(e, held[0].path.parent, [lock.path.parent for lock in held])) from None
    except Exception as e:
        if world.active and dist.failed(e):
            raise dist.peer_failed(e, world) from None
        raise
    finally:
        for lock in held:
            lock.release()
        if world.active:
            dist.end()


def running(runs: list[Run]) -> list[Run]:
    return [r for r in runs if r.status == "running"]


def record(run: Run) -> None:
    """summary.json, from the process that writes the run."""
    if run.writes:
        summaries.write(run.run_dir, run.summary)


# ----------------------------------------------------------------------------- start
def open_run(sp, k: int, run: Run, held: list, started: float) -> None:
    """Lock the run, restore it from last.pt on a resume, write its start files, open its logger."""
    if run.writes:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        held.append(rundir.lock(run.run_dir))  # one process at a time trains a run: a second one is refused
    earlier = summaries.read(run.run_dir) if run.resumed else None
    if run.resumed:
        restore(sp, k, run)
        if run.writes:
            rundir.truncate_metrics(run.run_dir, run.state.step)
    if run.writes:
        rundir.write_start(run.run_dir, run.cfg, run.overrides, run.resumed)
        run.logger = RunLogger(run.run_dir, purge_step=run.state.step + 1 if run.resumed else None)
        run.logger.text("config", "    " + to_yaml(run.cfg).replace("\n", "\n    "))
    first = earlier.get("started_at") if earlier is not None and earlier.get("started_at") else started
    plan, t = sp.plan, run.cfg
    run.summary = RunSummary(
        run_dir=str(run.run_dir),
        total_steps=plan.total_steps,
        steps_per_epoch=plan.steps_per_epoch,
        step=run.state.step,
        params=sp.n_params(),
        device=str(sp.device),
        loss=sp.loss_name,
        resumed=run.resumed,
        monitor=plan.monitor,
        world_size=sp.world.size,
        name=rundir.run_name(t),
        experiment=t.experiment,
        classes=list(sp.task.class_names),  # label i is classes[i]; [] for regression and unnamed classes
        group=str(run.group) if run.group else None,
        started=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(first)),
        started_at=first,
    )
    record(run)


def restore(sp, k: int, run: Run) -> None:
    """Load the run's last.pt into member k of the stepper and into its state; refuse a resume below its step."""
    path = run.run_dir / LAST
    payload = ckpt.load(path, sp.device)
    ckpt.load_weights(sp.module(k), payload, path, flat(run.cfg))  # foreign weights: one line saying how
    try:
        sp.restore(k, payload)
        run.state.load(payload["state"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError):  # weights that fit, the rest not a run's
        raise ConfigError(
            f"{path}: not a complete dlrun checkpoint (its optimizer, schedule or step do not load); {ckpt.AGAIN}"
        ) from None
    if run.state.step > sp.plan.total_steps:  # refused before metrics.jsonl is cut back to the checkpoint
        t, resume = run.cfg.trainer, run.group or run.run_dir
        given, need = (
            (f"trainer.steps={t.steps}", f"trainer.steps>={run.state.step}")
            if t.steps > 0
            else (
                f"trainer.epochs={t.epochs}",
                f"trainer.epochs>={math.ceil(run.state.step / sp.plan.steps_per_epoch)}",
            )
        )
        raise ConfigError(
            f"resume={resume}: the run is at step {run.state.step}, past the {sp.plan.total_steps} steps of "
            f"{given}; give {need}"
        )


def finished_member(run: Run, total_steps: int) -> RunSummary | None:
    """A group member's summary when it ended for good before a resume of its group (diverged, stopped early,
    pruned, or completed at the steps asked): it is kept as it is. None when it trains on."""
    earlier = summaries.read(run.run_dir)
    if not isinstance(earlier, RunSummary) or earlier.status in ("running", "interrupted", "failed"):
        return None
    if earlier.status == "completed" and earlier.step < total_steps and not earlier.message.startswith("early stop"):
        return None  # a longer run asked of a finished member: it trains on
    return earlier


# ----------------------------------------------------------------------------- checkpoints
def save(sp, k: int, run: Run, last: bool = True) -> None:
    """last.pt: everything a resume needs; best.pt: the best weights so far (if new since the last write)."""
    config = flat(run.cfg)
    if last:
        ckpt.save(run.run_dir / LAST, {**sp.checkpoint(k), "state": run.state.as_dict(), "config": config})
    if run.state.best_weights is not None:
        ckpt.save(run.run_dir / BEST, {"model": run.state.best_weights, "state": run.state.as_dict(), "config": config})
        run.state.best_weights = None  # written; test_with=best reads it back
    run.state.last_save = time.perf_counter()


# ----------------------------------------------------------------------------- end
def close_run(run: Run, status: str, message: str, metrics: dict[str, float], monitor: str, spe: int) -> None:
    """The run's final summary and hyperparameters; its logger closed."""
    st = run.state
    run.status = "completed" if status in ("early_stop", "converged") else status
    if status == "early_stop":
        message = f"early stop: {monitor} did not improve for {st.bad_evals} evaluations"
    values = {**metrics, **st.last_eval, "train/loss": st.last_train_loss}
    if st.updates >= 0:  # trainer.stop_at_zero_loss: the steps that changed the weights (perceptron: mistakes)
        values["train/updates"] = st.updates
    if st.best_value is not None:
        values[f"best/{monitor}"] = st.best_value
    if run.logger:
        if run.status == "completed":
            run.logger.hparams(flat(run.cfg), {k: v for k, v in values.items() if k.split("/")[0] in ("test", "val")})
        run.logger.close()
    s = run.summary
    s.status, s.message, s.step, s.epoch = run.status, message, st.step, round(st.step / spe, 3)
    s.metrics = {k: v for k, v in values.items() if v == v}
    s.best_step = st.best_step
    s.wall_time_s = round(st.wall_before + time.time() - st.wall_start, 3)  # every process of the run
    s.train_time_s = round(st.train_time, 3)
    s.samples_per_s = round(st.samples / st.train_time, 1) if st.train_time > 0 else None
    s.ended = time.strftime("%Y-%m-%dT%H:%M:%S")
    record(run)


def abort(run: Run, status: str, message: str) -> None:
    """A run stopped by an error or a second Ctrl-C: its summary says so; its logger is closed."""
    s = run.summary
    s.status, s.step, s.message = status, run.state.step, message
    try:
        record(run)
    finally:  # a full disk: the error to report is the one that stopped the run
        if run.logger:
            run.logger.close()


def group_summary(sp, runs: list[Run], specs, group_dir: Path, started: float, first: float) -> GroupSummary:
    """The group's summary.json: its members, and mean and std of every final metric per configuration."""
    configurations: dict[int, dict[str, Any]] = {}
    for spec, r in zip(specs, runs, strict=True):
        c = configurations.setdefault(
            spec.configuration, {"values": spec.values, "seeds": [], "members": [], "metrics": {}}
        )
        c["seeds"].append(r.cfg.trainer.seed)
        c["members"].append(spec.label)
    for c in configurations.values():
        done = [r for r in runs if r.label in c["members"] and r.status == "completed"]
        for key in sorted({k for r in done for k in r.summary.metrics}):
            values = [r.summary.metrics[key] for r in done if key in r.summary.metrics]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            c["metrics"][key] = {"mean": statistics.fmean(values), "std": std, "n": len(values)}
    statuses = {r.status for r in runs}
    status = "completed" if statuses == {"completed"} else "diverged" if statuses == {"diverged"} else "partial"
    for word in ("running", "pruned", "interrupted"):
        if word in statuses:
            status = word
    confs = list(configurations.values())
    members = [
        {"label": r.label, "run_dir": str(r.run_dir), "status": r.status, "seed": r.cfg.trainer.seed,
         "values": spec.values, "message": r.summary.message}
        for spec, r in zip(specs, runs, strict=True)
    ]  # fmt: skip
    return GroupSummary(
        status=status,
        name=rundir.run_name(sp.cfg),
        run_dir=str(group_dir),
        vectorized=sp.vectorized,
        device=str(sp.device),
        params=sp.n_params(),
        step=max(r.state.step for r in runs),
        total_steps=sp.plan.total_steps,
        members=members,
        configurations=confs,
        metrics=confs[0]["metrics"] if len(confs) == 1 else {},
        wall_time_s=round(time.time() - started, 3),
        started=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(first)),
        started_at=first,
        ended=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
