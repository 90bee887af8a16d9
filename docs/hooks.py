"""mkdocs hooks: the reference pages are generated at build time (dlrun.docs), and the claims report and
the figures are taken from where `make reproduce` and experiments/figures/viz/make.sh write them."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
COPIED = {"experiments/report": "report", "experiments/figures": "figures"}  # repository folder -> site folder


def on_files(files: Files, config) -> Files:
    from dlrun import docs

    for name, text in docs.pages().items():  # generated again: the committed copy may be stale
        old = files.get_file_from_path(name)
        if old is not None:
            files.remove(old)
        files.append(File.generated(config, name, content=text + "\n"))
    for folder, site in COPIED.items():
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in (".md", ".png", ".svg"):
                name = f"{site}/{path.relative_to(ROOT / folder).as_posix()}"
                files.append(File.generated(config, name, abs_src_path=str(path)))
    return files
