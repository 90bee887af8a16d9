"""The sweep loop: an Optuna study is the ledger; every training is a process of its own.

One Optuna trial is one configuration. Its value is the mean of the metric over the seeds
(`--seeds 0,1,2`), and each seed is its own run directory:

    <sweep>/sweep.yaml                      the sweep's arguments (all that --resume needs)
    <sweep>/study.db                        the Optuna study (SQLite), unless --storage names another
    <sweep>/trials/<n>/                     trial n's run (one seed), or
    <sweep>/trials/<n>/seed<k>/             trial n's run with trainer.seed=k
    <sweep>/trials/<n>/summary.json         its seeds' vectorized group (mean and std), when they trained as one
    <sweep>/packs/<n>/                      a group of several trials (--vectorize K): pack.json, summary.json
    <sweep>/tensorboard/                    HParams: one session per trial with its final metrics

The parent asks the study for a configuration, starts up to --jobs training processes
(`python -m dlrun.sweep.trial`, forked warm: see warm.py), and tells the study each trial's
result when its seeds are done. A trial's seeds train in one process as one vectorized model
when its configuration allows it (members.refusal), and with `--vectorize K` up to K trials whose
configurations differ only in vary=True keys share that process (members.packable); a pack's
trials are asked together, so the budget counts them as running from the start.
A training that crashes, diverges or is killed fails its trial (FAIL, with the reason in the
trial's user attributes) and the sweep goes on.

The budget (--trials N) counts finished trials (COMPLETE, PRUNED, and FAIL on the trial's merits)
and running ones, across every process working the study. A trial whose sweep process died
(killed, Ctrl-C, a lost machine) is failed and queued again with the same parameters; it does
not count, its retry does. So a killed and resumed sweep ends with exactly N trials.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from dlrun.errors import ConfigError
from dlrun.files import check_writable
from dlrun.sweep.results import direction_of
from dlrun.sweep.space import SAMPLERS, Space, parse
from dlrun.sweep.study import (
    HEARTBEAT_S,
    MAX_RETRY,
    PRUNERS,
    SweepSpec,
    make_pruner,
    open_storage,
    quiet_optuna,
    retried,
)

SPEC_ATTR = "dlrun.sweep"  # the study's user attribute holding the sweep's arguments


# ----------------------------------------------------------------------------- Optuna pieces
class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, without its study.stop() at the last point (which only study.optimize
    allows); the sweep loop counts its own budget."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def make_sampler(name: str, space: Space) -> optuna.samplers.BaseSampler:
    if name == "grid":
        return GridSampler(space.grid())
    if name == "random":
        return optuna.samplers.RandomSampler()
    if name == "tpe":
        return optuna.samplers.TPESampler()
    raise ConfigError(f"--sampler {name}: unknown; choose from: {', '.join(SAMPLERS)}")


def counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials the budget counts: finished (a failure on its merits included) or running."""
    again = retried(trials)
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return [t for t in trials if t.state in states or (t.state == TrialState.FAIL and t.number not in again)]


def failures(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    again = retried(trials)
    return [t for t in trials if t.state == TrialState.FAIL and t.number not in again]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# a trial's reason with these words failed for its disk, not for its configuration (write_error's words,
# and the system's for ENOSPC, EDQUOT and EROFS)
OUTSIDE = (
    "no space left on the device",
    "not writable (",
    *(os.strerror(code) for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)),
)


def outside(reason: str) -> bool:
    """Whether a trial failed for a reason outside it (its disk filled or turned read-only), not its own."""
    return any(words in reason for words in OUTSIDE)


