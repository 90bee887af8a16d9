"""Regenerate the numbers the documentation quotes: `make docs-numbers` (or `python docs/numbers/make.py [NAME]`).

Each recipe runs its dlrun commands in a fresh folder and writes docs/numbers/NAME.md: a table of each
command's final metrics, or the command's own output, under a line naming the machine. The pages include
these files (`--8<-- "docs/numbers/NAME.md"`), so no result is typed by hand. `make bench` writes bench.md
the same way, and `make reproduce` the claims report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dlrun.machine import describe

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BIN = Path(sys.executable).parent

# name -> (commands, what to show): a list of metric keys (a table, one row per command), "output" (every
# command's output) or "last" (the last command's)
RECIPES: dict[str, tuple[list[str], list[str] | str]] = {
    "first-run": (["dlrun train"], "output"),
    "xor": (
        ["dlrun train model=linear data=xor", "dlrun train experiment=xor_hidden"],
        ["parameters", "test/acc", "test/loss"],
    ),
    "regression": (["dlrun train data=diabetes"], ["test/mse", "test/loss"]),
    "your-data": (
        [
            "python make_files.py",
            "dlrun train data=files data.path=iris.csv data.target=species",
            "dlrun train data=files data.path=digits.npz",
            "dlrun train data=files data.path=x.npy data.labels=y.npy model=cnn",
            "dlrun train data=files data.path=digits_png model=cnn data.standardize=global",
        ],
        ["test/acc"],
    ),
    "init": (
        [
            "dlrun train init=he_normal",
            "dlrun train init=zeros model.activation=tanh",
            "dlrun train init=constant init.c=0.05 model.activation=tanh",
        ],
        ["test/acc"],
    ),
    "step-activation": (
        ["dlrun train experiment=xor_hidden model.activation=step", "dlrun train experiment=xor_hidden"],
        ["test/acc"],
    ),
    "lr-find": (["dlrun lr-find", "dlrun lr-find optim=sgd"], "output"),
    "mnist1d": (
        [
            "dlrun train experiment=mnist1d_linear",
            "dlrun train experiment=mnist1d_mlp",
            "dlrun train experiment=mnist1d_cnn",
            "dlrun train experiment=mnist1d_gru",
            "dlrun train experiment=mnist1d_linear data.shuffle_time=true",
            "dlrun train experiment=mnist1d_mlp data.shuffle_time=true",
            "dlrun train experiment=mnist1d_cnn data.shuffle_time=true",
            "dlrun train experiment=mnist1d_gru data.shuffle_time=true",
        ],
        ["parameters", "test/acc", "train time"],
    ),
    "compare": (
        [
            "dlrun train data=digits trainer.epochs=3 'trainer.seeds=[0,1,2,3,4]' name=cmp",
            "dlrun train data=digits trainer.epochs=3 'trainer.seeds=[0,1,2,3,4]' name=cmp optim.lr=0.0003",
            "dlrun compare runs/cmp --metric test/acc",
        ],
        "last",
    ),
    "runs": (
        [
            "dlrun train model=linear data=xor",
            "dlrun train experiment=xor_hidden",
            "dlrun train data=diabetes",
            "dlrun train data=moons trainer=debug",
            "dlrun runs",
        ],
        "last",
    ),
    "sweep": (
        [
            "dlrun sweep 'optim=sgd,adam' 'optim.lr=tag(log,interval(1e-4,1e-1))' trainer.epochs=2 --trials 8 --jobs 2",
            "dlrun results runs/sweeps/*",
        ],
        "output",
    ),
}


def newest_summary(runs: Path, before: set[Path]) -> dict:
    new = sorted(set(runs.rglob("summary.json")) - before, key=lambda p: p.stat().st_mtime)
    return json.loads(new[-1].read_text()) if new else {}


def cell(summary: dict, key: str) -> str:
    if key == "parameters":
        return f"{summary.get('params', ''):,}" if summary.get("params") is not None else ""
    if key == "train time":
        return f"{summary['train_time_s']:.1f} s" if summary.get("train_time_s") is not None else ""
    value = (summary.get("metrics") or {}).get(key)
    if isinstance(value, float):
        return f"{value:.4f}" if 1e-3 <= abs(value) < 1e4 else f"{value:.4g}"
    return "" if value is None else str(value)


def shorten(output: str) -> str:
    """A training's output with its per-epoch lines cut to the first two and the last."""
    lines = output.splitlines()
    steps = [i for i, line in enumerate(lines) if line.startswith("step ")]
    if len(steps) <= 4:
        return output
    keep = set(steps[:2] + steps[-1:])
    out = []
    for i, line in enumerate(lines):
        if i in steps and i not in keep:
            if out[-1] != "...":
                out.append("...")
            continue
        out.append(line)
    return "\n".join(out)


def run(name: str, env: dict[str, str], machine: str) -> str:
    commands, show = RECIPES[name]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "experiments").symlink_to(ROOT / "experiments")
        if name == "your-data":  # the page's own script
            page = (ROOT / "docs" / "tutorials" / "your-data.md").read_text()
            script = page.split("<!-- runnable file=make_files.py -->\n```python\n", 1)[1].split("```", 1)[0]
            (folder / "make_files.py").write_text(script)
        rows, outputs = [], []
        for command in commands:
            before = set((folder / "runs").rglob("summary.json"))
            done = subprocess.run(command, shell=True, cwd=folder, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{name}: `{command}` failed:\n{done.stderr[-2000:]}")
            outputs.append(f"$ {command}\n{shorten(done.stdout.rstrip())}")
            if isinstance(show, list) and command.startswith("dlrun train"):
                summary = newest_summary(folder / "runs", before)
                rows.append([f"`{command}`", *(cell(summary, k) for k in show)])
    took = time.perf_counter() - started
    head = f"Generated by `make docs-numbers` ({name}, {took:.0f} s) on {machine}, {time.strftime('%Y-%m-%d')}.\n\n"
    if show in ("output", "last"):
        return head + "```text\n" + "\n\n".join(outputs if show == "output" else outputs[-1:]) + "\n```\n"
    table = ["| command | " + " | ".join(show) + " |", "|---" * (len(show) + 1) + "|"]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    return head + "\n".join(table) + "\n"


def main(names: list[str]) -> None:
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        sys.exit(f"error: {unknown[0]}: unknown recipe; choose from: {', '.join(RECIPES)}")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "110", "NO_COLOR": "1"}
    env["DLRUN_PLUGINS"] = ""
    machine = describe()  # this interpreter is the .venv's, the one the recipes' dlrun runs on
    for name in names or list(RECIPES):
        text = run(name, env, machine)
        path = HERE / f"{name}.md"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)  # a reader never sees half a file
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
