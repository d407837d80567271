"""Independent PySCF numbers for the water bend (GTH-Padé + Teter93 LDA, Gaussian basis, isolated molecule).

In: basis name (default gth-aug-qzv3p). Out: results/bend_pyscf.json with
 (1) the A1 force constants in the same O-pinned coordinates as bend_study.py (x: both H along the bisector,
     y: H1 +y / H2 −y), by central differences of analytic PySCF gradients for several δ (Bohr), at the PySCF
     minimum and at the real-space minimum (FD8, h = 0.125, L = 12; geometry.json) — this separates the
     anharmonic bias of a finite δ and the geometry shift from everything grid-related;
 (2) the full 9×9 Cartesian Hessian (δ = 0.005 Bohr, gradient differences) analysed with pyscf.hessian.thermo
     (which masses PySCF uses) and with both isotopic and ASE-default masses.
    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/dft/bend_pyscf.py [BASIS]
 (3) `bend_pyscf.py old-estimator`: the exact protocol of water_frequencies.py (O and H1 displaced by ±δ along x
     and y, H2 columns by mirror symmetry, out-of-plane block 0, translations/rotations projected out, ASE
     masses) applied to PySCF forces at the real-space minimum, for δ = 0.005 and 0.125 Bohr
     → results/bend_pyscf_old_estimator.json.
 (4) `bend_pyscf.py richardson`: A1 block at the real-space minimum for δ = 0.0625 … 0.375 Bohr (the steps used on
     the h = 0.125 and h = 0.1875 grids) and the Richardson combinations (4 K(δ) − K(2δ))/3
     → results/bend_pyscf_richardson.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from pyscf import dft, gto
from pyscf.hessian import thermo

sys.path.insert(0, str(Path(__file__).parent))
from bend_study import MASSES, a1_forces, a1_frequencies, water

OUT = Path(__file__).parent / "results" / "bend_pyscf.json"
REF_MIN = (1.83571, 104.907)
RS_MIN = (1.8348054, 104.59734)


def make_mol(pos: np.ndarray, basis: str):
    atom = [[s, tuple(p)] for s, p in zip("OHH", pos)]
    return gto.M(atom=atom, unit="Bohr", basis=basis, pseudo="gth-pade", verbose=0)


def forces(pos: np.ndarray, basis: str, dm0=None):
    """(E, F [3, 3] Ha/Bohr, density matrix) of RKS Teter93 at positions (Bohr)."""
    mf = dft.RKS(make_mol(pos, basis))
    mf.xc, mf.grids.level, mf.conv_tol = "LDA_XC_TETER93", 5, 1e-12
    e = mf.kernel(dm0=dm0)
    return e, -mf.nuc_grad_method().kernel(), mf.make_rdm1()


def a1_block(geo, deltas, basis) -> list[dict]:
    rows = []
    _, _, dm = forces(water(*geo), basis)
    for d in deltas:
        cols = []
        for j in range(2):
            q = d * np.eye(2)[j]
            Qp = a1_forces(forces(water(*geo, tuple(q)), basis, dm)[1])
            Qm = a1_forces(forces(water(*geo, tuple(-q)), basis, dm)[1])
            cols.append(-(Qp - Qm) / (2 * d))
        K = np.array(cols).T
        K = 0.5 * (K + K.T)
        rows.append({"delta_bohr": d, "K_Ha_per_bohr2": K.tolist(),
                     **{f"freqs_cm1_{k}": a1_frequencies(K, *m) for k, m in MASSES.items()}})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def cartesian(geo, basis, d=0.005) -> dict:
    pos0 = water(*geo)
    H = np.zeros((9, 9))
    for i in range(9):
        p, m = pos0.copy().ravel(), pos0.copy().ravel()
        p[i] += d
        m[i] -= d
        H[:, i] = -(forces(p.reshape(3, 3), basis)[1] - forces(m.reshape(3, 3), basis)[1]).ravel() / (2 * d)
    H = 0.5 * (H + H.T)
    mol = make_mol(pos0, basis)
    out = {"pyscf_atom_mass_list": mol.atom_mass_list().tolist()}
    h4 = H.reshape(3, 3, 3, 3).transpose(0, 2, 1, 3)
    out["freqs_cm1_pyscf_thermo_default_mass"] = sorted(np.real(thermo.harmonic_analysis(mol, h4)["freq_wavenumber"]).tolist())
    for k, (mO, mH) in MASSES.items():
        r = thermo.harmonic_analysis(mol, h4, mass=np.array([mO, mH, mH]))
        out[f"freqs_cm1_{k}"] = sorted(np.real(r["freq_wavenumber"]).tolist())
    print(json.dumps(out), flush=True)
    return out


def old_estimator(geo, d: float, basis: str) -> dict:
    """water_frequencies.py's Hessian (8 displaced SCFs + mirror images) with PySCF forces; δ in Bohr."""
    from ase import Atoms
    from ase.units import Bohr
    from water_frequencies import projected_frequencies

    pos0 = water(*geo)
    _, _, dm = forces(pos0, basis)
    f = {}
    for a in (0, 1):
        for k in (0, 1):
            for s in (1, -1):
                p = pos0.copy()
                p[a, k] += s * d
                f[(a, k, s)] = forces(p, basis, dm)[1]
    M, perm = np.diag([1.0, -1.0, 1.0]), [0, 2, 1]
    for k in (0, 1):
        for s in (1, -1):
            f[(2, k, s)] = f[(1, k, s if k == 0 else -s)][perm] @ M.T
    H = np.zeros((9, 9))
    for (a, k, s), F in f.items():
        if s == 1:
            H[:, 3 * a + k] = -(F - f[(a, k, -1)]).ravel() / (2 * d)
    H = 0.5 * (H + H.T) * 27.211386245988 / Bohr**2  # Ha/Bohr² → eV/Å²
    atoms = Atoms("OH2", positions=pos0 * Bohr)
    out = {"delta_bohr": d, "hessian_eV_per_A2": H.tolist(),
           "freqs_projected_cm1_ase_masses": projected_frequencies(atoms, H)[-3:]}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    if sys.argv[1:] == ["richardson"]:
        t = time.perf_counter()
        rows = a1_block(RS_MIN, [0.005, 0.0625, 0.125, 0.1875, 0.25, 0.375], "gth-aug-qzv3p")
        K = {r["delta_bohr"]: np.array(r["K_Ha_per_bohr2"]) for r in rows}
        rich = [{"deltas_bohr": [d, 2 * d], **{f"freqs_cm1_{k}": a1_frequencies((4 * K[d] - K[2 * d]) / 3, *m)
                                                for k, m in MASSES.items()}} for d in (0.0625, 0.125, 0.1875)]
        res = {"basis": "gth-aug-qzv3p", "geometry": RS_MIN, "a1_rows": rows, "richardson": rich,
               "wall_s": time.perf_counter() - t,
               "command": "OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/dft/bend_pyscf.py richardson"}
        OUT.with_name("bend_pyscf_richardson.json").write_text(json.dumps(res, indent=1))
        print(json.dumps(rich))
        return
    if sys.argv[1:] == ["old-estimator"]:
        t = time.perf_counter()
        rows = [old_estimator(RS_MIN, d, "gth-aug-qzv3p") for d in (0.005, 0.125, 0.25)]
        from ase import Atoms
        from ase.units import Bohr
        from water_frequencies import projected_frequencies

        H_r = (4 * np.array(rows[1]["hessian_eV_per_A2"]) - np.array(rows[2]["hessian_eV_per_A2"])) / 3
        rows.append({"delta_bohr": "richardson(0.125, 0.25)",
                     "freqs_projected_cm1_ase_masses": projected_frequencies(Atoms("OH2", positions=water(*RS_MIN) * Bohr), H_r)[-3:]})
        res = {"basis": "gth-aug-qzv3p", "geometry": RS_MIN, "rows": rows, "wall_s": time.perf_counter() - t,
               "command": "OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/dft/bend_pyscf.py old-estimator"}
        OUT.with_name("bend_pyscf_old_estimator.json").write_text(json.dumps(res, indent=1))
        return
    basis = sys.argv[1] if len(sys.argv) > 1 else "gth-aug-qzv3p"
    t = time.perf_counter()
    res = {"basis": basis, "xc": "LDA_XC_TETER93", "pseudo": "gth-pade", "grids_level": 5,
           "a1_at_pyscf_min": a1_block(REF_MIN, [0.005, 0.02, 0.0625, 0.125, 0.25], basis),
           "a1_at_realspace_min": a1_block(RS_MIN, [0.005, 0.125], basis),
           "cartesian_at_pyscf_min": cartesian(REF_MIN, basis)}
    res.update(wall_s=time.perf_counter() - t,
               command="OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/dft/bend_pyscf.py " + " ".join(sys.argv[1:]))
    OUT.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
