"""Pictures: a matplotlib Figure (no pyplot, no display) -> PNG file, written atomically, and the same
PNG bytes as an image in TensorBoard under a `viz/<name>` tag. Also the drawing helpers shared by the
viz modules (an input as an image, a curve or bars).
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dlrun.files import atomic_write

# class names in scripts the default font lacks (CJK, say) draw as boxes; matplotlib's warning per glyph
# (several lines each) says nothing the picture does not
warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from (current )?font", category=UserWarning)

DPI = 100  # pixels per inch: a Figure of (W, H) inches is a PNG of (100 W, 100 H) pixels


@dataclass(frozen=True)
class Picture:
    path: Path
    width: int  # pixels
    height: int
    n_bytes: int
    tag: str  # TensorBoard image tag, e.g. viz/actmax


def figure(width: float, height: float) -> Figure:
    """A Figure of width x height inches with constrained layout (titles and colorbars do not overlap)."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def suptitle(fig: Figure, text: str, fontsize: float = 11):
    """fig.suptitle wrapped by matplotlib at the figure's edges: a centered title wider than a narrow figure
    (one actmax column) would be cut at both edges, and constrained layout makes room for each line."""
    return fig.suptitle(text, fontsize=fontsize, wrap=True)


def few_ticks(axis, bins: int = 4) -> None:
    """At most `bins` + 1 labelled ticks at round steps (matplotlib's own choice assumes labels ~3 characters
    wide: labels like -0.75 or -0.0004 in a narrow panel ran together)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(bins, steps=[1, 2, 2.5, 5, 10]))


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, which always starts at byte 16."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", png[16:24])


def render(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def save(fig: Figure, path: Path, tag: str, log_dirs: Iterable[Path] = (), step: int = 0) -> Picture:
    """Write the figure as a PNG at `path` (atomically) and log the same bytes to each TensorBoard folder."""
    png = render(fig)
    atomic_write(Path(path), png)
    for log_dir in log_dirs:
        log_image(Path(log_dir), tag, png, step)
    width, height = png_size(png)
    return Picture(Path(path), width, height, len(png), tag)


def log_image(log_dir: Path, tag: str, png: bytes, step: int) -> None:
    """An image event holding these PNG bytes, in a new event file of `log_dir` (TensorBoard merges them)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard import SummaryWriter

    width, height = png_size(png)
    image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)  # RGBA
    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
    finally:
        writer.close()


# ----------------------------------------------------------------------------- drawing helpers
def input_kind(shape: tuple[int, ...]) -> str:
    """image (C, H, W), signal (C, L) or tabular (F,): how an input is drawn."""
    return {3: "image", 2: "signal"}.get(len(shape), "tabular")


def draw_input(ax: Axes, x: np.ndarray, value_range: tuple[float, float], cmap: str = "gray", **kwargs):
    """One input: an image (C = 1: `cmap`; C = 3: RGB), curves (one per channel) or bars (features).

    Returns the artist (the image for imshow), so callers can add a colorbar.
    """
    lo, hi = value_range
    kind = input_kind(x.shape)
    if kind == "image":
        ax.set_xticks([])
        ax.set_yticks([])
        if x.shape[0] == 3:
            return ax.imshow(np.clip((x.transpose(1, 2, 0) - lo) / max(hi - lo, 1e-12), 0, 1))
        return ax.imshow(x[0], cmap=cmap, vmin=kwargs.get("vmin", lo), vmax=kwargs.get("vmax", hi))
    if kind == "signal":
        lines = None
        for c, channel in enumerate(x):
            (lines,) = ax.plot(channel, lw=1.2, color=kwargs.get("color", f"C{c}"), alpha=kwargs.get("alpha", 1.0))
        ax.set_ylim(kwargs.get("vmin", lo), kwargs.get("vmax", hi))
        return lines
    return ax.bar(np.arange(len(x)), x, color=kwargs.get("color", "C0"))


def class_name(task, c: int) -> str:
    names = task.class_names
    return names[c] if c < len(names) else str(c)
