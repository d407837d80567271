"""Dataset summaries and exports: `fastqmd dataset info` and `fastqmd dataset export`.

`summarize(path)` returns plain JSON-able numbers: sample counts by status, elements, basis (shells and
orbitals per element), atoms per sample, energies (eV and eV/atom), force components and norms (eV/Å),
nearest-neighbour distances (Å), k-point counts, wall time, and every failed sample with its reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase.data import chemical_symbols

from fastqmd.data.store import Dataset, damaged_sample


def stats(values) -> dict[str, float]:
    """mean, std, min, max of the finite entries (empty → {})."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {}
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max())}


def summarize(path: str | Path) -> dict[str, Any]:
    ds = Dataset(path)
    energies, e_per_atom, f_comp, f_norm, dmin, n_atoms, wall, nk = [], [], [], [], [], [], [], []
    elements: set[str] = set()
    failed = []
    for key in ds.keys(None):
        with damaged_sample(ds.path, key):  # a missing attribute or array: one InputError naming the sample
            g = ds.group(key)
            a = g.attrs
            numbers = g["numbers"][()]
            elements.update(chemical_symbols[z] for z in numbers)
            dmin.append(a.get("min_distance_A", np.nan))
            wall.append(a.get("wall_time_s", np.nan))
            if a["status"] != "ok":
                failed.append({"index": int(key), "source": str(a["source"]), "error": str(a["error"])})
                continue
            n_atoms.append(len(numbers))
            energies.append(a["energy"])
            e_per_atom.append(a["energy"] / len(numbers))
            nk.append(g["kpoints"].shape[0])
            if "forces" in g:
                F = g["forces"][()]
                f_comp.append(F.ravel())
                f_norm.append(np.linalg.norm(F, axis=1))
    basis = ds.basis
    summary = {
        "path": str(path),
        "engine": ds.header.engine,
        "settings": ds.header.settings,
        "samples": {"total": len(ds.keys(None)), "ok": len(energies), "failed": len(failed)},
        "elements": sorted(elements, key=lambda s: chemical_symbols.index(s)),
        "basis": {el: {"shells_l": list(sh), "n_orbitals": basis.n_orbitals(el)} for el, sh in basis.shells.items()},
        "valence_electrons": ds.valence_electrons,
        "atoms_per_sample": stats(n_atoms),
        "kpoints_per_sample": stats(nk),
        "energy_eV": stats(energies),
        "energy_per_atom_eV": stats(e_per_atom),
        "force_component_eV_per_A": stats(np.concatenate(f_comp)) if f_comp else {},
        "force_norm_eV_per_A": stats(np.concatenate(f_norm)) if f_norm else {},
        "min_distance_A": stats(dmin),
        "wall_time_s_per_sample": stats(wall),
        "failed": failed,
    }
    ds.close()
    return summary


def export_extxyz(path: str | Path, out: str | Path, include_failed: bool = False) -> int:
    """Write structures with energy/forces (SinglePointCalculator) to extxyz; returns frames written.

    The file is written to a unique temporary sibling and renamed into place, so `out` is either the old
    file or the complete new one. The caller checks `out` first (`fastqmd.config.check_output_file`)."""
    from ase.io import write

    from fastqmd.atomic import write_atomically

    ds = Dataset(path)
    frames = [ds.atoms(k) for k in ds.keys(None if include_failed else "ok")]
    ds.close()
    write_atomically(out, lambda tmp: write(tmp, frames, format="extxyz"))
    return len(frames)
