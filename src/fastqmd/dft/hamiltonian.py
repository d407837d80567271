"""Kohn–Sham Hamiltonian on the grid and its kinetic preconditioner.

H u = −½ ∇²_FD u + V_eff u + Σ_a Bᵀ h B u,  V_eff = ΔV_loc + V_H[n + b] + v_xc[n];
orbitals are rows of U [n_states, n_grid] (orthonormal in the Euclidean inner product, ψ = u/√dV).
Preconditioner K = (T_FD + c)⁻¹ applied by FFT with the exact symbol of the periodic FD Laplacian (used for isolated
grids too, where it is only an approximation — fine for a preconditioner).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from fastqmd.dft.grid import Grid
from fastqmd.dft.nonlocal_pp import ProjectorBlock, apply_nonlocal
from fastqmd.dft.stencils import laplacian, laplacian_symbol


@dataclass
class Hamiltonian:
    grid: Grid
    V: np.ndarray  # [n_x, n_y, n_z] effective local potential (Ha)
    blocks: list[ProjectorBlock]

    def apply(self, U: np.ndarray) -> np.ndarray:
        """H U for U [k, n_grid] → [k, n_grid]."""
        k = U.shape[0]
        HU = kinetic(U, self.grid) + (self.V * U.reshape((k,) + self.grid.shape)).reshape(k, -1)
        return HU + apply_nonlocal(self.blocks, U)


def kinetic(U: np.ndarray, grid: Grid) -> np.ndarray:
    """T U = −½ ∇²_FD U for U [k, n_grid] → [k, n_grid]."""
    k = U.shape[0]
    return (-0.5 * laplacian(U.reshape((k,) + grid.shape), grid)).reshape(k, -1)


def kinetic_energies(U: np.ndarray, grid: Grid) -> np.ndarray:
    """⟨u_n|−½∇²_FD|u_n⟩ per state, [k]."""
    Ug = U.reshape((U.shape[0],) + grid.shape)
    return -0.5 * np.einsum("nijk,nijk->n", Ug, laplacian(Ug, grid))


class KineticPreconditioner:
    """R ↦ (T_FD + c)⁻¹ R by FFT, T_FD = −½ ∇²_FD (symbol ≥ 0)."""

    def __init__(self, grid: Grid, shift: float = 1.0):
        self.grid = grid
        lam = laplacian_symbol(grid)[:, :, : grid.shape[2] // 2 + 1]
        self.inv = 1.0 / (-0.5 * lam + shift)

    def __call__(self, R: np.ndarray) -> np.ndarray:
        k = R.shape[0]
        Rg = R.reshape((k,) + self.grid.shape)
        out = sfft.irfftn(sfft.rfftn(Rg, axes=(1, 2, 3)) * self.inv, s=self.grid.shape, axes=(1, 2, 3))
        return out.reshape(k, -1)
