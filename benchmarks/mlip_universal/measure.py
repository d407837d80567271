"""Issue 12 part 3: the universal MLIPs offline — speed on Cu64 and accuracy on water labelled here.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/mlip_universal/measure.py

1. s/call (energy + forces + stress) on 64-atom fcc Cu (primitive cell 4×4×4, a = 3.61 Å, rattled 0.05 Å), one
   thread, one warm-up call then the mean of CALLS calls, wall and CPU seconds; EMT as the floor.
2. Energy/force errors (`fastqmd.mlip.universal.evaluate_universal`) on water labelled here:
   - tblite GFN2-xTB (`fastqmd.testing.make_water_dataset`, N_GFN2 molecules, σ = 0.06 Å),
   - PySCF PBE/def2-SVP (the project's water level of theory), N_PBE randomly rotated molecules displaced by
     σ = 0.05 Å and N_PBE by σ = 0.12 Å from ASE's H2O.
   Energies are compared raw and after the fitted per-element offset (one composition: the offset is one
   number per molecule, so the offset MAE is the spread of E_model − E_ref).
Writes benchmarks/mlip_universal/universal.json; datasets go to out/mlip_universal/ (not in git).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = ROOT / "out" / "mlip_universal"
CALLS = 5
N_GFN2 = 20
N_PBE = 6
MODELS = [("sevenn", "7net-0", None), ("sevenn", "7net-l3i5", None), ("sevenn", "7net-mf-0", "PBE"),
          ("chgnet", "0.3.0", None)]


def cu64():
    from ase.build import bulk

    a = bulk("Cu", "fcc", a=3.61).repeat((4, 4, 4))
    a.rattle(0.05, seed=0)
    return a


def time_calls(pot, atoms) -> dict:
    from fastqmd.potential import system_from_atoms

    s = system_from_atoms(atoms)
    pot.compute(s)  # warm-up (graph caches, allocator)
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(CALLS):
        pot.compute(s)
    return {"wall_s_per_call": (time.perf_counter() - w0) / CALLS, "cpu_s_per_call": (time.process_time() - c0) / CALLS}


def speed() -> dict:
    from ase.calculators.emt import EMT

    from fastqmd.mlip.universal import load_universal
    from fastqmd.potential import calculator_to_potential

    atoms, out = cu64(), {}
    for kind, name, modal in [m for m in MODELS if m[1] in ("7net-0", "7net-l3i5", "0.3.0")]:
        out[f"{kind}:{name}"] = time_calls(load_universal(kind, name, modal=modal), atoms)
        print(f"{kind}:{name}", out[f"{kind}:{name}"], flush=True)
    out["emt"] = time_calls(calculator_to_potential(EMT()), atoms)
    ref = out["sevenn:7net-0"]["cpu_s_per_call"]
    for v in out.values():
        v["cpu_ratio_to_7net-0"] = v["cpu_s_per_call"] / ref
    return out


def pbe_dataset(path: Path) -> Path:
    """N_PBE rotated water molecules at σ = 0.05 Å and N_PBE at σ = 0.12 Å, PySCF PBE/def2-SVP."""
    return rotated_water_set(path, [0.05] * N_PBE + [0.12] * N_PBE, seed=12, rotation_seed=100)


def rotated_water_set(path: Path, sigmas: list[float], seed: int, rotation_seed: int) -> Path:
    """Water molecules: ASE's H2O displaced by N(0, σ_i²) per component (rng `seed`), turned by
    random_rotation(rotation_seed + i), labelled with PySCF PBE/def2-SVP into a fastqmd dataset (kept if it exists)."""
    if path.exists():
        return path
    from ase.build import molecule

    from fastqmd.data.store import Header, atomic_write, write_header, write_sample
    from fastqmd.orbitals import random_rotation
    from fastqmd.reference.pyscf_mol import PySCFMolEngine

    eng, rng, samples = PySCFMolEngine(xc="PBE", basis="def2-SVP"), np.random.default_rng(seed), []
    for i, sigma in enumerate(sigmas):
        a = molecule("H2O")
        a.positions = (a.positions + rng.normal(0.0, sigma, (3, 3))) @ random_rotation(rotation_seed + i).T
        samples.append((sigma, eng.compute(a)))
        print(f"PBE sample {i}: σ = {sigma} Å, {samples[-1][1].wall_time_s:.1f} s", flush=True)

    def fill(f):
        write_header(f, Header(eng.name, eng.settings))
        for i, (sigma, s) in enumerate(samples):
            write_sample(f, i, s, f"water sigma={sigma}", 0.5)

    atomic_write(path, fill)
    return path


def subset(path: Path, keys: list[str], out: Path) -> Path:
    """A copy of dataset `path` holding only `keys` (the σ = 0.05 / 0.12 halves of the PBE set)."""
    import h5py

    with h5py.File(path, "r") as src, h5py.File(out, "w") as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        g = dst.create_group("samples")
        for k in keys:
            src.copy(src["samples"][k], g, name=k)
    return out


def accuracy() -> dict:
    from fastqmd.mlip.universal import evaluate_universal, load_universal
    from fastqmd.testing import make_water_dataset

    OUT.mkdir(parents=True, exist_ok=True)
    gfn2 = OUT / "water_gfn2.h5"
    if not gfn2.exists():
        make_water_dataset(gfn2, n=N_GFN2, seed=0, rattle=0.06)
    pbe = pbe_dataset(OUT / "water_pbe.h5")
    keys = [f"{i:08d}" for i in range(2 * N_PBE)]
    sets = {"water_gfn2_sigma0.06": gfn2,
            "water_pbe_def2svp_sigma0.05": subset(pbe, keys[:N_PBE], OUT / "water_pbe_s005.h5"),
            "water_pbe_def2svp_sigma0.12": subset(pbe, keys[N_PBE:], OUT / "water_pbe_s012.h5")}
    out = {}
    for kind, name, modal in MODELS:
        pot = load_universal(kind, name, modal=modal)
        spec = f"{kind}:{name}" + (f"@{modal}" if modal else "")
        out[spec] = {}
        for label, ds in sets.items():
            m = evaluate_universal(pot, ds)
            out[spec][label] = {
                "n_samples": m["n_samples"], "force_mae_meV_per_A": m["force_mae_meV_per_A"],
                "force_rmse_meV_per_A": 1e3 * m["forces_eV_per_A"]["rmse"],
                "energy_mae_meV_per_atom_raw": 1e3 * m["energy_per_atom_eV"]["mae"],
                "energy_mae_meV_per_atom_offset": m["energy_mae_meV_per_atom_offset"],
                "offset_eV_per_molecule": float(sum(m["energy_offset"]["per_element_eV"][el] * n
                                                    for el, n in (("O", 1), ("H", 2)))),
            }
            print(spec, label, out[spec][label], flush=True)
    return out


def main() -> None:
    torch.set_num_threads(1)
    import chgnet
    import sevenn

    t0 = time.perf_counter()
    result = {
        "command": "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/mlip_universal/measure.py",
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "note": "2 shared cores, other jobs running: CPU seconds are the steadier number"},
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "sevenn": sevenn.__version__,
                     "chgnet": chgnet.__version__},
        "cu64_speed": speed(),
        "water_accuracy": accuracy(),
    }
    result["wall_s_total"] = time.perf_counter() - t0
    (HERE / "universal.json").write_text(json.dumps(result, indent=1))
    print(f"-> {HERE / 'universal.json'}")


if __name__ == "__main__":
    main()
