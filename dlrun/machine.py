"""One line that says where a number was measured: every time the docs or a report quote carries it."""

from __future__ import annotations

import os
import platform


def describe() -> str:
    """`Linux x86_64, 2 CPU cores, Python 3.11.7, torch 2.13.0+cpu, no GPU` (the GPU's name where there is one)."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{platform.system()} {platform.machine()}, {cores} CPU cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {gpu}"
    )
