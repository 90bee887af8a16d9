"""The run lifecycle, the same for a single run, each member of a vectorized group and a torchrun job.

A stepper says how a step runs: single.Single (one model; under torchrun, this rank's share) or
vector.Stacked (K members stepped as one). Everything else is here, once: `fit_runs` is the whole
story, top to bottom, with its hook points as plain functions: `log` (every trainer.log_every
steps, the only host sync), `evaluate_runs` (every evaluation: best weights, early stopping,
checkpoints) and `finish` (a run's checkpoint, final test metrics and summary). A group's members
are runs of their own: each is finished when it stops early or diverges, while the others go on.

Callbacks (dlrun/train/callbacks.py) only watch, but for a reason returned by on_eval ("pruned",
from a sweep's pruner), which ends the run after that evaluation.

The stepper's interface (single.Single and vector.Stacked):
    cfg, plan, device, world, task, loss_name, k (members), vectorized, sum_shape
    n_params()                        the parameters of one member
    epoch(e)                          the example order(s) of epoch e
    step(b, at) -> (loss, reg, n)     one optimizer step on batch b: losses [K] or (), examples trained on
    log_rows(loss_sum, reg_sum, n_steps, asked) -> ([scalars per member], stop asked by any rank)
    evaluate(split, prefix=None) -> [metrics per member]
    weights(k), load_weights(k, w), module(k), checkpoint(k), restore(k, payload)
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from dlrun.config import flat
from dlrun.train import checkpoint as ckpt
from dlrun.train import dist
from dlrun.train.callbacks import Callbacks
from dlrun.train.session import Run, abort, close_run, running, save
from dlrun.train.single import Setup, Single
from dlrun.train.state import TrainState, stop_on_signal


def info(sp, run_dir: Path, step: int, resumed: bool) -> dict[str, Any]:
    """What on_start receives."""
    return {
        "run_dir": str(run_dir),
        "total_steps": sp.plan.total_steps,
        "steps_per_epoch": sp.plan.steps_per_epoch,
        "step": step,
        "params": sp.n_params(),
        "device": str(sp.device),
        "loss": sp.loss_name,
        "resumed": resumed,
        "monitor": sp.plan.monitor,
        "world_size": sp.world.size,
    }


def fit_and_finish(sp, runs: list[Run], hooks: Callbacks) -> None:
    """fit, then finish the runs still going; a failure is recorded in each run's summary before it propagates."""
    clock = TrainState()
    try:
        fit_runs(sp, runs, hooks, clock)
        ending = [k for k, r in enumerate(runs) if r.status == "running"]
        if ending:
            finish(sp, runs, ending, clock.stop if clock.stop in ("interrupted", "pruned") else "completed", "")
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, mid-step; nothing new is checkpointed
        for r in running(runs):
            have = r.run_dir is not None and (r.run_dir / "checkpoints" / "last.pt").exists()
            then = "a resume continues from the last checkpoint" if have else "no checkpoint was written yet"
            abort(r, "interrupted", f"aborted by a second Ctrl-C; {then}")
        raise
    except BaseException as e:  # keep the record straight, then let it propagate
        for r in running(runs):
            try:
                abort(r, "failed", f"{type(e).__name__}: {e}")
            except OSError:  # a full disk: the error to report is the one that stopped the run
                pass
        raise


# ----------------------------------------------------------------------------- the loop
def fit(s: Setup, state: TrainState, logger, run_dir: Path | None, callbacks=()) -> None:
    """Train a bare Setup from state.step to its total steps (or an early stop / interrupt), writing nothing
    but to `logger` and `run_dir` when given."""
    sp = Single(s)
    run = Run(s.cfg, run_dir, run_dir is not None, state=state, logger=logger)
    sp.logger = logger
    fit_and_finish(sp, [run], Callbacks(callbacks))


def fit_runs(sp, runs: list[Run], hooks: Callbacks, clock: TrainState) -> None:
    """Train every running run to the plan's total steps; runs stop early or diverge on their own."""
    t, plan = sp.cfg.trainer, sp.plan
    spe = plan.steps_per_epoch
    going = running(runs)
    step = going[0].state.step if going else plan.total_steps
    loss_sum = torch.zeros(sp.sum_shape, device=sp.device)  # sums since the last log, on the device (no sync)
    reg_sum = torch.zeros(sp.sum_shape, device=sp.device)
    rules = StopRules(sp, going)
    since_log, t_log, t0 = 0, time.perf_counter(), time.perf_counter()
    with stop_on_signal(clock, defer=sp.world.active):
        while step < plan.total_steps and not clock.stop and going:
            epoch, first = divmod(step, spe)
            sp.epoch(epoch)
            rules.start_epoch(first)
            for b in range(first, spe):
                loss, reg, n = sp.step(b, step + 1)
                loss_sum += loss
                rules.after_step(loss)
                if reg is not None:
                    reg_sum += reg
                step += 1
                since_log += 1
                for r in going:
                    r.state.step = step
                    r.state.samples += n
                last = step >= plan.total_steps
                evaluate_now = (step % t.eval_every == 0) if t.eval_every else (b == spe - 1 or last)
                # log at the cadence, and before every evaluation so no NaN slips into a checkpoint unseen
                if step % t.log_every == 0 or evaluate_now or last:
                    log(sp, runs, clock, (loss_sum, reg_sum, since_log, time.perf_counter() - t_log), t0, hooks)
                    loss_sum.zero_()
                    reg_sum.zero_()
                    since_log, t_log = 0, time.perf_counter()
                if t.hist_every and step % t.hist_every == 0:
                    for k, r in enumerate(runs):
                        if r.status == "running" and r.logger:
                            r.logger.histograms(step, sp.module(k))
                if evaluate_now or last:
                    evaluate_runs(sp, runs, clock, t0, hooks)
                rules.check(sp, runs, step, epoch, b == spe - 1, last or bool(clock.stop), t0)
                going = running(runs)
                if last or clock.stop or not going:
                    break
    for r in going:
        r.state.train_time += time.perf_counter() - t0


