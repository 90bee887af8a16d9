"""The documentation: the site builds with --strict, the README stays a landing page, every block marked
runnable runs as shown, and the reference pages cover every declared option and command.

A page marks a fenced block to run with a comment on the line before it:

    <!-- runnable -->                 the shell block that follows runs (bash -e), in the page's own folder
    <!-- runnable file=NAME -->       the block that follows is saved as NAME in that folder (a script a later
                                      block runs, a plugin)

A page's blocks run in order in one temporary folder, so a later block sees the runs an earlier one made;
`experiments/` there is the repository's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

DOCS = ROOT / "docs"
MARK = re.compile(
    r"^<!-- runnable(?: file=(?P<file>[\w.\-/]+))? -->\n```(?P<lang>\w*)[^\n]*\n(?P<body>.*?)^```", re.M | re.S
)


def runnable(page: Path) -> list[tuple[str | None, str]]:
    """The page's marked blocks: (file name or None, text), in order."""
    return [(m["file"], m["body"]) for m in MARK.finditer(page.read_text())]


PAGES = [ROOT / "README.md", *sorted(p for p in DOCS.rglob("*.md") if runnable(p))]


def test_pages_mark_blocks_to_run():
    assert len(PAGES) >= 5
    assert sum(len(runnable(p)) for p in PAGES) >= 15


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_runnable_block_runs(page, tmp_path):
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env |= {"COLUMNS": "100", "NO_COLOR": "1", "DLRUN_PLUGINS": ""}
    for name, body in runnable(page):
        if name:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(body)
            continue
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", body], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        output = done.stdout[-2000:] + done.stderr[-3000:]
        assert done.returncode == 0, f"{page.name}: this block failed:\n{body}\n{output}"
        assert "Traceback" not in done.stderr, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.process
def test_the_site_builds_with_strict(tmp_path):
    """A broken link or anchor, a page missing from the navigation or a failing generator fails the build."""
    mkdocs = Path(sys.executable).parent / "mkdocs"
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    options = (tmp_path / "site" / "reference" / "options.html").read_text()
    assert "optim.lr" in options and "trainer.grad_tol" in options
    assert (tmp_path / "site" / "report" / "report.html").is_file()  # the claims report, as generated


def test_the_readme_is_a_landing_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    for lecture in ("EECE 571F", "LxMLS", "d2l.ai", "CS/DS 541"):  # the four lectures, named
        assert lecture in readme, lecture
    for target in re.findall(r"\]\(((?:docs|experiments)/[^)#]+)", readme):  # its links into the repository resolve
        assert (ROOT / target).is_file(), target
    for step in ("git clone", "dlrun train", "dlrun runs", "tensorboard", "dlrun viz", "dlrun sweep"):
        assert step in readme, step


def test_the_option_reference_lists_every_declared_key():
    from dataclasses import fields

    from dlrun.docs import options_reference
    from dlrun.options import GROUPS, declared

    page = options_reference()
    for group in GROUPS:
        for name, decl in declared(group).items():
            assert f"{{#{group}-{name}}}" in page
            for f in fields(decl.schema):
                if f.name != "name":
                    assert f"`{group}.{f.name}`" in page, f"{group}={name}: {f.name}"


def test_the_option_reference_takes_each_keys_comment_from_its_declaration():
    from dlrun.docs import field_comments, option_table
    from dlrun.options import schema

    comments = field_comments(schema("trainer", "default"))
    assert "grad_tol" in comments
    assert comments["grad_tol"] in option_table("trainer", "default")


def test_the_command_reference_has_every_command():
    from dlrun.docs import cli_reference

    page = cli_reference()
    for command in ("train", "sweep", "viz landscape", "experiment run", "compare", "gradcheck"):
        assert f"## `dlrun {command}`" in page
    assert "Usage: dlrun viz landscape" in page


def test_the_committed_reference_pages_are_what_the_generator_writes():
    """docs/reference/options.md and cli.md are generated (`python -m dlrun.docs`); never edited, never stale."""
    from dlrun.docs import pages

    for name, text in pages().items():
        assert (DOCS / name).read_text() == text + "\n", f"docs/{name} is stale: run python -m dlrun.docs"


@pytest.mark.parametrize("target", ["train", "install", "tb", "reproduce"])
def test_the_user_targets_install_no_developer_tools(target, tmp_path):
    """On a fresh clone `make train` installs torch and dlrun, nothing for tests, linting or the docs."""
    planned = subprocess.run(
        ["make", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True, text=True
    )
    assert planned.returncode == 0, planned.stderr
    installs = [
        line.split("pip install", 1)[1].strip() for line in planned.stdout.splitlines() if "pip install" in line
    ]
    assert installs == ["torch==2.13.0", "-e ."]  # no [dev], [docs], pytest or ruff


def test_the_developer_targets_add_the_dev_extra(tmp_path):
    planned = subprocess.run(
        ["make", "-n", "test", f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True, text=True
    )
    assert "pip install -e '.[dev]'" in planned.stdout
