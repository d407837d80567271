"""Issue 13 part 3, the charge-channel ablation on the Cu DFT study's split (36 Cu32 GPAW PBE/szp(dzp) cells, 28/4/4):
the local model (benchmarks/nnh_cu_dft/train_cu32_szp.yaml, its H-only phase of 400 steps) against the same model
with latent charges and their Ewald level shift ½S(u_i + u_j) (train_cu32_szp_charges.yaml, 400 H-only steps; same
seed, same initial weights, same learning-rate schedule). Compared: validation H MAE and level error within
E_F ± 1 eV by step (metrics.jsonl), the test split (`fastqmd evaluate`), and the spread of the learned charges.

    OMP_NUM_THREADS=2 fastqmd train benchmarks/nnh_cu_dft/train_cu32_szp.yaml
    OMP_NUM_THREADS=2 fastqmd train benchmarks/nnh_cu_dft/train_cu32_szp_charges.yaml
    OMP_NUM_THREADS=2 python benchmarks/nnh_cu_dft/charge_ablation.py      → charge_ablation.json
The local model's test figures are those of its final model (after the E_rep phase, in which H is frozen: its
EMA weights drift towards the raw step-400 weights, so its H differs slightly from the step-400 EMA H).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = ROOT / "out" / "nnh_cu_dft"
DATASET = ROOT / "out" / "cu32_gpaw_szp_study.h5"
RUNS = {"local": OUT / "cu32_szp", "charges": OUT / "cu32_szp_charges"}


def val_curve(run: Path) -> dict[int, dict]:
    """Validation H MAE and |Δε| within E_F ± 1 eV (meV) by step, from metrics.jsonl."""
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        v = json.loads(line).get("val")
        if v:
            out[int(json.loads(line)["step"])] = {"H_mae_meV": 1e3 * v["H_mae_eV"],
                                                  "eig_fermi_mae_meV": 1e3 * v["eig_fermi_mae_eV"]}
    return out


def test_split(run: Path, name: str) -> dict:
    ev = OUT / f"eval_test_{name}"
    if not (ev / "evaluation.json").exists():
        subprocess.run([sys.executable, "-m", "fastqmd.cli", "evaluate", str(run / "model.pt"), str(DATASET), "-o",
                        str(ev), "--subset", "test"], check=True, cwd=ROOT)
    m = json.loads((ev / "evaluation.json").read_text())
    return {"H_mae_meV": 1e3 * m["H_mae_eV"],
            "eigenvalue_mae_meV_at_gamma": {k: 1e3 * v for k, v in m["eigenvalue_mae_eV"].items()}}


def charge_spread(run: Path) -> dict:
    """Learned charges on the test cells: std and max |q| (e), and the spread of the level shift u (meV)."""
    from fastqmd.data.store import Dataset
    from fastqmd.nnh.checkpoint import load_energy_model
    from fastqmd.nnh.energy import Frame

    model = load_energy_model(run / "model.pt")
    model.eval()
    split = json.loads((run / "split.json").read_text())
    ds = Dataset(DATASET)
    qs, us = [], []
    for key in split["test"]:
        atoms = ds.atoms(key)
        pos, cell = torch.as_tensor(atoms.positions), torch.as_tensor(atoms.cell.array)
        g = model.graph(atoms.get_chemical_symbols(), atoms.positions, atoms.cell.array, atoms.pbc)
        with torch.no_grad():
            q = model.h(pos.to(model.dtype), cell.to(model.dtype), g).charges.double()
            frame = Frame(tuple(atoms.get_chemical_symbols()), tuple(bool(x) for x in atoms.pbc), np.zeros((1, 3)),
                          np.ones(1))
            u = model.orbital_level_shift(frame, pos, cell, g, q)
        qs.append(q.numpy())
        us.append(u.numpy())
    q, u = np.concatenate(qs), np.concatenate(us)
    return {"q_std_e": float(q.std()), "q_max_abs_e": float(np.abs(q).max()), "u_std_meV": 1e3 * float(u.std())}


def main() -> None:
    curves = {k: val_curve(r) for k, r in RUNS.items()}
    step = 400
    at = {k: c.get(step) for k, c in curves.items()}
    out = {
        "what": "charge channel vs the local model, Cu32 GPAW PBE/szp(dzp), same split/seed/schedule, 400 H-only steps",
        "commands": ["OMP_NUM_THREADS=2 fastqmd train benchmarks/nnh_cu_dft/train_cu32_szp.yaml",
                     "OMP_NUM_THREADS=2 fastqmd train benchmarks/nnh_cu_dft/train_cu32_szp_charges.yaml",
                     "OMP_NUM_THREADS=2 python benchmarks/nnh_cu_dft/charge_ablation.py"],
        "val_at_step_400": at,
        "val_curve": curves,
        "test_split": {k: test_split(r, k) for k, r in RUNS.items()},
        "learned_charges_test": charge_spread(RUNS["charges"]),
        "wall_time_s": {k: json.loads((r / "summary.json").read_text()).get("wall_time_s_all_runs")
                        for k, r in RUNS.items()},
    }
    (HERE / "charge_ablation.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({"val_at_step_400": at, "test_split": out["test_split"],
                      "learned_charges_test": out["learned_charges_test"]}, indent=1))


if __name__ == "__main__":
    main()
