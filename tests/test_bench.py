"""`make bench`'s whole-process part: the bare script runs on its own, and `startup` interleaves and reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dlrun import bench


def test_the_bare_script_runs_on_its_own():
    script = Path(bench.__file__).with_name("bench_bare.py")
    done = subprocess.run([sys.executable, str(script), "1"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("epoch 1: val acc ") and lines[-1].startswith("test acc ")
    assert 0.5 < float(lines[-1].split()[-1]) <= 1.0  # one epoch of Adam on digits is well past chance


def test_startup_interleaves_fresh_processes_and_prints_the_ratio(monkeypatch, capsys):
    calls = []

    def wall(cmd):
        side = "dlrun" if "dlrun.cli" in cmd else "bare"
        calls.append(side)
        return 2.0 if side == "dlrun" else 4.0

    monkeypatch.setattr(bench, "_wall", wall)
    bench.startup(repeats=3, epochs=2)
    # one warm-up each, then pairs, each side first every other time
    assert calls == ["dlrun", "bare", "bare", "dlrun", "dlrun", "bare", "bare", "dlrun"]
    out = capsys.readouterr().out
    assert "2 epochs" in out and "3 repeats" in out
    assert "bare PyTorch script: 4.000 s" in out and "dlrun train       : 2.000 s" in out
    assert "ratio dlrun/bare  : 0.500" in out
