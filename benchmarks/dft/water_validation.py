"""Validation benchmarks of the real-space KS solver on water (GTH-Padé + Teter93 LDA).

Usage (one thread; results go to benchmarks/dft/results/<task>.json with the command that made them):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dft/water_validation.py convergence
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dft/water_validation.py isolated
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dft/water_validation.py timings
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dft/water_validation.py solvers
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dft/water_validation.py eggbox
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dft/water_validation.py geometry
Reference numbers: /work/shared/science/water_gth_pade.json (PySCF 2.14).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from fastqmd.dft.eigensolvers import ABPG, LOBPCG
from fastqmd.dft.forces import hellmann_feynman_forces
from fastqmd.dft.grid import Grid
from fastqmd.dft.scf import Model, scf

OUT = Path(__file__).parent / "results"
REF = {"periodic_L12": -17.1831, "isolated": -17.1835, "eig_fd8_h0.094": [-0.91947, -0.47946, -0.33999, -0.26704],
       "fd4_h0.1875": -17.2254059, "fd8_h0.1875": -17.18694743, "fd4_h0.125": -17.1919448, "fd8_h0.125": -17.18343821,
       "fd4_h0.0938": -17.1860228, "fd8_h0.0938": -17.18321987}


def water(r1=1.83, r2=1.83, angle=104.5, shift=(0.0, 0.0, 0.0)) -> Model:
    th = np.deg2rad(angle)
    pos = np.array([[0, 0, 0], [r1 * np.cos(th / 2), r1 * np.sin(th / 2), 0], [r2 * np.cos(th / 2), -r2 * np.sin(th / 2), 0]])
    return Model(("O", "H", "H"), pos + np.asarray(shift))


def save(task: str, data: dict) -> None:
    OUT.mkdir(exist_ok=True)
    data = {"command": "OMP_NUM_THREADS=1 .venv/bin/python " + " ".join(sys.argv), "machine": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "load_average_1min_at_save": os.getloadavg()[0],
            "note": "shared machine (2 cores, several users): timings are indicative", **data}
    (OUT / f"{task}.json").write_text(json.dumps(data, indent=1))
    print(json.dumps(data, indent=1))


def row(res, t) -> dict:
    return {"energy_Ha": res.free_energy, "eigenvalues_Ha": res.eigenvalues[:4].tolist(), "iterations": res.iterations,
            "converged": res.converged, "wall_s": t, "forces_Ha_per_bohr": hellmann_feynman_forces(res).tolist()}


def convergence() -> None:
    rows = []
    for order in (4, 8):
        for n in (64, 96, 128):
            g = Grid.cube(12.0, n, fd_order=order)
            t = time.perf_counter()
            r = scf(water(), g, e_tol=1e-8)
            d = row(r, time.perf_counter() - t)
            h = 12.0 / n
            key = f"fd{order}_h{h:.4g}" if n != 128 else f"fd{order}_h0.0938"
            d.update(fd_order=order, n=n, h=h, pyscf_fd_reference=REF.get(key), error_vs_continuum_mHa=1e3 * (r.free_energy - REF["periodic_L12"]),
                     eig_error_vs_fd8_h0094_mHa=(1e3 * (r.eigenvalues[:4] - np.array(REF["eig_fd8_h0.094"]))).tolist())
            rows.append(d)
            print(d, flush=True)
    save("convergence_periodic", {"reference_continuum_Ha": REF["periodic_L12"], "rows": rows})


def isolated() -> None:
    rows = []
    for L, n, order in ((16.0, 128, 8), (12.0, 96, 8), (12.0, 64, 8)):
        g = Grid.cube(L, n, fd_order=order, periodic=False)
        t = time.perf_counter()
        r = scf(water(), g, e_tol=1e-8)
        d = row(r, time.perf_counter() - t)
        d.update(L=L, n=n, h=L / n, fd_order=order, error_vs_isolated_reference_mHa=1e3 * (r.free_energy - REF["isolated"]))
        rows.append(d)
        print(d, flush=True)
    save("isolated", {"reference_isolated_Ha": REF["isolated"], "rows": rows})


def timings() -> None:
    g = Grid.cube(12.0, 64, fd_order=4)
    from fastqmd.dft.hamiltonian import Hamiltonian, KineticPreconditioner

    out = {}
    t = time.perf_counter()
    r = scf(water(), g, e_tol=1e-7)
    out["cold_scf_lobpcg_s"], out["cold_scf_iterations"] = time.perf_counter() - t, r.iterations
    t = time.perf_counter()
    hellmann_feynman_forces(r)  # timed only
    out["forces_s"] = time.perf_counter() - t
    H = Hamiltonian(g, r.v_eff, r.disc.blocks)
    t = time.perf_counter()
    for _ in range(10):
        H.apply(r.orbitals)
    out["H_apply_6_states_s"] = (time.perf_counter() - t) / 10
    K = KineticPreconditioner(g)
    t = time.perf_counter()
    for _ in range(10):
        K(r.orbitals)
    out["precond_6_states_s"] = (time.perf_counter() - t) / 10
    # warm MD step: H atoms move by a 300 K-like step (≈ 0.02 Bohr), orbitals/density from the previous step,
    # MD tolerances (|ΔF| < 1e-7 Ha twice, ∫|Δn| < 1e-4)
    model = water()
    for name in ("lobpcg", "abpg"):
        steps, prev = [], r
        for k in range(1, 4):
            pos = model.positions.copy()
            pos[1] += 0.02 * k * np.array([0.6, 0.8, 0.0])
            pos[2] += 0.02 * k * np.array([0.6, -0.8, 0.0])
            t = time.perf_counter()
            rr = scf(model.moved(pos), g, eigensolver=name, U0=prev.orbitals, n0=prev.density, e_tol=1e-7, rho_tol=1e-4)
            hellmann_feynman_forces(rr)
            steps.append({"wall_s": time.perf_counter() - t, "iterations": rr.iterations})
            prev = rr
        out[f"warm_md_steps_{name}"] = steps
        out[f"warm_md_step_mean_s_{name}"] = float(np.mean([s["wall_s"] for s in steps]))
    save("timings_64_fd4", out)


def solvers() -> None:
    out = {}
    for n in (32, 64):
        g = Grid.cube(12.0, n, fd_order=4)
        t = time.perf_counter()
        a = scf(water(), g, eigensolver=LOBPCG(), e_tol=1e-10, rho_tol=1e-7)
        ta = time.perf_counter() - t
        t = time.perf_counter()
        b = scf(water(), g, eigensolver=ABPG(), e_tol=1e-10, rho_tol=1e-7, max_iter=300)
        tb = time.perf_counter() - t
        out[f"n{n}"] = {"lobpcg_Ha": a.free_energy, "abpg_Ha": b.free_energy, "diff_Ha": b.free_energy - a.free_energy,
                        "lobpcg_iterations": a.iterations, "abpg_iterations": b.iterations, "lobpcg_s": ta, "abpg_s": tb,
                        "eig_diff_Ha": (b.eigenvalues - a.eigenvalues).tolist()}
        print(out, flush=True)
    save("solvers_abpg_vs_lobpcg", out)


def eggbox() -> None:
    """Rigid shifts of the molecule along x by fractions of h at the study's grid (64³, FD4), point-sampled vs filtered."""
    rows = []
    for order, n, filt in ((4, 64, False), (4, 64, True)):
        g = Grid.cube(12.0, n, fd_order=order)
        h = 12.0 / n
        base = None
        for frac in (0.0, 0.25, 0.5):
            m = water(shift=(frac * h, 0.0, 0.0))
            m = Model(m.symbols, m.positions, filter_pseudo=filt)
            r = scf(m, g, e_tol=1e-9, U0=None if base is None else base.orbitals)
            F = hellmann_feynman_forces(r)
            base = base or r
            rows.append({"fd_order": order, "h": h, "filtered": filt, "shift_over_h": frac, "energy_Ha": r.free_energy,
                         "dE_mHa": 1e3 * (r.free_energy - base.free_energy), "sum_F_Ha_per_bohr": F.sum(0).tolist(),
                         "forces": F.tolist(), "eigenvalues_Ha": r.eigenvalues[:4].tolist()})
            print(rows[-1], flush=True)
    save("eggbox", {"rows": rows})


