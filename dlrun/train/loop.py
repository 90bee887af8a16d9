"""Training: `train(cfg) -> summary`. The loop in `fit` is the whole story, top to bottom.

Hook points are plain functions called from the loop: `log_train` (every trainer.log_every
steps, the only host sync), `eval_and_checkpoint` (every evaluation), `diagnostics.watch` (around
every trainer.diag_every-th step: per-layer gradients, updates, activations). Callbacks (progress bar,
plain lines) only watch: on_start, on_log, on_eval, on_end; an on_eval that returns a reason
("pruned", from a sweep's pruner) ends the run after that evaluation.
"""

from __future__ import annotations

import errno
import math
import signal
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlrun import losses, models, options, regularizers
from dlrun.config import Config, flat, to_yaml
from dlrun.data import Dataset, Task, augment
from dlrun.data import build as build_data
from dlrun.errors import ConfigError, RunFailed
from dlrun.files import check_writable, write_error
from dlrun.init import initialize
from dlrun.optim import build_optimizer, build_scheduler
from dlrun.train import checkpoint as ckpt
from dlrun.train import diagnostics, dist, rundir
from dlrun.train.diagnostics import layer_name
from dlrun.train.dist import SINGLE, World
from dlrun.train.logger import RunLogger


class Diverged(RunFailed):
    """The loss became NaN or infinite."""


