"""Ion–ion energy with Gaussian compensating charges.

With ionic Gaussians g = (π r_c²)^{−3/2} e^{−r²/r_c²}, the grid Hartree energy ½∫∫(n+b)(n+b)/|r−r'| already contains
the Gaussian–Gaussian interaction; the point-ion energy is recovered by
E_ion = Σ_{a<b, images} Z_a Z_b erfc(R_ab/(√2 r_c))/R_ab − Σ_a Z_a²/(√(2π) r_c)
(the erfc pair sum converges within a few r_c; for periodic cells we sum all images within 10 r_c, which is the
real-space part of an Ewald sum whose reciprocal part is the grid Hartree term).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.special import erfc

from fastqmd.dft.grid import Grid


def _image_shifts(grid: Grid, cutoff: float) -> np.ndarray:
    if not grid.periodic:
        return np.zeros((1, 3))
    L = grid.lengths
    m = [int(np.ceil(cutoff / Li)) for Li in L]
    return np.array([np.array(k) * L for k in itertools.product(*(range(-mi, mi + 1) for mi in m))])


def ion_energy_forces(Z: np.ndarray, positions: np.ndarray, grid: Grid, r_c: float) -> tuple[float, np.ndarray]:
    """(E_ion − E_self, forces [n_atoms, 3]) in Ha and Ha/Bohr for ion charges Z and positions (Bohr)."""
    s = np.sqrt(2) * r_c
    cutoff = 10 * r_c
    shifts = _image_shifts(grid, cutoff)
    E = -np.sum(Z**2) / (np.sqrt(2 * np.pi) * r_c)
    F = np.zeros_like(positions)
    for a in range(len(Z)):
        for b in range(len(Z)):
            d = positions[a] - positions[b] + shifts  # [n_images, 3]
            R = np.linalg.norm(d, axis=1)
            ok = (R > 1e-10) & (R < cutoff)
            R, d = R[ok], d[ok]
            E += 0.5 * Z[a] * Z[b] * np.sum(erfc(R / s) / R)
            # −d/dR [erfc(R/s)/R] = erfc/R² + 2/(√π s) e^{−R²/s²}/R
            dE = erfc(R / s) / R**2 + 2 / (np.sqrt(np.pi) * s) * np.exp(-(R**2) / s**2) / R
            F[a] += Z[a] * Z[b] * np.sum((dE / R)[:, None] * d, axis=0)
    return float(E), F
