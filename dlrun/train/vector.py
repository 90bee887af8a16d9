"""Many runs, one process: the members of a group (dlrun/train/members.py) trained as one vectorized model.

The K members' models (one architecture) are stacked with torch.func.stack_module_state: every
parameter and buffer gets a leading member axis, and one functional forward (functional_call
under vmap) computes all K members on their own batches. The sum of the members' losses has
member k's gradient in slice k, so one backward and one optimizer step train all of them.

Each member is the run it would have been alone (`trainer.seed=k`):
- its initialization, built and seeded exactly as a single run builds it;
- its data order, epoch_order(seed_k, epoch);
- its augmentations and dropout masks, drawn member by member from that member's own copy of the
  RNG state with the calls a single run makes, in the same order (the masks reach the vectorized
  InvertedDropout modules as buffers). A plugin's nn.Dropout draws under vmap: independent masks,
  not the single run's;
- its optimizer: when the members share every optimizer hyperparameter the single run's optimizer
  steps the stacked tensors (its updates are elementwise); otherwise dlrun/optim/stacked.py;
- its run directory with the usual files: config.yaml (with its seed and values), metrics.jsonl,
  summary.json, checkpoints (a single run's format: `dlrun train resume=<member>` continues it
  alone) and TensorBoard events. The per-layer diagnostics (trainer.diag_every) are not logged.

dlrun's MLP and CNN without norm layers skip vmap ("stacked" in the group summary): their members'
dense layers run as batched matmuls (torch.baddbmm on the [K, in, out] leaves) and their convolutions
as one grouped convolution (groups=K), the same ops without vmap's cost per op.

A member that stops early or diverges is finished at that step (checkpoint, test metrics, summary)
and the others go on; its slices keep being computed but are never read again. Models with an op
that vmap cannot batch (torch's fused RNN kernels) run their members one after the other in each
step ("loop" in the group summary), with the same results.

The group's folder holds the members and its own summary.json ("kind": "group") with mean and
std of every final metric per configuration.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from dlrun import losses, models, options, regularizers
from dlrun.config import Config, flat, to_yaml
from dlrun.data import augment as augmentation
from dlrun.data import build as build_data
from dlrun.errors import ConfigError
from dlrun.models.dropout import InvertedDropout, draw_mask
from dlrun.optim import build_optimizer, build_scheduler
from dlrun.optim.stacked import StackedOptimizer
from dlrun.train import checkpoint as ckpt
from dlrun.train import rundir
from dlrun.train.diagnostics import layer_name
from dlrun.train.logger import RunLogger
from dlrun.train.loop import (
    TrainState,
    cpu_settings,
    epoch_order,
    model_for_task,
    resolve_device,
    resolved_loss_config,
    stop_on_signal,
)
from dlrun.train.members import MemberSpec


# ----------------------------------------------------------------------------- building
@dataclass
class Member:
    spec: MemberSpec
    model: nn.Module  # the member's own module: the layout of its checkpoints, and its histograms
    optimizer: torch.optim.Optimizer  # the single run's optimizer on `model`: the layout of its state_dict
    scheduler: torch.optim.lr_scheduler.LambdaLR
    rng: torch.Tensor  # the member's RNG state of the device between its draws
    run_dir: Path | None = None
    logger: RunLogger | None = None
    state: TrainState = field(default_factory=TrainState)
    status: str = "running"  # running until finished: completed, diverged, interrupted
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def cfg(self) -> Config:
        return self.spec.cfg


@dataclass
class Group:
    cfg: Config  # the first member's config: everything but the varied values is the same in all
    members: list[Member]
    device: torch.device
    data: Any
    loss_name: str
    loss_fn: losses.LossFn
    base: nn.Module  # the architecture, on the meta device: functional_call fills in each member's tensors
    leaves: dict[str, torch.Tensor]  # [K, ...] leaves, the optimizer's parameters (matrices transposed: see flip)
    flip: set[str]  # names of the matrices whose leaf is [K, in, out]
    buffers: dict[str, torch.Tensor]  # [K, ...] (batch norm statistics)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    batch_size: int
    steps_per_epoch: int
    total_steps: int
    monitor: str
    maximize: bool
    augment: Any
    dropouts: list[tuple[str, float]]  # (module name, p) of every InvertedDropout with p > 0
    reg_cfg: Any  # regularizer config when it adds a term or a decay, else None
    strength: torch.Tensor  # [K] lambda of each member
    weight_names: list[str]  # the regularized weights (regularizers.weights of the model)
    vectorized: str = "vmap"  # "stacked" (MLP, CNN: batched matmuls and grouped convolutions), or "loop"
    layers: list[tuple[str, str, Any]] = field(default_factory=list)  # the "stacked" forward's steps
    mask_shapes: dict[int, list[tuple[str, float, torch.Size, torch.dtype]]] = field(default_factory=dict)

    @property
    def task(self):
        return self.data.task

    @property
    def k(self) -> int:
        return len(self.members)

    @property
    def params(self) -> dict[str, torch.Tensor]:
        """Every parameter [K, ...] in its module's layout (views of the leaves)."""
        return {n: p.transpose(1, 2) if n in self.flip else p for n, p in self.leaves.items()}

    def grads(self) -> dict[str, torch.Tensor]:
        """The gradients [K, ...] in the modules' layout, of the parameters that have one."""
        return {
            n: p.grad.transpose(1, 2) if n in self.flip else p.grad
            for n, p in self.leaves.items()
            if p.grad is not None
        }

    def member_state(self, name: str, v: torch.Tensor, k: int) -> torch.Tensor:
        """Slice k of an optimizer state tensor of parameter `name`, in the single run's layout."""
        return (v[k].T if name in self.flip else v[k]).clone(memory_format=torch.contiguous_format)