class StopRules:
    """The rules that end a run which has converged: trainer.grad_tol (the gradient norm after a step falls
    below delta) and trainer.stop_at_zero_loss (a whole epoch at zero loss: the perceptron's pass without a
    mistake, whose steps with a nonzero loss, its updates, are counted in state.updates)."""

    def __init__(self, sp, going: list[Run]):
        self.tol, self.zero = sp.cfg.trainer.grad_tol, sp.cfg.trainer.stop_at_zero_loss
        self.epoch_sum = torch.zeros(sp.sum_shape, device=sp.device)  # this epoch's losses, on the device
        self.updates = torch.zeros(sp.sum_shape, device=sp.device, dtype=torch.long)  # since the last count
        self.whole_epoch = False  # a resumed run's first epoch is partial: it cannot show a clean pass
        if self.zero:
            for r in going:
                r.state.updates = max(r.state.updates, 0)

    def start_epoch(self, first: int) -> None:
        self.epoch_sum.zero_()
        self.whole_epoch = first == 0

    def after_step(self, loss: torch.Tensor) -> None:
        if self.zero:
            self.epoch_sum += loss
            self.updates += loss != 0

    def check(self, sp, runs: list[Run], step: int, epoch: int, epoch_end: bool, ending: bool, t0: float) -> None:
        if self.tol:
            message = f"the gradient norm fell below trainer.grad_tol={self.tol} at step {step}"
            converge(sp, runs, sp.grad_norms() < self.tol, message, t0)
        if self.zero and (epoch_end or ending):
            counts = self.updates.reshape(-1).tolist()  # one sync per epoch
            for k, r in enumerate(runs):
                if r.status == "running":
                    r.state.updates += int(counts[k if len(counts) > 1 else 0])
            self.updates.zero_()
            if epoch_end and self.whole_epoch:
                message = f"epoch {epoch + 1} had zero training loss on every example (no mistake)"
                converge(sp, runs, self.epoch_sum == 0, message, t0)


def converge(sp, runs: list[Run], done: torch.Tensor, message: str, t0: float) -> None:
    """Finish the running runs whose stopping rule holds (`done`: a flag per member, or one for a single run):
    trainer.grad_tol (||grad|| < delta after a step) or trainer.stop_at_zero_loss (a whole epoch at zero loss,
    the perceptron's pass without a mistake). Under torchrun every rank decides alike (a sum over ranks)."""
    if sp.world.active:
        done = done.to(torch.float32)
        dist.all_sum(done)
        done = done == sp.world.size
    flags = done.reshape(-1).tolist()
    ks = [k for k, r in enumerate(runs) if r.status == "running" and flags[k if len(flags) > 1 else 0]]
    if ks:
        finish(sp, runs, ks, "converged", f"converged: {message}", t0)


def log(sp, runs: list[Run], clock: TrainState, since: tuple, t0: float, hooks: Callbacks) -> None:
    """Each running run's train/loss (mean since the last log), lr, grad/norm, weight norms, perf/samples_per_s
    and epoch; a run whose loss is not finite has diverged."""
    loss_sum, reg_sum, n_steps, seconds = since
    rows, asked = sp.log_rows(loss_sum, reg_sum, n_steps, bool(clock.asked))
    if asked and not clock.stop:  # under torchrun: a signal reached some rank; all stop here
        clock.stop = "interrupted"
    shown = []
    for k, (r, row) in enumerate(zip(runs, rows, strict=True)):
        if r.status != "running":
            continue
        if not math.isfinite(row["train/loss"]):
            message = f"the training loss became {row['train/loss']} at or before step {r.state.step}"
            finish(sp, runs, [k], "diverged", message, t0)
            continue
        r.state.last_train_loss = row["train/loss"]
        row["perf/samples_per_s"] = n_steps * sp.plan.batch_size / max(seconds, 1e-9)
        row["epoch"] = r.state.step / sp.plan.steps_per_epoch
        if r.logger:
            r.logger.scalars(r.state.step, row)
        shown.append((r.state.step, row))
    if shown:
        hooks.log(shown[0][0], _mean([row for _, row in shown]))


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    """The rows themselves for one run; for a group, the mean over its running members."""
    if len(rows) == 1:
        return rows[0]
    return {key: statistics.fmean(r[key] for r in rows) for key in rows[0]}


