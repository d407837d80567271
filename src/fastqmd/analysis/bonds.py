"""Bond lengths and bond angles vs time, for molecules (or any frames with a fixed bonding topology).

Bonds: pairs closer than `scale` × (sum of ASE natural cutoffs, i.e. covalent radii) in the first frame,
found with ASE's neighbour list; angles: every pair of bonds sharing an atom. Distances use the minimum
image in periodic cells.
"""

from __future__ import annotations

import numpy as np
from ase.geometry import find_mic
from ase.neighborlist import natural_cutoffs, neighbor_list

from fastqmd.analysis.adf import vector_angles


def topology(atoms, scale: float = 1.2) -> tuple[list[tuple[int, int]], list[tuple[int, int, int]]]:
    """(bonds (i, j) with i < j, angles (j, i, k) with centre i and j < k) of a frame."""
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=scale))
    bonds = sorted({(int(a), int(b)) for a, b in zip(i, j) if a < b})
    nbrs: dict[int, list[int]] = {}
    for a, b in bonds:
        nbrs.setdefault(a, []).append(b)
        nbrs.setdefault(b, []).append(a)
    angles = [(j_, c, k_) for c, ns in sorted(nbrs.items()) for x, j_ in enumerate(sorted(ns))
              for k_ in sorted(ns)[x + 1:]]
    return bonds, angles


def _vec(atoms, a: int, b: int) -> np.ndarray:
    d = atoms.positions[b] - atoms.positions[a]
    if np.any(atoms.pbc):
        d, _ = find_mic(d[None], atoms.cell, atoms.pbc)
        d = d[0]
    return d


def bond_lengths(frames, bonds) -> np.ndarray:
    """[n_frames, n_bonds] Å."""
    return np.array([[np.linalg.norm(_vec(f, a, b)) for a, b in bonds] for f in frames]).reshape(len(frames), -1)


def bond_angles(frames, angles) -> np.ndarray:
    """[n_frames, n_angles] degrees, angle j–i–k."""
    out = []
    for f in frames:
        row = []
        for j, i, k in angles:
            u, w = _vec(f, i, j), _vec(f, i, k)
            row.append(float(vector_angles(u, w)))
        out.append(row)
    return np.array(out).reshape(len(frames), -1)
