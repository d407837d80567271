"""The long-range charge channel of the NN Hamiltonian: learned atomic charges and the level shift their
electrostatic potential makes (issue 13 part 3).

A local model (cutoff r_c, T layers) cannot see the potential of charges farther than T·r_c, nor — with a 7 Å
cutoff in a small cell — the lattice sum of its own periodic images. The self-consistent-charge Hamiltonians
(DFTB, GFN-xTB) and the Hartree term of Kohn–Sham DFT in a neutral-atom-like orbital basis shift the levels by

    H_ij ← H_ij + ½ S_ij (u_i + u_j),      u_i = −k_e φ_i   (eV; the electron's charge is −e, q in e)

(on-site block: u_i S_ii; in k-space H(k) ← H(k) + ½ (U S(k) + S(k) U), U = diag of u over each atom's orbitals,
since U is the same in every cell). φ_i is the potential at atom i of the other Gaussian charges q_j (width σ,
pair kernel erf(r/2σ)/r, finite at r → 0) and of all periodic images:

    molecules:  φ_i = Σ_{j≠i} q_j erf(r_ij/2σ)/r_ij
    cells (Ewald, α = √(−ln ε)/r_c, |G| ≤ 2α√(−ln ε), Σ q = 0 so no background term):
        φ_i = Σ'_{j,R; r<r_c} q_j [erfc(αr) − erfc(r/2σ)]/r                       (real space; ' skips j=i, R=0)
            + (4π/V) Σ_{G≠0} e^{−G²/4α²}/G² Σ_j q_j cos(G·(r_i − r_j))                (reciprocal)
            − 2α q_i/√π                                                            (the Gaussian's own share)

The charges are latent: a linear head on the trunk's scalar features, q_i = w·s_i + b_{Z_i} − (mean), neutral by
construction and zero at initialization (the channel starts as the purely local model). They learn from L_H
alone; forces and stress follow by autograd through q(R), φ(R, cell) and S(R).
Units: Å, e, eV; k_e = e²/(4πε₀) from ASE.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from ase.units import Bohr, Hartree
from pydantic import Field, PositiveFloat
from torch import Tensor

from fastqmd.config import FrozenModel
from fastqmd.errors import InputError

COULOMB_EV_A = Hartree * Bohr  # k_e = e²/(4πε₀) = 14.3996 eV·Å


class Electrostatics(FrozenModel):
    """The charge channel's settings (`NNHConfig.electrostatics`; None: off)."""

    gaussian_width_A: PositiveFloat = 0.5  # σ of each atom's Gaussian charge (pair kernel erf(r/2σ)/r)
    ewald_accuracy: float = Field(1e-8, gt=0, lt=1e-3)  # ε: the real- and reciprocal-space truncation


def molecular_potential(q: Tensor, positions: Tensor, sigma: float) -> Tensor:
    """φ_i = Σ_{j≠i} q_j erf(r_ij/2σ)/r_ij [N] (e/Å) for an isolated structure (dense pairs)."""
    n = positions.shape[0]
    d = positions[:, None, :] - positions[None, :, :]
    off = ~torch.eye(n, dtype=torch.bool, device=positions.device)
    r = torch.sqrt((d ** 2).sum(-1) + (~off).to(d.dtype))  # 1 on the diagonal: no 0/0 in the gradient
    k = torch.where(off, torch.erf(r / (2 * sigma)) / r, torch.zeros_like(r))
    return k @ q


def reciprocal_vectors(cell: Tensor, kmax: float) -> Tensor:
    """All G = 2π n·B ≠ 0 with |G| ≤ kmax [nG, 3] (Å⁻¹), B = cell⁻ᵀ (rows); |n_c| ≤ kmax |a_c| / 2π."""
    B = 2 * math.pi * torch.linalg.inv(cell).T
    lengths = torch.linalg.norm(cell.detach(), dim=1).cpu().numpy()
    nmax = [int(math.ceil(kmax * L / (2 * math.pi))) for L in lengths]
    grid = np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in nmax], indexing="ij"), -1).reshape(-1, 3)
    grid = grid[np.abs(grid).sum(1) > 0]
    G = torch.as_tensor(grid, dtype=cell.dtype, device=cell.device) @ B
    return G[torch.linalg.norm(G.detach(), dim=1) <= kmax]


def ewald_potential(q: Tensor, positions: Tensor, cell: Tensor, edge_i: Tensor, edge_j: Tensor, shifts: Tensor,
                    sigma: float, r_cut: float, accuracy: float) -> Tensor:
    """φ_i [N] (e/Å) of Gaussian charges q [N] (Σ q = 0) in a 3-D periodic cell (module docstring), from the
    directed pairs (i, j, R) of a neighbour graph that holds every pair with r < r_cut (pairs beyond are ignored).
    Differentiable in q, positions and cell."""
    p = math.sqrt(-math.log(accuracy))
    alpha = p / r_cut
    r_vec = positions[edge_j] - positions[edge_i] + shifts.to(positions.dtype) @ cell
    r = torch.linalg.norm(r_vec, dim=-1)
    inside = r < r_cut
    kern = torch.where(inside, (torch.erfc(alpha * r) - torch.erfc(r / (2 * sigma))) / torch.where(inside, r, 1.0),
                       torch.zeros_like(r))
    phi = torch.zeros_like(q).index_add(0, edge_i, kern * q[edge_j])
    G = reciprocal_vectors(cell, 2 * alpha * p)
    if G.shape[0]:
        V = torch.abs(torch.linalg.det(cell))
        G2 = (G ** 2).sum(-1)
        a = torch.exp(-G2 / (4 * alpha ** 2)) / G2  # [nG]
        theta = positions @ G.T  # [N, nG]
        c, s = torch.cos(theta), torch.sin(theta)
        C, Sn = q @ c, q @ s  # structure factor, [nG]
        phi = phi + (4 * math.pi / V) * (c * (a * C) + s * (a * Sn)).sum(-1)
    return phi - 2 * alpha * q / math.sqrt(math.pi)


def potential(q: Tensor, positions: Tensor, cell: Tensor, pbc, edge_i: Tensor, edge_j: Tensor, shifts: Tensor,
              settings: Electrostatics, r_cut: float) -> Tensor:
    """φ_i [N] (e/Å): `ewald_potential` for 3-D periodic cells, `molecular_potential` without pbc."""
    pbc = tuple(bool(x) for x in np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)))
    if all(pbc):
        return ewald_potential(q, positions, cell, edge_i, edge_j, shifts, settings.gaussian_width_A, r_cut,
                               settings.ewald_accuracy)
    if not any(pbc):
        return molecular_potential(q, positions, settings.gaussian_width_A)
    raise InputError(f"the NNH charge channel treats molecules and 3-D periodic cells; this structure has pbc {pbc}")


def level_shift(H: Tensor, S: Tensor, u_orbital: Tensor) -> Tensor:
    """H(k) + ½ (U S(k) + S(k) U) with U = diag(u_orbital) [nao] eV; H, S [nk, nao, nao]."""
    u = u_orbital.to(S.real.dtype)
    return H + 0.5 * (u[:, None] * S + S * u[None, :])
