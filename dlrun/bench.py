"""`make bench`: dlrun's trainer against a minimal hand-written PyTorch loop, in one process; then whole processes.

Both train the same MLP (64-256-256-10, Adam 1e-3, batch 32, 30 epochs) on digits held on the
device, from the same initial weights and data order, and both measure validation accuracy after
every epoch. dlrun's time is its `fit` as users run it (TensorBoard scalars and histograms,
metrics.jsonl, checkpoints); the raw loop does nothing else. Prints each time (median of several
interleaved repeats) and the ratio dlrun / raw.

Then whole processes (`startup`; alone with --only startup): `dlrun train` of the default config against
dlrun/bench_bare.py, the same job as a bare script that loads digits with scikit-learn, each a fresh
interpreter: imports, data, setup, training, final evaluation and exit, all counted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def raw_loop(cfg, epochs: int) -> float:
    """The hand-written reference: index batches, forward, loss, backward, step. Returns seconds."""
    from dlrun import losses, models
    from dlrun.data import build as build_data
    from dlrun.train.loop import epoch_order

    data = build_data(cfg.data)
    x, y = data.train.x, data.train.y
    torch.manual_seed(cfg.trainer.seed)
    model = models.build(cfg.model, data.task.input_shape, data.task.n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    bs = cfg.trainer.batch_size
    start = time.perf_counter()
    for epoch in range(epochs):
        order = epoch_order(cfg.trainer.seed, epoch, len(x))
        for i in range(0, len(x), bs):
            idx = order[i : i + bs]
            opt.zero_grad(set_to_none=True)
            loss = losses.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        model.eval()  # validation accuracy after every epoch, as any tutorial loop does
        with torch.no_grad():
            val_acc = (model(data.val.x).argmax(-1) == data.val.y).float().mean().item()
        model.train()
    assert 0.0 <= val_acc <= 1.0
    return time.perf_counter() - start


def dlrun_fit(cfg) -> float:
    from dlrun.train import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg.runs_dir = tmp
        return train(cfg)["train_time_s"]


def _wall(cmd: list[str]) -> float:
    """Seconds a fresh process takes to run `cmd`, start to exit."""
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return seconds


def startup(repeats: int = 5, epochs: int = 30) -> None:
    """Whole processes: `dlrun train` of the default config against dlrun/bench_bare.py (the same job written
    bare, loading digits with scikit-learn), each a fresh interpreter, interleaved; prints the medians and ratio."""
    bare = [sys.executable, str(Path(__file__).with_name("bench_bare.py")), str(epochs)]
    with tempfile.TemporaryDirectory() as tmp:
        ours = [sys.executable, "-m", "dlrun.cli", "train", f"runs_dir={tmp}", "trainer.progress=none"]
        ours += ["trainer.device=cpu", f"trainer.epochs={epochs}"]  # on the CPU, as the bare script
        first = _wall(ours), _wall(bare)  # warm-up: fills dlrun's data cache if empty, and the OS's file cache
        times: dict[str, list[float]] = {"bare": [], "dlrun": []}
        for i in range(repeats):  # interleaved, each side first every other time
            for name in ("bare", "dlrun") if i % 2 == 0 else ("dlrun", "bare"):
                times[name].append(_wall(bare if name == "bare" else ours))
    ratios = [o / b for o, b in zip(times["dlrun"], times["bare"], strict=True)]
    print(f"whole process, default config (MLP on digits, {epochs} epochs, 1 thread), {repeats} repeats")
    for name, label in (("bare", "bare PyTorch script"), ("dlrun", "dlrun train       ")):
        t = times[name]
        print(f"{label}: {statistics.median(t):.3f} s (median; min {min(t):.3f}, max {max(t):.3f})")
    print(
        f"ratio dlrun/bare  : {statistics.median(ratios):.3f} (median of pairs; min {min(ratios):.3f}, "
        f"max {max(ratios):.3f}); the first (warm-up) runs: dlrun {first[0]:.3f} s, bare {first[1]:.3f} s"
    )


def vectorized(
    k: int = 16, repeats: int = 2, threads: int = 1, only: str | None = None, device: str = "cpu", epochs: int = 30
) -> None:
    """K seeds as one vectorized group against K separate in-process runs of the same configs (same steps,
    same threads, configs composed before the clock starts), interleaved; prints the times and the ratio."""
    import copy

    from dlrun.config import compose
    from dlrun.train import train
    from dlrun.train.members import members

    cases = [
        (f"MLP on digits (the default config), {epochs} epochs", [f"trainer.epochs={epochs}"]),
        ("MNIST-1D CNN (experiment=mnist1d_cnn), 6001 steps", ["experiment=mnist1d_cnn", "data.val_fraction=0.1"]),
    ]
    for label, extra in cases:
        if only and only.lower() not in label.lower():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            base = [*extra, f"trainer.device={device}", "trainer.progress=none", f"trainer.threads={threads}"]
            base.append(f"runs_dir={tmp}")
            single = compose(base)
            grouped = compose([*base, f"trainer.seeds={list(range(k))}"])

            def separate(single=single) -> float:
                configs = []
                for seed in range(k):
                    cfg = copy.deepcopy(single)
                    cfg.trainer.seed = seed
                    configs.append(cfg)
                start = time.perf_counter()
                for cfg in configs:
                    train(cfg)
                return time.perf_counter() - start

            def together(grouped=grouped) -> float:
                specs = members(grouped, [], {})
                start = time.perf_counter()
                summary = train(specs)
                assert summary["status"] == "completed", summary["status"]
                return time.perf_counter() - start

            warm = [*base, "trainer.steps=2"]  # first-call costs (imports, data caches) hit neither timing
            train(compose(warm))
            train(members(compose([*warm, "trainer.seeds=[0,1]"]), [], {}))
            times: dict[str, list[float]] = {"separate": [], "vectorized": []}
            for i in range(repeats):  # interleaved, each side first every other time
                for name in ("separate", "vectorized") if i % 2 == 0 else ("vectorized", "separate"):
                    times[name].append(separate() if name == "separate" else together())
        sep, vec = statistics.median(times["separate"]), statistics.median(times["vectorized"])
        print(f"{label}: {k} seeds, {threads} thread(s), {repeats} repeats")
        print(f"  {k} separate runs : {sep:.2f} s ({', '.join(f'{t:.2f}' for t in times['separate'])})")
        print(f"  one group of {k}   : {vec:.2f} s ({', '.join(f'{t:.2f}' for t in times['vectorized'])})")
        print(f"  ratio group/separate: {vec / sep:.3f}")


def _sweep(tmp: str, name: str, args: list[str]) -> tuple[float, list[float], list[float]]:
    """A whole `dlrun sweep ARGS` process: (its seconds, each trial's wall time, each trial's train time)."""
    import optuna

    from dlrun.train import summary as summaries

    sweep_dir = Path(tmp) / name
    seconds = _wall([sys.executable, "-m", "dlrun.cli", "sweep", *args, "--dir", str(sweep_dir)])
    study = optuna.load_study(study_name=sweep_dir.name, storage=f"sqlite:///{sweep_dir / 'study.db'}")
    walls, trains = [], []
    for t in study.trials:
        walls.append((t.datetime_complete - t.datetime_start).total_seconds())
        runs = [summaries.read(sweep_dir / r) for r in t.user_attrs["runs"]]
        trains.append(max(r["train_time_s"] for r in runs))  # a group's members share their training
    return seconds, walls, trains


def sweeps(trials: int = 16, repeats: int = 1, epochs: int = 30, seeds: int = 4, configs: int = 2) -> None:
    """Whole `dlrun sweep` processes: a 16-trial sweep with warm workers against new processes (--cold), and
    a --seeds 0,1,2,3 sweep on digits with each configuration's seeds vectorized against a process per seed."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet = ["trainer.progress=none", "trainer.device=cpu", "trainer.threads=1"]
    lrs = ",".join(f"{0.001 * (i + 1):g}" for i in range(trials))
    grid = [f"optim.lr={lrs}", "trainer.epochs=2", *quiet]
    seed_list = ",".join(str(s) for s in range(seeds))
    lr_list = ",".join(("0.001", "0.003", "0.01", "0.03")[:configs])
    seeded = [f"optim.lr={lr_list}", f"trainer.epochs={epochs}", *quiet, "--seeds", seed_list]
    with tempfile.TemporaryDirectory() as tmp:
        _sweep(tmp, "warm-up", ["trainer.epochs=1", *quiet])  # fills the data cache
        runs: dict[str, list[tuple[float, list[float], list[float]]]] = {}
        for i in range(repeats):
            order = ("warm", "cold") if i % 2 == 0 else ("cold", "warm")
            for name in order:
                runs.setdefault(name, []).append(
                    _sweep(tmp, f"{name}{i}", [*grid, *(["--cold"] if name == "cold" else [])])
                )
            order = ("vectorized", "apart", "apart-cold") if i % 2 == 0 else ("apart-cold", "apart", "vectorized")
            for name in order:
                flags = {"vectorized": [], "apart": ["--vectorize", "0"], "apart-cold": ["--vectorize", "0", "--cold"]}
                runs.setdefault(name, []).append(_sweep(tmp, f"{name}{i}", [*seeded, *flags[name]]))
    print(
        f"dlrun sweep, {trials} trials of the default MLP on digits (2 epochs each, one at a time), {repeats} repeats"
    )
    for name, label in (("warm", "warm workers"), ("cold", "new processes (--cold)")):
        seconds = statistics.median(r[0] for r in runs[name])
        over = statistics.median(statistics.fmean(w - t for w, t in zip(r[1], r[2], strict=True)) for r in runs[name])
        print(f"  {label:24}: {seconds:.2f} s in all; per trial {over:.3f} s beyond its training")
    warm_s, cold_s = (statistics.median(r[0] for r in runs[name]) for name in ("warm", "cold"))
    print(f"  ratio warm/cold (whole sweep): {warm_s / cold_s:.3f}")
    print(f"dlrun sweep optim.lr={lr_list} --seeds {seed_list} (digits MLP, {epochs} epochs)")
    times = {name: statistics.median(r[0] for r in runs[name]) for name in ("vectorized", "apart", "apart-cold")}
    print(f"  seeds vectorized, warm (default)    : {times['vectorized']:.2f} s")
    print(f"  a process per seed, warm (--vectorize 0): {times['apart']:.2f} s")
    print(f"  a process per seed, cold (--vectorize 0 --cold): {times['apart-cold']:.2f} s")
    print(
        f"  ratio vectorized/per-seed cold: {times['vectorized'] / times['apart-cold']:.3f}; "
        f"vectorized/per-seed warm: {times['vectorized'] / times['apart']:.3f}"
    )


