"""`make gpu-check`: what dlrun does on one GPU, in one script of under 8 minutes (CI has no GPU; not in make test).

1. the default run on CUDA, and a run interrupted and resumed, bitwise equal to the uninterrupted one (its
   dropout draws from the CUDA RNG, whose state the checkpoint carries);
2. ResNet-20 on CIFAR-shaped synthetic data (3x32x32, 10 classes) in float32, bf16 and float16, eager and
   compiled, contiguous and channels_last: dlrun's training step against a hand-written PyTorch loop of the
   same model and settings in the same process, in images per second;
3. 16 vectorized digits-MLP seeds against 16 separate runs on the GPU;
4. a one-GPU torchrun run (nccl, DistributedDataParallel of one process).

    python -m dlrun.gpucheck                 # on cuda
    python -m dlrun.gpucheck --device cpu --quick    # the same code paths on the CPU, smaller, as a smoke run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SYNTHETIC = "cifar_synthetic"


class StopAt:
    def __init__(self, step: int):
        self.step = step

    def on_eval(self, step, epoch, metrics):
        return "interrupted" if step >= self.step else None


def resume_check(device: str, tmp: str, epochs: int) -> None:
    from dlrun.config import compose
    from dlrun.train import checkpoint as ckpt
    from dlrun.train import train

    args = [f"runs_dir={tmp}", "trainer.progress=none", f"trainer.device={device}", "model.dropout=0.2"]
    start = time.perf_counter()
    whole = train(compose([*args, f"trainer.epochs={epochs}"]), run_dir=Path(tmp) / "whole")
    seconds = time.perf_counter() - start
    half = whole.steps_per_epoch * (epochs // 2)
    train(compose([*args, f"trainer.epochs={epochs}"]), callbacks=[StopAt(half)], run_dir=Path(tmp) / "cut")
    resumed = train(compose([f"resume={Path(tmp) / 'cut'}", f"trainer.epochs={epochs}", "trainer.progress=none"]))
    a = ckpt.load(Path(whole.run_dir) / "checkpoints" / "last.pt")["model"]
    b = ckpt.load(Path(resumed.run_dir) / "checkpoints" / "last.pt")["model"]
    equal = all(torch.equal(a[k], b[k]) for k in a)
    print(f"default run (MLP on digits, dropout 0.2, {epochs} epochs) on {whole.device}: {seconds:.1f} s, "
          f"test/acc {whole.metrics['test/acc']:.4f}")  # fmt: skip
    print(f"  interrupted at step {half} and resumed: weights bitwise equal to the uninterrupted run: {equal}")


def register_synthetic(n: int) -> None:
    """data=cifar_synthetic: n random CIFAR-shaped images in 10 classes (a throughput check needs no real data)."""
    from dlrun.data import DATASETS, Dataset, Split, Task
    from dlrun.options import DataConfig, declare

    declare(
        "data", SYNTHETIC, DataConfig, "CIFAR-shaped random images", input_kind="image", shape=(3, 32, 32), classes=10
    )

    def build(cfg):
        g = torch.Generator().manual_seed(cfg.seed)
        splits = [
            Split(torch.randn(m, 3, 32, 32, generator=g), torch.randint(0, 10, (m,), generator=g))
            for m in (n, 256, 256)
        ]
        return Dataset(SYNTHETIC, Task("multiclass", (3, 32, 32), "image", n_classes=10), *splits)

    DATASETS.register(SYNTHETIC)(build)


def dlrun_rate(args: list[str], steps: int) -> float:
    """Images per second of dlrun's training step (after 10 warm-up steps, compiling included there)."""
    from dlrun.config import compose
    from dlrun.train.single import Single, build

    sp = Single(build(compose(args)))
    sp.epoch(0)
    for b in range(10):
        sp.step(b, b + 1)
    _sync(sp.device)
    start = time.perf_counter()
    for i in range(steps):
        sp.step(10 + i % (sp.plan.steps_per_epoch - 10), 11 + i)
    _sync(sp.device)
    return steps * sp.plan.batch_size / (time.perf_counter() - start)


def raw_rate(args: list[str], steps: int) -> float:
    """Images per second of a hand-written loop: the same model, optimizer, precision, compile and layout."""
    from dlrun import losses, models
    from dlrun.config import compose
    from dlrun.data import build as build_data

    cfg = compose(args)
    t, device = cfg.trainer, torch.device(cfg.trainer.device)
    data = build_data(cfg.data).to(device)
    torch.manual_seed(t.seed)
    model = models.build(cfg.model, data.task.input_shape, data.task.n_classes).to(device)
    layout = torch.channels_last if t.memory_format == "channels_last" else torch.contiguous_format
    model.to(memory_format=layout)
    net = torch.compile(model) if t.compile != "false" else model
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, fused=device.type == "cuda")
    dtype = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}[t.precision]
    scaler = torch.amp.GradScaler(device.type) if t.precision == "16" else None
    x, y, bs = data.train.x, data.train.y, t.batch_size

    def step(i: int) -> None:
        idx = torch.randint(0, len(x), (bs,), device=device)
        xb = x[idx].contiguous(memory_format=layout)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = losses.cross_entropy(net(xb), y[idx])
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    for i in range(10):
        step(i)
    _sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    _sync(device)
    return steps * bs / (time.perf_counter() - start)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def resnet_rates(device: str, tmp: str, steps: int, n: int, precisions: list[str]) -> None:
    register_synthetic(n)
    print(f"ResNet-20 on {SYNTHETIC} (3x32x32), batch 128, Adam: images/s, dlrun / hand-written loop ({steps} steps)")
    for precision in precisions:
        for compile_mode in ("false", "default"):
            for layout in ("contiguous", "channels_last"):
                args = [f"runs_dir={tmp}", "model=resnet20", f"data={SYNTHETIC}", f"trainer.device={device}",
                        "trainer.batch_size=128", f"trainer.precision={precision}", f"trainer.compile={compile_mode}",
                        f"trainer.memory_format={layout}", "trainer.threads=0", "trainer.diag_every=0"]  # fmt: skip
                ours, raw = dlrun_rate(args, steps), raw_rate(args, steps)
                print(f"  precision={precision:4} compile={compile_mode:7} {layout:13}: dlrun {ours:9.0f}  "
                      f"raw {raw:9.0f}  ratio {ours / raw:.3f}")  # fmt: skip


def torchrun_check(device: str, tmp: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "dlrun", "train"]
    cmd += [f"runs_dir={tmp}", "name=torchrun", "trainer.progress=none", f"trainer.device={device}", "trainer.epochs=3"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    acc = [line for line in done.stdout.splitlines() if "test/acc" in line]
    print(f"torchrun, 1 process on {device} ({backend}, DistributedDataParallel): exit {done.returncode}, "
          f"{seconds:.1f} s; {acc[0].strip(' │|') if acc else done.stderr.strip()[-300:]}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="fewer steps and sizes (a smoke run, e.g. on the CPU)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            "gpu-check: no CUDA device here (python -m dlrun.gpucheck --device cpu --quick runs the paths)"
        )
    started = time.perf_counter()
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"dlrun gpu-check on {name}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        resume_check(args.device, tmp, 2 if args.quick else 6)
        precisions = ["32", "bf16"] if args.quick else ["32", "bf16", "16"]
        resnet_rates(args.device, tmp, 5 if args.quick else 50, 2048 if args.quick else 8192, precisions)
        from dlrun.bench import vectorized

        vectorized(k=4 if args.quick else 16, repeats=1, threads=1, only="mlp", device=args.device)
        torchrun_check(args.device, tmp)
    print(f"gpu-check: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
