"""Harmonic frequencies of water at the relaxed Hi-Fi geometry (results/geometry.json), FD8, h = 0.125, L = 12 Bohr.

Hessian by central differences (δ = 0.005 Å) of the analytic forces for the in-plane coordinates; the molecule's
mirror plane (y → −y, which maps the grid onto itself since O sits on a grid point) gives the H2 columns from the H1
displacements (8 SCFs instead of 12). The out-of-plane block only holds translation/rotation modes and is set to 0.
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dft/water_frequencies.py [DELTA_ANG] [--richardson]
DELTA_ANG = 0.066 (= h = 0.125 Bohr, the default) makes the displacements one grid spacing, so that the egg-box
force, periodic in h, cancels in F(+δ) − F(−δ); δ = 0.005 Å picks up the egg-box curvature (rigid in-plane modes at
400–500 cm⁻¹ and a bend 6 % too stiff, see geometry_delta0.005.json).
But one grid spacing is a large step for the bend: the central difference of forces is H(δ) = H + c δ² + O(δ⁴)
(c = ∂⁴E/6), and at δ = 0.125 Bohr the quartic term lowers the bend by ≈ 37 cm⁻¹ (−2.4 %; PySCF, bend_pyscf*.json;
bend_study.py). `--richardson` removes it with the two egg-box-free steps δ and 2δ:
H_R = (4 H(δ) − H(2δ)) / 3 = H + O(δ⁴); H(δ) is reused from geometry.json when its δ matches (8 SCFs instead of
16); the result goes to geometry_richardson.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.units import Bohr
from ase.vibrations import VibrationsData

from fastqmd.dft.calculator import RSDFTCalculator

RES = Path(__file__).parent / "results" / "geometry.json"
H_BOHR = 0.125


def projected_frequencies(atoms, H: np.ndarray) -> list[float]:
    """Harmonic wavenumbers (cm⁻¹) after projecting the 3 translations and 3 rotations out of the mass-weighted
    Hessian (the grid breaks translational invariance: the egg-box gives the rigid in-plane modes ~400 cm⁻¹)."""
    m = atoms.get_masses()
    R = atoms.positions - atoms.get_center_of_mass()
    sq = np.repeat(np.sqrt(m), 3)
    vecs = [np.tile(np.eye(3)[k], len(m)) * sq for k in range(3)]
    vecs += [np.cross(np.eye(3)[k], R).ravel() * sq for k in range(3)]
    Q, _ = np.linalg.qr(np.array(vecs).T)
    P = np.eye(len(sq)) - Q @ Q.T
    Hmw = P @ (H / np.outer(sq, sq)) @ P
    lam = np.linalg.eigvalsh(0.5 * (Hmw + Hmw.T))
    # sqrt(eV/(Å² amu)) → cm⁻¹
    conv = np.sqrt(1.602176634e-19 / (1e-20 * 1.66053906660e-27)) / (2 * np.pi * 2.99792458e10)
    return sorted(float(np.sign(x) * np.sqrt(abs(x)) * conv) for x in lam)


def richardson(H_d: np.ndarray, H_2d: np.ndarray) -> np.ndarray:
    """H_R = (4 H(δ) − H(2δ)) / 3: cancels the δ² term of the central-difference Hessian H(δ) = H + c δ² + O(δ⁴)."""
    return (4 * np.asarray(H_d) - np.asarray(H_2d)) / 3


def hessian(atoms, delta: float) -> np.ndarray:
    """In-plane central-difference Hessian (eV/Å²) from 8 SCFs (O, H1 along x, y; H2 by the mirror y → −y)."""
    forces = {}
    for a in (0, 1):
        for k in (0, 1):
            for s in (1, -1):
                at = atoms.copy()
                at.calc = atoms.calc
                at.positions[a, k] += s * delta
                forces[(a, k, s)] = at.get_forces().copy()
                print(a, k, s, forces[(a, k, s)].ravel(), flush=True)
    M = np.diag([1.0, -1.0, 1.0])
    perm = [0, 2, 1]
    for k in (0, 1):  # H2 displacements as mirror images of H1 displacements
        for s in (1, -1):
            s1 = s if k == 0 else -s
            forces[(2, k, s)] = forces[(1, k, s1)][perm] @ M.T
    H = np.zeros((9, 9))
    for (a, k, s), F in forces.items():
        if s == 1:
            H[:, 3 * a + k] = -(F - forces[(a, k, -1)]).ravel() / (2 * delta)
    return 0.5 * (H + H.T)


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--richardson"]
    richardson_mode = "--richardson" in sys.argv[1:]
    geo = json.loads(RES.read_text())
    r1, r2 = geo["r_OH_bohr"]
    r, th = 0.5 * (r1 + r2), np.deg2rad(geo["angle_deg"])
    pos = np.array([[0, 0, 0], [r * np.cos(th / 2), r * np.sin(th / 2), 0], [r * np.cos(th / 2), -r * np.sin(th / 2), 0]]) * Bohr
    atoms = Atoms("OH2", positions=pos, cell=[12 * Bohr] * 3, pbc=True)
    atoms.calc = RSDFTCalculator(grid_points=96, fd_order=8, energy_tol_eV=1e-8 * 27.211386, density_tol=1e-6)
    t0 = time.perf_counter()
    F0 = atoms.get_forces().copy()
    delta = float(args[0]) if args else H_BOHR * Bohr
    if richardson_mode:
        same = abs(float(np.atleast_1d(geo.get("delta_ang", -1.0))[0]) - delta) < 1e-12 and "hessian_method" not in geo
        H_d = np.array(geo["hessian_eV_per_A2"]) if same else hessian(atoms, delta)
        H = richardson(H_d, hessian(atoms, 2 * delta))
    else:
        H = hessian(atoms, delta)
    freqs = np.real(VibrationsData.from_2d(atoms, H).get_frequencies())
    proj = projected_frequencies(atoms, H)
    geo.update(delta_ang=delta, hessian_eV_per_A2=H.tolist(), freqs_projected_cm1=proj[-3:],
               freqs_projected_error_percent=[100 * (f / ref - 1) for f, ref in zip(proj[-3:], [1556.9, 3697.3, 3807.1])])
    geo.update(freqs_cm1_all=freqs.tolist(), freqs_cm1=sorted(freqs)[-3:], forces_at_min_eV_per_ang=F0.tolist(),
               freq_command="OMP_NUM_THREADS=1 .venv/bin/python " + " ".join(sys.argv), freq_s=time.perf_counter() - t0,
               freq_error_percent=[100 * (f / ref - 1) for f, ref in zip(sorted(freqs)[-3:], [1556.9, 3697.3, 3807.1])])
    if richardson_mode:
        geo.update(delta_ang=[delta, 2 * delta], hessian_method="richardson: (4 H(delta) - H(2 delta)) / 3")
        out = RES.with_name("geometry_richardson.json")
    else:
        out = RES if not args else RES.with_name(f"geometry_delta{args[0]}.json")
    out.write_text(json.dumps(geo, indent=1))
    print(json.dumps(geo, indent=1))


if __name__ == "__main__":
    main()
