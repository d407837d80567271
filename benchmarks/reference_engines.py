"""Wall time per sample of the reference engines (the cost that dataset generation pays per structure).

Cases (issue 2): water with PySCF PBE/def2-SVP; Cu 32 and 64 atoms with tblite GFN1-xTB (rattled fcc
supercells, 32 = 2³ conventional, 64 = 4³ primitive); Cu 4 atoms with PySCF PBC (PBE, GTH, SZV basis, Fermi
smearing, Γ point). PySCF 2.14's `gth-szv` table has no Cu, so the Cu SZV case uses `gth-szv-molopt-sr`
(s, p, d: 9 functions per Cu). Each sample is a full `engine.compute` (SCF + forces + H/S in fastqmd order).
GPAW LCAO (issue 13): PBE, dzp, PAW, Γ, h = 0.2 Å, Fermi-Dirac 1000 K, for Cu 32 / 64 and Pd 64 (`Pd.10` setup:
Cu's 15-function layout; the default Pd setup has 27 functions with a 16 Bohr 5p tail); one sample each.
`--only` runs some cases and merges them into an existing JSON (each case records its own run).

Usage: OMP_NUM_THREADS=1 python benchmarks/reference_engines.py [--repeats N] [--only CASE,CASE]
Writes benchmarks/reference_engines.json (command, machine, versions, per-case timings).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

CASES = {
    "water_pyscf_pbe_def2svp": {
        "structure": {"kind": "molecule", "name": "H2O", "sampling": "random", "displacement_A": 0.05},
        "engine": {"kind": "pyscf-mol", "xc": "PBE", "basis": "def2-SVP"},
        "repeats": 5,
    },
    "cu32_tblite_gfn1": {
        "structure": {"kind": "rattled_bulk", "element": "Cu", "supercell": 2, "cubic": True,
                      "max_displacement_fraction": 0.1},
        "engine": {"kind": "tblite", "method": "GFN1-xTB", "electronic_temperature_K": 300.0},
        "repeats": 3,
    },
    "cu64_tblite_gfn1": {
        "structure": {"kind": "rattled_bulk", "element": "Cu", "supercell": 4, "max_displacement_fraction": 0.1},
        "engine": {"kind": "tblite", "method": "GFN1-xTB", "electronic_temperature_K": 300.0},
        "repeats": 3,
    },
    "cu4_pyscf_pbc_gth_szv_smeared": {
        "structure": {"kind": "rattled_bulk", "element": "Cu", "supercell": 1, "cubic": True,
                      "max_displacement_fraction": 0.03},
        "engine": {"kind": "pyscf-pbc", "xc": "PBE", "basis": "gth-szv-molopt-sr", "pseudo": "gth-pbe",
                   "smearing_K": 1000.0},
        "repeats": 2,
    },
    **{f"{el.lower()}{n}_gpaw_lcao_pbe_dzp": {
        "structure": {"kind": "rattled_bulk", "element": el, "supercell": sc, "cubic": cubic,
                      "max_displacement_fraction": 0.1},
        "engine": {"kind": "gpaw-lcao", "xc": "PBE", "basis": "dzp", "setups": setups},
        "repeats": 1,
    } for el, n, sc, cubic, setups in [("Cu", 32, 2, True, {}), ("Cu", 64, 4, False, {}),
                                       ("Pd", 64, 4, False, {"Pd": "10"})]},
}


def structures(spec: dict, n: int):
    from pydantic import TypeAdapter

    from fastqmd.structures import Molecule, RattledBulk, build_structures

    src = TypeAdapter(RattledBulk | Molecule).validate_python({**spec, "count": n, "seed": 0})
    return build_structures(src)


def run_case(name: str, case: dict, repeats: int) -> dict:
    from fastqmd.reference.config import build_engine, parse_engine_config

    engine = build_engine(parse_engine_config(case["engine"]))
    times, rows = [], []
    for atoms in structures(case["structure"], repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        s = engine.compute(atoms)
        times.append(time.perf_counter() - t0)
        rows.append({
            "cpu_s": time.process_time() - c0,  # this process's CPU time: the cost on one free core
            "energy_eV": s.energy,
            "max_force_eV_A": float(np.abs(s.forces).max()) if s.forces is not None else None,
            "timing_s": s.extras.get("timing_s"),  # PySCF, GPAW: SCF vs analytic forces
            "n_scf_iterations": s.extras.get("n_scf_iterations"),
        })
        print(f"{name}: {times[-1]:.2f} s", flush=True)
    return {
        "engine": case["engine"],
        "structure": case["structure"],
        "settings": engine.settings,
        "n_atoms": len(atoms),
        "n_orbitals": int(s.H.shape[-1]),
        "n_kpoints": int(s.H.shape[0]),
        "wall_s_per_sample": {"mean": float(np.mean(times)), "min": float(np.min(times)), "all": times},
        "samples": rows,
        "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # whole process, all cases so far
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=None, help="samples per case (default: per-case setting)")
    ap.add_argument("--only", default=",".join(CASES))
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args()
    results = {n: run_case(n, CASES[n], args.repeats or CASES[n]["repeats"]) for n in args.only.split(",")}
    out = {
        "command": "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "unset") + " python " + " ".join(sys.argv),
        "machine": {
            "nproc": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_end": os.getloadavg(),
            "note": "shared 2-core machine (other engineers' jobs running): timings are upper bounds",
        },
        "versions": {p: version(p) for p in ("fastqmd", "pyscf", "tblite", "numpy", "scipy", "ase")},
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
    }
    if any(c["engine"]["kind"] == "gpaw-lcao" for c in results.values()):
        out["versions"].update(gpaw=version("gpaw"), gpaw_data=version("gpaw-data"))
    if args.only != ",".join(CASES) and Path(args.out).exists():  # merge: keep the other cases' results
        old = json.loads(Path(args.out).read_text())
        run = {k: out[k] for k in ("command", "machine", "versions", "date_utc")}
        out = {**old, "results": {**old["results"], **{n: {**r, "run": run} for n, r in results.items()}}}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
