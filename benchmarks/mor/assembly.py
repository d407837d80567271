"""Local learning, global assembly (issue 11 stretch): water clusters from one per-molecule MOR basis vs Hi-Fi.

The basis is the make-demo one (demo_out/mor/md_demo32_basis.h5: 32³ periodic 12 Bohr cube, h = 0.375, FD4,
filtered GTH-Padé, Teter93, 18 geometries around this grid's relaxed water, Σσ rank 35). Clusters live on bigger
boxes with the same spacing (the basis is placed by `fastqmd.mor.assembly`); every O sits on a grid point (on this
grid an O moved off a grid point changes the Hi-Fi energy by up to 0.19 Ha — the egg-box — which no basis learned
with O on a grid point can follow), the H atoms anywhere. Everything is compared with Hi-Fi `scf` (ABPG) on the same
grid and geometry: energies, binding energies E_cluster − Σ E_monomer (each monomer alone at its cluster placement,
same grid), forces per atom, and the Hellmann–Feynman forces of the moving basis against −dE/dR (Pulay).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/mor/assembly.py [--trimer] [--fd]

Hi-Fi results are cached in demo_out/mor/asm_hifi.json (rerun cheaply); writes benchmarks/mor/assembly.json + .png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from fastqmd.dft.forces import hellmann_feynman_forces
from fastqmd.dft.grid import Grid
from fastqmd.dft.scf import scf
from fastqmd.mor.assembly import cluster_model, finite_difference_forces, solve_cluster, spline_basis
from fastqmd.mor.basis import load_basis

BASIS = Path("demo_out/mor/md_demo32_basis.h5")
CACHE = Path("demo_out/mor/asm_hifi.json")
OUT = Path("benchmarks/mor/assembly.json")
H = 0.375
R_OH, THETA = 1.751, np.deg2rad(125.8)  # this grid's relaxed water (examples/mor/water_demo32_start.extxyz)
HIFI = dict(eigensolver="abpg", e_tol=1e-8, rho_tol=1e-6, max_iter=300)
ROUNDS = (0, 1, 2, 3, 4)
PULAY_ROUNDS = (0, 2)
N_EMPTY = 4
BEND = 20.0  # degrees, trimer H-bond bend


def box(nx, ny, nz) -> Grid:
    """[−L/2, L/2) per axis, spacing H: the origin −L/2 is a multiple of H, so grid points are multiples of H."""
    return Grid((nx, ny, nz), (H,) * 3, tuple(-n * H / 2 for n in (nx, ny, nz)), 4, True)


def water(O, u, v, kind: str, beta_deg: float = 57.0) -> np.ndarray:
    """[3, 3] Bohr, labels O H H. u: unit vector to the H-bond partner, v ⊥ u in the mirror plane.
    donor: H_d along u, H_f at ∠θ from it on the +v side; acceptor: bisector b = cos β u − sin β v (away from the
    donor, lone pair towards it), H's at ±θ/2 about b along w = u × v."""
    O, u, v = (np.asarray(a, float) for a in (O, u, v))
    if kind == "donor":
        return np.array([O, O + R_OH * u, O + R_OH * (np.cos(THETA) * u + np.sin(THETA) * v)])
    w = np.cross(u, v)
    b = np.cos(np.deg2rad(beta_deg)) * u - np.sin(np.deg2rad(beta_deg)) * v
    c, s = np.cos(THETA / 2), np.sin(THETA / 2)
    return np.array([O, O + R_OH * (c * b + s * w), O + R_OH * (c * b - s * w)])


def dimer(O_A, e_OO: np.ndarray, d: float, v: np.ndarray) -> list[np.ndarray]:
    u = e_OO / np.linalg.norm(e_OO)
    v = v - (v @ u) * u
    v /= np.linalg.norm(v)
    return [water(O_A, u, v, "donor"), water(np.asarray(O_A) + d * u, u, v, "acceptor")]


