"""TensorBoard's HParams view of a sweep: `tensorboard --logdir <sweep>/tensorboard`.

    <sweep>/tensorboard/events.*            the experiment: the swept hyperparameters (with their
                                            domains) and the metric columns
    <sweep>/tensorboard/trial-<n>/events.*  one session per trial: its hyperparameters, then each
                                            final metric (the mean over seeds) as a scalar, and
                                            std/<metric>, the spread over seeds; then its status

The files are written with TensorBoard's own protos (no TensorFlow, no torch), and the whole
folder is rewritten each time a trial finishes.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.plugins.hparams import summary_v2 as hp
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from dlrun.sweep.results import Results
from dlrun.sweep.space import Space

STATUS = {
    "completed": api_pb2.STATUS_SUCCESS,
    "pruned": api_pb2.STATUS_SUCCESS,  # a pruned trial ran to its pruning point; its metrics are real
    "failed": api_pb2.STATUS_FAILURE,
    "running": api_pb2.STATUS_RUNNING,
}


def write(results: Results, logdir: Path, space: Space) -> Path:
    """Write the HParams experiment and one session per row into logdir (replacing what was there)."""
    logdir = Path(logdir)
    tmp = logdir.parent / f".{logdir.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = [axis.name for axis in space.axes]
    metrics = sorted({m for r in results.rows for m in r.metrics}) + [f"std/{results.metric}"]
    params = [hp.HParam(axis.name, _domain(axis.distribution)) for axis in space.axes]
    _write(tmp, hp.hparams_config_pb(params, [hp.Metric(m) for m in metrics]))
    for row in results.rows:
        session = tmp / f"trial-{row.trial}"
        session.mkdir()
        values = {name: _hparam_value(row.params.get(name)) for name in names}
        scalars = {m: statistics.fmean(v) for m, v in row.metrics.items() if v}
        if row.std is not None:
            scalars[f"std/{results.metric}"] = row.std
        _write(
            session,
            hp.hparams_pb(values, trial_id=str(row.trial)),
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


def _domain(distribution) -> hp.Domain | None:
    if isinstance(distribution, CategoricalDistribution):
        values = [_hparam_value(c) for c in distribution.choices]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return hp.Discrete([float(v) for v in values])  # one numeric type: 1 and 0.1 are both floats here
        return hp.Discrete(values) if len({type(v) for v in values}) == 1 else None
    if isinstance(distribution, IntDistribution):
        return hp.IntInterval(distribution.low, distribution.high)
    if isinstance(distribution, FloatDistribution):
        return hp.RealInterval(float(distribution.low), float(distribution.high))
    return None


def _hparam_value(value: Any) -> bool | int | float | str:
    """HParams holds bool, number or string: null and lists become text."""
    if isinstance(value, bool | int | float | str):
        return value
    return "null" if value is None else str(value)