# ----------------------------------------------------------------------------- the trainer options
def step_times(overrides: list[str], steps: int) -> tuple[float, float]:
    """(seconds of the first training step, median seconds of the next `steps`) of dlrun's stepper, in process."""
    from dlrun.config import compose
    from dlrun.train.single import Single, build

    with tempfile.TemporaryDirectory() as tmp:
        sp = Single(build(compose([*overrides, f"runs_dir={tmp}", "trainer.diag_every=0"])))
        sp.epoch(0)
        times = []
        for i in range(steps + 1):
            b = i % sp.plan.steps_per_epoch
            start = time.perf_counter()
            sp.step(b, i + 1)
            times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:])


def matmul_peak(threads: int = 1, n: int = 1024, repeats: int = 5) -> float:
    """The machine's float32 matrix-multiply rate (FLOP/s) at `threads`: the best of several n x n x n products."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def group_step_rate(k: int = 16, steps: int = 200) -> tuple[float, float, float]:
    """A K-member digits-MLP group's training step at one thread: (seconds per step, FLOP/s achieved, the matmuls'
    share of the step's FLOPs). FLOPs counted as the matmuls' 2 m n k, forward and backward (the first layer's
    input gradient is not computed), over every member."""
    from dlrun.config import compose
    from dlrun.train.members import members
    from dlrun.train.vector import build_group

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose(["trainer.device=cpu", "trainer.threads=1", f"runs_dir={tmp}", f"trainer.seeds={list(range(k))}"])
        sp = build_group(members(cfg, [], {}))
        sp.epoch(0)
        for b in range(5):
            sp.step(b, b + 1)
        start = time.perf_counter()
        for i in range(steps):
            sp.step(i % sp.plan.steps_per_epoch, i + 1)
        per_step = (time.perf_counter() - start) / steps
    dims = [64, *cfg.model.hidden, 10]
    batch = cfg.trainer.batch_size
    forward = sum(2 * batch * a * b for a, b in zip(dims, dims[1:], strict=False))
    first_input_grad = 2 * batch * dims[0] * dims[1]
    flops = k * (3 * forward - first_input_grad)
    return per_step, flops / per_step, 1.0


def trainer_options(threads: int = 1, steps: int = 200) -> None:
    """trainer.compile (speed-up and compile time) on the default MLP and the MNIST-1D CNN, bf16 against float32,
    and the group step's share of the matrix-multiply peak; all on the CPU at `threads`."""
    base = ["trainer.device=cpu", "trainer.progress=none", f"trainer.threads={threads}"]
    cases = [("default MLP on digits", base), ("MNIST-1D CNN", [*base, "experiment=mnist1d_cnn"])]
    print(f"trainer options, CPU, {threads} thread(s), median step of {steps}")
    for label, args in cases:
        _, eager = step_times(args, steps)
        first, compiled = step_times([*args, "trainer.compile=default"], steps)
        _, bf16 = step_times([*args, "trainer.precision=bf16"], steps)
        print(f"  {label}: float32 step {eager * 1e3:.3f} ms")
        print(f"    compile=default: step {compiled * 1e3:.3f} ms, speed-up {eager / compiled:.2f}x, first step "
              f"(compiling) {first:.1f} s")  # fmt: skip
        print(f"    precision=bf16 : step {bf16 * 1e3:.3f} ms, {bf16 / eager:.2f}x the float32 step")
    peak = matmul_peak(threads)
    per_step, rate, _ = group_step_rate()
    print(f"  matrix-multiply peak (1024^3 float32, {threads} thread): {peak / 1e9:.1f} GFLOP/s")
    print(f"  16-member digits-MLP group step: {per_step * 1e3:.3f} ms, {rate / 1e9:.1f} GFLOP/s, "
          f"{rate / peak:.0%} of the peak")  # fmt: skip


