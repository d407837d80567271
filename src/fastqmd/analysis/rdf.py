"""Radial distribution function g(r) of periodic frames, from vesin neighbour pairs.

g(r_k) = n_k / (N_c · ρ · V_shell,k),  V_shell,k = 4π/3 (r_k³ − r_{k−1}³),  ρ = N_b / V,
n_k the number of (centre, neighbour) pairs with r_{k−1} < d ≤ r_k (all periodic images), N_c the number of
centres. Same definition and binning as `ase.geometry.rdf.get_rdf` (which it is tested against), but with no
restriction of r_max to half the cell. Averaged over frames.
"""

from __future__ import annotations

import numpy as np

from fastqmd.neighbors import atoms_pairs


def rdf_frame(atoms, rmax: float, nbins: int, elements: tuple[int, int] | None = None) -> np.ndarray:
    """[nbins] g(r) of one periodic frame (partial g_ab if `elements` = (Z_a, Z_b))."""
    if not np.all(atoms.pbc) or atoms.cell.volume < 1e-10:
        raise ValueError("the RDF needs a periodic cell (use bond lengths for molecules)")
    i, j, d, _ = atoms_pairs(atoms, rmax, full=True)
    z = atoms.numbers
    if elements is None:
        n_c, n_b = len(atoms), len(atoms)
    else:
        keep = (z[i] == elements[0]) & (z[j] == elements[1])
        d = d[keep]
        n_c, n_b = int((z == elements[0]).sum()), int((z == elements[1]).sum())
    dr = rmax / nbins
    idx = np.ceil(d / dr).astype(np.int64) - 1  # bin k holds r_{k} < d <= r_{k+1}
    counts = np.bincount(idx[(idx >= 0) & (idx < nbins)], minlength=nbins)[:nbins].astype(float)
    edges = np.linspace(0.0, rmax, nbins + 1)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    return counts / (n_c * (n_b / atoms.cell.volume) * shell)


def rdf(frames, rmax: float = 6.0, nbins: int = 120, elements=None) -> tuple[np.ndarray, np.ndarray]:
    """(r [nbins] bin centres Å, g [nbins]) averaged over `frames`."""
    g = np.mean([rdf_frame(f, rmax, nbins, elements) for f in frames], axis=0)
    edges = np.linspace(0.0, rmax, nbins + 1)
    return 0.5 * (edges[1:] + edges[:-1]), g