@contextlib.contextmanager
def signals_held():
    """SIGINT and SIGTERM that arrive in the block are held and delivered when it ends (to the handlers that
    were in place), so that what the block does is never cut in half."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    old = {sig: signal.signal(sig, lambda signum, frame: arrived.append(signum)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(arrived):
            signal.raise_signal(sig)


UNSIGNED_S = 2.0  # a running trial with no worker recorded this long after its start was left by a killed sweep


def recover(study: optuna.Study) -> list[int]:
    """Fail, and queue again, the running trials of this machine's sweep processes that have died; queue
    again the trials that failed for a reason outside them (a full disk), once each.

    A trial of a dead process on another machine is found by its heartbeat instead, after GRACE_S.
    """
    storage = study._storage
    callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    host = socket.gethostname()
    recovered = []
    trials = study.get_trials(deepcopy=False)
    again = retried(trials)
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("outside") and t.number not in again:
            callback(study, t)  # a copy with the same parameters, queued; the failed one gives way to it
            recovered.append(t.number)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if "worker" not in t.user_attrs:  # its process died between asking for it and signing it (a kill -9)
            started = t.datetime_start or datetime.datetime.now()
            if (datetime.datetime.now() - started).total_seconds() < UNSIGNED_S:
                continue  # another worker may be signing it this moment
            why = "its sweep process stopped before it recorded itself; queued again"
        elif worker_host != host or not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        else:
            why = f"its sweep process ({pid}) stopped; queued again"
        storage.set_trial_user_attr(t._trial_id, "reason", why)
        try:
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        callback(study, storage.get_trial(t._trial_id))
        recovered.append(t.number)
    return recovered


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_study(spec: SweepSpec, sweep_dir: Path, space: Space) -> optuna.Study:
    """Create the study, or join it (another process or machine may work the same one)."""
    quiet_optuna()
    storage = open_storage(spec.url(sweep_dir))
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=spec.study,
            direction=spec.direction,
            sampler=make_sampler(spec.sampler, space),
            pruner=make_pruner(spec.pruner),
            load_if_exists=True,
        )
    except ValueError as e:
        raise ConfigError(f"--study {spec.study}: {str(e).splitlines()[0]}") from None
    if study.direction.name.lower() != spec.direction:
        raise ConfigError(
            f"--study {spec.study}: the study exists and it {study.direction.name.lower()}s; "
            f"this sweep would {spec.direction} {spec.metric}"
        )
    saved = study.user_attrs.get(SPEC_ATTR)
    if saved is None:
        study.set_user_attr(SPEC_ATTR, asdict(spec))
        study.set_metric_names([spec.metric])  # optuna-dashboard labels the value with it
    elif not spec.same_sweep(saved):
        raise ConfigError(
            f"--study {spec.study}: the study belongs to another sweep ({' '.join(saved['overrides'])}, "
            f"--sampler {saved['sampler']}, --metric {saved['metric']}); join it with the same arguments"
        )
    return study


# ----------------------------------------------------------------------------- one trial, its seeds
@dataclass
class SeedRun:
    """One training process: a seed of a trial."""

    seed: int | None
    run_dir: Path
    proc: Any  # subprocess.Popen, or warm.Worker (the same methods); a pack's members share one
    log: Any = None  # the open output.log of a cold process
    log_path: Path | None = None  # the process's output.log when it is not in run_dir (a pack's)


@dataclass
class OpenTrial:
    """A trial this process runs: its configuration, the seeds still to start, the results so far."""

    trial: optuna.Trial
    overrides: list[str]
    pending: list[int | None]  # seeds not started yet
    running: list[SeedRun] = field(default_factory=list)
    results: dict[Any, dict[str, Any]] = field(default_factory=dict)  # seed -> outcome (see outcome())
    failed: str = ""  # why the trial failed
    pruned: bool = False
    started: float = field(default_factory=time.time)
    cfg: Any = None  # its composed config when its seeds train as one vectorized group (else None)

    @property
    def done(self) -> bool:
        return not self.running and (bool(self.failed) or self.pruned or not self.pending)


def outcome(run_dir: Path, code: int, metric: str, log: Path | None = None) -> dict[str, Any]:
    """What a training process left: status, final metrics, wall time and, for a failure, the reason."""
    from dlrun.train import summary as summaries

    summary = summaries.read(run_dir) or {}
    status = summary.get("status", "failed")
    if code != 0 and status in ("running", "completed"):
        status = "failed"  # the process died after writing its summary
    reason = ""
    if status not in ("completed", "pruned"):
        reason = summary.get("message") or _last_line(log or run_dir / "output.log") or _exit_reason(code)
    elif metric not in summary.get("metrics", {}):
        status = "failed"
        reason = f"no {metric} in the run's metrics (it has {', '.join(summary.get('metrics', {}))})"
    return {
        "status": status,
        "metrics": summary.get("metrics", {}),
        "wall_time_s": summary.get("wall_time_s") or 0.0,
        "reason": reason.removeprefix("error: "),
        "run_dir": str(run_dir),
        "group": summary.get("group"),  # the vectorized group it trained in, if any
    }


def wall_time(results: list[dict[str, Any]]) -> float:
    """Seconds the runs took: the sum over processes (the members of a group share its wall time)."""
    groups: dict[str, float] = {}
    alone = 0.0
    for r in results:
        if r.get("group"):
            groups[r["group"]] = max(groups.get(r["group"], 0.0), r["wall_time_s"])
        else:
            alone += r["wall_time_s"]
    return alone + sum(groups.values())


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _exit_reason(code: int) -> str:
    if code < 0:
        return f"the training process was killed by {signal.Signals(-code).name}"
    return f"the training process exited with status {code}"


# ----------------------------------------------------------------------------- the loop
class Runner:
    """Keeps up to `jobs` training processes busy until the budget is used; tells the study each result."""

    def __init__(
        self,
        spec: SweepSpec,
        sweep_dir: Path,
        study: optuna.Study,
        space: Space,
        on_trial: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.spec, self.sweep_dir, self.study, self.space = spec, Path(sweep_dir), study, space
        self.storage = study._storage  # the study's storage (heartbeats, state changes)
        self.on_trial = on_trial or (lambda info: None)
        self.open: dict[int, OpenTrial] = {}
        self.no_more = ""  # why no new trial is asked: the budget is used, too many failures
        self.last_beat = 0.0

    def run(self) -> dict[str, Any]:
        with _sigterm_as_interrupt():
            try:
                while True:
                    self.reap()
                    self.launch()
                    if not self.running():
                        break
                    self.heartbeat()
                    time.sleep(0.1)
            except KeyboardInterrupt:
                self.abort("the sweep was interrupted")
                raise
            except BaseException as e:  # no training outlives the sweep loop
                self.abort(f"the sweep stopped: {e}")
                raise
        return self.summary()

    def running(self) -> list[SeedRun]:
        return [r for t in self.open.values() for r in t.running]

    def procs(self) -> list[Any]:
        """The training processes now running (a pack's members share one)."""
        return list({id(r.proc): r.proc for r in self.running()}.values())

    # -- starting trainings
    def launch(self) -> None:
        while len(self.procs()) < self.spec.jobs:
            if self.start_next_seed() or self.start_pack():
                continue
            if self.no_more or not self.ask():
                if self.start_pack():  # no more trials to ask: what waits starts as it is
                    continue
                return

    def start_next_seed(self) -> bool:
        for t in self.open.values():
            if t.cfg is not None:
                continue  # its seeds go in a pack
            gated = self.spec.pruner != "none" and t.results == {} and t.running  # the first seed decides pruning
            if t.pending and not t.failed and not t.pruned and not gated:
                self.start(t, t.pending.pop(0))
                return True
        return False

    def ask(self) -> bool:
        """Open a new trial if the budget allows; False when it does not."""
        optuna.storages.fail_stale_trials(self.study)  # trials of workers lost elsewhere are queued again
        trials = self.study.get_trials(deepcopy=False)
        if len(failures(trials)) >= (self.spec.max_failures or float("inf")):
            self.no_more = "failures"
            return False
        if len(counted(trials)) >= self.spec.trials:
            self.no_more = "budget"
            return False
        with signals_held():  # a SIGTERM between the ask and self.open would leave the trial RUNNING, unowned
            trial = self.study.ask(self.space.distributions)
            trial.set_user_attr("worker", worker_id())  # at once: `recover` finds a dead process's trials by it
            # another process may have taken the last place between the count and the ask: the lowest numbers win
            trials = self.study.get_trials(deepcopy=False)
            if sum(t.number < trial.number for t in counted(trials)) >= self.spec.trials:
                self.storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)  # for a later run
                self.no_more = "budget"
                return False
            self.storage.record_heartbeat(trial._trial_id)
            overrides = self.space.overrides(trial.params)
            trial.set_user_attr("overrides", overrides)
            trial.set_user_attr("reason", "")
            trial.set_user_attr("outside", False)  # a retry of a trial the disk failed starts clean
            seeds = list(self.spec.seeds) if self.spec.seeds else [None]
            t = self.open[trial.number] = OpenTrial(trial, overrides, pending=seeds)
        if self.spec.vectorize >= 1 and (len(seeds) > 1 or self.spec.vectorize > 1):
            from dlrun.config import compose
            from dlrun.train.members import refusal

            cfg = compose(overrides)
            if refusal(cfg) is None:
                t.cfg = cfg  # else its seeds run one process each
        return True

    def start_pack(self) -> bool:
        """Start one vectorized process for up to --vectorize waiting trials that may train together.

        Returns False when none waits, or when fewer than --vectorize wait and more may be asked.
        """
        from dlrun.train.members import packable

        waiting = [t for t in self.open.values() if t.cfg is not None and t.pending and not t.running]
        if not waiting:
            return False
        first, rest = waiting[0], waiting[1:]
        fits = [t for t in rest if packable(first.cfg, t.cfg) is None]
        pack = [first, *fits][: max(1, self.spec.vectorize)]
        if len(pack) < self.spec.vectorize and not self.no_more and len(fits) == len(rest):
            return False  # room in the pack: ask for another trial first
        members = [(t, seed) for t in pack for seed in t.pending]
        if len(members) == 1:  # a single run: no group
            self.start(first, first.pending.pop(0))
            return True
        if len(pack) == 1:
            group_dir = self.sweep_dir / "trials" / str(first.trial.number)
        else:
            group_dir = self.sweep_dir / "packs" / str(first.trial.number)
        group_dir.mkdir(parents=True, exist_ok=True)
        info: dict[str, Any] = {"group_dir": str(group_dir), "members": []}
        runs = []
        for t, seed in members:
            run_dir = self.run_dir(t, seed)
            info["members"].append(
                {
                    "trial": t.trial.number,
                    "trial_id": t.trial._trial_id,
                    "run_dir": str(run_dir),
                    "overrides": [*t.overrides, *([f"trainer.seed={seed}"] if seed is not None else [])],
                }
            )
            runs.append((t, seed, run_dir))
        if self.spec.pruner != "none":
            info.update(
                storage=self.spec.url(self.sweep_dir),
                study=self.spec.study,
                pruner=self.spec.pruner,
                report=self.report_metric(),
            )
        from dlrun.files import atomic_write

        atomic_write(group_dir / "pack.json", json.dumps(info, indent=2) + "\n")
        cmd = [sys.executable, "-m", "dlrun.sweep.trial", "--pack", str(group_dir / "pack.json")]
        cmd += ["--parent", str(os.getpid())]
        log_path = group_dir / "output.log"
        proc, log = self.spawn(cmd, log_path)
        for t, seed, run_dir in runs:
            t.running.append(SeedRun(seed, run_dir, proc, log, log_path))
        for t in pack:
            t.pending = []
        return True

    def run_dir(self, t: OpenTrial, seed: int | None) -> Path:
        trial_dir = self.sweep_dir / "trials" / str(t.trial.number)
        return trial_dir if seed is None else trial_dir / f"seed{seed}"

    def start(self, t: OpenTrial, seed: int | None) -> None:
        run_dir = self.run_dir(t, seed)
        run_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "dlrun.sweep.trial", "--run-dir", str(run_dir), "--parent", str(os.getpid())]
        if self.spec.pruner != "none" and not t.results and not t.running:  # the first seed reports
            cmd += ["--storage", self.spec.url(self.sweep_dir), "--study", self.spec.study]
            cmd += [
                "--trial-id",
                str(t.trial._trial_id),
                "--report",
                self.report_metric(),
                "--pruner",
                self.spec.pruner,
            ]
        cmd += ["--", *t.overrides, *([f"trainer.seed={seed}"] if seed is not None else [])]
        t.running.append(SeedRun(seed, run_dir, *self.spawn(cmd, run_dir / "output.log")))

    def spawn(self, cmd: list[str], log_path: Path) -> tuple[Any, Any]:
        """A training process for `python -m dlrun.sweep.trial ARGS`: forked warm, or a new Python (--cold)."""
        if self.spec.warm:
            from dlrun.sweep.warm import Worker

            return Worker(cmd[3:], log_path), None
        log = open(log_path, "wb")
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL), log

    def report_metric(self) -> str:
        """The metric the pruner sees at each evaluation: the val metric behind --metric."""
        name = self.spec.metric.removeprefix("best/")
        return "val/" + name.split("/", 1)[1] if name.startswith("test/") else name

    # -- collecting results
    def reap(self) -> None:
        for t in list(self.open.values()):
            for r in list(t.running):
                code = r.proc.poll()
                if code is None:
                    continue
                if r.log:
                    r.log.close()
                t.running.remove(r)
                result = outcome(r.run_dir, code, self.spec.metric, r.log_path)
                t.results[r.seed] = result
                if result["status"] == "pruned":
                    t.pruned = True
                elif result["status"] != "completed" and not t.failed:
                    t.failed = f"seed {r.seed}: {result['reason']}" if r.seed is not None else result["reason"]
                    for other in t.running:  # the trial has failed: its other seeds need not finish
                        if not self.shared(other.proc, t):
                            other.proc.send_signal(signal.SIGTERM)
            if t.done:
                self.finish(t)

    def shared(self, proc: Any, t: OpenTrial) -> bool:
        """Whether proc also trains another trial (a pack): then it is not stopped for t's sake."""
        return any(r.proc is proc for other in self.open.values() if other is not t for r in other.running)

    def finish(self, t: OpenTrial) -> None:
        """Tell the study: the mean over seeds (COMPLETE), PRUNED, or FAIL with the reason."""
        seeds = [s for s in (self.spec.seeds or [None]) if s in t.results]
        results = [t.results[s] for s in seeds]
        metrics: dict[str, list[float]] = {}
        for result in results:
            for name, value in result["metrics"].items():
                metrics.setdefault(name, []).append(value)
        trial = t.trial
        values = [r["metrics"][self.spec.metric] for r in results if self.spec.metric in r["metrics"]]
        status = "failed" if t.failed else "pruned" if t.pruned else "completed"
        try:
            trial.set_user_attr("seeds", [s for s in seeds if s is not None])
            trial.set_user_attr("metrics", metrics)
            trial.set_user_attr("runs", [str(Path(r["run_dir"]).relative_to(self.sweep_dir)) for r in results])
            trial.set_user_attr("time_s", round(wall_time(results), 3))
            if t.failed:
                trial.set_user_attr("reason", t.failed)
                if outside(t.failed):  # a full disk is no verdict on the configuration: resume runs it again
                    trial.set_user_attr("outside", True)
                self.study.tell(trial, state=TrialState.FAIL)
            elif t.pruned:
                self.study.tell(trial, state=TrialState.PRUNED)
            else:
                self.study.tell(trial, statistics.fmean(values))
        except optuna.exceptions.UpdateFinishedTrialError:
            # another process found no heartbeat for GRACE_S, took the trial as lost and queued it again
            status = "lost"
        del self.open[trial.number]
        write_hparams(self.study, self.spec, self.sweep_dir, self.space)
        trials = self.study.get_trials(deepcopy=False)
        self.on_trial(
            {
                "trial": trial.number,
                "status": status,
                "overrides": [self.space_override(name, value) for name, value in trial.params.items()],
                "values": values,
                "seeds": len(seeds),
                "time_s": time.time() - t.started,
                "reason": t.failed,
                "done": len([x for x in counted(trials) if x.state.is_finished()]),
                "budget": self.spec.trials,
            }
        )

    def space_override(self, name: str, value: Any) -> str:
        axis = next(a for a in self.space.axes if a.name == name)
        return axis.override(value)

    def heartbeat(self) -> None:
        if time.time() - self.last_beat < HEARTBEAT_S:
            return
        for t in self.open.values():
            self.storage.record_heartbeat(t.trial._trial_id)
        self.last_beat = time.time()

    def abort(self, reason: str) -> None:
        """Stop every training (SIGTERM: each writes its checkpoint), then fail and queue their trials again."""
        for proc in self.procs():  # once each: a second signal would abort a pack without its checkpoints
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 30
        for proc in self.procs():
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for r in self.running():
            if r.log:
                r.log.close()
        callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
        for t in self.open.values():
            self.storage.set_trial_user_attr(t.trial._trial_id, "reason", f"{reason}; queued again")
            if self.storage.set_trial_state_values(t.trial._trial_id, TrialState.FAIL):
                callback(self.study, self.storage.get_trial(t.trial._trial_id))
        self.open.clear()

    def summary(self) -> dict[str, Any]:
        trials = self.study.get_trials(deepcopy=False)
        done = counted(trials)
        fails = failures(trials)
        return {
            "sweep_dir": str(self.sweep_dir),
            "study": self.spec.study,
            "storage": self.spec.url(self.sweep_dir),
            "completed": sum(t.state == TrialState.COMPLETE for t in done),
            "pruned": sum(t.state == TrialState.PRUNED for t in done),
            "failed": len(fails),
            "running_elsewhere": sum(t.state == TrialState.RUNNING for t in done),
            "budget": self.spec.trials,
            "stopped": self.no_more,
            "last_failure": (f"trial {fails[-1].number}: {fails[-1].user_attrs.get('reason', '')}" if fails else ""),
        }


