"""How far GPAW's LCAO PBE/szp(dzp) Hamiltonian of Cu reaches: max |H_ij(R)| by distance |R| (primitive fcc cell,
a = 3.61 Å), from H(k) on a Γ-centred 8×8×8 mesh Fourier-transformed to H(R) = Σ_k w_k e^{−i2πk·R} H(k) (R within
±4 cells; the mesh aliases R and R ± 8, which only affects distances where H is already < 0.1 meV).
The NNH model's blocks stop at its cutoff; every H element beyond it is an error the network cannot remove.
    OMP_NUM_THREADS=1 python benchmarks/nnh_cu_dft/h_range.py      (~600 s here: 512 k-points)  → h_range.json
"""

import json
import time
from pathlib import Path

import numpy as np
from ase.build import bulk

from fastqmd.reference.config import build_engine, parse_engine_config


def main() -> None:
    eng = build_engine(parse_engine_config({"kind": "gpaw-lcao", "xc": "PBE", "basis": "szp(dzp)",
                                            "kpts": [8, 8, 8], "grid_spacing_A": 0.2}))
    a = bulk("Cu", a=3.61)
    t = time.time()
    s = eng.compute(a)
    wall = time.time() - t
    H, k = np.asarray(s.H), np.asarray(s.kpoints)
    w = np.full(len(k), 1.0 / len(k))
    rows: dict[float, float] = {}
    for R in np.array(np.meshgrid(*[np.arange(-4, 5)] * 3, indexing="ij")).reshape(3, -1).T:
        HR = np.einsum("k,kij->ij", w * np.exp(-2j * np.pi * k @ R), H).real
        d = round(float(np.linalg.norm(R @ a.cell.array)), 2)
        rows[d] = max(rows.get(d, 0.0), float(np.abs(HR).max()))
    out = {"what": __doc__.splitlines()[0], "wall_s": wall,
           "max_abs_H_meV_by_distance_A": {f"{d:.2f}": 1e3 * v for d, v in sorted(rows.items()) if d > 0}}
    (Path(__file__).resolve().parent / "h_range.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
