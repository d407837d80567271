"""Study b follow-up: is the on-site H error an atom-wise level shift? (12 test cells; writes onsite_shift.json)

For each cell: d_ia = (H_NN − H_ref)_{μμ} at Γ for the 9 orbitals μ of atom a. Reported (meV): the cell mean of
d, the spread over atoms of the atom means, the spread within an atom over its orbitals, and the mean |d|.
    OMP_NUM_THREADS=1 python benchmarks/nnh_cu/onsite_shift.py
"""

import json
from pathlib import Path

import numpy as np
import torch

from fastqmd.nnh.blocks import to_kspace
from fastqmd.nnh.checkpoint import load_energy_model
from fastqmd.nnh.targets import load_targets

ROOT = Path(__file__).resolve().parents[2]


def main(n_cells: int = 12) -> dict:
    torch.set_num_threads(1)
    m = load_energy_model(ROOT / "out/nnh_cu/model/model.pt")
    keys = json.loads((ROOT / "out/nnh_cu/model/split.json").read_text())["test"][:n_cells]
    rows = []
    for t in load_targets(ROOT / "out/cu64_gfn1_study.h5", keys):
        g = m.h.graph(t.frame.symbols, t.positions.numpy(), t.cell.numpy(), t.frame.pbc)
        with torch.no_grad():
            blocks = m.h(t.positions.to(m.dtype), t.cell.to(m.dtype), g)
            H = to_kspace(blocks, g, torch.zeros(1, 3, dtype=m.dtype))[0].real.double().numpy()
        n = len(t.frame.symbols)
        d = 1e3 * np.diag(H - t.H[0].real.numpy()).reshape(n, -1)
        rows.append({"key": t.key, "mean_meV": d.mean(), "atom_mean_spread_meV": d.mean(1).std(),
                     "within_atom_spread_meV": (d - d.mean(1, keepdims=True)).std(), "mae_meV": np.abs(d).mean()})
    out = {"what": __doc__.splitlines()[0], "cells": rows}
    (Path(__file__).parent / "onsite_shift.json").write_text(json.dumps(out, indent=1, default=float) + "\n")
    return out


if __name__ == "__main__":
    for r in main()["cells"]:
        print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else str(v) for k, v in r.items()))
