"""Many runs, one process: the members of a group (dlrun/train/members.py) stepped as one vectorized model.

This module holds only what stacking needs; the run lifecycle (planning, evaluation, best weights,
early stopping, checkpoints, signals, summaries) is dlrun/train/loop.py's, the same as a single run's.

The K members' models (one architecture) are stacked with torch.func.stack_module_state: every
parameter and buffer gets a leading member axis, and one functional forward (functional_call
under vmap) computes all K members on their own batches. The sum of the members' losses has
member k's gradient in slice k, so one backward and one optimizer step train all of them.

Each member is the run it would have been alone (`trainer.seed=k`):
- its initialization, built and seeded exactly as a single run builds it;
- its data order, epoch_order(seed_k, epoch);
- its augmentations and dropout masks, drawn member by member from that member's own copy of the
  RNG state with the calls a single run makes, in the same order (the masks reach the vectorized
  InvertedDropout modules as buffers). A model that draws other random numbers in its forward (a
  plugin's nn.Dropout) runs member by member ("loop"), each forward under its member's RNG state;
- its optimizer: what the optimizer declares (OptimCaps). An elementwise update steps the stacked
  tensors as they are when the members share its hyperparameters; per-member values take the
  optimizer's stacked step (dlrun/optim/stacked.py);
- its regularizer: the same functions of the weights (penalty, decay, stats), on its slice;
- its checkpoints in a single run's format: `dlrun train resume=<member>` continues it alone.
  The per-layer diagnostics (trainer.diag_every) are not logged for members.

dlrun's MLP and CNN without norm layers skip vmap ("stacked": dlrun/train/batched.py). Models with an
op that vmap cannot batch (torch's fused RNN kernels) run their members one after the other in each
step ("loop"), with the same results.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from dlrun import losses, models, regularizers
from dlrun.config import Config
from dlrun.data import Task
from dlrun.data import augment as augmentation
from dlrun.data import build as build_data
from dlrun.models.dropout import InvertedDropout, draw_mask
from dlrun.optim import build_optimizer, build_scheduler
from dlrun.optim.stacked import StackedOptimizer
from dlrun.train import batched, trainer_options
from dlrun.train import checkpoint as ckpt
from dlrun.train.diagnostics import layer_name
from dlrun.train.dist import SINGLE
from dlrun.train.members import MemberSpec
from dlrun.train.plan import Plan, cpu_settings, make_plan, resolve, resolve_device
from dlrun.train.single import epoch_order, model_for_task

# CNNs stay under vmap: on the CPU, one grouped convolution of 16 MNIST-1D CNNs (mkldnn) took 185 s where
# vmap took 170 s and 16 separate runs 168 s; the grouped form is kept (tested) for devices where it pays.
STACK_CONVS = False


@dataclass
class Member:
    spec: MemberSpec
    model: nn.Module  # the member's own module: the layout of its checkpoints, and its histograms
    optimizer: torch.optim.Optimizer  # the single run's optimizer on `model`: the layout of its state_dict
    scheduler: torch.optim.lr_scheduler.LambdaLR
    rng: torch.Tensor  # the member's RNG state of the device between its draws

    @property
    def cfg(self) -> Config:
        return self.spec.cfg


def get_rng(device: torch.device) -> torch.Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def set_rng(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


def _sliced(tensors: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    return {k: v[i] for k, v in tensors.items()}


def _per_member(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[K] -> [K, 1, ...] to broadcast over a stacked tensor like `like`."""
    return t.view(-1, *[1] * (like.ndim - 1))


def build_group(specs: list[MemberSpec]) -> Stacked:
    """Data once; each member's config resolved and its model seeded as its single run; the stacked tensors."""
    cfg = specs[0].cfg
    t = cfg.trainer
    device = resolve_device(t.device)
    cpu_settings(t, device)
    data = build_data(cfg.data).to(device)
    for spec in specs:
        spec.cfg = resolve(spec.cfg, data.task, has_val=len(data.val) > 0)
    plan = make_plan(specs[0].cfg, len(data.train), len(data.val), data.task)
    members = []
    for spec in specs:
        loss_name, loss_fn, model = model_for_task(spec.cfg, data.task)
        model.to(device)
        rng = get_rng(device)  # right after the member's seeded init, as its single run goes on
        optimizer = build_optimizer(model.parameters(), spec.cfg.optim)
        members.append(
            Member(spec, model, optimizer, build_scheduler(optimizer, spec.cfg.sched, plan.total_steps), rng)
        )
    return Stacked(members, device, data, plan, loss_name, loss_fn)


