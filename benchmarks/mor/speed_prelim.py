"""Preliminary MOR-QMD speed (issue 11, part 7): one online step vs one warm Hi-Fi ABPG step, same grid, same machine,
one run, with the online breakdown (geometry, density, Hartree, XC, reduced matrices, forces).

Basis: the occupied orbitals of the study's 18 training geometries (72 snapshots; Hi-Fi LOBPCG SCFs warm-started
along the grid), thin SVD, rank by Σσ at 1 − ε (ε = 1e−4 default). Step: from a converged state at a predictive
geometry (s1 = 1.02, s2 = 0.98, Δθ = +2°), H1 moved by (0.02, −0.01, 0) Bohr (one MD step's size); Hi-Fi warm
start from the previous orbitals and density with the MD tolerances of benchmarks/dft/md_water_hifi.yaml
(|ΔF| < 1e−7 Ha twice, ∫|Δn| < 1e−4); MOR warm start from the previous X, |F'(0)| < tol. Also the MOR error
against a tight Hi-Fi SCF at the stepped geometry (a preview of the accuracy map).
  OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/mor/speed_prelim.py [--points 64] [--out FILE] [--basis FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--points", type=int, default=64)
    p.add_argument("--fd-order", type=int, default=4)
    p.add_argument("--epsilon", type=float, default=1e-4)
    p.add_argument("--tol", type=float, default=1e-9)
    p.add_argument("--out", default=None)
    p.add_argument("--basis", default=None, help="basis file: reused when it exists, else written")
    a = p.parse_args(argv)

    from fastqmd.dft.forces import hellmann_feynman_forces
    from fastqmd.dft.grid import Grid
    from fastqmd.dft.scf import Model, scf
    from fastqmd.mor.basis import build_basis, load_basis, save_basis
    from fastqmd.mor.frame import WATER
    from fastqmd.mor.online import reduced_basis, solve
    from fastqmd.mor.sampling import STUDY_TRAINING, SamplingConfig, canonical_positions, geometries

    grid = Grid.cube(12.0, a.points, fd_order=a.fd_order)
    cfg = SamplingConfig(grid=STUDY_TRAINING)
    t0 = time.perf_counter()
    U0 = n0 = None
    if a.basis and Path(a.basis).exists():
        basis = load_basis(a.basis)
        t_snap = float(basis.extras.get("snapshot_wall_s", float("nan")))
    else:
        snaps = []
        for g in geometries(cfg):
            r = scf(Model(("O", "H", "H"), g.positions_bohr), grid, U0=U0, n0=n0, e_tol=1e-9, rho_tol=1e-7)
            U0, n0 = r.orbitals, r.density
            snaps.append(r.orbitals[:4])
        t_snap = time.perf_counter() - t0
        model0 = Model(("O", "H", "H"), np.zeros((3, 3)))
        basis = build_basis(np.concatenate(snaps), grid, model0, WATER, epsilon=a.epsilon, criterion="sigma",
                            extras={"snapshot_wall_s": t_snap})
        if a.basis:
            save_basis(a.basis, basis)
    rb = reduced_basis(basis.vectors, grid)
    print(f"snapshots {t_snap:.0f} s, rank {basis.rank} (Σσ, ε = {a.epsilon:g})", flush=True)

    R0 = canonical_positions(cfg.template, 1.02, 0.98, 104.5 + 2.0)
    R1 = R0.copy()
    R1[1] += [0.02, -0.01, 0.0]
    m0, m1 = Model(("O", "H", "H"), R0), Model(("O", "H", "H"), R1)

    # Hi-Fi: converged state at R0, then one warm ABPG step to R1 (MD tolerances), and a tight reference at R1
    h0 = scf(m0, grid, U0=U0, n0=n0, e_tol=1e-10, rho_tol=1e-8)
    t0 = time.perf_counter()
    h1 = scf(m1, grid, eigensolver="abpg", U0=h0.orbitals, n0=h0.density, e_tol=1e-7, rho_tol=1e-4)
    F_h1 = hellmann_feynman_forces(h1)
    t_hifi = time.perf_counter() - t0
    ref = scf(m1, grid, U0=h1.orbitals, n0=h1.density, e_tol=1e-11, rho_tol=1e-9)
    F_ref = hellmann_feynman_forces(ref)

    # MOR: converged X at R0 (cold), then the warm step to R1
    o0 = solve(rb, m0, tol=a.tol)
    t0 = time.perf_counter()
    o1 = solve(rb, m1, X0=o0.X, tol=a.tol)
    t_mor = time.perf_counter() - t0
    tm = {k: round(v, 4) for k, v in o1.timings.items()}
    dF_mor = np.linalg.norm(o1.forces - F_ref, axis=1)[1:].max()  # H atoms, Ha/Bohr
    dF_hifi = np.linalg.norm(F_h1 - F_ref, axis=1)[1:].max()
    cmd = "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/mor/speed_prelim.py "
    out = {
        "command": cmd + " ".join(argv or sys.argv[1:]),
        "grid": {"points": a.points, "h_bohr": 12.0 / a.points, "fd_order": a.fd_order, "boundary": "periodic"},
        "basis": {"n_snapshots": len(basis.singular_values), "rank": basis.rank, "criterion": "sigma",
                  "epsilon": a.epsilon, "energy_fraction": basis.energy_fraction, "snapshot_wall_s": round(t_snap, 1)},
        "step": "H1 += (0.02, -0.01, 0) Bohr from the converged state at s1 = 1.02, s2 = 0.98, dtheta = +2 deg",
        "hifi_warm_step_s": round(t_hifi, 3), "hifi_iterations": h1.iterations,
        "hifi_tolerances": {"e_tol_Ha": 1e-7, "rho_tol": 1e-4, "eigensolver": "abpg"},
        "mor_step_s": round(t_mor, 4), "mor_iterations": o1.iterations, "mor_tol_Ha": a.tol,
        "mor_breakdown_s": tm, "speedup": round(t_hifi / t_mor, 2),
        "mor_vs_hifi_tight": {"energy_error_Ha": o1.free_energy - ref.free_energy,
                              "max_H_force_error_Ha_per_Bohr": float(dF_mor),
                              "hifi_warm_step_energy_error_Ha": h1.free_energy - ref.free_energy,
                              "hifi_warm_step_max_H_force_error_Ha_per_Bohr": float(dF_hifi)},
        "machine": {"platform": platform.platform(), "load_avg_1min": os.getloadavg()[0], "threads": 1},
    }
    print(json.dumps(out, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
