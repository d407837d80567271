"""Neighbour pairs from vesin (periodic or not), shared by structures, MD and analysis; no neighbour-list code of our own.

`pairs(positions, cell, pbc, cutoff)` returns the half list (i < j once per periodic image) with distances
and vectors r_j + S·cell − r_i in Å. Non-periodic directions of a zero cell get a large dummy box.
"""

from __future__ import annotations

import numpy as np
from vesin import NeighborList


def _box(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    if np.any(pbc):
        if not np.all(pbc):
            raise ValueError("mixed periodic/non-periodic cells are not supported by the analysis")
        return np.asarray(cell, dtype=np.float64)
    return np.zeros((3, 3))


def pairs(positions, cell, pbc, cutoff: float, full: bool = False):
    """(i, j, d, D) for all pairs closer than `cutoff` Å: i, j [n_pairs]; d [n_pairs] Å; D [n_pairs, 3] Å."""
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    periodic = bool(np.any(pbc))
    nl = NeighborList(cutoff=float(cutoff), full_list=full)
    i, j, d, D = nl.compute(pos, _box(pos, cell, pbc), periodic, quantities="ijdD")
    return i.astype(np.int64), j.astype(np.int64), d, D


def atoms_pairs(atoms, cutoff: float, full: bool = False):
    """`pairs` for an ASE Atoms."""
    return pairs(atoms.positions, atoms.cell.array, atoms.pbc, cutoff, full)


MIN_SEARCH_A = 2.0  # vesin's cell list grows as (L/cutoff)³: searching tiny cutoffs is slow (1000 atoms: 15 ms
# at 0.5 Å, 0.6 ms at 2 Å), so short-distance checks search to at least this radius


def min_distance(positions, cell, pbc, cutoff: float) -> float:
    """Smallest pair distance if it is below max(`cutoff`, 2 Å), else inf (Å)."""
    _, _, d, _ = pairs(positions, cell, pbc, max(cutoff, MIN_SEARCH_A))
    return float(d.min()) if d.size else float("inf")
