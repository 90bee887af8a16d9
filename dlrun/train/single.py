"""One model, one optimizer: what a single run (and each rank of a torchrun job) builds and how it steps.

`build(cfg)` gives the Setup; `Single` is its stepper, the interface the run lifecycle
(dlrun/train/loop.py) drives for a single run as for a vectorized group (dlrun/train/vector.py):
one member, k = 0.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dlrun import losses, models, options, regularizers
from dlrun.config import Config
from dlrun.data import Dataset, Task, augment
from dlrun.data import build as build_data
from dlrun.init import initialize
from dlrun.optim import build_optimizer, build_scheduler
from dlrun.train import checkpoint as ckpt
from dlrun.train import diagnostics, dist, trainer_options
from dlrun.train.diagnostics import layer_name
from dlrun.train.dist import SINGLE, World
from dlrun.train.plan import Plan, cpu_settings, make_plan, resolve, resolve_device


@dataclass
class Setup:
    """Everything a single run's steps need, built from the config by `build`."""

    cfg: Config
    device: torch.device
    data: Dataset
    model: nn.Module
    loss_name: str
    loss_fn: losses.LossFn
    reg: regularizers.Regularizer | None  # reg() = Omega or None; reg.before_step(optimizer)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    plan: Plan
    augment: Any = None  # (B, ...) -> (B, ...) on train batches, or None
    closure: bool = False  # the optimizer's step() takes a closure that recomputes the objective (Newton)
    world: World = SINGLE  # under torchrun: this process's rank of the run
    net: nn.Module | None = None  # what trains: the model, or its DistributedDataParallel (compiled or not)
    autocast: torch.dtype | None = None  # trainer.precision: bf16 or float16 autocast of the forward
    scaler: torch.amp.GradScaler | None = None  # trainer.precision=16: the gradient scaler
    micro: int = 0  # trainer.accumulate: examples per micro-batch (0: the whole batch at once)
    channels_last: bool = False  # trainer.memory_format: 4-D inputs and the model in channels_last

    def __post_init__(self):
        if self.net is None:
            self.net = self.model

    @property
    def task(self) -> Task:
        return self.data.task

    @property
    def batch_size(self) -> int:
        return self.plan.batch_size

    @property
    def steps_per_epoch(self) -> int:
        return self.plan.steps_per_epoch

    @property
    def total_steps(self) -> int:
        return self.plan.total_steps

    @property
    def monitor(self) -> str:
        return self.plan.monitor

    @property
    def eval_split(self) -> str:
        return self.plan.eval_split


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


def model_for_task(cfg: Config, task: Task) -> tuple[str, losses.LossFn, nn.Module]:
    """(loss name, loss, model) for a config and a task, the model seeded by trainer.seed and initialized."""
    loss_name, loss_fn = losses.build(cfg.loss, task)
    models.check_fit(cfg.model, task, cfg.data.name)
    torch.manual_seed(cfg.trainer.seed)
    model_cfg = regularizers.model_config(cfg.model, cfg.regularizer)  # regularizer=dropout sets model dropout
    model = models.build(model_cfg, task.input_shape, losses.out_features(loss_name, task), masked=task.masked)
    return loss_name, loss_fn, initialize(model, cfg.init)


def summary_model(cfg: Config) -> tuple[nn.Module, Task, str]:
    """(model, task, loss name) for `dlrun summary`: a downloaded or local set's task comes from its declared
    shape, so nothing is downloaded or read; other sets are built as for training."""
    c = options.caps("data", cfg.data.name)
    if (c.download or c.local) and c.shape and c.classes:
        task = Task("binary" if c.classes == 2 else "multiclass", c.shape, c.input_kind, n_classes=c.classes)
        loss_name, _, model = model_for_task(cfg, task)
        return model, task, loss_name
    s = build(cfg)
    return s.model, s.task, s.loss_name


