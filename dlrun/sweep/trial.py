"""One training of a sweep, in its own process: `python -m dlrun.sweep.trial --run-dir DIR -- OVERRIDES`.

The sweep starts one such process per (trial, seed), forked from a warm server (warm.py) or, with
`dlrun sweep --cold`, as a new Python process, so a crash, a divergence or a kill ends this
process only. The run directory is a normal dlrun run; the sweep reads its summary.json, and the
last line of output.log when there is no summary. With --storage, the process reports the metric
to the Optuna trial at every evaluation and stops when the pruner says so (summary status "pruned").

With `--pack FILE.json` the process trains several (trial, seed) runs as one vectorized group
(`dlrun sweep --seeds` and `--vectorize K`): the file lists each member's trial, run directory and
overrides; each member still writes its own run directory, and with a pruner each trial's
running seeds report their mean and are pruned together.

Exit status: 0 completed or pruned, 1 failed (diverged), 2 bad config, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path


class PackPruning:
    """A group callback: each trial reports the mean of its running members; a pruned trial's members stop."""

    def __init__(self, trials: dict[int, object], trial_of: list[int], metric: str):
        self.trials = trials  # trial number -> optuna.trial.Trial
        self.trial_of = trial_of  # member index -> trial number
        self.metric = metric

    def on_eval_members(self, step: int, results: dict[int, dict[str, float]]) -> list[int]:
        import statistics

        by_trial: dict[int, list[int]] = {}
        for k, metrics in results.items():
            if self.metric in metrics:
                by_trial.setdefault(self.trial_of[k], []).append(k)
        ended = []
        for number, ks in by_trial.items():
            trial = self.trials[number]
            trial.report(statistics.fmean(results[k][self.metric] for k in ks), step)
            if trial.should_prune():
                ended += ks
        return ended


class PruningReport:
    """A training callback: trial.report(metric, step) at each evaluation; returns "pruned" to stop."""

    def __init__(self, trial, metric: str):
        self.trial = trial
        self.metric = metric

    def on_eval(self, step: int, epoch: float, metrics: dict[str, float]) -> str | None:
        value = metrics.get(self.metric)
        if value is None:
            return None
        self.trial.report(value, step)
        return "pruned" if self.trial.should_prune() else None


def end_with_parent(parent: int) -> None:
    """On Linux, receive SIGTERM (a graceful stop) when the parent process dies, so no training is orphaned.

    The parent is the sweep, or for a warm trial the fork server, which ends when the sweep does.
    """
    if sys.platform != "linux":
        return
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    try:
        os.kill(parent, 0)
    except ProcessLookupError:  # the sweep died before prctl took effect
        sys.exit(130)
    except PermissionError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlrun.sweep.trial")
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--pack", type=Path, help="a JSON file listing the members of one vectorized group")
    parser.add_argument("--parent", type=int, default=0, help="the sweep's process id")
    parser.add_argument("--storage", help="Optuna storage URL, for pruning reports")
    parser.add_argument("--study")
    parser.add_argument("--trial-id", type=int)
    parser.add_argument("--report", help="the metric reported at each evaluation, e.g. val/acc")
    parser.add_argument("--pruner", default="none")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if args.parent:
        end_with_parent(args.parent)

    from dlrun.errors import DlrunError

    try:
        if args.pack:
            return run_pack(args)
        if args.run_dir is None:
            parser.error("give --run-dir DIR or --pack FILE")
        return run(args)
    except DlrunError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130


def load_study(storage: str, name: str, pruner: str):
    import optuna

    from dlrun.sweep.study import make_pruner, open_storage, quiet_optuna

    quiet_optuna()
    return optuna.load_study(
        study_name=name,
        storage=open_storage(storage, heartbeat=False),
        sampler=optuna.samplers.RandomSampler(),  # this process samples nothing
        pruner=make_pruner(pruner),
    )


def run(args) -> int:
    from dlrun.config import compose
    from dlrun.train import train

    cfg = compose(args.overrides)
    callbacks = []
    if args.storage:
        import optuna

        study = load_study(args.storage, args.study, args.pruner)
        callbacks.append(PruningReport(optuna.trial.Trial(study, args.trial_id), args.report))
    # command.txt records how to rerun this trial alone
    sys.argv = ["dlrun", "train", *args.overrides]
    summary = train(cfg, callbacks=callbacks, overrides=list(args.overrides), run_dir=args.run_dir)
    metrics = "  ".join(f"{k} {v:.4g}" for k, v in summary["metrics"].items())
    print(f"{summary['status']}: step {summary['step']}  {metrics}", flush=True)
    return 130 if summary["status"] == "interrupted" else 0


def run_pack(args) -> int:
    """Train the pack's members as one vectorized group: {group_dir, members: [{trial, trial_id, run_dir,
    overrides}], and for pruning storage, study, pruner, report}."""
    import json

    from dlrun.config import compose, flat
    from dlrun.errors import ConfigError
    from dlrun.train import train
    from dlrun.train.members import MemberSpec, packable, varying_keys

    pack = json.loads(args.pack.read_text())
    group_dir = Path(pack["group_dir"])
    cfgs = [compose(m["overrides"]) for m in pack["members"]]
    for cfg in cfgs[1:]:
        if why := packable(cfgs[0], cfg):
            raise ConfigError(f"--pack {args.pack}: its members cannot train as one group: {why}")
    flats = [flat(cfg) for cfg in cfgs]
    varied = [k for k in varying_keys() if len({str(f.get(k)) for f in flats}) > 1]
    trials = list(dict.fromkeys(m["trial"] for m in pack["members"]))
    specs = [
        MemberSpec(
            cfg,
            list(m["overrides"]),
            label=os.path.relpath(m["run_dir"], group_dir),
            configuration=trials.index(m["trial"]),
            values={k: float(f[k]) for k in varied},
            run_dir=Path(m["run_dir"]),
        )
        for cfg, f, m in zip(cfgs, flats, pack["members"], strict=True)
    ]
    callbacks = []
    if pack.get("storage"):
        import optuna

        study = load_study(pack["storage"], pack["study"], pack["pruner"])
        ids = {m["trial"]: m["trial_id"] for m in pack["members"]}
        by_number = {n: optuna.trial.Trial(study, i) for n, i in ids.items()}
        callbacks.append(PackPruning(by_number, [m["trial"] for m in pack["members"]], pack["report"]))
    summary = train(specs, callbacks=callbacks, run_dir=group_dir)
    for m in summary["members"]:
        print(f"{m['label']}: {m['status']}", flush=True)
    return 130 if summary["status"] == "interrupted" else 0


if __name__ == "__main__":
    sys.exit(main())