def write_hparams(study: optuna.Study, spec: SweepSpec, sweep_dir: Path, space: Space) -> None:
    """<sweep>/tensorboard/: TensorBoard's HParams view of the trials so far."""
    from dlrun.sweep import hparams, results

    hparams.write(results.from_study(study, spec, str(sweep_dir)), Path(sweep_dir) / "tensorboard", space)


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler's stop) takes the same path as Ctrl-C: stop the trainings, queue their trials."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# ----------------------------------------------------------------------------- entry points
def sweep_name(cfg) -> str:
    return cfg.name or cfg.experiment or f"{cfg.model.name}-{cfg.data.name}"


def new_sweep_dir(runs_dir: str, name: str) -> Path:
    """<runs_dir>/sweeps/<name>-<YYYY-MM-DD_HH-MM-SS>/, with -1, -2, ... when taken."""
    parent = Path(runs_dir) / "sweeps"
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    for i in range(1000):
        path = parent / (f"{name}-{stamp}" if i == 0 else f"{name}-{stamp}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot create a sweep directory under {parent}")


def resolve_metric(cfg) -> str:
    """The run's monitor: trainer.monitor, or auto = val/acc for classification, val/loss for regression."""
    if cfg.trainer.monitor != "auto":
        return cfg.trainer.monitor
    from dlrun.options.data import known_task

    task = known_task(cfg.data)
    if not task:  # only the data can tell (data=files with data.task=auto)
        from dlrun.data import build

        task = "classification" if build(cfg.data).task.is_classification else "regression"
    return "val/acc" if task == "classification" else "val/loss"