def build(cfg: Config, world: World = SINGLE) -> Setup:
    """Data, model, loss, optimizer and schedule for a config (resolved for the task: Setup.cfg is what runs);
    the model is seeded by trainer.seed. Under torchrun the model trains wrapped in DistributedDataParallel."""
    device, data, loss_name, loss_fn, model = build_model(cfg, world)
    cfg = resolve(cfg, data.task, has_val=len(data.val) > 0)
    t, plan = cfg.trainer, make_plan(cfg, len(data.train), len(data.val), data.task)
    if cfg.backprop == "manual":  # the lecture's fprop/bprop boxes, sharing the MLP's parameters
        from dlrun.models import manual

        model, loss_fn = manual.build(model, cfg, loss_name)
    optim_caps = options.caps("optim", cfg.optim.name)
    trainer_options.check(cfg, device, optim_caps.closure, optim_caps.full_batch)
    layout = trainer_options.channels_last(t, device, model)
    if layout:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    last_batch = plan.n_train - (plan.steps_per_epoch - 1) * plan.batch_size
    dist.check(cfg, world, optim_caps.closure, min(plan.batch_size, last_batch), model, device)
    net = model
    if world.active:
        model, net = dist.wrap(model, device)
    if t.compile != "false":
        net = trainer_options.compiled(net, t.compile)
    return Setup(
        cfg=cfg,
        device=device,
        data=data,
        model=model,
        loss_name=loss_name,
        loss_fn=loss_fn,
        reg=regularizers.build(cfg.regularizer, model),
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.sched, plan.total_steps, plan.maximize),
        plan=plan,
        augment=augment.build(cfg.data.augment, data.task) if hasattr(cfg.data, "augment") else None,
        closure=optim_caps.closure,
        world=world,
        net=net,
        autocast=trainer_options.AUTOCAST[t.precision],
        scaler=trainer_options.scaler(t, device),
        micro=-(-t.batch_size // world.size) if t.accumulate > 1 else 0,
        channels_last=layout,
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
    start, end = s.plan.batch_range(b)
    idx = dist.share(order[start:end], s.world)
    train = s.data.train
    x = train.x[idx] if s.augment is None else s.augment(train.x[idx])
    if s.channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, train.y[idx]


def train_step(
    s: Setup, x: torch.Tensor, y: torch.Tensor, weight: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One optimizer step on a batch; returns (data loss, regularization term), both on the device.

    weight: under torchrun, this rank's share of the global batch times the world size, so that
    DistributedDataParallel's mean over ranks of the gradients is the global batch's mean gradient.
    trainer.accumulate: the batch runs as micro-batches, each loss weighted by its share of the batch, so the
    gradient is the whole batch's mean gradient; under torchrun only the last micro-batch synchronizes.
    """
    s.optimizer.zero_grad(set_to_none=True)
    chunks = trainer_options.micro_batches(len(y), s.micro) if s.micro else [(0, len(y))]
    loss, reg = None, None
    for i, (a, b) in enumerate(chunks):
        last = i == len(chunks) - 1
        quiet = s.net.no_sync() if s.world.active and not last else contextlib.nullcontext()
        with quiet:
            with trainer_options.autocast(s.device, s.autocast):
                part = s.loss_fn(s.net(x[a:b]), y[a:b])
            # each micro-batch's share of the mean (a summed loss, loss.form=sum, adds up as it is)
            share = weight if getattr(s.loss_fn, "per_batch", False) else weight * (b - a) / len(y)
            part = part * share if share != 1.0 else part
            objective = part
            if last and s.reg is not None:
                reg = s.reg()
                objective = part + reg if reg is not None else part
            (s.scaler.scale(objective) if s.scaler is not None else objective).backward()
        part = losses.per_example(s.loss_fn, part.detach(), b - a)  # logged per example (loss.form=sum)
        loss = part if loss is None else loss + part
    _step(s, x, y, reg is not None)
    return loss, (reg.detach() if reg is not None else None)


def _step(s: Setup, x: torch.Tensor, y: torch.Tensor, has_reg: bool) -> None:
    """Clip, decay, and the optimizer's and the schedule's step (through the float16 scaler if there is one)."""
    if s.scaler is not None:
        s.scaler.unscale_(s.optimizer)  # clipping and decay see the true gradients
    if s.cfg.trainer.grad_clip > 0:
        nn.utils.clip_grad_norm_(s.model.parameters(), s.cfg.trainer.grad_clip)
    if s.reg is not None:
        s.reg.before_step(s.optimizer)  # regularizer=weight_decay: W <- W - lr lambda W
    if s.closure:  # Newton: the Hessian needs the objective's graph again
        s.optimizer.step(lambda: s.loss_fn(s.model(x), y) + (s.reg() if has_reg else 0))
    elif s.scaler is not None:
        s.scaler.step(s.optimizer)
        s.scaler.update()
    else:
        s.optimizer.step()
    s.scheduler.step()


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
    sums = torch.zeros(2, device=x.device)  # loss, metric
    for i in range(0, len(x), batch_size):
        z = model(x[i : i + batch_size])
        yb = y[i : i + batch_size]
        sums[0] += losses.per_example(loss_fn, loss_fn(z, yb), len(yb)) * len(yb)
        sums[1] += next(iter(losses.batch_metrics(z, yb, task, losses.threshold(loss_fn)).values()))
    model.train(was_training)
    if world.active:
        dist.all_sum(sums)
    loss, metric = (sums / max(total, 1)).tolist()
    return {f"{prefix}/loss": loss, f"{prefix}/{'acc' if task.is_classification else 'mse'}": metric}


# ----------------------------------------------------------------------------- the stepper
class Single:
    """The lifecycle's view of a single run (one member, k = 0); under torchrun, this rank's share of it."""

    k = 1
    vectorized = ""
    sum_shape = ()  # the loss sums between two log steps: one scalar

    def __init__(self, s: Setup):
        self.s = s
        self.cfg, self.plan, self.device, self.world = s.cfg, s.plan, s.device, s.world
        self.order: torch.Tensor | None = None
        self.logger = None  # diagnostics (trainer.diag_every) are logged here
        self.decay = s.cfg.trainer.ema
        # trainer.ema: the averaged weights, a copy of the model that evaluations, best.pt and the test use
        self.ema = copy.deepcopy(s.model).requires_grad_(False) if self.decay else None
        # (EMA tensors, the model's): state_dict views of both, taken once; loads copy into them in place
        self.ema_pairs = (
            (list(self.ema.state_dict().values()), list(s.model.state_dict().values())) if self.ema else None
        )
        self.compile: dict[str, Any] | None = (
            {"mode": s.cfg.trainer.compile} if s.net is not s.model and s.cfg.trainer.compile != "false" else None
        )

    @property
    def task(self) -> Task:
        return self.s.task

    @property
    def loss_name(self) -> str:
        return self.s.loss_name

    @property
    def evaluated(self) -> nn.Module:
        """The weights evaluations use: the EMA's with trainer.ema, else the model's."""
        return self.ema if self.ema is not None else self.s.model

    def n_params(self) -> int:
        return models.count_parameters(self.s.model)

    def epoch(self, epoch: int) -> None:
        t = self.cfg.trainer
        self.order = epoch_order(t.seed, epoch, self.plan.n_train, t.order).to(self.device, non_blocking=True)

    def step(self, b: int, at: int) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """Step `at` (1-based) on batch b of the epoch: (data loss, regularization term or None, examples in the
        global batch)."""
        s = self.s
        x, y = batch(s, self.order, b)
        start, end = s.plan.batch_range(b)
        weight = len(y) * s.world.size / (end - start) if s.world.active else 1.0
        first = self.compile is not None and "seconds" not in self.compile
        began = time.perf_counter() if first else 0.0
        with diagnostics.watch(s.model, self.logger, at, self.cfg.trainer.diag_every):  # every diag_every steps
            try:
                loss, reg = train_step(s, x, y, weight)
            except Exception as e:
                if first:  # torch.compile compiles on the first call: its failure is the option's
                    raise trainer_options.compile_failed(self.compile["mode"], e) from None
                raise
        if first:
            self.compile["seconds"] = round(time.perf_counter() - began, 3)  # the first step: mostly compiling
            trainer_options.compile_report(self.compile, self.logger)
        if self.ema_pairs is not None:
            trainer_options.ema_update(*self.ema_pairs, self.decay)
        return loss, reg, end - start

    def grad_norms(self) -> torch.Tensor:
        """The global norm of the last step's gradients (of the model's parameters), on the device."""
        grads = [p.grad for p in self.s.model.parameters() if p.grad is not None]
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))

    def log_rows(self, loss_sum, reg_sum, n_steps: int, asked: bool) -> tuple[list[dict[str, float]], bool]:
        """train/loss (mean since the last log), train/reg_loss, lr, grad/norm, weights/<layer>/norm and the
        regularizer's scalars, in one host sync; under torchrun the mean over ranks, and whether any rank was
        asked to stop."""
        s = self.s
        params = list(s.model.named_parameters())
        grads = [p.grad for _, p in params if p.grad is not None]
        weights = [(name, p) for name, p in params if p.ndim > 1]
        extra = s.reg.scalars() if s.reg is not None else {}  # e.g. weights/sparsity, still on the device
        sums, flag = torch.stack([loss_sum, reg_sum]), []
        if s.world.active:  # the global batch's mean loss, and whether any rank was asked to stop (> 0 if so)
            agreed = dist.all_sum(torch.cat([sums, torch.full((1,), float(asked), device=s.device)]))
            sums, flag = agreed[:2] / s.world.size, [agreed[2:]]
        zero = torch.zeros(1, device=s.device)
        values = torch.cat(
            [
                sums / n_steps,
                torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).reshape(1) if grads else zero,
                torch.stack([p.detach().norm() for _, p in weights]) if weights else zero[:0],
                *(v.reshape(1) for v in extra.values()),
                *flag,
            ]
        ).tolist()  # the one host sync of this log step
        asked = bool(flag) and values.pop() > 0
        row = {"train/loss": values[0]}
        if s.reg is not None and s.reg.term:
            row["train/reg_loss"] = values[1]
        row["lr"] = s.optimizer.param_groups[0]["lr"]
        row["grad/norm"] = values[2]
        norms = values[3 : 3 + len(weights)]
        row.update((f"weights/{layer_name(name)}/norm", v) for (name, _), v in zip(weights, norms, strict=True))
        row.update(zip(extra, values[3 + len(weights) :], strict=True))
        return [row], asked

    def evaluate(self, split: str, prefix: str | None = None) -> list[dict[str, float]]:
        """The split's metrics (of the EMA's weights with trainer.ema, and then of the raw weights as <split>_raw/)."""
        data, prefix, s = self.s.data.split(split), prefix or split, self.s
        metrics = evaluate(self.evaluated, data.x, data.y, s.loss_fn, self.task, prefix, world=self.world)
        if self.ema is not None and split != "train":
            metrics.update(evaluate(s.model, data.x, data.y, s.loss_fn, self.task, f"{prefix}_raw", world=self.world))
        return [metrics]

    def observe(self, k: int, value: float) -> None:
        """An evaluation's monitored value, for sched=plateau."""
        self.s.scheduler.observe(value)

    def weights(self, k: int = 0) -> dict[str, torch.Tensor]:
        return {name: v.detach().clone() for name, v in self.evaluated.state_dict().items()}

    def load_weights(self, k: int, weights: dict[str, torch.Tensor]) -> None:
        self.evaluated.load_state_dict(weights)

    def module(self, k: int = 0) -> nn.Module:
        return self.s.model

    def checkpoint(self, k: int = 0) -> dict[str, Any]:
        """What last.pt holds beside the run's state and config: model, optimizer, schedule, RNG, and the EMA's
        weights and the float16 scaler when there are."""
        s = self.s
        payload = {
            "model": s.model.state_dict(),
            "optimizer": s.optimizer.state_dict(),
            "scheduler": s.scheduler.state_dict(),
            "rng": ckpt.rng_state(),
        }
        if self.ema is not None:
            payload["ema"] = self.ema.state_dict()
        if s.scaler is not None:
            payload["scaler"] = s.scaler.state_dict()
        return payload

    def restore(self, k: int, payload: dict[str, Any]) -> None:
        """Load a last.pt's optimizer, schedule, RNG, EMA and scaler (the lifecycle has loaded its weights into
        module(k)); a checkpoint from before trainer.ema starts the average at its weights."""
        s = self.s
        ckpt.load_optimizer(s.optimizer, s.scheduler, payload)
        if self.ema is not None:
            self.ema.load_state_dict(payload.get("ema", s.model.state_dict()))
        if s.scaler is not None and "scaler" in payload:
            s.scaler.load_state_dict(payload["scaler"])
        ckpt.set_rng_state(
            {k: v.cpu() if isinstance(v, torch.Tensor) else [t.cpu() for t in v] for k, v in payload["rng"].items()}
        )