class Stacked:
    """The lifecycle's view of a group: K members stepped together (the interface of single.Single)."""

    def __init__(self, members: list[Member], device: torch.device, data, plan: Plan, loss_name: str, loss_fn):
        self.members, self.device, self.data, self.plan = members, device, data, plan
        self.cfg, self.k, self.world = members[0].cfg, len(members), SINGLE
        self.sum_shape = (self.k,)  # the loss sums between two log steps: one per member
        self.loss_name, self.loss_fn = loss_name, loss_fn
        stacked, self.buffers = stack_module_state([m.model for m in members])  # [K, ...] each
        # a matrix [K, out, in] is kept as a leaf [K, in, out]: the batched matmul of its gradient writes that
        # layout (no copy), and the optimizer steps a contiguous tensor (fused Adam: 0.7 instead of 1.9 ms at K=16)
        self.flip = {name for name, p in stacked.items() if p.ndim == 3}
        self.leaves = {
            name: p.detach().transpose(1, 2).contiguous().requires_grad_() if name in self.flip else p
            for name, p in stacked.items()
        }
        self.base = copy.deepcopy(members[0].model).to("meta")  # functional_call fills in each member's tensors
        self.optimizer = self._optimizer()
        self.scheduler = build_scheduler(self.optimizer, self.cfg.sched, plan.total_steps)
        self._regularizer()
        first = members[0].model
        self.dropouts = [
            (n, mod.p) for n, mod in first.named_modules() if isinstance(mod, InvertedDropout) and mod.p > 0
        ]
        self.augment = (
            augmentation.build(self.cfg.data.augment, self.task) if hasattr(self.cfg.data, "augment") else None
        )
        self.mask_shapes: dict[int, list] = {}
        self.orders: torch.Tensor | None = None
        self.layers = batched.stacked_layers(first, STACK_CONVS)
        self.vectorized = "stacked" if self.layers else "vmap" if self._vmap_works() else "loop"
        t = self.cfg.trainer
        self.micro = t.batch_size if t.accumulate > 1 else 0  # trainer.accumulate: examples per micro-batch
        self.decay, self.compile = t.ema, None
        # trainer.ema: the averaged leaves and buffers, which evaluations, best.pt and the test use
        tensors = {**self.leaves, **self.buffers}
        self.ema = {name: v.detach().clone() for name, v in tensors.items()} if self.decay else None
        self.ema_sources = list(tensors.values())  # what each EMA tensor averages, in the same order

    def _optimizer(self) -> torch.optim.Optimizer:
        params = list(self.leaves.values())
        if all(m.cfg.optim == self.cfg.optim for m in self.members):
            return build_optimizer(params, self.cfg.optim)  # elementwise: the same update of every slice
        return StackedOptimizer(params, [m.cfg.optim for m in self.members])

    def _regularizer(self) -> None:
        """The first member's regularizer (its functions of the weights), each member's strength, the weights."""
        model = self.members[0].model
        self.reg = regularizers.build(self.cfg.regularizer, model)
        names = {id(p): n for n, p in model.named_parameters()}
        self.weight_names = [names[id(w)] for w in regularizers.weights(model)]
        strengths = [float(getattr(m.cfg.regularizer, "strength", 0.0)) for m in self.members]
        self.strength = torch.tensor(strengths, dtype=torch.float64, device=self.device)  # [K] lambda
        self.reg_vmap = True  # the regularizer's functions batch under vmap (else: member by member)

    # ------------------------------------------------------------------------- the stacked tensors
    @property
    def task(self) -> Task:
        return self.data.task

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

    def n_params(self) -> int:
        return models.count_parameters(self.members[0].model)

    def member_lrs(self) -> torch.Tensor:
        """[K]: each member's current learning rate (float64)."""
        if isinstance(self.optimizer, StackedOptimizer):
            return self.optimizer.member_lrs()
        lr = float(self.optimizer.param_groups[0]["lr"])
        return torch.full((self.k,), lr, dtype=torch.float64, device=self.device)

    def over_members(self, fn, ws: list[torch.Tensor], *extra: torch.Tensor):
        """fn(member's weights, member's extra...) for every member: under vmap, or one member at a time when
        fn does not batch (a plugin's regularizer); outputs stacked on a leading [K] axis."""
        if self.reg_vmap:
            try:
                return vmap(fn)(ws, *extra)
            except RuntimeError:
                self.reg_vmap = False
        outs = [fn([w[k] for w in ws], *(e[k] for e in extra)) for k in range(self.k)]
        if isinstance(outs[0], dict):
            return {key: torch.stack([o[key] for o in outs]) for key in outs[0]}
        return torch.stack(outs)

    # ------------------------------------------------------------------------- the forward
    def _loss_of(self):
        def loss(p, b, x, y):
            return self.loss_fn(functional_call(self.base, (p, b), (x,)), y)

        return loss

    def _stacked_loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[K]: each member's loss of its outputs z[k] against y[k]."""
        if self.loss_fn is losses.cross_entropy and not y.is_floating_point():  # one kernel for all members
            per_example = nn.functional.cross_entropy(z.flatten(0, 1), y.flatten(), reduction="none")
            return per_example.view(y.shape).mean(1)
        return vmap(self.loss_fn)(z, y)

    def member_losses(self, x: torch.Tensor, y: torch.Tensor, masks: dict[str, torch.Tensor]) -> torch.Tensor:
        """[K]: each member's loss on its own batch x[k], y[k] (training mode)."""
        if self.vectorized == "stacked":
            return self._stacked_loss(batched.stacked_forward(self.layers, self.leaves, self.k, x, masks), y)
        self.base.train()
        loss, params = self._loss_of(), self.params
        if self.vectorized == "vmap":
            return vmap(loss, randomness="error")(params, {**self.buffers, **masks}, x, y)
        out = []
        for i, m in enumerate(self.members):  # each forward under its member's RNG state: its own dropout draws
            set_rng(self.device, m.rng)
            out.append(loss(_sliced(params, i), _sliced(self.buffers, i), x[i], y[i]))
            m.rng = get_rng(self.device)
        return torch.stack(out)

    def member_outputs(self, x: torch.Tensor, ema: bool = False) -> torch.Tensor:
        """[K, N, ...]: each member's output on the same inputs x (evaluation mode), with its EMA weights if ema."""
        leaves = {n: self.ema[n] for n in self.leaves} if ema else self.leaves
        params, buffers = self._tensors(ema)
        if self.vectorized == "stacked":
            return batched.stacked_forward(self.layers, leaves, self.k, x)
        self.base.eval()

        def forward(p, b, x):
            return functional_call(self.base, (p, b), (x,))

        if self.vectorized == "vmap":
            return vmap(forward, in_dims=(0, 0, None))(params, buffers, x)
        return torch.stack([forward(_sliced(params, i), _sliced(buffers, i), x) for i in range(self.k)])

    def _tensors(self, ema: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(parameters [K, ...] in the modules' layout, buffers [K, ...]): the raw ones, or the EMA's."""
        if not ema:
            return self.params, self.buffers
        params = {n: self.ema[n].transpose(1, 2) if n in self.flip else self.ema[n] for n in self.leaves}
        return params, {n: self.ema[n] for n in self.buffers}

    def _vmap_works(self) -> bool:
        """Whether vmap batches every op of the model and its forward draws no random numbers of its own (torch's
        fused RNN kernels have no batching rule; a plugin's nn.Dropout would draw other masks than its run's)."""
        x = self.data.train.x[:2].expand(self.k, *self.data.train.x[:2].shape)
        y = self.data.train.y[:2].expand(self.k, *self.data.train.y[:2].shape)
        buffers = {k: v.clone() for k, v in self.buffers.items()}
        buffers.update(
            self._masks_for(2, lambda shape, p, dtype: torch.ones(self.k, *shape, dtype=dtype, device=self.device))
        )
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            try:
                vmap(self._loss_of(), randomness="error")(self.params, buffers, x, y)
            except RuntimeError:
                return False
        return True

    def _shapes(self, batch: int) -> list[tuple[str, float, torch.Size, torch.dtype]]:
        """(name, p, input shape, dtype) of each dropout module in the order a forward calls it, for a batch size."""
        if batch not in self.mask_shapes:
            seen = []
            model = self.members[0].model
            modules = dict(model.named_modules())
            hooks = [
                modules[n].register_forward_pre_hook(
                    lambda mod, args, n=n, p=p: seen.append((n, p, args[0].shape, args[0].dtype))
                )
                for n, p in self.dropouts
            ]
            devices = [self.device] if self.device.type == "cuda" else []
            try:
                with torch.no_grad(), torch.random.fork_rng(devices=devices):
                    model.train()
                    model(self.data.train.x[:batch])
            finally:
                for h in hooks:
                    h.remove()
            self.mask_shapes[batch] = seen
        return self.mask_shapes[batch]

    def _masks_for(self, batch: int, make) -> dict[str, torch.Tensor]:
        if not self.dropouts:
            return {}
        return {f"{n}.keep": make(shape, p, dtype) for n, p, shape, dtype in self._shapes(batch)}

    # ------------------------------------------------------------------------- the step
    def epoch(self, epoch: int) -> None:
        n = self.plan.n_train
        orders = [epoch_order(m.cfg.trainer.seed, epoch, n, m.cfg.trainer.order) for m in self.members]
        self.orders = torch.stack(orders).to(self.device)

    def batch(self, b: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Batch b of every member: x [K, B, ...], y [K, B], and the dropout masks [K, B, ...], each member's
        augmentations and masks drawn from its own RNG state in a single run's order: the masks of each
        micro-batch in turn ("loop": no masks, each member's forward draws its own)."""
        start, end = self.plan.batch_range(b)
        idx = self.orders[:, start:end]
        x, y = self.data.train.x[idx], self.data.train.y[idx]
        draw = self.dropouts and self.vectorized != "loop"
        if self.augment is None and not draw:
            return x, y, {}
        chunks = self.chunks(idx.shape[1]) if draw else []
        xs, masks = [], {n: [] for n, _ in self.dropouts}
        for k, m in enumerate(self.members):
            set_rng(self.device, m.rng)
            xs.append(self.augment(x[k]) if self.augment is not None else x[k])
            mine = {n: [] for n in masks}
            for a, z in chunks:
                for n, p, shape, dtype in self._shapes(z - a):
                    mine[n].append(draw_mask(shape, p, dtype, self.device))
            for n, parts in mine.items():
                masks[n].append(torch.cat(parts) if len(parts) > 1 else parts[0])
            m.rng = get_rng(self.device)
        return torch.stack(xs), y, {f"{n}.keep": torch.stack(v) for n, v in masks.items() if v}

    def chunks(self, n: int) -> list[tuple[int, int]]:
        """The micro-batches of a batch of n examples (trainer.accumulate), or the whole batch."""
        return trainer_options.micro_batches(n, self.micro) if self.micro else [(0, n)]

    def step(self, b: int, at: int) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """One optimizer step of every member on its batch b: ([K] data losses, [K] penalties or None, examples).
        trainer.accumulate: micro-batch by micro-batch, each loss weighted by its share of the batch."""
        x, y, masks = self.batch(b)
        self.optimizer.zero_grad(set_to_none=True)
        chunks, n = self.chunks(y.shape[1]), y.shape[1]
        params, loss, reg = self.params, None, None
        ws = [params[name] for name in self.weight_names]
        for i, (a, z) in enumerate(chunks):
            part = self.member_losses(x[:, a:z], y[:, a:z], {k: v[:, a:z] for k, v in masks.items()})
            summed = getattr(self.loss_fn, "per_batch", False)  # loss.form=sum: micro-batch sums add up as they are
            part = part * ((z - a) / n) if len(chunks) > 1 and not summed else part
            objective = part.sum()
            if i == len(chunks) - 1 and self.reg is not None and self.reg.term:
                reg = self.over_members(self.reg.penalty, ws, self.strength.to(ws[0].dtype))
                objective = objective + reg.sum()
            objective.backward()
            part = losses.per_example(self.loss_fn, part.detach(), z - a)  # logged per example (loss.form=sum)
            loss = part if loss is None else loss + part
        self._clip()
        if self.reg is not None and self.reg.decay:  # W <- W - lr lambda W before the step
            with torch.no_grad():
                factor = 1.0 - self.member_lrs() * self.strength  # float64, as the single run's Python floats
                for w in ws:
                    w.mul_(_per_member(factor.to(w.dtype), w))
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            trainer_options.ema_update(list(self.ema.values()), self.ema_sources, self.decay)
        return loss, (reg.detach() if reg is not None else None), n

    def grad_norms(self) -> torch.Tensor:
        """[K]: each member's global gradient norm after the last step."""
        grads = [p.grad for p in self.leaves.values() if p.grad is not None]
        return torch.stack([gr.flatten(1).norm(dim=1) for gr in grads]).norm(dim=0)

    def _clip(self) -> None:
        """nn.utils.clip_grad_norm_ of each member."""
        clip = self.cfg.trainer.grad_clip
        if clip <= 0:
            return
        norms = self.grad_norms()
        grads = [p.grad for p in self.leaves.values() if p.grad is not None]
        coef = (clip / (norms + 1e-6)).clamp(max=1.0)
        for gr in grads:
            gr.mul_(_per_member(coef, gr))

    def log_rows(self, loss_sum, reg_sum, n_steps: int, asked: bool) -> tuple[list[dict[str, float]], bool]:
        """Each member's train/loss, train/reg_loss, lr, grad/norm, weight norms and regularizer scalars: one host
        sync for all."""
        grads = [p.grad for p in self.leaves.values() if p.grad is not None]
        params = self.params
        weights = [(name, p) for name, p in params.items() if p.ndim > 2]  # a member's ndim > 1
        rows = [loss_sum / n_steps, reg_sum / n_steps]
        rows.append(torch.stack([gr.flatten(1).norm(dim=1) for gr in grads]).norm(dim=0) if grads else loss_sum * 0)
        rows += [p.detach().flatten(1).norm(dim=1) for _, p in weights]
        extra = {}
        if self.reg is not None and self.reg.stats is not None:
            with torch.no_grad():
                extra = self.over_members(self.reg.stats, [params[n].detach() for n in self.weight_names])
        rows += list(extra.values())
        rows.append(self.member_lrs())
        table = torch.stack([r.float() for r in rows]).T.tolist()  # the one host sync of this log step
        out = []
        for row in table:
            scalars = {"train/loss": row[0]}
            if self.reg is not None and self.reg.term:
                scalars["train/reg_loss"] = row[1]
            scalars["lr"] = row[-1]
            scalars["grad/norm"] = row[2]
            for (name, _), value in zip(weights, row[3 : 3 + len(weights)], strict=True):
                scalars[f"weights/{layer_name(name)}/norm"] = value
            scalars.update(zip(extra, row[3 + len(weights) : -1], strict=True))
            out.append(scalars)
        return out, asked

    # ------------------------------------------------------------------------- evaluation and weights
    @torch.no_grad()
    def evaluate(self, split: str, prefix: str | None = None) -> list[dict[str, float]]:
        """Each member's metrics on a split (of its EMA weights with trainer.ema, and then of its raw weights as
        <split>_raw/); one host sync for all."""
        prefix = prefix or split
        rows = self._evaluate(split, prefix, ema=self.ema is not None)
        if self.ema is not None and split != "train":
            for row, raw in zip(rows, self._evaluate(split, f"{prefix}_raw", ema=False), strict=True):
                row.update(raw)
        return rows

    def _evaluate(self, split: str, prefix: str, ema: bool, batch_size: int = 4096) -> list[dict[str, float]]:
        data = self.data.split(split)
        n = len(data.x)
        total = torch.zeros(2, self.k, device=self.device)  # loss, metric
        for i in range(0, n, batch_size):
            z = self.member_outputs(data.x[i : i + batch_size], ema)
            yb = data.y[i : i + batch_size]
            for k in range(self.k):
                total[0, k] += losses.per_example(self.loss_fn, self.loss_fn(z[k], yb), len(yb)) * len(yb)
                cut = losses.threshold(self.loss_fn)
                total[1, k] += next(iter(losses.batch_metrics(z[k], yb, self.task, cut).values()))
        rows = (total / max(n, 1)).T.tolist()
        name = "acc" if self.task.is_classification else "mse"
        return [{f"{prefix}/loss": loss, f"{prefix}/{name}": metric} for loss, metric in rows]

    def observe(self, k: int, value: float) -> None:
        """sched=plateau is refused for groups (members.refusal): nothing to do."""

    def weights(self, k: int, ema: bool | None = None) -> dict[str, torch.Tensor]:
        """Member k's state_dict (a single run's model.state_dict()), cloned from the stacked tensors: the ones
        evaluations use (the EMA's with trainer.ema), or the raw ones (ema=False)."""
        params, buffers = self._tensors(self.ema is not None if ema is None else ema)
        return {
            name: (params[name] if name in params else buffers[name])[k]
            .detach()
            .clone(memory_format=torch.contiguous_format)
            for name in self.members[k].model.state_dict()
        }

    @torch.no_grad()
    def load_weights(self, k: int, weights: dict[str, torch.Tensor], ema: bool | None = None) -> None:
        params, buffers = self._tensors(self.ema is not None if ema is None else ema)
        for name, value in weights.items():
            (params[name] if name in params else buffers[name])[k].copy_(value)

    def module(self, k: int) -> nn.Module:
        """Member k's own module holding its current weights and gradients (for histograms and checks)."""
        model = self.members[k].model
        with torch.no_grad():
            grads = self.grads()
            for (name, p), stacked in zip(model.named_parameters(), self.params.values(), strict=True):
                p.copy_(stacked[k])
                p.grad = grads[name][k].clone() if name in grads else None
        return model

    # ------------------------------------------------------------------------- a member's checkpoint
    def checkpoint(self, k: int) -> dict[str, Any]:
        """Member k's model, optimizer, schedule and RNG in a single run's last.pt format."""
        m = self.members[k]
        m.optimizer.state.clear()
        for p, (name, leaf) in zip(m.model.parameters(), self.leaves.items(), strict=True):
            state = self.optimizer.state.get(leaf)
            if state:
                m.optimizer.state[p] = {
                    key: self._member_state(name, v, k)
                    if isinstance(v, torch.Tensor) and v.shape == leaf.shape
                    else copy.deepcopy(v)
                    for key, v in state.items()
                }
        lr = float(self.member_lrs()[k])
        for group in m.optimizer.param_groups:
            group["lr"] = lr
        m.scheduler.last_epoch = self.scheduler.last_epoch
        m.scheduler._step_count = self.scheduler._step_count
        m.scheduler._last_lr = [lr]
        rng = ckpt.rng_state()
        if self.device.type == "cuda":
            rng["cuda"][self.device.index or 0] = m.rng
        else:
            rng["torch"] = m.rng
        payload = {
            "model": self.weights(k, ema=False),
            "optimizer": m.optimizer.state_dict(),
            "scheduler": m.scheduler.state_dict(),
            "rng": rng,
        }
        if self.ema is not None:
            payload["ema"] = self.weights(k, ema=True)
        return payload

    def _member_state(self, name: str, v: torch.Tensor, k: int) -> torch.Tensor:
        """Slice k of an optimizer state tensor of parameter `name`, in the single run's layout."""
        return (v[k].T if name in self.flip else v[k]).clone(memory_format=torch.contiguous_format)

    @torch.no_grad()
    def restore(self, k: int, payload: dict[str, Any]) -> None:
        """Load member k's last.pt into slice k of the stacked tensors (and of the EMA's), the optimizer state and
        its RNG."""
        self.load_weights(k, payload["model"], ema=False)
        if self.ema is not None:
            self.load_weights(k, payload.get("ema", payload["model"]), ema=True)
        saved = payload["optimizer"]["state"]
        for i, (name, leaf) in enumerate(self.leaves.items()):
            state = self.optimizer.state[leaf]
            for key, v in saved.get(i, {}).items():
                if isinstance(v, torch.Tensor) and v.ndim == leaf.ndim - 1 and v.numel() == leaf[0].numel():
                    target = state.setdefault(key, torch.zeros_like(leaf))[k]
                    (target.T if name in self.flip else target).copy_(v)
                else:
                    state[key] = v.clone() if isinstance(v, torch.Tensor) else v
        sched = self.scheduler
        sched.last_epoch = payload["scheduler"]["last_epoch"]
        sched._step_count = payload["scheduler"].get("_step_count", sched.last_epoch + 1)
        for group, base, fn in zip(self.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas, strict=True):
            group["lr"] = base * fn(sched.last_epoch)
        sched._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        rng = payload["rng"]
        self.members[k].rng = (
            rng["cuda"][self.device.index or 0].cpu() if self.device.type == "cuda" else rng["torch"].cpu()
        )
