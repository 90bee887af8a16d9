"""Data-parallel training under torchrun: one process per device, each with a share of every global batch.

    torchrun --standalone --nproc_per_node=2 -m dlrun train ...

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `start` joins the process group (nccl on CUDA,
gloo on the CPU) and pins the process to cuda:LOCAL_RANK. The trainer then wraps the model in
DistributedDataParallel, and every rank walks the same global order (a pure function of seed and
epoch) and trains on its slice of each global batch, its loss weighted by its share, so that the
averaged gradient is the global batch's mean gradient, as in one process. Rank 0 alone writes the
run directory; evaluation sums are all-reduced, so every rank takes the same decisions (best,
early stop, divergence, an interrupt).
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from dlrun.errors import ConfigError, RunFailed


@dataclass(frozen=True)
class World:
    """This process's place in the run: rank `rank` of `size` (size 1: a plain single-process run)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun: a process group even of one process (one GPU, nccl)

    @property
    def active(self) -> bool:
        return self.size > 1 or self.launched

    @property
    def main(self) -> bool:
        return self.rank == 0


SINGLE = World()
_STARTED = False  # this module joined the process group (and so ends it)


def world() -> World:
    """The world torchrun describes in the environment, or a single process."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        launched = "TORCHELASTIC_RUN_ID" in os.environ and "LOCAL_RANK" in os.environ  # torchrun's own variables
        if size <= 1 and not launched:
            return SINGLE
        return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")), launched)
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None


def start(w: World, device: torch.device, timeout_s: float) -> torch.device:
    """Join the process group (once per process) and return this rank's device."""
    if device.type == "cuda":
        if w.local_rank >= torch.cuda.device_count():
            error = ConfigError(
                f"LOCAL_RANK={w.local_rank}: this machine has {torch.cuda.device_count()} CUDA devices; "
                "give torchrun --nproc_per_node at most that many"
            )
            error.own = True  # only the ranks past the last device raise it
            raise error
        device = torch.device("cuda", w.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ConfigError(f"trainer.device={device}: torchrun runs on cuda (nccl) or cpu (gloo); not {device.type}")
    global _STARTED
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        takes_device = "device_id" in inspect.signature(dist.init_process_group).parameters  # torch >= 2.3
        kwargs = {"device_id": device} if device.type == "cuda" and takes_device else {}
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s), **kwargs)
        _STARTED = True
    if dist.get_world_size() != w.size or dist.get_rank() != w.rank:
        raise ConfigError(f"the process group has rank {dist.get_rank()} of {dist.get_world_size()}, not {w}")
    return device


def wrap(model: nn.Module, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(model, net): the module whose state is saved and the DistributedDataParallel that trains it.

    Batch norm is synchronized (SyncBatchNorm: statistics over the global batch) on CUDA only; PyTorch's
    SyncBatchNorm has no CPU kernel, so under gloo each rank normalizes by its own share of the batch
    and the running statistics are rank 0's (broadcast before every forward and every evaluation).
    """
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return model, nn.parallel.DistributedDataParallel(model, device_ids=ids)  # buffers: rank 0's, before every forward


def share(idx: torch.Tensor, w: World) -> torch.Tensor:
    """Rank w.rank's contiguous slice of a global batch (the first len % size ranks hold one more)."""
    return torch.tensor_split(idx, w.size)[w.rank] if w.active else idx


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of a tensor (in place)."""
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def sync_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (batch norm's running statistics) on every rank, before an evaluation."""
    for b in model.buffers():
        dist.broadcast(b, src=0)


def from_main(obj: Any, w: World) -> Any:
    """Rank 0's value of obj on every rank (a run directory's path, say)."""
    if not w.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(w: World) -> None:
    if w.active:
        dist.barrier()


def end() -> None:
    """Leave the process group this module joined (a caller's own group stays)."""
    global _STARTED
    if _STARTED and dist.is_initialized():
        dist.destroy_process_group()
    _STARTED = False


def failed(e: BaseException) -> bool:
    """Whether e is a collective's failure (DistError exists from torch 2.2 on; gloo's are RuntimeErrors)."""
    kind = getattr(dist, "DistError", None)
    return (kind is not None and isinstance(e, kind)) or (isinstance(e, RuntimeError) and "gloo" in str(e).lower())


def peer_failed(e: BaseException, w: World) -> RunFailed:
    """One line for a collective that failed because another rank stopped (or timed out)."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    error = RunFailed(f"rank {w.rank} of {w.size}: another process of this run stopped or timed out ({first[:200]})")
    error.own = True
    return error


def check(cfg, w: World, closure: bool, min_batch: int, model: nn.Module, device: torch.device) -> None:
    """What data-parallel training cannot do, as a config error before anything is written."""
    if not w.active:
        return
    if device.type != "cuda" and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        min_batch //= 2  # unsynchronized batch norm needs 2 examples on every rank
    if cfg.backprop != "autograd":
        raise ConfigError(f"backprop={cfg.backprop} under torchrun: data-parallel training needs backprop=autograd")
    if closure:
        raise ConfigError(
            f"optim={cfg.optim.name} under torchrun: its step recomputes the loss; train it in one process"
        )
    if min_batch < w.size:
        raise ConfigError(
            f"trainer.batch_size={cfg.trainer.batch_size}: a batch of {min_batch} examples cannot be shared by "
            f"{w.size} processes; raise trainer.batch_size or use fewer processes"
        )