# the budgets of `make bench` (QUICK) and `make bench FULL=1`; a flag given on the command line wins
QUICK = {"repeats": 3, "epochs": 5, "seeds": 8, "vector_repeats": 1, "vector_case": "mlp", "startup_repeats": 1,
         "sweep_trials": 2, "sweep_seeds": 2, "sweep_configs": 1, "option_steps": 30}  # fmt: skip
FULL = {"repeats": 9, "epochs": 30, "seeds": 16, "vector_repeats": 2, "vector_case": None, "startup_repeats": 5,
        "sweep_trials": 16, "sweep_seeds": 4, "sweep_configs": 2, "option_steps": 200}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, help="interleaved repeats of the loop part")
    parser.add_argument("--epochs", type=int, help="epochs of the loop, startup, vector and seeded-sweep parts")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both loops (0: PyTorch's default)")
    parser.add_argument(
        "--only",
        choices=("loop", "startup", "vector", "sweep", "options"),
        help="run only this part (loop: trainer against a raw loop; startup: whole processes; vector: seed groups; "
        "sweep: warm workers and vectorized seeds in whole sweeps)",
    )
    parser.add_argument("--seeds", type=int, help="members of the vector part")
    parser.add_argument("--vector-repeats", type=int, help="repeats of the vector part")
    parser.add_argument("--vector-case", help="only the vector case whose name holds this (mlp, cnn)")
    parser.add_argument("--startup-repeats", type=int, help="process pairs of the startup part")
    parser.add_argument("--sweep-trials", type=int, help="trials of the warm/cold sweeps")
    parser.add_argument("--sweep-repeats", type=int, default=1, help="repeats of the sweep part")
    parser.add_argument("--sweep-seeds", type=int, help="seeds of the seeded sweep")
    parser.add_argument("--sweep-configs", type=int, choices=(1, 2, 3, 4), help="its learning rates")
    parser.add_argument("--option-steps", type=int, help="steps timed per trainer option")
    parser.add_argument(
        "--full", action="store_true", help="the long cases (about 15 minutes): more repeats, epochs, seeds, trials"
    )
    parser.add_argument("--out", type=Path, help="also write what is printed here, with the machine, for the docs")
    args = parser.parse_args()
    # a flag left out takes the budget's value: the default one fits in about 2 minutes of 2 cores
    for key, value in (FULL if args.full else QUICK).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.out is None:
        run(args)
        return
    printed = io.StringIO()
    with contextlib.redirect_stdout(Tee(sys.stdout, printed)):
        started = time.perf_counter()
        run(args)
    from dlrun.files import atomic_write
    from dlrun.machine import describe

    command = "make bench FULL=1" if args.full else "make bench"
    header = (
        f"Printed by `{command}` ({time.perf_counter() - started:.0f} s in all) on {describe()}, "
        f"{time.strftime('%Y-%m-%d')}.\n\n"
    )
    atomic_write(args.out, header + "```text\n" + printed.getvalue().strip() + "\n```\n")


class Tee(io.TextIOBase):
    """A stream that writes to several (the terminal and a buffer)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def run(args: argparse.Namespace) -> None:
    """The parts `args` asks for, each printing its timings and ratios."""
    if args.only == "startup":
        startup(args.startup_repeats, args.epochs)
        return
    if args.only == "vector":
        vectorized(args.seeds, args.vector_repeats, args.threads or 1, args.vector_case, epochs=args.epochs)
        return
    if args.only == "sweep":
        sweeps(args.sweep_trials, args.sweep_repeats, args.epochs, args.sweep_seeds, args.sweep_configs)
        return
    if args.only == "options":
        trainer_options(args.threads or 1, args.option_steps)
        return

    from dlrun.config import compose

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = [
        "trainer.device=cpu",
        f"trainer.epochs={args.epochs}",
        "trainer.progress=none",
        f"trainer.threads={args.threads}",
    ]
    raw_loop(compose(overrides), 1)  # warm-up: first-call costs (lazy imports, allocator) hit neither timing
    dlrun_fit(compose([*overrides, "trainer.epochs=1"]))
    raw, ours = [], []
    for _ in range(args.repeats):  # interleaved, so drifts of the machine hit both alike
        raw.append(raw_loop(compose(overrides), args.epochs))
        ours.append(dlrun_fit(compose(overrides)))
    ratios = [o / r for o, r in zip(ours, raw, strict=True)]
    print(
        f"MLP 64-256-256-10 on digits, {args.epochs} epochs, batch 32, Adam, {torch.get_num_threads()} threads, "
        f"{args.repeats} repeats"
    )
    print(f"raw PyTorch loop : {statistics.median(raw):.3f} s (median; min {min(raw):.3f}, max {max(raw):.3f})")
    print(f"dlrun trainer    : {statistics.median(ours):.3f} s (median; min {min(ours):.3f}, max {max(ours):.3f})")
    print(
        f"ratio dlrun/raw  : {statistics.median(ratios):.3f} (median of pairs; min {min(ratios):.3f}, "
        f"max {max(ratios):.3f}); ratio of the fastest runs {min(ours) / min(raw):.3f}"
    )
    if args.only == "loop":
        return
    print()
    startup(args.startup_repeats, args.epochs)
    print()
    vectorized(args.seeds, args.vector_repeats, args.threads or 1, args.vector_case, epochs=args.epochs)
    print()
    sweeps(args.sweep_trials, args.sweep_repeats, args.epochs, args.sweep_seeds, args.sweep_configs)
    print()
    trainer_options(args.threads or 1, args.option_steps)


if __name__ == "__main__":
    main()
