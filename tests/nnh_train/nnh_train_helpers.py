"""Helpers shared by the NNH training tests (a uniquely named module: tests folders are not packages)."""

import json
from pathlib import Path

import yaml

from fastqmd.testing import WATER_A as WATER, make_water_dataset  # noqa: F401 (re-exported)
TINY_MODEL = dict(cutoff=3.0, hidden_irreps="8x0e+4x1o+4x1e+2x2e", n_layers=1, radial_hidden=16, n_radial=6,
                  n_scalars_embed=8, repulsion_cutoff=2.5, lmax=2)


def write_config(path: Path, **cfg) -> Path:
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg, default=str))))
    return path
