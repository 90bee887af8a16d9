"""Scalars to TensorBoard and to metrics.jsonl at once; histograms, text and HParams to TensorBoard."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary


def _after_earlier_event_files(run_dir: Path) -> None:
    """TensorBoard reads a run's event files in name order, and names start with the second they were
    created: a resume within the same second as the earlier file would sort by a counter ('.10' < '.9').
    Wait for the next second in that case, so the resumed events always come after the earlier ones."""
    stamps = [
        int(p.name.split(".")[3]) for p in run_dir.glob("events.out.tfevents.*") if p.name.split(".")[3].isdigit()
    ]
    while stamps and int(time.time()) <= max(stamps):
        time.sleep(0.05)


class RunLogger:
    """One per run directory. `purge_step` (on resume) hides events logged after the checkpoint."""

    def __init__(self, run_dir: Path, purge_step: int | None = None):
        if purge_step is not None:
            _after_earlier_event_files(run_dir)
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)
        self.jsonl = open(run_dir / "metrics.jsonl", "a", buffering=1)  # line-buffered

    def scalars(self, step: int, values: dict[str, float], **extra: Any) -> None:
        # one event holding every value: a tenth of the cost of one add_scalar call per tag
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()])
        self.writer.file_writer.add_summary(summary, step)
        record = {"step": step, "time": round(time.time(), 3), **extra}
        record.update({k: (v if math.isfinite(v) else str(v)) for k, v in values.items()})
        self.jsonl.write(json.dumps(record) + "\n")

    def histograms(self, step: int, model: torch.nn.Module, bins: int = 30) -> None:
        """Weights and gradients of every parameter, binned on the device (one host sync in all)."""
        tensors = {}
        for name, p in model.named_parameters():
            tensors[f"hist/weights/{name}"] = p.detach()
            if p.grad is not None:
                tensors[f"hist/grads/{name}"] = p.grad.detach()
        rows = []
        for t in tensors.values():
            t = t.flatten().float()
            lo, hi = t.min(), t.max()
            scaled = (t - lo) / (hi - lo).clamp_min(1e-12) * bins  # bin index, on the device
            counts = torch.bincount(scaled.long().clamp(0, bins - 1), minlength=bins).float()
            rows.append(torch.cat([torch.stack([lo, hi, t.sum(), t.pow(2).sum()]), counts]))
        for tag, row in zip(tensors, torch.stack(rows).tolist() if rows else [], strict=True):
            lo, hi, total, squares, counts = row[0], row[1], row[2], row[3], row[4:]
            width = (hi - lo) / bins if hi > lo else 1.0
            limits = [lo + width * (i + 1) for i in range(bins)]
            self.writer.add_histogram_raw(
                tag,
                min=lo,
                max=hi,
                num=int(sum(counts)),
                sum=total,
                sum_squares=squares,
                bucket_limits=limits,
                bucket_counts=counts,
                global_step=step,
            )

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self.writer.add_text(tag, text, step)

    def hparams(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """The HParams entry of this run: its config values, and its final metrics as scalars.

        Only the session summaries are written, not an experiment summary: TensorBoard then builds
        the HParams table from every run under its logdir (one experiment summary per run would
        make it show only the first run's columns). The session is a group of its own (torch names
        no group, so TensorBoard takes the run's path), except in a sweep, where it joins its trial's.
        """
        from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

        clean = {k: (v if isinstance(v, bool | int | float | str) else str(v)) for k, v in params.items()}
        _, session_start, session_end = hparams_summary(clean, metrics)
        # a run of a sweep's trial, <sweep>/trials/<n>/ or <sweep>/trials/<n>/seed<k>/, joins the group of the
        # trial's summary in <sweep>/tensorboard/ (dlrun/sweep/hparams.py group_name): one row per trial
        run_dir = Path(self.writer.log_dir)
        trial = next((d for d in (run_dir, run_dir.parent) if d.parent.name == "trials" and d.name.isdigit()), None)
        if trial is not None and (trial.parent.parent / "sweep.yaml").is_file():
            plugin_data = session_start.value[0].metadata.plugin_data
            data = HParamsPluginData.FromString(plugin_data.content)
            data.session_start_info.group_name = f"{trial.parent.parent.name}/trial-{trial.name}"
            plugin_data.content = data.SerializeToString()
        self.writer.file_writer.add_summary(session_start)
        self.writer.file_writer.add_summary(session_end)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
        self.jsonl.close()
