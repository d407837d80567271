"""Public operator API of the real-space model: the pieces a reduced-order model (MOR) needs, over `fastqmd.dft`.

In: a `Model` (atoms in Bohr, XC, kT) and a `Grid`; vectors as rows U [k, n_grid] in the solver's convention
(orthonormal in the Euclidean inner product, ψ = u/√dV); densities [n_x, n_y, n_z] in electrons/Bohr³.
Out (atomic units: Ha, Bohr):
- `discretize(model, grid)` — the geometry-dependent terms (ΔV_loc, ionic Gaussian charge b, projectors with
  gradients, ion–ion energy and forces), scf.discretize;
- `density_potentials(disc, n)` — V_eff = Σ_t δE_t/δn and {term: (E_t, V_t)} (scf.effective_potential);
- `apply_hamiltonian(disc, V_eff, U)` — H U = −½∇²_FD U + V_eff U + V_nl U (Hamiltonian.apply);
- reduced matrices over a basis Φ [k, n_grid]: `kinetic_matrix` ΦTΦᵀ, `potential_matrix` Φ diag(V) Φᵀ,
  `projector_overlaps` C_a = Φ Bᵀ_a and `nonlocal_matrix` Σ_a C_a h_a C_aᵀ, so that Φ H Φᵀ is their sum;
- `basis_density(Phi, X, grid)` — n(r) = Σ_ij X_ij φ_i(r) φ_j(r) for a (non-diagonal) density matrix X;
- `natural_orbitals(Phi, X)` — X = Q diag(o) Qᵀ → (U = QᵀΦ, o): the same density and energies as orbitals;
- `density_matrix_forces(disc, Phi, X, n, V_H)` — the explicit −∂F/∂R at fixed X (local, Hartree/compensation
  charges, projectors, ion–ion): the Hellmann–Feynman force of a stationary reduced solution (forces.state_forces).
The occupation convention is the Hi-Fi one: X has eigenvalues in [0, 2] (spin-paired), tr X = N_e.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastqmd.dft.forces import state_forces
from fastqmd.dft.grid import Grid
from fastqmd.dft.hamiltonian import Hamiltonian, kinetic
from fastqmd.dft.scf import Discretization, Model, discretize, effective_potential
from fastqmd.dft.terms import KSState

__all__ = ["Discretization", "Model", "ProjectorOverlap", "apply_hamiltonian", "basis_density", "density_matrix_forces",
           "density_potentials", "discretize", "kinetic_matrix", "natural_orbitals", "nonlocal_matrix",
           "potential_matrix", "projector_overlaps"]


def density_potentials(disc: Discretization, n: np.ndarray) -> tuple[np.ndarray, dict[str, tuple[float, np.ndarray]]]:
    """(V_eff [n_x, n_y, n_z], {term name: (E_t, δE_t/δn)}) of the density terms (local_short, hartree_total, xc)."""
    return effective_potential(disc, n)


def apply_hamiltonian(disc: Discretization, V_eff: np.ndarray, U: np.ndarray) -> np.ndarray:
    """H U for a block U [k, n_grid] → [k, n_grid], H = −½∇²_FD + V_eff + Σ_a Bᵀ_a h_a B_a."""
    return Hamiltonian(disc.grid, V_eff, disc.blocks).apply(U)


def kinetic_matrix(Phi: np.ndarray, grid: Grid) -> np.ndarray:
    """T_ij = ⟨φ_i|−½∇²_FD|φ_j⟩ [k, k] (symmetrized; the FD Laplacian is symmetric)."""
    T = Phi @ kinetic(Phi, grid).T
    return 0.5 * (T + T.T)


def potential_matrix(Phi: np.ndarray, V: np.ndarray) -> np.ndarray:
    """V_ij = Σ_r φ_i(r) V(r) φ_j(r) [k, k] for a local potential V on the grid (= ⟨φ_i|V|φ_j⟩ for ψ = u/√dV)."""
    return (Phi * V.reshape(1, -1)) @ Phi.T


@dataclass(frozen=True)
class ProjectorOverlap:
    """One atom's projector overlaps with the basis: C = Φ Bᵀ [k, n_proj], dC_x = Φ ∇_x Bᵀ [k, n_proj, 3], h."""

    atom: int
    C: np.ndarray
    dC: np.ndarray
    h: np.ndarray


def projector_overlaps(disc: Discretization, Phi: np.ndarray, with_grad: bool = False) -> list[ProjectorOverlap]:
    """⟨φ_i|β_{a,p}⟩ (and ⟨φ_i|∇β_{a,p}⟩ with with_grad) for every atom with projectors."""
    out = []
    for blk in disc.blocks:
        P = Phi[:, blk.index]  # [k, n_pts]
        dC = np.einsum("spk,ik->isp", blk.dB, P) if with_grad else np.zeros((0,))
        out.append(ProjectorOverlap(blk.atom, P @ blk.B.T, dC, blk.h))
    return out


def nonlocal_matrix(overlaps: list[ProjectorOverlap], k: int) -> np.ndarray:
    """(V_nl)_ij = Σ_a Σ_pq C_{a,ip} h_{a,pq} C_{a,jq} [k, k]."""
    V = np.zeros((k, k))
    for o in overlaps:
        V += o.C @ o.h @ o.C.T
    return V


def basis_density(Phi: np.ndarray, X: np.ndarray, grid: Grid) -> np.ndarray:
    """n(r) = Σ_ij X_ij φ_i(r) φ_j(r) = Σ_i (XΦ)_i(r) Φ_i(r) / dV [n_x, n_y, n_z] (X symmetric)."""
    return np.einsum("ir,ir->r", X @ Phi, Phi).reshape(grid.shape) / grid.dV


def natural_orbitals(Phi: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """X = Q diag(o) Qᵀ → (U = QᵀΦ [k, n_grid] orthonormal rows, o [k]), so Σ_n o_n u_n u_nᵀ = Φᵀ X Φ."""
    o, Q = np.linalg.eigh(0.5 * (X + X.T))
    return Q.T @ Phi, o


def density_matrix_forces(disc: Discretization, Phi: np.ndarray, X: np.ndarray, n: np.ndarray,
                          V_H: np.ndarray, occ_floor: float | None = None) -> np.ndarray:
    """F_a = −∂F/∂R_a at fixed X, n = ρ[X] and V_H = Poisson[n + b], [n_atoms, 3] Ha/Bohr.

    The basis does not move with the atoms, so at a stationary X (X = Fermi–Dirac of h[X]) this is the exact
    gradient of the reduced free energy. Evaluated by the Hi-Fi force terms on the natural orbitals of X (only
    those with occupation > occ_floor when given: the projector term is linear in the occupations)."""
    o, Q = np.linalg.eigh(0.5 * (X + X.T))
    keep = o > occ_floor if occ_floor is not None else np.ones(len(o), bool)
    return state_forces(disc, KSState(Q[:, keep].T @ Phi, o[keep], n, V_H))
