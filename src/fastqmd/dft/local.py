"""Local pseudopotential and Gaussian compensating charges on the grid.

E_loc,short = ∫ n(r) Σ_a ΔV_loc,a(|r − R_a|) d³r,   ΔV_loc = V_loc + Z erf(r/r_c)/r   (short-ranged),
b(r) = −Σ_a Z_a (π r_c²)^{−3/2} e^{−|r−R_a|²/r_c²}  (ionic Gaussian charges, electron sign convention),
so that V_loc,a = ΔV_loc,a + [potential of b_a] exactly, and the long-range part enters through Poisson of n + b.
Forces on atom a (−∂E/∂R_a, point-sampled functions, so exactly consistent with the grid-sampled energy):
F_a = ∫ n ∇ΔV_loc,a(r − R_a) d³r (`local_short_forces`) − Z_a ∫ V_H ∇g_a(r − R_a) d³r (`compensation_forces`, the
Hartree term's), with ∇g = −2 (r − R)/r_c² g.
Periodic grids use the minimum image (requires the functions to vanish beyond half the box: r_c ≲ L/12).
"""

from __future__ import annotations

import numpy as np

from fastqmd.dft.grid import Grid
from fastqmd.dft.filtering import radial_functions
from fastqmd.dft.pseudo import GTHPseudo


def _radii(grid: Grid, R: np.ndarray):
    dx, dy, dz = grid.displacements(R)
    dx, dy, dz = dx[:, None, None], dy[None, :, None], dz[None, None, :]
    r = np.sqrt(dx**2 + dy**2 + dz**2)
    return (dx, dy, dz), r


def local_potential(pseudos: list[GTHPseudo], positions: np.ndarray, grid: Grid, r_c: float,
                    q_max: float | None = None) -> np.ndarray:
    """Σ_a ΔV_loc,a on the grid [n_x, n_y, n_z] (Ha); Fourier-filtered to q_max when given (filtering.py)."""
    V = np.zeros(grid.shape)
    for pp, R in zip(pseudos, positions):
        _, r = _radii(grid, R)
        V += radial_functions(pp, r_c, q_max).vloc_short(r)[0]
    return V


def compensation_charge(pseudos: list[GTHPseudo], positions: np.ndarray, grid: Grid, r_c: float) -> np.ndarray:
    """b(r) = −Σ_a Z_a g(r − R_a), g = (π r_c²)^{−3/2} e^{−r²/r_c²}; ∫b = −Σ Z."""
    b = np.zeros(grid.shape)
    norm = (np.pi * r_c**2) ** -1.5
    for pp, R in zip(pseudos, positions):
        _, r = _radii(grid, R)
        b -= pp.Z * norm * np.exp(-(r**2) / r_c**2)
    return b


def local_short_forces(pseudos, positions, grid: Grid, r_c: float, n: np.ndarray,
                       q_max: float | None = None) -> np.ndarray:
    """F_a = ∫ n ∇ΔV_loc,a(r − R_a) dV = −∂/∂R_a ∫ n ΔV_loc at fixed n, [n_atoms, 3] (Ha/Bohr)."""
    F = np.zeros((len(pseudos), 3))
    for a, (pp, R) in enumerate(zip(pseudos, positions)):
        d, r = _radii(grid, R)
        w = n * radial_functions(pp, r_c, q_max).vloc_short(r)[1]  # n (1/r) dΔV/dr
        F[a] = [np.sum(w * d[k]) * grid.dV for k in range(3)]
    return F


def compensation_forces(pseudos, positions, grid: Grid, r_c: float, V_H: np.ndarray) -> np.ndarray:
    """F_a = −Z_a ∫ V_H ∇g_a(r − R_a) dV = −∂/∂R_a ½∫(n + b)V_H at fixed n, [n_atoms, 3] (Ha/Bohr)."""
    F = np.zeros((len(pseudos), 3))
    norm = (np.pi * r_c**2) ** -1.5
    for a, (pp, R) in enumerate(zip(pseudos, positions)):
        d, r = _radii(grid, R)
        w = pp.Z * V_H * (2 / r_c**2) * norm * np.exp(-(r**2) / r_c**2)
        F[a] = [np.sum(w * d[k]) * grid.dV for k in range(3)]
    return F