def trimer() -> list[np.ndarray]:
    """Cyclic trimer in the xy plane: O at grid points (0,0), (14,0), (7,12) h (sides 5.25, 5.21, 5.21 Bohr) about
    the box centre; molecule i donates its H_d towards O_{i+1}, bent BEND degrees out of the triangle (a linear
    H-bond puts neighbouring donated H's 1.6 Å apart); free H's out of plane (up, up, down) as in (H2O)3."""
    P = (np.array([[0, 0, 0], [14, 0, 0], [7, 12, 0]]) - np.array([7, 4, 0])) * H
    mols = []
    for i, up in zip(range(3), (1, 1, -1)):
        u = P[(i + 1) % 3] - P[i]
        u /= np.linalg.norm(u)
        inward = P.mean(0) - P[i]
        v = inward - (inward @ u) * u
        v = np.cos(np.deg2rad(60)) * (-v / np.linalg.norm(v)) + np.sin(np.deg2rad(60)) * np.array([0, 0, up])
        v -= (v @ u) * u
        out = -inward - (-inward @ u) * u  # in-plane, away from the centroid
        u_h = np.cos(np.deg2rad(BEND)) * u + np.sin(np.deg2rad(BEND)) * out / np.linalg.norm(out)
        v -= (v @ u_h) * u_h
        mols.append(water(P[i], u_h, v / np.linalg.norm(v), "donor"))
    return mols


def cases(with_trimer: bool) -> dict:
    """name → (grid shape, molecules, monomer placements equivalent by grid translations noted in 'same')."""
    out = {}
    for n in (14, 15, 16, 17):  # O–O = n h = 5.25, 5.625, 6.0, 6.375 Bohr along x
        out[f"dimer_{n * H:.3f}"] = ((48, 32, 32), dimer(np.array([-8, 0, 0]) * H, np.array([1.0, 0, 0]), n * H,
                                                         np.array([0.0, 1, 0])))
    # rotated: O–O along the lattice vector (10, 10, 5) h (length 15 h = 5.625 Bohr), mirror plane tilted
    out["dimer_rot_5.625"] = ((48, 48, 32), dimer(np.array([-5, -5, -2]) * H, np.array([10.0, 10, 5]), 15 * H,
                                                  np.array([0.3, -0.5, 0.8])))
    if with_trimer:
        out["trimer"] = ((48, 48, 32), trimer())
    return out


def monomer_key(grid: Grid, X: np.ndarray) -> str:
    """Cache key of a lone molecule: grid shape and positions relative to its O (on a grid point), so placements
    that differ by a grid vector — the same Hi-Fi problem exactly, the grid being periodic — share one solve."""
    rel = np.round((X - X[0]) / H, 6).ravel()
    return "mono_" + "x".join(map(str, grid.shape)) + "_" + ",".join(f"{r:g}" for r in rel)


def load_cache() -> dict:
    return json.loads(CACHE.read_text()) if CACHE.exists() else {}


def hifi(cache: dict, key: str, sb, mols, grid) -> dict:
    """Hi-Fi free energy and forces [n_atoms, 3] of molecules `mols` on `grid` (cached by key)."""
    if key in cache:
        return cache[key]
    model = cluster_model([sb] * len(mols), mols, n_empty=N_EMPTY)
    t0 = time.perf_counter()
    kw = dict(HIFI)
    warm = hifi.last.get((grid.shape, model.n_states))  # the previous solve of this size (the distance series)
    if warm is not None:
        kw.update(U0=warm.orbitals, n0=warm.density)
    r = scf(model, grid, **kw)
    hifi.last[(grid.shape, model.n_states)] = r
    rec = {"free_energy": r.free_energy, "forces": hellmann_feynman_forces(r).tolist(), "iterations": r.iterations,
           "wall_s": time.perf_counter() - t0, "grid": list(grid.shape), "positions": model.positions.tolist()}
    cache[key] = rec
    CACHE.write_text(json.dumps(cache, indent=1))
    print(f"  hifi {key}: F = {r.free_energy:.8f} ({r.iterations} it, {rec['wall_s']:.1f} s)", flush=True)
    return rec


