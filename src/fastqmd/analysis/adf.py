"""Bond-angle distribution: angles θ_jik between neighbours j, k of every centre i within a cutoff.

P(θ) is a histogram over 0–180° normalized to ∫P dθ = 1 (1/deg), averaged over frames. For a perfect fcc
lattice with a cutoff between the first and second shells the 66 angles per atom are 60° (24), 90° (12),
120° (24), 180° (6).
"""

from __future__ import annotations

import numpy as np

from fastqmd.neighbors import atoms_pairs


def vector_angles(u: np.ndarray, w: np.ndarray) -> np.ndarray:
    """[n] angles (degrees) between rows of u and w: atan2(|u×w|, u·w), accurate near 0° and 180°."""
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(u, w), axis=-1), (u * w).sum(-1)))


def angles_frame(atoms, cutoff: float) -> np.ndarray:
    """All bond angles (degrees) of one frame, each unordered neighbour pair of each centre once."""
    i, _, _, D = atoms_pairs(atoms, cutoff, full=True)
    order = np.argsort(i, kind="stable")
    i, D = i[order], D[order]
    starts = np.searchsorted(i, np.arange(len(atoms) + 1))
    out = []
    for a in range(len(atoms)):
        v = D[starts[a]:starts[a + 1]]  # [k, 3] vectors to neighbours of a
        if len(v) < 2:
            continue
        p, q = np.triu_indices(len(v), 1)
        out.append(vector_angles(v[p], v[q]))
    return np.concatenate(out) if out else np.zeros(0)


def adf(frames, cutoff: float, nbins: int = 180) -> tuple[np.ndarray, np.ndarray]:
    """(θ [nbins] bin centres in degrees, P(θ) [nbins] in 1/deg), all frames pooled."""
    ang = np.concatenate([angles_frame(f, cutoff) for f in frames])
    edges = np.linspace(0.0, 180.0, nbins + 1)
    p, _ = np.histogram(ang, bins=edges, density=ang.size > 0)
    return 0.5 * (edges[1:] + edges[:-1]), p
