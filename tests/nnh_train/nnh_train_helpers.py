"""Helpers shared by the NNH training tests (a uniquely named module: tests folders are not packages)."""

import json
from pathlib import Path

import numpy as np
import yaml
from ase import Atoms

WATER = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
TINY_MODEL = dict(cutoff=3.0, hidden_irreps="8x0e+4x1o+4x1e+2x2e", n_layers=1, radial_hidden=16, n_radial=6,
                  n_scalars_embed=8, repulsion_cutoff=2.5, lmax=2)


def make_water_dataset(path: Path, n: int = 8, seed: int = 0, rattle: float = 0.06) -> Path:
    """n rattled water molecules labelled with tblite GFN2-xTB (300 K), written with the fastqmd store."""
    from fastqmd.data.store import Header, atomic_write, write_header, write_sample
    from fastqmd.reference.xtb import TBLiteEngine

    eng = TBLiteEngine(method="GFN2-xTB", electronic_temperature_K=300.0)
    rng = np.random.default_rng(seed)
    samples = [eng.compute(Atoms("OHH", positions=WATER + rattle * rng.normal(size=(3, 3)))) for _ in range(n)]

    def fill(f):
        write_header(f, Header(eng.name, eng.settings))
        for i, s in enumerate(samples):
            write_sample(f, i, s, "test-water", 0.9)

    atomic_write(path, fill)
    return path


def write_config(path: Path, **cfg) -> Path:
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg, default=str))))
    return path