hifi.last = {}


def mor(sb, mols, grid) -> dict:
    t0 = time.perf_counter()
    res, asm, Phi, hist = solve_cluster([sb] * len(mols), mols, grid, rounds=max(ROUNDS))
    return {"free_energy_rounds": hist, "forces": res.forces.tolist(), "k_stacked": int(sum(asm.sizes)),
            "k_assembled": asm.k, "k_final": int(Phi.shape[0]), "n_dropped": asm.n_dropped,
            "min_raw_norm": float(asm.raw_norms.min()), "min_overlap_eigenvalue": float(asm.overlap_eigenvalues[0]),
            "wall_s": time.perf_counter() - t0, "iterations_last": res.iterations}


def rotation_study(cache, sb) -> dict:
    """One water on the basis' own 32³ grid, O on the origin: canonical, 90° about z (exact resampling), 30° about z,
    a generic rotation; MOR (0..2 enrichment rounds) vs Hi-Fi of the same rotated molecule."""
    g = sb.basis.grid.grid()
    c, s = np.cos(THETA / 2), np.sin(THETA / 2)
    can = np.array([[0, 0, 0], [R_OH * c, R_OH * s, 0], [R_OH * c, -R_OH * s, 0]])
    rots = {"canonical": np.eye(3), "z90": Rotation.from_euler("z", 90, degrees=True).as_matrix(),
            "z30": Rotation.from_euler("z", 30, degrees=True).as_matrix(),
            "generic": Rotation.from_euler("zyx", [37, 21, -53], degrees=True).as_matrix()}
    out = {}
    for name, Q in rots.items():
        X = can @ Q.T
        ref = hifi(cache, f"mono32_{name}", sb, [X], g)
        m = mor(sb, [X], g)
        m["energy_error_rounds_Ha"] = [e - ref["free_energy"] for e in m["free_energy_rounds"]]
        m["max_force_error_Ha_per_Bohr"] = float(np.abs(np.array(m["forces"]) - ref["forces"]).max())
        m["hifi_free_energy"] = ref["free_energy"]
        out[name] = m
        print(f"rotation {name}: dE = {['%.2e' % e for e in m['energy_error_rounds_Ha']]}, "
              f"|dF| {m['max_force_error_Ha_per_Bohr']:.1e}, min raw norm {m['min_raw_norm']:.4f}", flush=True)
    return out


