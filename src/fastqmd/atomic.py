"""Crash-safe file replacement shared by every long job (datasets, MD and training checkpoints).

A file is replaced only as a whole: write a temporary sibling, fsync it, `os.replace` it over the target,
fsync the directory. A kill -9 at any moment leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
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


def temp_name(path: Path | str) -> Path:
    """A hidden sibling `.NAME.<pid>-<random>.tmp` of `path` that no other writer can share."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp")


def write_atomically(path: Path | str, write: Callable[[Path], None]) -> None:
    """Create or replace `path` whole: write(tmp) on a uniquely named sibling, then `replace_durably`;
    a failed write leaves no temporary behind and the old `path` untouched."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        write(tmp)
        replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_torch_save(obj, path: Path | str) -> None:
    """torch.save(obj) to `path` atomically (see module docstring)."""
    import torch  # here, not at the top: datasets and the CLI use this module without torch

    write_atomically(path, lambda tmp: torch.save(obj, tmp))