# ----------------------------------------------------------------------------- building
def resolve_device(name: str) -> torch.device:
    """auto = cuda, then mps, then cpu; an explicit device that is not here is a config error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name}: no CUDA device here; use trainer.device=auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("trainer.device=mps: no MPS device here; use trainer.device=auto or cpu")
    return torch.device(name)


@dataclass
class Setup:
    """Everything `fit` needs, built from the config by `build`."""

    cfg: Config
    device: torch.device
    data: Dataset
    model: nn.Module
    loss_name: str
    loss_fn: losses.LossFn
    reg: regularizers.Regularizer | None  # reg() = Omega or None; reg.before_step(optimizer)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    batch_size: int
    steps_per_epoch: int
    total_steps: int
    monitor: str  # e.g. val/acc
    maximize: bool
    augment: Any = None  # (B, ...) -> (B, ...) on train batches, or None
    closure: bool = False  # the optimizer's step() takes a closure that recomputes the objective (Newton)
    eval_split: str = "val"  # what the evaluations during training use: val, or test when there is no val split
    world: World = SINGLE  # under torchrun: this process's rank of the run
    net: nn.Module | None = None  # what trains: the model, or its DistributedDataParallel under torchrun

    def __post_init__(self):
        if self.net is None:
            self.net = self.model

    @property
    def task(self) -> Task:
        return self.data.task


def build_model(cfg: Config, world: World = SINGLE) -> tuple[torch.device, Dataset, str, losses.LossFn, nn.Module]:
    """(device, data, loss name, loss, model) for a config; the model is seeded by trainer.seed and initialized.
    Under torchrun (world.active) this joins the process group first, on cuda:LOCAL_RANK or the CPU."""
    t = cfg.trainer
    device = resolve_device(t.device)
    if world.active:
        device = dist.start(world, device, t.dist_timeout)
    cpu_settings(t, device)
    data = build_data(cfg.data).to(device)
    loss_name, loss_fn, model = model_for_task(cfg, data.task)
    return device, data, loss_name, loss_fn, model.to(device)


def cpu_settings(t, device: torch.device) -> None:
    """trainer.threads, and trainer.flush_denormal: float32 values below 1.2e-38 (an Adam's squared gradients late
    in training) as zeros. Each op on denormals is ~50x slower on the CPU: 16 digits MLPs trained as one group
    went from 4.5 to 11 ms per step after epoch 20; flushed, they stay at 4.5."""
    if t.threads:
        torch.set_num_threads(t.threads)
    if device.type == "cpu":
        torch.set_flush_denormal(t.flush_denormal)


def model_for_task(cfg: Config, task: Task) -> tuple[str, losses.LossFn, nn.Module]:
    """(loss name, loss, model) for a config and a task, the model seeded by trainer.seed and initialized."""
    loss_name, loss_fn = losses.build(cfg.loss, task)
    models.check_fit(cfg.model, task, cfg.data.name)
    torch.manual_seed(cfg.trainer.seed)
    model_cfg = regularizers.model_config(cfg.model, cfg.regularizer)  # regularizer=dropout sets model dropout
    model = models.build(model_cfg, task.input_shape, losses.out_features(loss_name, task))
    return loss_name, loss_fn, initialize(model, cfg.init)


def summary_model(cfg: Config) -> tuple[nn.Module, Task, str]:
    """(model, task, loss name) for `dlrun summary`: a downloaded set's task comes from its declared shape,
    so nothing is downloaded; other sets are built as for training."""
    c = options.caps("data", cfg.data.name)
    if c.download and c.shape and c.classes:
        task = Task("binary" if c.classes == 2 else "multiclass", c.shape, c.input_kind, n_classes=c.classes)
        loss_name, _, model = model_for_task(cfg, task)
        return model, task, loss_name
    s = build(cfg)
    return s.model, s.task, s.loss_name


def build(cfg: Config, world: World = SINGLE) -> Setup:
    """Data, model, loss, optimizer and schedule for a config; the model is seeded by trainer.seed.
    Under torchrun the model trains wrapped in DistributedDataParallel (`Setup.net`)."""
    t = cfg.trainer
    device, data, loss_name, loss_fn, model = build_model(cfg, world)
    if cfg.backprop == "manual":  # the lecture's fprop/bprop boxes, sharing the MLP's parameters
        from dlrun.models import manual

        model, loss_fn = manual.build(model, cfg, loss_name)
    reg = regularizers.build(cfg.regularizer, model)
    optimizer = build_optimizer(model.parameters(), cfg.optim)

    optim_caps = options.caps("optim", cfg.optim.name)
    n_train = len(data.train)
    batch_size = n_train if optim_caps.full_batch else min(t.batch_size, n_train)
    # the last batch takes the remainder; a lone last example joins the batch before (batch norm needs 2)
    steps_per_epoch = max(1, math.ceil((n_train - 1) / batch_size))
    total_steps = t.steps if t.steps > 0 else t.epochs * steps_per_epoch
    scheduler = build_scheduler(optimizer, cfg.sched, total_steps)

    eval_split = "val" if len(data.val) else "test"
    if eval_split == "test":  # data.val_fraction=0: nothing to choose weights or to stop by
        for key, bad in (
            ("patience", t.patience > 0),
            ("test_with", t.test_with == "best"),
            ("monitor", t.monitor != "auto"),
        ):
            if bad:
                raise ConfigError(
                    f"trainer.{key}={getattr(t, key)} needs a validation split; data.val_fraction=0 leaves none"
                )
    valid = ["val/loss", "val/acc"] if data.task.is_classification else ["val/loss", "val/mse"]
    monitor = t.monitor if t.monitor != "auto" else valid[1 if data.task.is_classification else 0]
    if monitor not in valid:
        raise ConfigError(f"trainer.monitor={monitor}: not a metric of this run; choose from: auto, {', '.join(valid)}")
    if t.test_with == "best" and not t.checkpoint:
        raise ConfigError("trainer.test_with=best needs trainer.checkpoint=true (best weights live in best.pt)")
    last_batch = n_train - (steps_per_epoch - 1) * batch_size
    dist.check(cfg, world, optim_caps.closure, min(batch_size, last_batch), model, device)
    net = None
    if world.active:
        model, net = dist.wrap(model, device)
    return Setup(
        cfg=cfg,
        device=device,
        data=data,
        model=model,
        loss_name=loss_name,
        loss_fn=loss_fn,
        reg=reg,
        optimizer=optimizer,
        scheduler=scheduler,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        monitor=monitor,
        maximize=monitor.endswith("acc"),
        eval_split=eval_split,
        augment=augment.build(cfg.data.augment, data.task) if hasattr(cfg.data, "augment") else None,
        closure=optim_caps.closure,
        world=world,
        net=net,
    )


# ----------------------------------------------------------------------------- the steps
def epoch_order(seed: int, epoch: int, n: int, order: str = "shuffle") -> torch.Tensor:
    """The example order of one epoch: a pure function of (seed, epoch), so a resume replays it.
    order=fixed: the split's own order every epoch (batch b of every epoch is the same examples)."""
    if order == "fixed":
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def batch(s: Setup, order: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch b of an epoch's `order` (batch_size examples; the last batch takes the remainder), augmented;
    under torchrun, this rank's share of it."""
    train, bs = s.data.train, s.batch_size
    idx = dist.share(order[b * bs : (b + 1) * bs if b < s.steps_per_epoch - 1 else len(train)], s.world)
    return (train.x[idx] if s.augment is None else s.augment(train.x[idx])), train.y[idx]


def global_batch(s: Setup, b: int) -> int:
    """Examples in batch b of an epoch, over every rank."""
    return s.batch_size if b < s.steps_per_epoch - 1 else len(s.data.train) - b * s.batch_size


def train_step(
    s: Setup, x: torch.Tensor, y: torch.Tensor, weight: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One optimizer step on a batch; returns (data loss, regularization term), both on the device.

    weight: under torchrun, this rank's share of the global batch times the world size, so that
    DistributedDataParallel's mean over ranks of the gradients is the global batch's mean gradient.
    """
    s.optimizer.zero_grad(set_to_none=True)
    loss = s.loss_fn(s.net(x), y)
    if weight != 1.0:
        loss = loss * weight
    reg = s.reg() if s.reg is not None else None
    (loss + reg if reg is not None else loss).backward()
    if s.cfg.trainer.grad_clip > 0:
        nn.utils.clip_grad_norm_(s.model.parameters(), s.cfg.trainer.grad_clip)
    if s.reg is not None:
        s.reg.before_step(s.optimizer)  # regularizer=weight_decay: W <- W - lr lambda W
    if s.closure:  # Newton: the Hessian needs the objective's graph again
        s.optimizer.step(lambda: s.loss_fn(s.model(x), y) + (s.reg() if reg is not None else 0))
    else:
        s.optimizer.step()
    s.scheduler.step()
    return loss.detach(), (reg.detach() if reg is not None else None)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn,
    task: Task,
    prefix: str,
    batch_size: int = 4096,
    world: World = SINGLE,
) -> dict[str, float]:
    """Mean loss and acc (or mse) over a split, in eval mode; one host sync. Under torchrun each rank
    evaluates its slice of the split with rank 0's buffers, and the sums are all-reduced."""
    was_training = model.training
    model.eval()
    total = len(x)
    if world.active:
        dist.sync_buffers(model)
        x, y = torch.tensor_split(x, world.size)[world.rank], torch.tensor_split(y, world.size)[world.rank]
    n = len(x)
    total_loss = torch.zeros((), device=x.device)
    total_metric = torch.zeros((), device=x.device)
    for i in range(0, n, batch_size):
        z = model(x[i : i + batch_size])
        yb = y[i : i + batch_size]
        total_loss += loss_fn(z, yb) * len(yb)
        total_metric += next(iter(losses.batch_metrics(z, yb, task).values()))
    model.train(was_training)
    sums = torch.stack([total_loss, total_metric])
    if world.active:
        dist.all_sum(sums)
    loss, metric = (sums / max(total, 1)).tolist()
    return {f"{prefix}/loss": loss, f"{prefix}/{'acc' if task.is_classification else 'mse'}": metric}


# ----------------------------------------------------------------------------- state and stopping
@dataclass
class TrainState:
    step: int = 0
    best_value: float | None = None
    best_step: int = -1
    bad_evals: int = 0  # evaluations without improvement, for early stopping
    stop: str = ""  # why the loop ended early: early_stop, interrupted, pruned (a callback's reason)
    asked: str = ""  # under torchrun: a signal's stop, agreed between the ranks at the next log step
    last_eval: dict[str, float] = field(default_factory=dict)
    last_train_loss: float = float("nan")
    samples: int = 0  # examples trained on, over every process of the run (for samples/s)
    train_time: float = 0.0  # seconds spent in fit, over every process of the run
    wall_before: float = 0.0  # wall seconds of the run's earlier processes (before a resume)
    wall_start: float = field(default_factory=time.time)  # when this process started the run
    best_weights: dict[str, torch.Tensor] | None = None  # in memory; written to best.pt with `last`
    last_save: float = field(default_factory=time.perf_counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "train_time": self.train_time,
            "wall_time": self.wall_before + time.time() - self.wall_start,
            "step": self.step,
            "best_value": self.best_value,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "last_eval": dict(self.last_eval),
        }


@contextmanager
def stop_on_signal(state: TrainState, defer: bool = False):
    """First Ctrl-C (or SIGTERM) asks the loop to stop after the current step; a second one aborts.
    defer (torchrun): the ranks stop together, at the first log step after the signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    seen: set[int] = set()

    def handler(signum, frame):
        # under torchrun a Ctrl-C reaches the ranks and then torchrun's SIGTERM: only the same signal twice aborts
        if state.stop == "interrupted" and not defer or signum in seen:
            raise KeyboardInterrupt
        seen.add(signum)
        if defer:
            state.asked = "interrupted"
        else:
            state.stop = "interrupted"

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


# ----------------------------------------------------------------------------- the loop
def fit(s: Setup, state: TrainState, logger: RunLogger | None, run_dir: Path | None, callbacks=()) -> None:
    """Train from state.step to s.total_steps (or an early stop / interrupt), logging and checkpointing."""
    t = s.cfg.trainer
    spe = s.steps_per_epoch
    loss_sum = torch.zeros((), device=s.device)  # sums since the last log, kept on the device (no sync)
    reg_sum = torch.zeros((), device=s.device)
    since_log, t_log, t0 = 0, time.perf_counter(), time.perf_counter()
    s.model.train()
    with stop_on_signal(state, defer=s.world.active):
        while state.step < s.total_steps and not state.stop:
            epoch, first = divmod(state.step, spe)
            order = epoch_order(t.seed, epoch, len(s.data.train), t.order).to(s.device, non_blocking=True)
            for b in range(first, spe):
                x, y = batch(s, order, b)
                n = global_batch(s, b)
                weight = len(y) * s.world.size / n if s.world.active else 1.0
                with diagnostics.watch(s.model, logger, state.step + 1, t.diag_every):  # every diag_every steps
                    loss, reg = train_step(s, x, y, weight)
                loss_sum += loss
                if reg is not None:
                    reg_sum += reg
                state.step += 1
                since_log += 1
                state.samples += n
                last = state.step >= s.total_steps
                evaluate_now = (state.step % t.eval_every == 0) if t.eval_every else (b == spe - 1 or last)
                # log at the cadence, and before every evaluation so no NaN slips into a checkpoint unseen
                if state.step % t.log_every == 0 or evaluate_now or last:
                    log_train(s, state, logger, loss_sum, reg_sum, since_log, time.perf_counter() - t_log, callbacks)
                    loss_sum.zero_()
                    reg_sum.zero_()
                    since_log, t_log = 0, time.perf_counter()
                if logger and t.hist_every and state.step % t.hist_every == 0:
                    logger.histograms(state.step, s.model)
                if evaluate_now or last:
                    eval_and_checkpoint(s, state, logger, run_dir, callbacks)
                if last or state.stop:
                    break
    state.train_time += time.perf_counter() - t0
    if run_dir is not None and t.checkpoint:  # at the end, an early stop or an interrupt (not a divergence)
        save_checkpoints(s, state, run_dir)


def check_finite(loss_sum: float, state: TrainState) -> None:
    if not math.isfinite(loss_sum):
        raise Diverged(f"the training loss became {loss_sum} at or before step {state.step}")


def log_train(
    s: Setup,
    state: TrainState,
    logger,
    loss_sum: torch.Tensor,
    reg_sum: torch.Tensor,
    n_steps: int,
    seconds: float,
    callbacks,
) -> None:
    """train/loss (mean since the last log), lr, grad/norm, weights/<layer>/norm, perf/samples_per_s."""
    params = [(name, p) for name, p in s.model.named_parameters()]
    grads = [p.grad for _, p in params if p.grad is not None]
    weights = [(name, p) for name, p in params if p.ndim > 1]
    extra = s.reg.scalars() if s.reg is not None else {}  # e.g. weights/sparsity, still on the device
    sums, flag = torch.stack([loss_sum, reg_sum]), []
    if s.world.active:  # the global batch's mean loss, and whether any rank was asked to stop (> 0 if so)
        agreed = dist.all_sum(torch.cat([sums, torch.full((1,), float(bool(state.asked)), device=s.device)]))
        sums, flag = agreed[:2] / s.world.size, [agreed[2:]]
    stacked = torch.cat(
        [
            sums / n_steps,
            torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).reshape(1)
            if grads
            else torch.zeros(1, device=s.device),
            torch.stack([p.detach().norm() for _, p in weights]) if weights else torch.zeros(0, device=s.device),
            *(v.reshape(1) for v in extra.values()),
            *flag,
        ]
    ).tolist()  # the one host sync of this log step
    if flag and stacked.pop() > 0 and not state.stop:
        state.stop = "interrupted"
    check_finite(stacked[0], state)
    state.last_train_loss = stacked[0]
    scalars = {"train/loss": stacked[0]}
    if s.reg is not None and s.reg.term is not None:
        scalars["train/reg_loss"] = stacked[1]
    scalars["lr"] = s.optimizer.param_groups[0]["lr"]
    scalars["grad/norm"] = stacked[2]
    for (name, _), value in zip(weights, stacked[3 : 3 + len(weights)], strict=True):
        scalars[f"weights/{layer_name(name)}/norm"] = value
    scalars.update(zip(extra, stacked[3 + len(weights) :], strict=True))
    scalars["perf/samples_per_s"] = n_steps * s.batch_size / max(seconds, 1e-9)
    scalars["epoch"] = state.step / s.steps_per_epoch
    if logger:
        logger.scalars(state.step, scalars)
    for cb in callbacks:
        getattr(cb, "on_log", lambda *a: None)(state.step, scalars)


def eval_and_checkpoint(s: Setup, state: TrainState, logger, run_dir: Path | None, callbacks) -> None:
    """Evaluate on val; keep `best`; write `last`; count evaluations without improvement.
    With no val split (data.val_fraction=0) the evaluations are on test, and nothing is chosen by them."""
    t = s.cfg.trainer
    split = s.eval_split
    data = getattr(s.data, split)
    metrics = evaluate(s.model, data.x, data.y, s.loss_fn, s.task, split, world=s.world)
    check_finite(metrics[f"{split}/loss"], state)
    state.last_eval = metrics
    if logger:
        logger.scalars(state.step, metrics)
    value = metrics.get(s.monitor)  # None on test: a test split never chooses weights or stops a run
    improved = value is not None and (
        state.best_value is None
        or (value > state.best_value + t.min_delta if s.maximize else value < state.best_value - t.min_delta)
    )
    if improved:
        state.best_value, state.best_step, state.bad_evals = value, state.step, 0
        if t.checkpoint and s.world.main:
            state.best_weights = {k: v.detach().clone() for k, v in s.model.state_dict().items()}
    elif value is not None:
        state.bad_evals += 1
    if run_dir is not None and t.checkpoint and time.perf_counter() - state.last_save >= t.checkpoint_every:
        save_checkpoints(s, state, run_dir)
    reason = None
    for cb in callbacks:
        reason = getattr(cb, "on_eval", lambda *a: None)(state.step, state.step / s.steps_per_epoch, metrics) or reason
    if s.world.active:  # the callbacks run on rank 0; every rank stops with it
        reason = dist.from_main(reason, s.world)
    if reason:  # a callback ends the run, e.g. a sweep's pruner: "pruned"
        state.stop = str(reason)
    if t.patience and state.bad_evals >= t.patience:
        state.stop = "early_stop"


def save_checkpoints(s: Setup, state: TrainState, run_dir: Path, last: bool = True) -> None:
    """last.pt: everything a resume needs; best.pt: the best weights so far (if new since the last write)."""
    if last:
        ckpt.save(
            run_dir / "checkpoints" / "last.pt",
            {
                "model": s.model.state_dict(),
                "optimizer": s.optimizer.state_dict(),
                "scheduler": s.scheduler.state_dict(),
                "state": state.as_dict(),
                "rng": ckpt.rng_state(),
                "config": flat(s.cfg),
            },
        )
    if state.best_weights is not None:
        ckpt.save(
            run_dir / "checkpoints" / "best.pt",
            {"model": state.best_weights, "state": state.as_dict(), "config": flat(s.cfg)},
        )
        state.best_weights = None  # written; test_with=best reads it back
    state.last_save = time.perf_counter()


def restore(s: Setup, state: TrainState, run_dir: Path) -> None:
    """Load `last.pt` of run_dir into the setup and state: model, optimizer, schedule, step, RNG."""
    path = run_dir / "checkpoints" / "last.pt"
    payload = ckpt.load(path, s.device)
    ckpt.load_weights(s.model, payload, path, flat(s.cfg))
    try:
        _restore_rest(s, state, payload)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError):  # weights that fit, the rest not a run's
        raise ConfigError(
            f"{path}: not a complete dlrun checkpoint (its optimizer, schedule or step do not load); {ckpt.AGAIN}"
        ) from None


def _restore_rest(s: Setup, state: TrainState, payload: dict[str, Any]) -> None:
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in s.optimizer.param_groups]
    base_lrs = list(s.scheduler.base_lrs)
    s.optimizer.load_state_dict(payload["optimizer"])
    s.scheduler.load_state_dict(payload["scheduler"])
    # hyperparameters come from the config, not the checkpoint: a resume may change optim.lr
    s.scheduler.base_lrs = base_lrs
    for i, (group, hyper) in enumerate(zip(s.optimizer.param_groups, fresh, strict=True)):
        group.update(hyper)
        group["lr"] = base_lrs[i] * s.scheduler.lr_lambdas[i](s.scheduler.last_epoch)
    s.scheduler._last_lr = [g["lr"] for g in s.optimizer.param_groups]
    saved = payload["state"]
    state.step, state.best_value = saved["step"], saved["best_value"]
    state.best_step, state.bad_evals = saved["best_step"], saved["bad_evals"]
    state.last_eval = dict(saved["last_eval"])
    state.samples, state.train_time, state.wall_before = saved["samples"], saved["train_time"], saved["wall_time"]
    ckpt.set_rng_state(
        {k: v.cpu() if isinstance(v, torch.Tensor) else [t.cpu() for t in v] for k, v in payload["rng"].items()}
    )


# ----------------------------------------------------------------------------- the whole run
def record(run_dir: Path, summary: dict[str, Any], writes: bool) -> None:
    """summary.json, from rank 0 only."""
    if writes:
        rundir.write_summary(run_dir, summary)


def resolved_loss_config(loss_cfg, name: str):
    """The loss config of the resolved loss (auto -> cross_entropy keeps no mse-only keys)."""
    resolved = options.schema("loss", name)
    kept = {f: getattr(loss_cfg, f) for f in resolved.__dataclass_fields__ if f != "name" and hasattr(loss_cfg, f)}
    return resolved(name=name, **kept)


# what a write fails with mid-run: a full disk or quota, a folder made read-only, a failing device
WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG)


def write_failed(e: OSError, run_dir: Path) -> str:
    """One line for a write that failed mid-run: which file, why, and that the last checkpoint still stands."""
    if e.filename is None:  # a line-buffered metrics.jsonl write says no file name
        e.filename = str(run_dir)
    what, fix = write_error(e)
    if not (run_dir / "checkpoints" / "last.pt").is_file():
        return f"{what}; the run stopped before its first checkpoint: {fix} and train it again"
    return f"{what}; the run stopped, its last checkpoint is intact: {fix}, then `dlrun train resume={run_dir}`"


def train(cfg: Config, callbacks=(), overrides: list[str] | None = None, run_dir: Path | None = None) -> dict[str, Any]:
    """Build, fit and test a config in a run directory; return the summary (also in summary.json).

    run_dir: where a new run goes (a sweep's trial); default <runs_dir>/<name>/<time>/.

    Raises Diverged (exit 1) when the loss becomes NaN/inf; the last good checkpoint stays.

    Under torchrun every rank trains its share (see dlrun/train/dist.py) and returns the summary;
    rank 0 alone writes the run directory and calls the callbacks.
    """
    started = time.time()
    world = dist.world()
    held: list[rundir.RunLock] = []  # the run directory's lock, however the run ends
    try:
        return _train(cfg, callbacks, overrides, run_dir, started, world, held)
    except OSError as e:
        if e.errno not in WRITE_ERRORS or not held:
            raise
        raise RunFailed(write_failed(e, held[0].path.parent)) from None
    except Exception as e:
        if world.active and dist.failed(e):
            raise dist.peer_failed(e, world) from None
        raise
    finally:
        for lock in held:
            lock.release()
        if world.active:
            dist.end()


def _train(
    cfg: Config, callbacks, overrides, run_dir: Path | None, started: float, world: World, held: list
) -> dict[str, Any]:
    resumed = cfg.resume is not None
    writes = world.main  # rank 0 writes; the other ranks only train and evaluate
    if writes and not resumed and run_dir is None:  # a runs_dir that cannot hold the run fails before the work
        check_writable(Path(cfg.runs_dir), f"runs_dir={cfg.runs_dir}")
    s = build(cfg, world)
    cfg.loss = resolved_loss_config(cfg.loss, s.loss_name)  # record what ran: loss=auto resolved from the task
    if not writes:
        callbacks = ()
    if resumed:
        run_dir = Path(cfg.resume)
    elif writes:
        run_dir = Path(run_dir) if run_dir else rundir.new_run_dir(cfg)
        run_dir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(dist.from_main(str(run_dir), world))
    if writes:  # one process at a time trains a run: a second resume of it is refused
        held.append(rundir.lock(run_dir))
    state = TrainState(wall_start=started)
    first_start = started
    if resumed:
        restore(s, state, run_dir)
        if state.step > s.total_steps:  # refused before metrics.jsonl is cut back to the checkpoint
            t = cfg.trainer
            given, need = (
                (f"trainer.steps={t.steps}", f"trainer.steps>={state.step}")
                if t.steps > 0
                else (f"trainer.epochs={t.epochs}", f"trainer.epochs>={math.ceil(state.step / s.steps_per_epoch)}")
            )
            raise ConfigError(
                f"resume={run_dir}: the run is at step {state.step}, past the {s.total_steps} steps of {given}; "
                f"give {need}"
            )
        if writes:
            rundir.truncate_metrics(run_dir, state.step)
        previous = rundir.read_summary(run_dir) or {}
        first_start = previous.get("started_at", started)
    if world.active:  # each rank its own dropout and augmentation draws, a pure function of (seed, rank, step)
        torch.manual_seed(cfg.trainer.seed * 1_000_003 + 7919 * (world.rank + 1) + state.step)
    if writes:
        rundir.write_start(run_dir, cfg, overrides, resumed)
    logger = RunLogger(run_dir, purge_step=state.step + 1 if resumed else None) if writes else None
    if logger:
        logger.text("config", "    " + to_yaml(cfg).replace("\n", "\n    "))
    n_params = models.count_parameters(s.model)
    info = {
        "run_dir": str(run_dir),
        "total_steps": s.total_steps,
        "steps_per_epoch": s.steps_per_epoch,
        "step": state.step,
        "params": n_params,
        "device": str(s.device),
        "loss": s.loss_name,
        "resumed": resumed,
        "monitor": s.monitor,
        "world_size": world.size,
    }
    summary = {
        "status": "running",
        **info,
        "name": rundir.run_name(cfg),
        "experiment": cfg.experiment,
        "classes": list(s.task.class_names),  # label i is classes[i]; [] for regression and unnamed classes
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(first_start)),
        "started_at": first_start,  # seconds since the epoch, for sorting runs
    }
    record(run_dir, summary, writes)
    for cb in callbacks:
        getattr(cb, "on_start", lambda *a: None)(info)

    fit_start = time.perf_counter()
    try:
        fit(s, state, logger, run_dir if writes else None, callbacks)
        status = state.stop if state.stop in ("interrupted", "pruned") else "completed"
        message = (
            f"early stop: {s.monitor} did not improve for {state.bad_evals} evaluations"
            if state.stop == "early_stop"
            else ""
        )
    except Diverged as e:
        status, message = "diverged", str(e)
        state.train_time += time.perf_counter() - fit_start
        if s.cfg.trainer.checkpoint and writes:
            save_checkpoints(s, state, run_dir, last=False)  # the best weights are still good
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, mid-step; nothing new is checkpointed
        last = run_dir / "checkpoints" / "last.pt"
        summary.update(
            status="interrupted",
            step=state.step,
            message="aborted by a second Ctrl-C; "
            + ("a resume continues from the last checkpoint" if last.exists() else "no checkpoint was written yet"),
        )
        record(run_dir, summary, writes)
        if logger:
            logger.close()
        raise
    except BaseException as e:  # keep the record straight, then let it propagate
        summary.update(status="failed", message=f"{type(e).__name__}: {e}", step=state.step)
        with suppress(OSError):  # a full disk: the error to report is the one that stopped the run
            record(run_dir, summary, writes)
        if logger:
            logger.close()
        raise

    metrics: dict[str, float] = {}
    if status == "completed":
        if s.cfg.trainer.test_with == "best" and state.best_step >= 0:
            dist.barrier(world)  # rank 0 has written best.pt
            best = run_dir / "checkpoints" / "best.pt"
            ckpt.load_weights(s.model, ckpt.load(best, s.device), best, flat(cfg))
        test, train_split = s.data.test, s.data.train
        metrics.update(evaluate(s.model, test.x, test.y, s.loss_fn, s.task, "test", world=world))
        # the train split in eval mode (no dropout), for the generalization gap train_final/acc - test/acc
        metrics.update(evaluate(s.model, train_split.x, train_split.y, s.loss_fn, s.task, "train_final", world=world))
        if logger:
            logger.scalars(state.step, metrics)
    metrics.update(state.last_eval)
    metrics["train/loss"] = state.last_train_loss
    if state.best_value is not None:
        metrics[f"best/{s.monitor}"] = state.best_value
    if status == "completed" and logger:
        logger.hparams(flat(cfg), {k: v for k, v in metrics.items() if k.split("/")[0] in ("test", "val")})
    if logger:
        logger.close()

    wall = state.wall_before + time.time() - started  # every process of the run
    summary.update(
        status=status,
        message=message,
        step=state.step,
        epoch=round(state.step / s.steps_per_epoch, 3),
        metrics={k: v for k, v in metrics.items() if v == v},
        best_step=state.best_step,
        wall_time_s=round(wall, 3),
        train_time_s=round(state.train_time, 3),
        samples_per_s=round(state.samples / state.train_time, 1) if state.train_time > 0 else None,
        ended=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    record(run_dir, summary, writes)
    for cb in callbacks:
        getattr(cb, "on_end", lambda *a: None)(summary)
    if status == "diverged":
        last = run_dir / "checkpoints" / "last.pt"
        kept = f"; last good checkpoint: {last}" if last.exists() else ""
        raise Diverged(f"{message}{kept}; try a smaller optim.lr or trainer.grad_clip")
    return summary
