"""The fine-tuning set of the study: N rotated water molecules displaced from ASE's H2O by σ ∈ SIGMAS (Å),
labelled with PySCF PBE/def2-SVP (the project's water level of theory; the same engine and settings as
benchmarks/mlip_universal/measure.py), ~3 CPU-s each.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/mlip_finetune/label_water.py

Writes out/mlip_finetune/water_pbe_ft.h5 (not in git).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "out" / "mlip_finetune" / "water_pbe_ft.h5"
N = 60
SIGMAS = (0.05, 0.08, 0.12)


def main() -> Path:
    sys.path.insert(0, str(ROOT / "benchmarks" / "mlip_universal"))
    from measure import rotated_water_set

    OUT.parent.mkdir(parents=True, exist_ok=True)
    return rotated_water_set(OUT, [SIGMAS[i % len(SIGMAS)] for i in range(N)], seed=2026, rotation_seed=1000)


if __name__ == "__main__":
    print(main())
