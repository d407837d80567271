"""How the LCAO basis sets the H accuracy that Cu bands need: GPAW dzp against its single-zeta subset szp(dzp).

One stored Cu32 dzp DFT sample (Γ) is relabelled with GPAW LCAO PBE in szp(dzp) (same setups, grid, smearing).
For each basis: λ_min(S), and the error of the levels ≤ E_F + 2 eV when a Gaussian error of σ (symmetric, on the
elements with |S_ij| > 1e-3) is added to the exact H — the orbital-basis H accuracy that a band target needs.
Then the level of theory that szp gives up: its Γ levels near E_F, total energy and forces against dzp.

  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nnh_cu_dft/basis_conditioning.py out/cu32_gpaw_study.h5
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

from fastqmd.data.store import Dataset
from fastqmd.reference.gpaw_lcao import GPAWLCAOEngine

SIGMAS_EV = [1e-4, 1e-3, 1e-2, 3e-2]


def noise_response(H: np.ndarray, S: np.ndarray, ref: np.ndarray, ef: float, seed: int = 0) -> dict:
    """{σ: (MAE of levels within E_F ± 1 eV, max over levels ≤ E_F + 2 eV)} in eV, one draw per σ."""
    Li = np.linalg.inv(np.linalg.cholesky(S))
    n = int((ref <= ef + 2).sum())
    win = np.abs(ref[:n] - ef) < 1
    rng = np.random.default_rng(seed)
    out = {}
    for sig in SIGMAS_EV:
        dH = rng.normal(0, sig, H.shape) * (np.abs(S) > 1e-3)
        dH = (dH + dH.T) / np.sqrt(2.0)
        e = np.linalg.eigvalsh(Li @ (H + dH) @ Li.T)[:n] - ref[:n]
        out[f"{sig:g}"] = {"fermi_mae_eV": float(np.abs(e[win]).mean()), "max_eV": float(np.abs(e).max())}
    return out


def main(path: str) -> dict:
    ds = Dataset(path)
    key = ds.keys()[0]
    atoms, r = ds.atoms(key), ds.read(key)
    t0 = time.perf_counter()
    szp = GPAWLCAOEngine(basis="szp(dzp)", kpts=(1, 1, 1), grid_spacing_A=0.2).compute(atoms)
    t_szp = time.perf_counter() - t0
    res = {}
    for name, H, S, eig, ef in [
        ("dzp", np.asarray(r["H"])[0].real, np.asarray(r["S"])[0].real, np.asarray(r["eigenvalues"])[0],
         float(r["fermi_level"])),
        ("szp(dzp)", np.asarray(szp.H)[0].real, np.asarray(szp.S)[0].real, np.asarray(szp.eigenvalues)[0],
         float(szp.fermi_level))]:
        res[name] = {"n_orbitals_per_atom": H.shape[0] // len(atoms),
                     "lambda_min_S": float(np.linalg.eigvalsh(S)[0]),
                     "noise_response": noise_response(H, S, eig, ef)}
    ed = np.asarray(r["eigenvalues"])[0] - float(r["fermi_level"])
    es = np.asarray(szp.eigenvalues)[0] - float(szp.fermi_level)
    m = min(len(es), len(ed))
    de = np.abs(es[:m] - ed[:m])
    res["szp_vs_dzp"] = {
        "levels_fermi_pm2_mae_eV": float(de[np.abs(ed[:m]) < 2].mean()),
        "levels_fermi_pm2_max_eV": float(de[np.abs(ed[:m]) < 2].max()),
        "levels_d_band_mae_eV": float(de[(ed[:m] > -5) & (ed[:m] < 0)].mean()),
        "energy_difference_eV": float(szp.energy - float(r["energy"])),
        "force_difference_max_eV_A": float(np.abs(np.asarray(r["forces"]) - szp.forces).max()),
        "force_difference_mae_eV_A": float(np.abs(np.asarray(r["forces"]) - szp.forces).mean()),
        "szp_label_wall_s": t_szp}
    res.update(dataset=path, sample=key, noise="Gaussian σ on H elements with |S_ij| > 1e-3, symmetrised",
               command=f"OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nnh_cu_dft/basis_conditioning.py {path}")
    return res


if __name__ == "__main__":
    out = main(sys.argv[1])
    Path(__file__).with_name("basis_conditioning.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