def plan(
    overrides: list[str],
    *,
    sampler: str = "auto",
    trials: int | None = None,
    metric: str = "auto",
    direction: str = "auto",
    seeds: list[int] | None = None,
    pruner: str = "none",
    storage: str | None = None,
    study: str | None = None,
    directory: Path | None = None,
    max_failures: int | None = None,
    jobs: int = 1,
    warm: bool = True,
    vectorize: int = 1,
) -> tuple[SweepSpec, Path]:
    """Check a sweep's arguments and compose every point of its space; then make its directory.

    Returns the spec (saved as sweep.yaml when the sweep runs) and the sweep directory.
    """
    from dlrun.config import compose
    from dlrun.sweep.space import check, experiment_sweeps

    typed = {o.split("=", 1)[0] for o in overrides}
    overrides = [o for o in experiment_sweeps(overrides) if o.split("=", 1)[0] not in typed] + list(overrides)
    space = parse(overrides)
    if sampler == "auto":
        sampler = "tpe" if space.size() is None else "grid"
    if sampler not in SAMPLERS:
        raise ConfigError(f"--sampler {sampler}: unknown; choose from: auto, {', '.join(SAMPLERS)}")
    if sampler == "grid":
        space.grid()  # refuses a continuous axis, naming it
    if pruner not in PRUNERS:
        raise ConfigError(f"--pruner {pruner}: unknown; choose from: {', '.join(PRUNERS)}")
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: must be >= 1")
    if vectorize < 0:
        raise ConfigError(f"--vectorize {vectorize}: must be >= 0 (0: every seed in a process of its own)")
    if trials is not None and trials < 1:
        raise ConfigError(f"--trials {trials}: must be >= 1")
    if max_failures is not None and max_failures < 1:
        raise ConfigError(f"--max-failures {max_failures}: must be >= 1")
    if metric != "auto" and "/" not in metric:
        raise ConfigError(f"--metric {metric}: name a final metric as split/name, e.g. val/acc, test/acc, best/val/acc")
    if direction not in ("auto", "maximize", "minimize"):
        raise ConfigError(f"--direction {direction}: choose from: auto, maximize, minimize")
    if storage is not None and study is None:
        raise ConfigError("--storage needs --study NAME (the study that the workers share)")
    check(space, compose)  # every point of the space composes, or one line names the key
    cfg = compose(space.overrides(space.first()))
    if metric == "auto":
        metric = resolve_metric(cfg)
    if direction == "auto":
        direction = direction_of(metric, direction_option=True)
    size = space.size() if sampler == "grid" else None
    if trials is None:
        trials = size if size is not None else 20
    elif size is not None:
        trials = min(trials, size)
    if storage is not None:
        open_storage(storage, heartbeat=False)  # a wrong URL or a missing driver fails before a directory is made
    name = sweep_name(cfg)
    sweep_dir = Path(directory) if directory is not None else None
    check_writable(
        sweep_dir if sweep_dir is not None else Path(cfg.runs_dir),
        f"--dir {directory}" if directory is not None else f"runs_dir={cfg.runs_dir}",
    )
    if sweep_dir is None:
        sweep_dir = new_sweep_dir(cfg.runs_dir, name)
    spec = SweepSpec(
        overrides=overrides,
        sampler=sampler,
        trials=trials,
        metric=metric,
        direction=direction,
        study=study or sweep_dir.name,
        seeds=list(seeds) if seeds else None,
        pruner=pruner,
        storage=storage,
        max_failures=max_failures,
        jobs=jobs,
        plugins=list(cfg.plugins),
        warm=warm,
        vectorize=vectorize,
    )
    if directory is not None:
        _check_own_folder(spec, sweep_dir)
    return spec, sweep_dir