def geometry() -> None:
    """BFGS relaxation and harmonic frequencies (ASE, central differences of analytic forces) at FD8, h = 0.125."""
    from ase import Atoms
    from ase.optimize import BFGS
    from ase.units import Bohr
    from ase.vibrations import Vibrations

    from fastqmd.dft.calculator import RSDFTCalculator

    atoms = Atoms("OH2", positions=water().positions * Bohr, cell=[12 * Bohr] * 3, pbc=True)
    atoms.calc = RSDFTCalculator(grid_points=96, fd_order=8, energy_tol_eV=1e-8 * 27.211386, density_tol=1e-6)
    t = time.perf_counter()
    BFGS(atoms, logfile="-").run(fmax=1e-3)  # eV/Å ≈ 2e-5 Ha/Bohr
    p = atoms.positions / Bohr
    r1, r2 = np.linalg.norm(p[1] - p[0]), np.linalg.norm(p[2] - p[0])
    ang = np.degrees(np.arccos(np.dot(p[1] - p[0], p[2] - p[0]) / (r1 * r2)))
    out = {"grid": "96^3 L=12 Bohr periodic FD8 h=0.125", "r_OH_bohr": [r1, r2], "angle_deg": ang,
           "E_min_Ha": atoms.get_potential_energy() / 27.211386245988, "relax_s": time.perf_counter() - t,
           "reference_aug_qzv3p": {"r_OH_bohr": 1.83571, "angle_deg": 104.907, "freqs_cm1": [1556.9, 3697.3, 3807.1]}}
    save("geometry", out)
    vib = Vibrations(atoms, delta=0.005, nfree=2, name="/tmp/rsdft_vib")
    vib.clean()
    vib.run()
    freqs = np.real(vib.get_frequencies())
    out.update(freqs_cm1_all=freqs.tolist(), freqs_cm1=sorted(freqs)[-3:], total_s=time.perf_counter() - t)
    vib.clean()
    save("geometry", out)


if __name__ == "__main__":
    globals()[sys.argv[1]]()