def evaluate_runs(sp, runs: list[Run], clock: TrainState, t0: float, hooks: Callbacks) -> None:
    """Evaluate on the evaluation split; keep each run's best; write `last`; stop or finish runs on their own.
    With no val split (data.val_fraction=0) the evaluations are on test, and nothing is chosen by them."""
    t, split = sp.cfg.trainer, sp.plan.eval_split
    results = sp.evaluate(split)
    going = [k for k, r in enumerate(runs) if r.status == "running"]
    now = time.perf_counter()
    write = t.checkpoint and any(now - runs[k].state.last_save >= t.checkpoint_every for k in going)
    shown, stopped = {}, []
    for k in going:
        r, metrics = runs[k], results[k]
        value = metrics[f"{split}/loss"]
        if not math.isfinite(value):
            what = "validation" if split == "val" else split
            finish(sp, runs, [k], "diverged", f"the {what} loss became {value} at step {r.state.step}", t0)
            continue
        keep_best(sp, k, r, metrics)
        if write and r.writes:
            save(sp, k, r)
        shown[k] = metrics
        if t.patience and r.state.bad_evals >= t.patience:
            stopped.append(k)
    step = max((runs[k].state.step for k in going), default=0)
    reason = hooks.eval(step, step / sp.plan.steps_per_epoch, _mean(list(shown.values()))) if shown else None
    if sp.world.active:  # the callbacks run on rank 0; every rank stops with it
        reason = dist.from_main(reason, sp.world)
    if stopped:
        finish(sp, runs, stopped, "early_stop", "", t0)
    if sp.k > 1:  # a callback may end some members, e.g. a sweep's pruner the seeds of one trial
        ended = hooks.eval_members(step, {k: m for k, m in shown.items() if runs[k].status == "running"})
        if ended:
            finish(sp, runs, sorted(ended), "pruned", "pruned by the sweep's pruner", t0)
    if reason:  # a callback ends the run, e.g. a sweep's pruner: "pruned"
        clock.stop = str(reason)


def keep_best(sp, k: int, run: Run, metrics: dict[str, float]) -> None:
    """Log the evaluation; a better monitor value keeps the weights (best.pt), a worse one counts toward patience."""
    st, t = run.state, run.cfg.trainer
    st.last_eval = metrics
    if run.logger:
        run.logger.scalars(st.step, metrics)
    value = metrics.get(sp.plan.monitor)  # None on test: a test split never chooses weights or stops a run
    if value is None:
        return
    sp.observe(k, value)  # sched=plateau
    if sp.plan.better(value, st.best_value, t.min_delta):
        st.best_value, st.best_step, st.bad_evals = value, st.step, 0
        if t.checkpoint and run.writes:
            st.best_weights = sp.weights(k)
    else:
        st.bad_evals += 1


# ----------------------------------------------------------------------------- the end of a run
def finish(sp, runs: list[Run], ks: list[int], status: str, message: str, t0: float | None = None) -> None:
    """End runs ks: checkpoints, final test metrics (completed runs), TensorBoard hparams and summary."""
    t = sp.cfg.trainer
    for k in ks:
        r = runs[k]
        if t0 is not None and status in ("diverged", "early_stop", "pruned", "converged"):
            r.state.train_time += time.perf_counter() - t0  # it stops here; the others go on
        if t.checkpoint and r.writes:
            save(sp, k, r, last=status != "diverged")  # a divergence keeps the last good last.pt
    completed = [k for k in ks if status in ("completed", "early_stop", "converged")]
    metrics = final_metrics(sp, runs, completed) if completed else {}
    for k in ks:
        runs[k].summary.compile = getattr(sp, "compile", None)
        close_run(runs[k], status, message, metrics.get(k, {}), sp.plan.monitor, sp.plan.steps_per_epoch)


def final_metrics(sp, runs: list[Run], ks: list[int]) -> dict[int, dict[str, float]]:
    """Test metrics of runs ks (with the best weights for trainer.test_with=best), and the train split in eval
    mode (no dropout), for the generalization gap train_final/acc - test/acc."""
    kept = {}
    if sp.cfg.trainer.test_with == "best":
        dist.barrier(sp.world)  # rank 0 has written best.pt
        for k in ks:
            if runs[k].state.best_step >= 0:  # test the best weights, then put the slices back (others go on)
                kept[k] = sp.weights(k)
                best = runs[k].run_dir / "checkpoints" / "best.pt"
                payload = ckpt.load(best, sp.device)
                ckpt.load_weights(sp.module(k), payload, best, flat(runs[k].cfg))
                sp.load_weights(k, payload["model"])
    test, train_final = sp.evaluate("test"), sp.evaluate("train", prefix="train_final")
    for k, weights in kept.items():
        if sp.k > 1:
            sp.load_weights(k, weights)
    out = {}
    for k in ks:
        out[k] = {**test[k], **train_final[k]}
        if runs[k].logger:
            runs[k].logger.scalars(runs[k].state.step, out[k])
    return out
