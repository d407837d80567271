"""Separable nonlocal GTH pseudopotential on the grid.

V_nl = Σ_a Σ_{ij} |β_{a,i}⟩ h_{a,ij} ⟨β_{a,j}|, with β_{a,i}(r) = p_i(r − R_a) (projector × real Y_lm) sampled on
the grid inside a sphere of radius r_cut around R_a. Acting on orthonormal grid vectors u = ψ√dV, the sampled
projectors are stored as B = β√dV so that ⟨β|ψ⟩ = B·u and V_nl u = Bᵀ h B u.
E_nl = Σ_n o_n Σ_ij c_ni h_ij c_nj, c_ni = B_i·u_n; F_a = 2 Σ_n o_n Σ_ij (∇B_i·u_n) h_ij c_nj
(−∂/∂R_a of the grid-sampled energy, since ∂β(r − R)/∂R = −∇β).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastqmd.dft.grid import Grid
from fastqmd.dft.filtering import radial_functions
from fastqmd.dft.pseudo import GTHPseudo, projector_values


@dataclass(frozen=True)
class ProjectorBlock:
    """Projectors of one atom: flat grid indices [n_pts], B [n_proj, n_pts] (×√dV), ∇B [n_proj, 3, n_pts], h."""

    atom: int
    index: np.ndarray
    B: np.ndarray
    dB: np.ndarray
    h: np.ndarray


def projector_blocks(pseudos: list[GTHPseudo], positions: np.ndarray, grid: Grid, r_c: float = 1.0,
                     q_max: float | None = None) -> list[ProjectorBlock]:
    """Sample every atom's projectors (and gradients) on the grid points within r_cut of the atom
    (analytic, or Fourier-filtered to q_max)."""
    blocks = []
    for a, (pp, R) in enumerate(zip(pseudos, positions)):
        if pp.n_projectors == 0:
            continue
        radial = radial_functions(pp, r_c, q_max)
        rcut = radial.cutoff
        if grid.periodic and 2 * rcut > min(grid.lengths):
            raise ValueError(f"projector radius {rcut:.2f} Bohr exceeds half the box")
        sel, disp = [], []
        for ax, (x, h, n) in enumerate(zip(grid.axes, grid.spacing, grid.shape)):
            d = grid.displacements(R)[ax]
            i = np.nonzero(np.abs(d) <= rcut)[0]
            sel.append(i)
            disp.append(d[i])
        ix, iy, iz = np.meshgrid(*sel, indexing="ij")
        dx, dy, dz = np.meshgrid(*disp, indexing="ij")
        d = np.array([dx.ravel(), dy.ravel(), dz.ravel()])
        inside = (d**2).sum(0) <= rcut**2
        d = d[:, inside]
        flat = np.ravel_multi_index((ix.ravel()[inside], iy.ravel()[inside], iz.ravel()[inside]), grid.shape)
        P, dP, H = projector_values(pp, d, with_grad=True, radial=radial)
        s = np.sqrt(grid.dV)
        blocks.append(ProjectorBlock(a, flat, P * s, dP * s, H))
    return blocks


def apply_nonlocal(blocks: list[ProjectorBlock], U: np.ndarray) -> np.ndarray:
    """V_nl U for U [n_states, n_grid] (flat), returned with the same shape."""
    out = np.zeros_like(U)
    for blk in blocks:
        c = U[:, blk.index] @ blk.B.T  # [n_states, n_proj]
        out[:, blk.index] += (c @ blk.h) @ blk.B
    return out


def nonlocal_energy(blocks: list[ProjectorBlock], U: np.ndarray, occ: np.ndarray) -> float:
    """E_nl = Σ_n o_n Σ_ij c_ni h_ij c_nj."""
    E = 0.0
    for blk in blocks:
        c = U[:, blk.index] @ blk.B.T
        E += float(np.sum(occ[:, None] * (c @ blk.h) * c))
    return E


def nonlocal_forces(blocks: list[ProjectorBlock], U: np.ndarray, occ: np.ndarray, n_atoms: int) -> np.ndarray:
    """F_a = 2 Σ_n o_n Σ_ij (∇B_i·u_n) h_ij c_nj, [n_atoms, 3]."""
    F = np.zeros((n_atoms, 3))
    for blk in blocks:
        u = U[:, blk.index]  # [n_states, n_pts]
        c = u @ blk.B.T  # [n_states, n_proj]
        dc = np.einsum("spk,nk->nsp", blk.dB, u)  # [n_states, n_proj, 3]... (proj, xyz) order
        hc = c @ blk.h  # [n_states, n_proj]
        F[blk.atom] += 2 * np.einsum("n,nsp,ns->p", occ, dc, hc)
    return F
