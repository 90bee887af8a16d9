"""TensorBoard's HParams view of a sweep: `tensorboard --logdir <sweep>/tensorboard`, or the sweep
among every other run: `tensorboard --logdir runs`.

    <sweep>/tensorboard/trial-<n>/events.*  one session per trial: its hyperparameters (the config of
                                            its runs, and the swept axes), then each final metric
                                            (the mean over seeds) as a scalar, and std/<metric>,
                                            the spread over seeds; then its status

Every session of a trial is in the group `<sweep folder>/trial-<n>`: this one, and those its runs
write themselves (RunLogger.hparams). Over a folder of runs each trial is then one row, with its
runs as the row's sessions, and trial 0 of one sweep is not trial 0 of another.

No experiment summary is written. TensorBoard takes the first one it finds under its logdir as the
columns of the whole table, so one sweep's axes would hide the config keys and metrics of every other
run; without one, it builds the columns from all the sessions. The price: the swept axes show the
range of the values tried, not the domain of the search.

The files are written with TensorBoard's own protos (no TensorFlow, no torch), and the whole folder
is rewritten each time a trial finishes.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import yaml
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.plugins.hparams import summary_v2 as hp
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from dlrun.options import GROUPS
from dlrun.sweep.results import Results, Row
from dlrun.sweep.space import Space

STATUS = {
    "completed": api_pb2.STATUS_SUCCESS,
    "pruned": api_pb2.STATUS_SUCCESS,  # a pruned trial ran to its pruning point; its metrics are real
    "failed": api_pb2.STATUS_FAILURE,
    "running": api_pb2.STATUS_RUNNING,
}


def group_name(sweep_dir: Path, trial: int) -> str:
    """The session group of a trial; sweep folders are unique under a runs folder, so is this.

    RunLogger.hparams gives the sessions of the trial's runs (<sweep>/trials/<n>/[seed<k>/]) the same name.
    """
    return f"{Path(sweep_dir).name}/trial-{trial}"


def write(results: Results, logdir: Path, space: Space) -> Path:
    """Write one HParams session per row into logdir (replacing what was there)."""
    logdir = Path(logdir)
    tmp = logdir.parent / f".{logdir.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sweep_dir = Path(results.source)
    names = [axis.name for axis in space.axes]
    for row in results.rows:
        session = tmp / f"trial-{row.trial}"
        session.mkdir()
        # an axis such as optim=sgd,adam is no config key: it stays beside optim.name
        values = {name: _hparam_value(row.params.get(name)) for name in names} | _config(sweep_dir, row)
        scalars = {m: statistics.fmean(v) for m, v in row.metrics.items() if v}
        if row.std is not None:
            scalars[f"std/{results.metric}"] = row.std
        _write(
            session,
            hp.hparams_pb(values, trial_id=group_name(sweep_dir, row.trial)),
            Summary(value=[Summary.Value(tag=m, simple_value=v) for m, v in scalars.items()]),
            _session_end(STATUS.get(row.status, api_pb2.STATUS_UNKNOWN)),
        )
    old = logdir.parent / f".{logdir.name}-old-{os.getpid()}"
    try:
        if logdir.exists():
            logdir.rename(old)
        tmp.rename(logdir)
    except OSError:  # another process of the same sweep swapped its copy in first; it is as recent
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return logdir


def _config(sweep_dir: Path, row: Row) -> dict[str, float | str]:
    """The config of the row's first run, as that run's own session holds it (compose.flat, then
    RunLogger.hparams): TensorBoard gives a group the values of whichever of its sessions it reads first."""
    if not row.runs:
        return {}
    try:
        config = yaml.safe_load((sweep_dir / row.runs[0] / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    out: dict[str, float | str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = _hparam_value(node)

    walk("", {g: v for g, v in config.items() if g in GROUPS})
    if len(row.runs) > 1:
        out.pop("trainer.seed", None)  # the row stands for all its seeds
    return out


def _write(folder: Path, *summaries: Summary) -> None:
    writer = EventFileWriter(str(folder))
    for summary in summaries:
        writer.add_event(Event(wall_time=time.time(), step=0, summary=summary))
    writer.close()


def _session_end(status: int) -> Summary:
    info = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    data = plugin_data_pb2.HParamsPluginData(session_end_info=info, version=metadata.PLUGIN_DATA_VERSION)
    return Summary(
        value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=metadata.create_summary_metadata(data))]
    )


def _hparam_value(value: Any) -> float | str:
    """As torch writes a run's session: numbers, bools as 1.0 and 0.0, the rest as text ([16], None).

    The same types in every session of a runs folder: TensorBoard turns a column of mixed types into text.
    """
    if isinstance(value, bool):
        return float(value)
    return value if isinstance(value, int | float | str) else str(value)