def _check_own_folder(spec: SweepSpec, sweep_dir: Path) -> None:
    """--dir names a new folder, or the folder of this very sweep (workers sharing a study); never a run's
    folder or another sweep's, whose files the sweep would change."""
    if not sweep_dir.is_dir():
        return
    if (sweep_dir / "summary.json").exists() or (sweep_dir / "config.yaml").exists():
        raise ConfigError(f"--dir {sweep_dir}: a run's folder; give a new folder for the sweep")
    if not (sweep_dir / "sweep.yaml").exists():
        if any(p.name in ("trials", "study.db") for p in sweep_dir.iterdir()):
            raise ConfigError(f"--dir {sweep_dir}: holds a sweep's files without its sweep.yaml; give a new folder")
        return
    other = SweepSpec.load(sweep_dir)
    same = (other.overrides, other.study, other.storage, other.seeds) == (
        spec.overrides,
        spec.study,
        spec.storage,
        spec.seeds,
    )
    if not same:
        raise ConfigError(
            f"--dir {sweep_dir}: holds another sweep ({' '.join(other.overrides)}); give a new folder, "
            f"or continue that one with: dlrun sweep --resume {sweep_dir}"
        )


def run(spec: SweepSpec, sweep_dir: Path, on_trial=None) -> dict[str, Any]:
    """Run (or join, or continue) the sweep in sweep_dir; returns counts of its trials."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if spec.warm:
        from dlrun.sweep import warm

        warm.start()
    space = parse(spec.overrides)
    study = open_study(spec, sweep_dir, space)
    spec.save(sweep_dir)
    recover(study)
    summary = Runner(spec, sweep_dir, study, space, on_trial).run()
    write_hparams(study, spec, sweep_dir, space)
    return summary


def resume(
    sweep_dir: Path,
    *,
    jobs: int | None = None,
    trials: int | None = None,
    max_failures: int | None = None,
    warm: bool | None = None,
) -> tuple[SweepSpec, Path]:
    """The spec of a sweep to continue, from its sweep.yaml; --jobs, --trials, --max-failures, --cold may change."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError(f"--resume {sweep_dir}: no such directory; give a sweep directory (runs/sweeps/...)")
    spec = SweepSpec.load(sweep_dir)
    check_writable(sweep_dir, f"--resume {sweep_dir}", "make the sweep's folder writable, then resume")
    if jobs is not None:
        spec.jobs = jobs
    if trials is not None:
        size = parse(spec.overrides).size() if spec.sampler == "grid" else None
        spec.trials = min(trials, size) if size is not None else trials
    if max_failures is not None:
        spec.max_failures = max_failures
    if warm is not None:
        spec.warm = warm
    return spec, sweep_dir