def cluster_study(cache, sb, name, shape, mols, fd: bool, pulay_done: dict | None = None) -> dict:
    g = box(*shape)
    ref = hifi(cache, name, sb, mols, g)
    mono_ref = [hifi(cache, monomer_key(g, X), sb, [X], g) for X in mols]
    m = mor(sb, mols, g)
    mono = [mor(sb, [X], g) for X in mols]
    r = len(ROUNDS)
    E_mor = np.array(m["free_energy_rounds"])
    E_mon = np.sum([mm["free_energy_rounds"] for mm in mono], axis=0)
    bind_hifi = ref["free_energy"] - sum(x["free_energy"] for x in mono_ref)
    F_err = np.linalg.norm(np.array(m["forces"]) - np.array(ref["forces"]), axis=1)
    rec = {"grid": list(shape), "O_O_bohr": float(np.linalg.norm(mols[1][0] - mols[0][0])),
           "positions_bohr": np.concatenate(mols).tolist(), "hifi_free_energy": ref["free_energy"],
           "hifi_binding_Ha": bind_hifi, "hifi_monomer_free_energies": [x["free_energy"] for x in mono_ref],
           "mor": m, "mor_energy_error_rounds_Ha": (E_mor - ref["free_energy"]).tolist(),
           "mor_monomer_energy_error_rounds_Ha": (E_mon - sum(x["free_energy"] for x in mono_ref)).tolist(),
           "mor_binding_rounds_Ha": (E_mor - E_mon).tolist(),
           "binding_error_rounds_Ha": (E_mor - E_mon - bind_hifi).tolist(),
           "force_error_per_atom_Ha_per_Bohr": F_err.tolist(), "max_force_error_Ha_per_Bohr": float(F_err.max()),
           "hifi_max_force_Ha_per_Bohr": float(np.linalg.norm(ref["forces"], axis=1).max()), "rounds": list(ROUNDS)[:r]}
    print(f"{name}: E_err {['%.2e' % e for e in rec['mor_energy_error_rounds_Ha']]}, bind hifi {bind_hifi * 1e3:.2f} mHa, "
          f"mor {['%.2f' % (e * 1e3) for e in rec['mor_binding_rounds_Ha']]} mHa, max |dF| {F_err.max():.1e} "
          f"(k {m['k_stacked']}→{m['k_assembled']}→{m['k_final']}, {m['wall_s']:.1f} s)", flush=True)
    if fd:
        # donor H_d along the bond, acceptor O along the O–O axis, acceptor H out of the mirror plane
        comps = [(0, 1, 0), (1, 0, 0), (1, 1, 2)]
        rec["pulay"] = dict(pulay_done or {})
        for rounds in PULAY_ROUNDS:
            if f"rounds_{rounds}" in rec["pulay"]:
                continue
            t0 = time.perf_counter()
            res = solve_cluster([sb] * len(mols), mols, g, rounds=rounds)[0]
            fdF = finite_difference_forces([sb] * len(mols), mols, g, comps, h=1e-3, rounds=rounds)
            nat = [3 * mm + a for mm, a, _ in comps]
            rows = [{"molecule": mm, "atom": a, "axis": ax, "hellmann_feynman": float(res.forces[n, ax]),
                     "minus_dE_dR": fdF[(mm, a, ax)], "hifi": float(ref["forces"][n][ax])}
                    for (mm, a, ax), n in zip(comps, nat)]
            rec["pulay"][f"rounds_{rounds}"] = rows
            print(f"  pulay rounds {rounds} ({time.perf_counter() - t0:.0f} s): " + "; ".join(
                f"HF {r_['hellmann_feynman']:+.4f} -dE/dR {r_['minus_dE_dR']:+.4f} hifi {r_['hifi']:+.4f}" for r_ in rows),
                flush=True)
    return rec


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dim = {k: v for k, v in result["clusters"].items() if k.startswith("dimer_") and "rot" not in k}
    d = [v["O_O_bohr"] for v in dim.values()]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(d, [v["hifi_binding_Ha"] * 1e3 for v in dim.values()], "ko-", label="Hi-Fi")
    for i, r in enumerate(ROUNDS):
        ax[0].plot(d, [v["mor_binding_rounds_Ha"][i] * 1e3 for v in dim.values()], "s--", label=f"MOR, {r} enrichment rounds")
    ax[0].set(xlabel="O–O (Bohr)", ylabel="E_dimer − E_A − E_B (mHa)", title="water dimer binding, 48×32×32, h 0.375")
    ax[0].legend(fontsize=8)
    for i, r in enumerate(ROUNDS):
        ax[1].semilogy(d, [abs(v["mor_energy_error_rounds_Ha"][i]) for v in dim.values()], "s-", label=f"|ΔE| dimer, {r} rounds")
    ax[1].set(xlabel="O–O (Bohr)", ylabel="|E_MOR − E_HiFi| (Ha)", title="dimer energy error")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def tables(result: dict) -> str:
    """The markdown tables of docs/MOR_assembly.md from the JSON."""
    rows = ["| cluster | O–O (Bohr) | k stacked → final | ΔE 0 rounds | 2 | 4 rounds | binding Hi-Fi | MOR 0 rounds | 2 | "
            "4 rounds | max ‖ΔF‖ O | max ‖ΔF‖ H | max ‖F‖ Hi-Fi |", "|" + "---|" * 13]
    for name, v in result["clusters"].items():
        Fe = np.array(v["force_error_per_atom_Ha_per_Bohr"])
        e, b = v["mor_energy_error_rounds_Ha"], np.array(v["mor_binding_rounds_Ha"]) * 1e3
        rows.append(f"| {name} | {v['O_O_bohr']:.3f} | {v['mor']['k_stacked']} → {v['mor']['k_final']} | {e[0]:.1e} | "
                    f"{e[2]:.1e} | {e[4]:.1e} | {v['hifi_binding_Ha'] * 1e3:.2f} | {b[0]:.2f} | {b[2]:.2f} | {b[4]:.2f} | "
                    f"{Fe[0::3].max():.1e} | {np.delete(Fe, np.s_[0::3]).max():.1e} | {v['hifi_max_force_Ha_per_Bohr']:.1e} |")
    out = "\n".join(rows)
    rot = result.get("rotation", {})
    if rot:
        rows = ["| placement | min ‖u‖² after placement | ΔE, 0 rounds | 1 | 2 | 3 | 4 rounds | max ‖ΔF‖ (4 rounds) |",
                "|" + "---|" * 8]
        for name, v in rot.items():
            e = " | ".join(f"{x:.1e}" for x in v["energy_error_rounds_Ha"])
            rows.append(f"| {name} | {v['min_raw_norm']:.4f} | {e} | {v['max_force_error_Ha_per_Bohr']:.1e} |")
        out = "\n".join(rows) + "\n\n" + out
    pul = result["clusters"].get("dimer_5.625", {}).get("pulay")
    if pul:
        names = {(0, 1, 0): "donor H_d, x (along the H-bond)", (1, 0, 0): "acceptor O, x (O–O)",
                 (1, 1, 2): "acceptor H, z (out of the mirror plane)"}
        rows = ["| component | rounds | HF | −dE/dR | Pulay = −dE/dR − HF | Hi-Fi |", "|---|---|---|---|---|---|"]
        for key, rs in pul.items():
            for r in rs:
                rows.append(f"| {names[(r['molecule'], r['atom'], r['axis'])]} | {key.split('_')[1]} | "
                            f"{r['hellmann_feynman']:+.4f} | {r['minus_dE_dR']:+.4f} | "
                            f"{r['minus_dE_dR'] - r['hellmann_feynman']:+.4f} | {r['hifi']:+.4f} |")
        out += "\n\n" + "\n".join(rows)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trimer", action="store_true")
    p.add_argument("--fd", action="store_true", help="finite-difference (Pulay) check on the 5.625 Bohr dimer")
    p.add_argument("--only", nargs="*", default=None, help="cluster names to run (default all)")
    p.add_argument("--keep-pulay", nargs="*", default=None,
                   help="reuse these finite-difference entries of the existing JSON (e.g. rounds_0)")
    p.add_argument("--tables", action="store_true", help="print the markdown tables of the existing JSON and stop")
    a = p.parse_args()
    if a.tables:
        print(tables(json.loads(OUT.read_text())))
        return
    cache = load_cache()
    sb = spline_basis(load_basis(BASIS))
    result = json.loads(OUT.read_text()) if OUT.exists() else {}
    result.update({"basis": str(BASIS), "rank": sb.k, "spacing_bohr": H, "rounds": list(ROUNDS),
                   "hifi_settings": {k: v for k, v in HIFI.items()}, "command": "benchmarks/mor/assembly.py"})
    if a.only is None or "rotation" in a.only:
        result["rotation"] = rotation_study(cache, sb)
    result.setdefault("clusters", {})
    for name, (shape, mols) in cases(a.trimer).items():
        if a.only is not None and name not in a.only:
            continue
        old = result["clusters"].get(name, {}).get("pulay", {})
        keep = {k: v for k, v in old.items() if k in (a.keep_pulay or [])}
        result["clusters"][name] = cluster_study(cache, sb, name, shape, mols, a.fd and name == "dimer_5.625", keep)
        OUT.write_text(json.dumps(result, indent=1))
    OUT.write_text(json.dumps(result, indent=1))
    plot(result, OUT.with_suffix(".png"))


if __name__ == "__main__":
    main()
