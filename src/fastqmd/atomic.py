"""Crash-safe file replacement shared by every long job (datasets, MD and training checkpoints).

A file is replaced only as a whole: write a temporary sibling, fsync it, `os.replace` it over the target,
fsync the directory. A kill -9 at any moment leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path | str) -> None:
    """fsync a file or a directory by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: Path, path: Path) -> None:
    """fsync `tmp`, rename it over `path`, fsync the directory."""
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)


def atomic_torch_save(obj, path: Path | str) -> None:
    """torch.save(obj) to `path` atomically (see module docstring)."""
    import torch  # here, not at the top: datasets and the CLI use this module without torch

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    replace_durably(tmp, path)
