"""Study b follow-up: is the on-site H error an atom-wise level shift? (12 test cells; writes onsite_shift.json)

For each cell: d_ia = (H_NN − H_ref)_{μμ} at Γ for the 9 orbitals μ of atom a. Reported (meV): the cell mean of
d, the spread over atoms of the atom means, the spread within an atom over its orbitals, and the mean |d|; and
the correlation of the atom-mean shift with the reference Mulliken charge q_a = v_a − Σ_{μ∈a} (P S)_μμ,
P = C f Cᵀ from the stored H, S and occupations (GFN1's charge potential is built from such charges).
    OMP_NUM_THREADS=1 python benchmarks/nnh_cu/onsite_shift.py
"""

import json
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from fastqmd.nnh.blocks import to_kspace
from fastqmd.nnh.checkpoint import load_energy_model
from fastqmd.nnh.targets import load_targets

ROOT = Path(__file__).resolve().parents[2]


def mulliken_charges(H: np.ndarray, S: np.ndarray, f: np.ndarray, n_atoms: int, valence: float) -> np.ndarray:
    """q_a = v − Σ_{μ∈a} (P S)_μμ with P = C diag(f) Cᵀ, H C = S C ε (equal orbital counts per atom)."""
    _, C = scipy.linalg.eigh(H, S)
    pop = np.einsum("mi,i,ni,nm->m", C, f, C, S)
    return valence - pop.reshape(n_atoms, -1).sum(1)


def main(n_cells: int = 12) -> dict:
    torch.set_num_threads(1)
    m = load_energy_model(ROOT / "out/nnh_cu/model/model.pt")
    keys = json.loads((ROOT / "out/nnh_cu/model/split.json").read_text())["test"][:n_cells]
    rows, shifts, charges = [], [], []
    for t in load_targets(ROOT / "out/cu64_gfn1_study.h5", keys):
        g = m.h.graph(t.frame.symbols, t.positions.numpy(), t.cell.numpy(), t.frame.pbc)
        with torch.no_grad():
            blocks = m.h(t.positions.to(m.dtype), t.cell.to(m.dtype), g)
            H = to_kspace(blocks, g, torch.zeros(1, 3, dtype=m.dtype))[0].real.double().numpy()
        n = len(t.frame.symbols)
        d = 1e3 * np.diag(H - t.H[0].real.numpy()).reshape(n, -1)
        q = mulliken_charges(t.H[0].real.numpy(), t.S[0].real.numpy(), t.occupations[0].numpy(), n,
                             m.n_electrons(t.frame.symbols) / n)
        rows.append({"key": t.key, "mean_meV": d.mean(), "atom_mean_spread_meV": d.mean(1).std(),
                     "within_atom_spread_meV": (d - d.mean(1, keepdims=True)).std(), "mae_meV": np.abs(d).mean(),
                     "charge_spread_e": q.std(), "corr_shift_vs_charge": np.corrcoef(d.mean(1), q)[0, 1]})
        shifts.append(d.mean(1) - d.mean())
        charges.append(q - q.mean())
    out = {"what": __doc__.splitlines()[0], "cells": rows,
           "corr_all_cells_centred": float(np.corrcoef(np.concatenate(shifts), np.concatenate(charges))[0, 1])}
    (Path(__file__).parent / "onsite_shift.json").write_text(json.dumps(out, indent=1, default=float) + "\n")
    return out


if __name__ == "__main__":
    res = main()
    for r in res["cells"]:
        print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else str(v) for k, v in r.items()))
    print("correlation over all atoms (cell means removed):", round(res["corr_all_cells_centred"], 3))
