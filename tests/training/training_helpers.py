"""Shared by the trainer tests (a uniquely named module: tests folders are not packages)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

TINY_MODEL = dict(cutoff=3.0, hidden_irreps="8x0e+4x1o+4x1e+2x2e", n_layers=1, radial_hidden=16, n_radial=6,
                  n_scalars_embed=8, repulsion_cutoff=2.5, lmax=2)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def write_config(path: Path, **cfg) -> Path:
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg, default=str))))
    return path


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "fastqmd.cli", *args], env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path → bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}
