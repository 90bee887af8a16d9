"""Data-parallel training under torchrun (gloo, on the CPU): the same weights as one process, one run directory,
resume, batch norm, a failed rank, and two "nodes" joined by c10d rendezvous on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import dlrun as dlrun_package

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
SHORT = ["trainer.progress=none", "trainer.hist_every=0", "trainer.diag_every=0", "trainer.log_every=10"]


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    e["OMP_NUM_THREADS"] = "1"
    return e


def dlrun(args: list[str], cwd: Path, launcher: list[str] | None = None, timeout: float = 180):
    cmd = (launcher or [sys.executable]) + ["-m", "dlrun", "train", *SHORT, *args]
    return subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


def torchrun(n: int = 2) -> list[str]:
    return TORCHRUN + ["--standalone", f"--nproc_per_node={n}"]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def only_run(root: Path) -> Path:
    runs = [p for p in root.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()  # no "module." prefix: a data-parallel checkpoint loads into one process
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_two_processes_train_the_weights_of_one_and_resume(tmp_path):
    """40 steps of the default MLP (Adam, batch 32; the epoch's last batch is odd-sized) on 2 ranks against one
    process, then a resume of the 2-rank run to 70 steps against 70 steps in one process."""
    common = [f"runs_dir={tmp_path}/runs", "trainer.eval_every=20"]
    r = dlrun([*common, "name=ddp", "trainer.steps=40"], tmp_path, torchrun())
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("ddp: completed") == 1  # rank 0 alone reports
    ddp = only_run(tmp_path / "runs" / "ddp")  # one run directory for the two processes
    r = dlrun([*common, "name=one", "trainer.steps=40"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    one = only_run(tmp_path / "runs" / "one")
    assert max_diff(weights(ddp), weights(one)) < 1e-5

    summary = json.loads((ddp / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["step"] == 40
    reference = json.loads((one / "summary.json").read_text())
    for key in ("val/acc", "test/acc"):  # all-reduced evaluation sums: the whole split, not one rank's half
        assert summary["metrics"][key] == pytest.approx(reference["metrics"][key], abs=1e-3)
    lines = [json.loads(line) for line in (ddp / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == len((one / "metrics.jsonl").read_text().splitlines())  # one writer
    assert max(line["step"] for line in lines) == 40

    r = dlrun([f"resume={ddp}", "trainer.steps=70"], tmp_path, torchrun())
    assert r.returncode == 0, r.stderr[-2000:]
    assert only_run(tmp_path / "runs" / "ddp") == ddp
    r = dlrun([*common, "name=long", "trainer.steps=70"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert max_diff(weights(ddp), weights(only_run(tmp_path / "runs" / "long"))) < 1e-5
    assert json.loads((ddp / "summary.json").read_text())["step"] == 70


def test_batch_norm_trains_on_two_processes(tmp_path):
    """Under gloo the statistics are each rank's own (SyncBatchNorm has no CPU kernel); it trains all the same."""
    r = dlrun(
        [f"runs_dir={tmp_path}/runs", "name=bn", "model.norm=batch", "trainer.epochs=3", "trainer.test_with=best"],
        tmp_path,
        torchrun(),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    run = only_run(tmp_path / "runs" / "bn")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["metrics"]["test/acc"] > 0.85
    assert any(k.endswith("running_mean") for k in weights(run))


def test_what_cannot_be_shared_is_refused_before_a_run_directory(tmp_path):
    r = dlrun([f"runs_dir={tmp_path}/runs", "optim=newton", "model=linear", "data=xor"], tmp_path, torchrun())
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "optim=newton under torchrun" in errors[0], r.stderr[-2000:]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("summary.json"))


def test_a_killed_rank_ends_the_run_with_one_line_not_a_hang(tmp_path):
    cmd = torchrun() + ["-m", "dlrun", "train", *SHORT, f"runs_dir={tmp_path}/runs", "name=kill"]
    cmd += ["trainer.epochs=500", "trainer.dist_timeout=60"]
    p = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        metrics = tmp_path / "runs" / "kill"
        deadline = time.time() + 120
        while not list(metrics.glob("*/metrics.jsonl")) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        ranks = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
        assert len(ranks) == 2, ranks
        os.kill(int(max(ranks, key=int)), signal.SIGKILL)  # the rank started last
        start = time.time()
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode != 0
    assert time.time() - start < 30  # far below trainer.dist_timeout: a closed connection is seen at once
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [line for line in errors if "another process of this run stopped" in line] and errors, err[-3000:]
    # no traceback through dlrun's code (torchrun's own report follows the line)
    assert f"{Path(dlrun_package.__file__).parent}{os.sep}" not in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_by_c10d_rendezvous_train_one_run(tmp_path):
    """The README's multi-node recipe, experiments/cluster/train-multinode.sbatch, as two "nodes" on 127.0.0.1
    (one process each, no srun): c10d rendezvous, one run directory, the weights of one process."""
    script = Path(__file__).parent.parent / "experiments" / "cluster" / "train-multinode.sbatch"
    node_env = env() | {"HEAD": "127.0.0.1", "PORT": str(free_port()), "NNODES": "2", "NPROC": "1", "SRUN": ""}
    node_env |= {"PYTHON": sys.executable, "SLURM_JOB_ID": "dlrun-test"}
    cmd = ["bash", str(script), *SHORT, f"runs_dir={tmp_path}/runs", "name=nodes", "trainer.steps=30"]
    nodes = [
        subprocess.Popen(cmd, cwd=tmp_path, env=node_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [n.communicate(timeout=180) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], [o[1][-2000:] for o in outs]
    assert sum(o[0].count("nodes: completed") for o in outs) == 1
    run = only_run(tmp_path / "runs" / "nodes")
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2
    r = dlrun([f"runs_dir={tmp_path}/runs", "name=single", "trainer.steps=30"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert max_diff(weights(run), weights(only_run(tmp_path / "runs" / "single"))) < 1e-5


def test_unsynchronized_batch_norm_needs_two_examples_per_rank(tmp_path):
    r = dlrun([f"runs_dir={tmp_path}/runs", "model.norm=batch", "trainer.batch_size=3"], tmp_path, torchrun())
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode != 0 and len(errors) == 1 and "trainer.batch_size=3" in errors[0], r.stderr[-2000:]
    assert not (tmp_path / "runs").exists()


def test_a_sweep_is_not_started_under_torchrun(tmp_path):
    e = env() | {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    r = subprocess.run(
        [sys.executable, "-m", "dlrun", "sweep", "optim.lr=0.1,0.01", f"runs_dir={tmp_path}/runs", "--cold"],
        cwd=tmp_path,
        env=e,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "under torchrun" in r.stderr, r.stderr
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_stops_every_rank_at_a_log_step_with_a_checkpoint(tmp_path):
    """A terminal's Ctrl-C reaches torchrun and the ranks; torchrun then sends SIGTERM too. The ranks stop
    together at the next log step and write last.pt, as one process does."""
    cmd = torchrun() + ["-m", "dlrun", "train", *SHORT, f"runs_dir={tmp_path}/runs", "name=int", "trainer.epochs=500"]
    p = subprocess.Popen(
        cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.time() + 120
        while not list((tmp_path / "runs" / "int").glob("*/metrics.jsonl")) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    run = only_run(tmp_path / "runs" / "int")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted", err[-3000:]
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["state"]["step"]
    assert saved == summary["step"] > 0
