"""One training of a sweep, in its own process: `python -m dlrun.sweep.trial --run-dir DIR -- OVERRIDES`.

The sweep starts one such process per (trial, seed), forked from a warm server (warm.py) or, with
`dlrun sweep --cold`, as a new Python process, so a crash, a divergence or a kill ends this
process only. The run directory is a normal dlrun run; the sweep reads its summary.json, and the
last line of output.log when there is no summary. With --storage, the process reports the metric
to the Optuna trial at every evaluation and stops when the pruner says so (summary status "pruned").

Exit status: 0 completed or pruned, 1 failed (diverged), 2 bad config, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path


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
    parser.add_argument("--run-dir", required=True, type=Path)
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
        return run(args)
    except DlrunError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130


def run(args) -> int:
    from dlrun.config import compose
    from dlrun.train import train

    cfg = compose(args.overrides)
    callbacks = []
    if args.storage:
        import optuna

        from dlrun.sweep.runner import make_pruner
        from dlrun.sweep.study import open_storage, quiet_optuna

        quiet_optuna()
        study = optuna.load_study(
            study_name=args.study,
            storage=open_storage(args.storage, heartbeat=False),
            sampler=optuna.samplers.RandomSampler(),  # this process samples nothing
            pruner=make_pruner(args.pruner),
        )
        callbacks.append(PruningReport(optuna.trial.Trial(study, args.trial_id), args.report))
    # command.txt records how to rerun this trial alone
    sys.argv = ["dlrun", "train", *args.overrides]
    summary = train(cfg, callbacks=callbacks, overrides=list(args.overrides), run_dir=args.run_dir)
    metrics = "  ".join(f"{k} {v:.4g}" for k, v in summary["metrics"].items())
    print(f"{summary['status']}: step {summary['step']}  {metrics}", flush=True)
    return 130 if summary["status"] == "interrupted" else 0


if __name__ == "__main__":
    sys.exit(main())