def get_rng(device: torch.device) -> torch.Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def set_rng(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


def build_group(specs: list[MemberSpec]) -> Group:
    """Data once, each member's model seeded as its single run, the stacked tensors and the optimizer."""
    cfg = specs[0].cfg
    t = cfg.trainer
    device = resolve_device(t.device)
    cpu_settings(t, device)
    data = build_data(cfg.data).to(device)
    if not len(data.val):
        raise ConfigError("data.val_fraction=0: a vectorized group evaluates on val; give data.val_fraction > 0")
    members = []
    n_train = len(data.train)
    full_batch = options.caps("optim", cfg.optim.name).full_batch
    batch_size = n_train if full_batch else min(t.batch_size, n_train)
    steps_per_epoch = max(1, math.ceil((n_train - 1) / batch_size))  # as loop.build: a lone last example joins
    total_steps = t.steps if t.steps > 0 else t.epochs * steps_per_epoch
    for spec in specs:
        loss_name, loss_fn, model = model_for_task(spec.cfg, data.task)
        model.to(device)
        rng = get_rng(device)  # right after the member's seeded init, as its single run goes on
        optimizer = build_optimizer(model.parameters(), spec.cfg.optim)
        members.append(Member(spec, model, optimizer, build_scheduler(optimizer, spec.cfg.sched, total_steps), rng))
    stacked, buffers = stack_module_state([m.model for m in members])
    # a matrix [K, out, in] is kept as a leaf [K, in, out]: the batched matmul of its gradient writes that
    # layout (no copy), and the optimizer steps a contiguous tensor (fused Adam: 0.7 instead of 1.9 ms at K=16)
    flip = {name for name, p in stacked.items() if p.ndim == 3}
    params = {
        name: p.detach().transpose(1, 2).contiguous().requires_grad_() if name in flip else p
        for name, p in stacked.items()
    }
    base = copy.deepcopy(members[0].model).to("meta")
    if all(m.cfg.optim == cfg.optim for m in members):
        optimizer = build_optimizer(list(params.values()), cfg.optim)  # elementwise: the same update per slice
    else:
        optimizer = StackedOptimizer(list(params.values()), [m.cfg.optim for m in members])
    scheduler = build_scheduler(optimizer, cfg.sched, total_steps)

    reg = regularizers.build(cfg.regularizer, members[0].model)
    names = {id(p): n for n, p in members[0].model.named_parameters()}
    weight_names = [names[id(w)] for w in regularizers.weights(members[0].model)]
    strength = torch.tensor(
        [float(getattr(m.cfg.regularizer, "strength", 0.0)) for m in members], dtype=torch.float64, device=device
    )

    valid = ["val/loss", "val/acc"] if data.task.is_classification else ["val/loss", "val/mse"]
    monitor = t.monitor if t.monitor != "auto" else valid[1 if data.task.is_classification else 0]
    if monitor not in valid:
        raise ConfigError(f"trainer.monitor={monitor}: not a metric of this run; choose from: auto, {', '.join(valid)}")
    if t.test_with == "best" and not t.checkpoint:
        raise ConfigError("trainer.test_with=best needs trainer.checkpoint=true (best weights live in best.pt)")
    dropouts = [
        (n, mod.p) for n, mod in members[0].model.named_modules() if isinstance(mod, InvertedDropout) and mod.p > 0
    ]
    g = Group(
        cfg=cfg,
        members=members,
        device=device,
        data=data,
        loss_name=loss_name,
        loss_fn=loss_fn,
        base=base,
        leaves=params,
        flip=flip,
        buffers=buffers,
        optimizer=optimizer,
        scheduler=scheduler,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        monitor=monitor,
        maximize=monitor.endswith("acc"),
        augment=augmentation.build(cfg.data.augment, data.task) if hasattr(cfg.data, "augment") else None,
        dropouts=dropouts,
        reg_cfg=cfg.regularizer if reg is not None else None,
        strength=strength,
        weight_names=weight_names,
    )
    g.layers = stacked_layers(members[0].model)
    g.vectorized = "stacked" if g.layers else "vmap" if _vmap_works(g) else "loop"
    return g


# ----------------------------------------------------------------------------- MLPs and CNNs without vmap
ELEMENTWISE = (nn.Identity, nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Softplus, nn.GELU)
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
# CNNs stay under vmap: on the CPU, one grouped convolution of 16 MNIST-1D CNNs (mkldnn) took 185 s where
# vmap took 170 s and 16 separate runs 168 s; the grouped form is kept (tested) for devices where it pays.
STACK_CONVS = False


def stacked_layers(model: nn.Module) -> list[tuple[str, str, Any]]:
    """The steps of dlrun's MLP (no norm layers, no skips) or CNN (no batch norm) as (kind, parameter prefix,
    module); [] for any other model, which runs under vmap.

    Such a model's K members run as batched matmuls (torch.baddbmm on the [K, in, out] leaves) and grouped
    convolutions (the members' channels side by side, groups=K): the same ops without vmap's cost per op.
    """
    from dlrun.models.activations import Step
    from dlrun.models.cnn import CNN
    from dlrun.models.mlp import MLP

    if type(model) not in (MLP, CNN) or getattr(model, "skip_from", None):
        return []
    steps = []
    for name, mod in model.layers.named_children():
        prefix = f"layers.{name}"
        if type(mod) is nn.Flatten and mod.start_dim == 1 and mod.end_dim == -1:
            steps.append(("flatten", prefix, mod))
        elif type(mod) is nn.Linear:
            steps.append(("linear", prefix, mod))
        elif type(mod) in (nn.Conv1d, nn.Conv2d) and mod.padding_mode == "zeros" and isinstance(mod.padding, tuple):
            if not STACK_CONVS:
                return []
            steps.append(("conv", prefix, mod))
        elif type(mod) is InvertedDropout:
            steps.append(("dropout", prefix, mod))
        elif type(mod) in ELEMENTWISE or type(mod) is Step:
            steps.append(("act", prefix, mod))
        elif type(mod) in POOLS:
            steps.append(("pool", prefix, mod))
        else:
            return []  # batch or layer norm: vmap
    return steps


def stacked_forward(g: Group, x: torch.Tensor, masks: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """[K, B, out]. Training (masks given): x [K, B, ...], each member's batch; evaluation: x [B, ...] for all.

    Dense layers hold h as [K, B, features]; convolutions as [B, K * channels, ...] (member k's channels
    at k*C ... (k+1)*C - 1), so pooling and activations act per channel as in each single run. The single
    run's op order: h W^T + b, the activation, then h * keep / (1 - p) in training.
    """
    k = g.k
    h, layout = x, "member" if masks is not None else "shared"  # shared: one input for every member
    for kind, prefix, mod in g.layers:
        if kind == "conv":
            if layout == "member":  # [K, B, C, ...] -> [B, K*C, ...]
                h = h.transpose(0, 1).flatten(1, 2)
            elif layout == "shared":
                h = h.repeat(1, k, *[1] * (h.dim() - 2))
            layout = "conv"
            w, bias = g.leaves[prefix + ".weight"], g.leaves.get(prefix + ".bias")  # [K, out, C, ...], [K, out]
            conv = F.conv1d if type(mod) is nn.Conv1d else F.conv2d
            h = conv(
                h,
                w.flatten(0, 1),
                bias.flatten() if bias is not None else None,
                mod.stride,
                mod.padding,
                mod.dilation,
                mod.groups * k,
            )
        elif kind == "flatten":
            if layout == "conv":  # [B, K*C, ...] -> [K, B, C*...]
                h = h.unflatten(1, (k, -1)).flatten(2).transpose(0, 1)
                layout = "member"
            else:
                h = h.flatten(2) if layout == "member" else h.flatten(1)
        elif kind == "linear":
            w, bias = g.leaves[prefix + ".weight"], g.leaves.get(prefix + ".bias")  # [K, in, out], [K, out]
            if layout == "shared":
                h = torch.matmul(h, w)
                h = h + bias.unsqueeze(1) if bias is not None else h
                layout = "member"
            else:
                h = torch.baddbmm(bias.unsqueeze(1), h, w) if bias is not None else torch.bmm(h, w)
        elif kind in ("act", "pool"):
            h = mod(h)
        elif masks is not None and mod.p > 0:
            keep = masks[prefix + ".keep"]  # [K, B, ...]
            if layout == "conv":
                keep = keep.transpose(0, 1).flatten(1, 2)
            h = h * keep / (1.0 - mod.p)
    return h


def stacked_loss(g: Group, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[K]: each member's loss of its outputs z[k] against y[k]."""
    if g.loss_fn is losses.cross_entropy:  # one kernel for all: the per-example losses, then each member's mean
        return torch.nn.functional.cross_entropy(z.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
    return vmap(g.loss_fn)(z, y)


# ----------------------------------------------------------------------------- the forward
def _member_loss(g: Group):
    def loss(p, b, x, y):
        return g.loss_fn(functional_call(g.base, (p, b), (x,)), y)

    return loss


def _sliced(tensors: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    return {k: v[i] for k, v in tensors.items()}


def member_losses(g: Group, buffers: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[K]: each member's loss on its own batch x[k], y[k] (training mode)."""
    if g.vectorized == "stacked":
        return stacked_loss(g, stacked_forward(g, x, {k: v for k, v in buffers.items() if k.endswith(".keep")}), y)
    g.base.train()
    loss = _member_loss(g)
    if g.vectorized == "vmap":
        return vmap(loss, randomness="different")(g.params, buffers, x, y)
    return torch.stack([loss(_sliced(g.params, i), _sliced(buffers, i), x[i], y[i]) for i in range(g.k)])


def member_outputs(g: Group, x: torch.Tensor) -> torch.Tensor:
    """[K, N, ...]: each member's output on the same inputs x (evaluation mode)."""
    if g.vectorized == "stacked":
        return stacked_forward(g, x)
    g.base.eval()

    def forward(p, b, x):
        return functional_call(g.base, (p, b), (x,))

    if g.vectorized == "vmap":
        return vmap(forward, in_dims=(0, 0, None))(g.params, g.buffers, x)
    return torch.stack([forward(_sliced(g.params, i), _sliced(g.buffers, i), x) for i in range(g.k)])


def _vmap_works(g: Group) -> bool:
    """Whether vmap batches every op of the model (torch's fused RNN kernels have no batching rule)."""
    x = g.data.train.x[:2].expand(g.k, *g.data.train.x[:2].shape)
    y = g.data.train.y[:2].expand(g.k, *g.data.train.y[:2].shape)
    buffers = {k: v.clone() for k, v in g.buffers.items()}
    buffers.update(_masks_for(g, 2, lambda shape, p, dtype: torch.ones(g.k, *shape, dtype=dtype, device=g.device)))
    devices = [g.device] if g.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        try:
            vmap(_member_loss(g), randomness="different")(g.params, buffers, x, y)
        except RuntimeError:
            return False
    return True


def _shapes(g: Group, batch: int) -> list[tuple[str, float, torch.Size, torch.dtype]]:
    """(name, p, input shape, dtype) of each dropout module in the order a forward calls it, for a batch size."""
    if batch not in g.mask_shapes:
        seen = []
        modules = dict(g.members[0].model.named_modules())
        hooks = [
            modules[n].register_forward_pre_hook(
                lambda mod, args, n=n, p=p: seen.append((n, p, args[0].shape, args[0].dtype))
            )
            for n, p in g.dropouts
        ]
        devices = [g.device] if g.device.type == "cuda" else []
        model = g.members[0].model
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                model.train()
                model(g.data.train.x[:batch])
        finally:
            for h in hooks:
                h.remove()
        g.mask_shapes[batch] = seen
    return g.mask_shapes[batch]


def _masks_for(g: Group, batch: int, make) -> dict[str, torch.Tensor]:
    return {f"{n}.keep": make(shape, p, dtype) for n, p, shape, dtype in _shapes(g, batch)} if g.dropouts else {}


def group_batch(g: Group, orders: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Batch b of every member: x [K, B, ...], y [K, B], and the dropout masks [K, B, ...], each member's
    augmentations and masks drawn from its own RNG state in a single run's order."""
    train, bs = g.data.train, g.batch_size
    idx = orders[:, b * bs : (b + 1) * bs if b < g.steps_per_epoch - 1 else len(train)]
    x, y = train.x[idx], train.y[idx]
    if g.augment is None and not g.dropouts:
        return x, y, {}
    shapes = _shapes(g, idx.shape[1])
    xs, masks = [], {n: [] for n, *_ in shapes}
    for k, m in enumerate(g.members):
        set_rng(g.device, m.rng)
        xs.append(g.augment(x[k]) if g.augment is not None else x[k])
        for n, p, shape, dtype in shapes:
            masks[n].append(draw_mask(shape, p, dtype, g.device))
        m.rng = get_rng(g.device)
    return torch.stack(xs), y, {f"{n}.keep": torch.stack(v) for n, v in masks.items()}


def member_lrs(g: Group) -> torch.Tensor:
    """[K]: each member's current learning rate."""
    if isinstance(g.optimizer, StackedOptimizer):
        return g.optimizer.member_lrs()
    return torch.full((g.k,), float(g.optimizer.param_groups[0]["lr"]), dtype=torch.float64, device=g.device)


def _per_member(t: torch.Tensor) -> torch.Tensor:
    return t.view(-1, *[1] * (t.ndim - 1)) if t.ndim else t


def group_step(g: Group, x, y, masks) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One optimizer step of every member; returns ([K] data losses, [K] regularization terms or None)."""
    t = g.cfg.trainer
    g.optimizer.zero_grad(set_to_none=True)
    loss = member_losses(g, {**g.buffers, **masks}, x, y)
    reg = None
    if g.reg_cfg is not None and g.reg_cfg.name in ("l2", "l1", "elastic"):
        params = g.params
        ws = [params[n] for n in g.weight_names]
        lam = g.strength.to(ws[0].dtype)
        reg = vmap(lambda ws, lam: regularizers.penalty(g.reg_cfg, ws, lam))(ws, lam)
    (loss.sum() + reg.sum() if reg is not None else loss.sum()).backward()
    grads = [p.grad for p in g.leaves.values() if p.grad is not None]
    if t.grad_clip > 0:  # nn.utils.clip_grad_norm_ of each member
        norms = torch.stack([gr.flatten(1).norm(dim=1) for gr in grads]).norm(dim=0)
        coef = (t.grad_clip / (norms + 1e-6)).clamp(max=1.0)
        for gr in grads:
            gr.mul_(coef.view(-1, *[1] * (gr.ndim - 1)))
    if g.reg_cfg is not None and g.reg_cfg.name == "weight_decay":  # W <- W - lr lambda W before the step
        with torch.no_grad():
            factor = 1.0 - member_lrs(g) * g.strength  # float64, as the single run's Python floats
            params = g.params
            for n in g.weight_names:
                w = params[n]
                w.mul_(factor.to(w.dtype).view(-1, *[1] * (w.ndim - 1)))
    g.optimizer.step()
    g.scheduler.step()
    return loss.detach(), (reg.detach() if reg is not None else None)


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_group(g: Group, x: torch.Tensor, y: torch.Tensor, prefix: str, batch_size: int = 4096) -> list[dict]:
    """Each member's mean loss and acc (or mse) over a split, in eval mode; one host sync for all."""
    n = len(x)
    total_loss = torch.zeros(g.k, device=g.device)
    total_metric = torch.zeros(g.k, device=g.device)
    for i in range(0, n, batch_size):
        z = member_outputs(g, x[i : i + batch_size])
        yb = y[i : i + batch_size]
        for k in range(g.k):
            total_loss[k] += g.loss_fn(z[k], yb) * len(yb)
            total_metric[k] += next(iter(losses.batch_metrics(z[k], yb, g.task).values()))
    rows = (torch.stack([total_loss, total_metric]) / max(n, 1)).T.tolist()
    name = "acc" if g.task.is_classification else "mse"
    return [{f"{prefix}/loss": loss, f"{prefix}/{name}": metric} for loss, metric in rows]


# ----------------------------------------------------------------------------- a member's files
def member_weights(g: Group, k: int) -> dict[str, torch.Tensor]:
    """Member k's state_dict (a single run's model.state_dict()), cloned from the stacked tensors."""
    params = g.params
    return {
        name: (params[name] if name in params else g.buffers[name])[k]
        .detach()
        .clone(memory_format=torch.contiguous_format)
        for name in g.members[k].model.state_dict()
    }


def _member_rng(g: Group, k: int) -> dict[str, Any]:
    state = ckpt.rng_state()
    if g.device.type == "cuda":
        state["cuda"][g.device.index or 0] = g.members[k].rng
    else:
        state["torch"] = g.members[k].rng
    return state


def member_checkpoint(g: Group, k: int) -> dict[str, Any]:
    """last.pt of member k in a single run's format: model, optimizer, scheduler, state, RNG, config."""
    m = g.members[k]
    m.optimizer.state.clear()
    for p, (name, leaf) in zip(m.model.parameters(), g.leaves.items(), strict=True):
        state = g.optimizer.state.get(leaf)
        if state:
            m.optimizer.state[p] = {
                key: g.member_state(name, v, k)
                if isinstance(v, torch.Tensor) and v.shape == leaf.shape
                else copy.deepcopy(v)
                for key, v in state.items()
            }
    lr = float(member_lrs(g)[k])
    for group in m.optimizer.param_groups:
        group["lr"] = lr
    m.scheduler.last_epoch = g.scheduler.last_epoch
    m.scheduler._step_count = g.scheduler._step_count
    m.scheduler._last_lr = [lr]
    return {
        "model": member_weights(g, k),
        "optimizer": m.optimizer.state_dict(),
        "scheduler": m.scheduler.state_dict(),
        "state": m.state.as_dict(),
        "rng": _member_rng(g, k),
        "config": flat(m.cfg),
    }


def save_member(g: Group, k: int, last: bool = True) -> None:
    m = g.members[k]
    if last:
        ckpt.save(m.run_dir / "checkpoints" / "last.pt", member_checkpoint(g, k))
    if m.state.best_weights is not None:
        ckpt.save(
            m.run_dir / "checkpoints" / "best.pt",
            {"model": m.state.best_weights, "state": m.state.as_dict(), "config": flat(m.cfg)},
        )
        m.state.best_weights = None
    m.state.last_save = time.perf_counter()


@torch.no_grad()
def restore_member(g: Group, k: int) -> None:
    """Load member k's last.pt into slice k of the stacked tensors, the optimizer state and its RNG."""
    m = g.members[k]
    payload = ckpt.load(m.run_dir / "checkpoints" / "last.pt", g.device)
    params = g.params
    for name, value in payload["model"].items():
        (params[name] if name in params else g.buffers[name])[k].copy_(value)
    saved = payload["optimizer"]["state"]
    for i, (name, leaf) in enumerate(g.leaves.items()):
        state = g.optimizer.state[leaf]
        for key, v in saved.get(i, {}).items():
            if isinstance(v, torch.Tensor) and v.ndim == leaf.ndim - 1 and v.numel() == leaf[0].numel():
                target = state.setdefault(key, torch.zeros_like(leaf))[k]
                (target.T if name in g.flip else target).copy_(v)
            else:
                state[key] = v.clone() if isinstance(v, torch.Tensor) else v
    g.scheduler.last_epoch = payload["scheduler"]["last_epoch"]
    g.scheduler._step_count = payload["scheduler"].get("_step_count", g.scheduler.last_epoch + 1)
    for group, base, fn in zip(g.optimizer.param_groups, g.scheduler.base_lrs, g.scheduler.lr_lambdas, strict=True):
        group["lr"] = base * fn(g.scheduler.last_epoch)
    g.scheduler._last_lr = [group["lr"] for group in g.optimizer.param_groups]
    rng = payload["rng"]
    m.rng = rng["cuda"][g.device.index or 0].cpu() if g.device.type == "cuda" else rng["torch"].cpu()
    s, st = payload["state"], m.state
    st.step, st.best_value, st.best_step, st.bad_evals = s["step"], s["best_value"], s["best_step"], s["bad_evals"]
    st.last_eval, st.samples = dict(s["last_eval"]), s["samples"]
    st.train_time, st.wall_before = s["train_time"], s["wall_time"]


# ----------------------------------------------------------------------------- the loop
def fit_group(g: Group, clock: TrainState, callbacks=()) -> None:
    """Train every running member to g.total_steps; members stop early or diverge on their own."""
    t = g.cfg.trainer
    spe = g.steps_per_epoch
    step = min(m.state.step for m in running(g))
    loss_sum = torch.zeros(g.k, device=g.device)
    reg_sum = torch.zeros(g.k, device=g.device)
    since_log, t_log, t0 = 0, time.perf_counter(), time.perf_counter()
    with stop_on_signal(clock):
        while step < g.total_steps and not clock.stop and running(g):
            epoch, first = divmod(step, spe)
            n = len(g.data.train)
            orders = torch.stack(
                [epoch_order(m.cfg.trainer.seed, epoch, n, m.cfg.trainer.order) for m in g.members]
            ).to(g.device)
            for b in range(first, spe):
                x, y, masks = group_batch(g, orders, b)
                loss, reg = group_step(g, x, y, masks)
                loss_sum += loss
                if reg is not None:
                    reg_sum += reg
                step += 1
                since_log += 1
                for m in running(g):
                    m.state.step = step
                    m.state.samples += y.shape[1]
                last = step >= g.total_steps
                evaluate_now = (step % t.eval_every == 0) if t.eval_every else (b == spe - 1 or last)
                if step % t.log_every == 0 or evaluate_now or last:
                    log_group(g, loss_sum, reg_sum, since_log, time.perf_counter() - t_log, t0, callbacks)
                    loss_sum.zero_()
                    reg_sum.zero_()
                    since_log, t_log = 0, time.perf_counter()
                if t.hist_every and step % t.hist_every == 0:
                    for k, m in enumerate(g.members):
                        if m.status == "running":
                            m.logger.histograms(step, _member_module(g, k))
                if evaluate_now or last:
                    eval_group(g, clock, t0, callbacks)
                if last or clock.stop or not running(g):
                    break
    for m in running(g):
        m.state.train_time += time.perf_counter() - t0


def running(g: Group) -> list[Member]:
    return [m for m in g.members if m.status == "running"]


def _member_module(g: Group, k: int) -> nn.Module:
    """Member k's own module holding its current weights and gradients (for histograms)."""
    model = g.members[k].model
    with torch.no_grad():
        grads = g.grads()
        for (name, p), stacked in zip(model.named_parameters(), g.params.values(), strict=True):
            p.copy_(stacked[k])
            p.grad = grads[name][k].clone() if name in grads else None
    return model


def log_group(g: Group, loss_sum, reg_sum, n_steps: int, seconds: float, t0: float, callbacks) -> None:
    """Each member's train/loss, lr, grad/norm, weight norms (and sparsity): one host sync for all."""
    grads = [p.grad for p in g.leaves.values() if p.grad is not None]
    weights = [(name, p) for name, p in g.params.items() if p.ndim > 2]  # a member's ndim > 1
    rows = [loss_sum / n_steps, reg_sum / n_steps]
    rows.append(torch.stack([gr.flatten(1).norm(dim=1) for gr in grads]).norm(dim=0) if grads else loss_sum * 0)
    rows += [p.detach().flatten(1).norm(dim=1) for _, p in weights]
    sparse = g.reg_cfg is not None and g.reg_cfg.name in ("l1", "elastic")
    if sparse:
        params = g.params
        ws = [params[n].detach() for n in g.weight_names]
        rows.append(
            sum((w.abs() < g.reg_cfg.zero_threshold).flatten(1).sum(1) for w in ws) / sum(w[0].numel() for w in ws)
        )
    rows.append(member_lrs(g))
    table = torch.stack([r.float() for r in rows]).T.tolist()  # the one host sync of this log step
    shown = []
    for k, m in enumerate(g.members):
        if m.status != "running":
            continue
        row = table[k]
        if not math.isfinite(row[0]):
            finish(g, [k], "diverged", f"the training loss became {row[0]} at or before step {m.state.step}", t0)
            continue
        m.state.last_train_loss = row[0]
        scalars = {"train/loss": row[0]}
        if g.reg_cfg is not None and g.reg_cfg.name in ("l2", "l1", "elastic"):
            scalars["train/reg_loss"] = row[1]
        scalars["lr"] = row[-1]
        scalars["grad/norm"] = row[2]
        for (name, _), value in zip(weights, row[3 : 3 + len(weights)], strict=True):
            scalars[f"weights/{layer_name(name)}/norm"] = value
        if sparse:
            scalars["weights/sparsity"] = row[3 + len(weights)]
        scalars["perf/samples_per_s"] = n_steps * g.batch_size / max(seconds, 1e-9)
        scalars["epoch"] = m.state.step / g.steps_per_epoch
        m.logger.scalars(m.state.step, scalars)
        shown.append(scalars)
    if shown:
        mean = {"train/loss": statistics.fmean(s["train/loss"] for s in shown)}
        for cb in callbacks:
            getattr(cb, "on_log", lambda *a: None)(g.members[0].state.step, mean)


def eval_group(g: Group, clock: TrainState, t0: float, callbacks) -> None:
    """Evaluate every member on val; keep each one's best; stop or finish members on their own."""
    t = g.cfg.trainer
    results = evaluate_group(g, g.data.val.x, g.data.val.y, "val")
    now = time.perf_counter()
    write = t.checkpoint and any(now - m.state.last_save >= t.checkpoint_every for m in running(g))
    stopped, diverged, shown = [], [], []
    for k, (m, metrics) in enumerate(zip(g.members, results, strict=True)):
        if m.status != "running":
            continue
        if not math.isfinite(metrics["val/loss"]):
            diverged.append(k)
            continue
        st = m.state
        st.last_eval = metrics
        m.logger.scalars(st.step, metrics)
        shown.append(metrics)
        value = metrics[g.monitor]
        improved = st.best_value is None or (
            value > st.best_value + t.min_delta if g.maximize else value < st.best_value - t.min_delta
        )
        if improved:
            st.best_value, st.best_step, st.bad_evals = value, st.step, 0
            if t.checkpoint:
                st.best_weights = member_weights(g, k)
        else:
            st.bad_evals += 1
        if write:
            save_member(g, k)
        if t.patience and st.bad_evals >= t.patience:
            stopped.append(k)
    for k in diverged:
        finish(
            g,
            [k],
            "diverged",
            f"the validation loss became {results[k]['val/loss']} at step {g.members[k].state.step}",
            t0,
        )
    if stopped:
        finish(g, stopped, "early_stop", "", t0)
    going = {k: results[k] for k, m in enumerate(g.members) if m.status == "running"}
    for cb in callbacks:  # a callback may end some members, e.g. a sweep's pruner the seeds of one trial
        ended = getattr(cb, "on_eval_members", lambda *a: None)(max(m.state.step for m in g.members), going)
        if ended:
            finish(g, sorted(ended), "pruned", "pruned by the sweep's pruner", t0)
    if shown:
        mean = {key: statistics.fmean(r[key] for r in shown) for key in shown[0]}
        step = max(m.state.step for m in g.members)
        for cb in callbacks:
            reason = getattr(cb, "on_eval", lambda *a: None)(step, step / g.steps_per_epoch, mean)
            if reason:  # a callback ends the group, e.g. a sweep's pruner: "pruned"
                clock.stop = str(reason)


def finish(g: Group, ks: list[int], status: str, message: str, t0: float | None = None) -> None:
    """End members ks: checkpoints, final test metrics (completed runs), TensorBoard hparams and summary."""
    t = g.cfg.trainer
    for k in ks:
        m = g.members[k]
        if t0 is not None and status in ("diverged", "early_stop", "pruned"):
            m.state.train_time += time.perf_counter() - t0  # it stops here; the others go on
        if t.checkpoint:
            save_member(g, k, last=status != "diverged")  # a divergence keeps the last good last.pt
    completed = [k for k in ks if status in ("completed", "early_stop")]
    metrics = {k: {} for k in ks}
    if completed:
        kept = {}
        if t.test_with == "best":  # test the best weights, then put the slices back (the others go on)
            for k in completed:
                if g.members[k].state.best_step >= 0:
                    kept[k] = member_weights(g, k)
                    _load_weights(g, k, ckpt.load(g.members[k].run_dir / "checkpoints" / "best.pt", g.device)["model"])
        test = evaluate_group(g, g.data.test.x, g.data.test.y, "test")
        train_final = evaluate_group(g, g.data.train.x, g.data.train.y, "train_final")
        for k, weights in kept.items():
            _load_weights(g, k, weights)
        for k in completed:
            metrics[k] = {**test[k], **train_final[k]}
            g.members[k].logger.scalars(g.members[k].state.step, metrics[k])
    for k in ks:
        m = g.members[k]
        st = m.state
        m.status = "completed" if status == "early_stop" else status
        values = {**metrics[k], **st.last_eval, "train/loss": st.last_train_loss}
        if st.best_value is not None:
            values[f"best/{g.monitor}"] = st.best_value
        if m.status == "completed":
            m.logger.hparams(flat(m.cfg), {key: v for key, v in values.items() if key.split("/")[0] in ("test", "val")})
        m.logger.close()
        if status == "early_stop":
            message = f"early stop: {g.monitor} did not improve for {st.bad_evals} evaluations"
        m.summary.update(
            status=m.status,
            message=message,
            step=st.step,
            epoch=round(st.step / g.steps_per_epoch, 3),
            metrics={key: v for key, v in values.items() if v == v},
            best_step=st.best_step,
            wall_time_s=round(st.wall_before + time.time() - st.wall_start, 3),
            train_time_s=round(st.train_time, 3),
            samples_per_s=round(st.samples / st.train_time, 1) if st.train_time > 0 else None,
            ended=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        rundir.write_summary(m.run_dir, m.summary)


@torch.no_grad()
def _load_weights(g: Group, k: int, weights: dict[str, torch.Tensor]) -> None:
    params = g.params
    for name, value in weights.items():
        (params[name] if name in params else g.buffers[name])[k].copy_(value)


# ----------------------------------------------------------------------------- the whole group
def train_group(
    specs: list[MemberSpec], callbacks=(), group_dir: Path | None = None, resume: Path | None = None
) -> dict[str, Any]:
    """Build, fit and test the members of a group; return the group's summary (also in its summary.json)."""
    started = time.time()
    g = build_group(specs)
    for m in g.members:
        m.cfg.loss = resolved_loss_config(m.cfg.loss, g.loss_name)
    cfg = g.cfg
    group_dir = Path(resume) if resume else Path(group_dir) if group_dir else rundir.new_run_dir(cfg)
    group_dir.mkdir(parents=True, exist_ok=True)
    previous = rundir.read_summary(group_dir) or {}
    first_start = previous.get("started_at", started)
    n_params = models.count_parameters(g.members[0].model)
    for k, m in enumerate(g.members):
        m.run_dir = Path(m.spec.run_dir) if m.spec.run_dir else group_dir / m.spec.label
        m.run_dir.mkdir(parents=True, exist_ok=True)
        m.state = TrainState(wall_start=started)
        resumed = resume is not None and (m.run_dir / "checkpoints" / "last.pt").exists()
        earlier = rundir.read_summary(m.run_dir) or {}
        if resume is not None and earlier.get("status") in ("completed", "diverged"):
            m.status, m.summary = earlier["status"], earlier  # it ended before the interruption: kept as it is
            m.state.step = earlier.get("step", 0)
            continue
        if resumed:
            restore_member(g, k)
            rundir.truncate_metrics(m.run_dir, m.state.step)
        rundir.write_start(m.run_dir, m.cfg, m.spec.overrides, resumed)
        m.logger = RunLogger(m.run_dir, purge_step=m.state.step + 1 if resumed else None)
        m.logger.text("config", "    " + to_yaml(m.cfg).replace("\n", "\n    "))
        m.summary = {
            "status": "running",
            "run_dir": str(m.run_dir),
            "total_steps": g.total_steps,
            "steps_per_epoch": g.steps_per_epoch,
            "step": m.state.step,
            "params": n_params,
            "device": str(g.device),
            "loss": g.loss_name,
            "resumed": resumed,
            "monitor": g.monitor,
            "name": rundir.run_name(m.cfg),
            "experiment": m.cfg.experiment,
            "classes": list(g.task.class_names),
            "group": str(group_dir),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(earlier.get("started_at", started))),
            "started_at": earlier.get("started_at", started),
        }
        rundir.write_summary(m.run_dir, m.summary)
    rundir.write_summary(group_dir, group_summary(g, group_dir, started, first_start))  # the members, for a resume
    steps = {m.state.step for m in running(g)}
    if len(steps) > 1:
        raise ConfigError(
            f"resume={group_dir}: its members stopped at different steps {sorted(steps)}; resume each alone"
        )
    info = {
        "run_dir": str(group_dir),
        "total_steps": g.total_steps,
        "steps_per_epoch": g.steps_per_epoch,
        "step": min(steps, default=0),
        "params": n_params,
        "device": str(g.device),
        "loss": g.loss_name,
        "resumed": resume is not None,
        "monitor": g.monitor,
        "members": g.k,
    }
    for cb in callbacks:
        getattr(cb, "on_start", lambda *a: None)(info)
    clock = TrainState(wall_start=started)
    try:
        fit_group(g, clock, callbacks)
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once; nothing new is checkpointed
        for m in running(g):
            m.summary.update(status="interrupted", step=m.state.step, message="aborted by a second Ctrl-C")
            rundir.write_summary(m.run_dir, m.summary)
            m.logger.close()
        raise
    ending = [k for k, m in enumerate(g.members) if m.status == "running"]
    if ending:
        finish(g, ending, clock.stop if clock.stop in ("interrupted", "pruned") else "completed", "")
    summary = group_summary(g, group_dir, started, first_start)
    rundir.write_summary(group_dir, summary)
    for cb in callbacks:
        getattr(cb, "on_end", lambda *a: None)(summary)
    return summary


def group_summary(g: Group, group_dir: Path, started: float, first_start: float) -> dict[str, Any]:
    """The group's summary.json: its members, and mean and std of every final metric per configuration."""
    configurations: dict[int, dict[str, Any]] = {}
    for m in g.members:
        c = configurations.setdefault(
            m.spec.configuration,
            {"values": m.spec.values, "seeds": [], "members": [], "metrics": {}},
        )
        c["seeds"].append(m.cfg.trainer.seed)
        c["members"].append(m.spec.label)
    for c in configurations.values():
        done = [m for m in g.members if m.spec.label in c["members"] and m.status == "completed"]
        keys = sorted({k for m in done for k in m.summary["metrics"]})
        for key in keys:
            values = [m.summary["metrics"][key] for m in done if key in m.summary["metrics"]]
            c["metrics"][key] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "n": len(values),
            }
    statuses = {m.status for m in g.members}
    status = "completed" if statuses == {"completed"} else "diverged" if statuses == {"diverged"} else "partial"
    for word in ("running", "pruned", "interrupted"):
        if word in statuses:
            status = word
    confs = list(configurations.values())
    return {
        "kind": "group",
        "status": status,
        "name": rundir.run_name(g.cfg),
        "run_dir": str(group_dir),
        "vectorized": g.vectorized,
        "device": str(g.device),
        "params": models.count_parameters(g.members[0].model),
        "step": max(m.state.step for m in g.members),
        "total_steps": g.total_steps,
        "members": [
            {
                "label": m.spec.label,
                "run_dir": str(m.run_dir),
                "status": m.status,
                "seed": m.cfg.trainer.seed,
                "values": m.spec.values,
                "message": m.summary.get("message", ""),
            }
            for m in g.members
        ],
        "configurations": confs,
        "metrics": confs[0]["metrics"] if len(confs) == 1 else {},
        "wall_time_s": round(time.time() - started, 3),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(first_start)),
        "started_at": first_start,
        "ended": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
