"""The fine-tuning set of the study: N rotated water molecules displaced from ASE's H2O by σ ∈ SIGMAS (Å),
labelled with PySCF PBE/def2-SVP (the project's water level of theory; the same engine and settings as
benchmarks/mlip_universal/measure.py), ~3 CPU-s each.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/mlip_finetune/label_water.py

Writes out/mlip_finetune/water_pbe_ft.h5 (not in git).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "out" / "mlip_finetune" / "water_pbe_ft.h5"
N = 60
SIGMAS = (0.05, 0.08, 0.12)


def main() -> Path:
    from ase.build import molecule

    from fastqmd.data.store import Header, atomic_write, write_header, write_sample
    from fastqmd.orbitals import random_rotation
    from fastqmd.reference.pyscf_mol import PySCFMolEngine

    if OUT.exists():
        return OUT
    OUT.parent.mkdir(parents=True, exist_ok=True)
    eng, rng, samples = PySCFMolEngine(xc="PBE", basis="def2-SVP"), np.random.default_rng(2026), []
    for i in range(N):
        sigma = SIGMAS[i % len(SIGMAS)]
        a = molecule("H2O")
        a.positions = (a.positions + rng.normal(0.0, sigma, (3, 3))) @ random_rotation(1000 + i).T
        samples.append((sigma, eng.compute(a)))
        print(f"PBE sample {i}: σ = {sigma} Å, {samples[-1][1].wall_time_s:.1f} s", flush=True)

    def fill(f):
        write_header(f, Header(eng.name, eng.settings))
        for i, (sigma, s) in enumerate(samples):
            write_sample(f, i, s, f"water sigma={sigma}", 0.5)

    atomic_write(OUT, fill)
    return OUT


if __name__ == "__main__":
    print(main())
