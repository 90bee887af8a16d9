"""A vectorized group's own part of the lifecycle: its folder, its members' runs, and its summary.

The members are stepped together by vector.Stacked and each is a run of the shared lifecycle
(dlrun/train/lifecycle.py): lock, resume, evaluations, early stop, checkpoints, summary. On a
resume of the group's folder, a member that ended for good (diverged, stopped early, pruned, or
completed at the steps asked) is kept as it is; the others train on, a finished group included
when more epochs or steps are asked.
"""

from __future__ import annotations

import time
from pathlib import Path

from dlrun.errors import ConfigError
from dlrun.files import check_writable
from dlrun.train import rundir
from dlrun.train import summary as summaries
from dlrun.train.callbacks import Callbacks
from dlrun.train.dist import SINGLE
from dlrun.train.lifecycle import fit_and_finish, info
from dlrun.train.members import MemberSpec
from dlrun.train.session import Run, finished_member, group_summary, guard, open_run, running
from dlrun.train.state import TrainState
from dlrun.train.summary import GroupSummary
from dlrun.train.vector import build_group


def train_group(specs: list[MemberSpec], callbacks=(), group_dir: Path | None = None, resume: Path | None = None):
    """Build, fit and test the members of a group; return the group's summary (also in its summary.json).
    group_dir: where a new group goes (default <runs_dir>/<name>/<time>/); resume: the folder of a group
    to resume (its members from members.from_group)."""
    with guard(SINGLE) as held:
        return _group(specs, Callbacks(callbacks), group_dir or resume, held)


def _group(specs: list[MemberSpec], hooks: Callbacks, group_dir, held: list) -> GroupSummary:
    started = time.time()
    resumed = any(spec.cfg.resume is not None for spec in specs)
    if group_dir is None and not resumed:
        check_writable(Path(specs[0].cfg.runs_dir), f"runs_dir={specs[0].cfg.runs_dir}")
    sp = build_group(specs)
    group_dir = Path(group_dir) if group_dir else rundir.new_run_dir(sp.cfg)
    group_dir.mkdir(parents=True, exist_ok=True)
    held.append(rundir.lock(group_dir))
    earlier = summaries.read(group_dir) if resumed else None
    first = earlier.started_at if earlier is not None and earlier.started_at else started
    runs = []
    for k, spec in enumerate(specs):
        run_dir = Path(spec.run_dir) if spec.run_dir else group_dir / spec.label
        last = (run_dir / "checkpoints" / "last.pt").exists()
        run = Run(spec.cfg, run_dir, True, spec.overrides, spec.label, group_dir, resumed and last)
        run.state = TrainState(wall_start=started)
        runs.append(run)
        kept = finished_member(run, sp.plan.total_steps) if resumed else None
        if kept is not None:  # it ended before the resume: kept as it is
            run.status, run.summary, run.state.step = kept.status, kept, kept.step
            continue
        open_run(sp, k, run, held, started)
    summaries.write(group_dir, group_summary(sp, runs, specs, group_dir, started, first))  # its members, for a resume
    steps = {r.state.step for r in running(runs)}
    if len(steps) > 1:
        raise ConfigError(
            f"resume={group_dir}: its members stopped at different steps {sorted(steps)}; resume each alone"
        )
    hooks.start({**info(sp, group_dir, min(steps, default=0), resumed), "members": sp.k})
    fit_and_finish(sp, runs, hooks)
    summary = group_summary(sp, runs, specs, group_dir, started, first)
    summaries.write(group_dir, summary)
    _margin_charts(group_dir, [r.run_dir for r in runs])
    hooks.end(summary)
    return summary


def _margin_charts(group_dir: Path, run_dirs: list[Path]) -> None:
    """The members' mean and 95% interval per metric, as TensorBoard margin charts in <group>/bands."""
    from dlrun.bands import write_margin_charts
    from dlrun.train.state import WRITE_ERRORS

    try:
        write_margin_charts(group_dir, run_dirs)
    except OSError as e:  # the members' runs are complete: a chart that cannot be written is only said
        if e.errno not in WRITE_ERRORS:
            raise
        print(f"warning: {group_dir / 'bands'}: the margin charts were not written ({e.strerror})", flush=True)
