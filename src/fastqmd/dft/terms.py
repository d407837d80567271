"""The energy terms of the real-space Kohn–Sham model, listed once (atomic units: Ha, Bohr).

F[U, o] = Σ_terms E_t − TS,  in the order of `model_terms`:
  Kinetic        E = Σ_n o_n ⟨u_n|−½∇²_FD|u_n⟩                    operator −½∇²_FD           (hamiltonian.py)
  Nonlocal       E = Σ_n o_n Σ_ij c_ni h_ij c_nj, c_ni = B_i·u_n   operator Bᵀ h B; forces    (nonlocal_pp.py)
  LocalShort     E = ∫ n ΔV_loc                                    potential ΔV_loc; forces   (local.py)
  Hartree        E = ½ ∫ (n + b) V_H,  V_H = Poisson[n + b]        potential V_H; forces      (poisson.py, local.py)
  XC             E = E_xc[n]                                       potential v_xc = δE_xc/δn  (xc.py)
  IonIon         E = Σ_{a<b} Z_a Z_b erfc(R_ab/√2 r_c)/R_ab − self forces                     (ions.py)
and −TS from the Fermi–Dirac occupations (occupations.py). The keys of `SCFResult.energies` are the terms' `name`s.

Three kinds of term, by what their energy depends on (besides the geometry, held in a `Discretization`):
- orbital terms (`OrbitalTerm`): `energy(disc, U, occ)` and `apply(disc, U)` = the term's operator on U, so that
  the directional derivative of E along δU is 2 Σ_n o_n ⟨δu_n|A u_n⟩;
- density terms (`DensityTerm`): `energy_potential(disc, n) -> (E, V)` with V = δE/δn (per grid point, ∫ → Σ dV),
  so that dE(n + t δn)/dt = ∫ V δn; V_eff = Σ V over the density terms;
- the ion term: `energy(disc)`.
Terms with an explicit R dependence have `forces(disc, state)` = −∂E_t/∂R at fixed orbitals, occupations and density,
[n_atoms, 3] Ha/Bohr; at self-consistency their sum is the Hellmann–Feynman force (forces.py).
tests/dft/test_terms.py checks each term's potential/operator and forces against central differences of its energy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from fastqmd.dft.hamiltonian import kinetic, kinetic_energies
from fastqmd.dft.local import compensation_forces, local_short_forces
from fastqmd.dft.nonlocal_pp import apply_nonlocal, nonlocal_energy, nonlocal_forces
from fastqmd.dft.poisson import hartree_potential
from fastqmd.dft.xc import xc_energy_potential

if TYPE_CHECKING:
    from fastqmd.dft.scf import Discretization


@dataclass(frozen=True)
class KSState:
    """What the force terms read: orbitals U [k, n_grid], occupations [k], density n and the Hartree potential V_H
    ([n_x, n_y, n_z], of n + b)."""

    U: np.ndarray
    occ: np.ndarray
    n: np.ndarray
    v_hartree: np.ndarray


@runtime_checkable
class OrbitalTerm(Protocol):
    name: str

    def energy(self, disc: Discretization, U: np.ndarray, occ: np.ndarray) -> float: ...

    def apply(self, disc: Discretization, U: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class DensityTerm(Protocol):
    name: str

    def energy_potential(self, disc: Discretization, n: np.ndarray) -> tuple[float, np.ndarray]: ...


@runtime_checkable
class ForceTerm(Protocol):
    """A term with explicit R dependence: forces −∂E/∂R at fixed U, o and n."""

    def forces(self, disc: Discretization, state: KSState) -> np.ndarray: ...


@dataclass(frozen=True)
class Kinetic:
    """E = Σ_n o_n ⟨u_n|−½∇²_FD|u_n⟩ (FD Laplacian of the grid's order)."""

    name: str = "kinetic"

    def energy(self, disc: Discretization, U: np.ndarray, occ: np.ndarray) -> float:
        return float(occ @ kinetic_energies(U, disc.grid))

    def apply(self, disc: Discretization, U: np.ndarray) -> np.ndarray:
        return kinetic(U, disc.grid)


@dataclass(frozen=True)
class Nonlocal:
    """E = Σ_n o_n Σ_ij c_ni h_ij c_nj, c_ni = B_i·u_n (separable GTH projectors B of every atom)."""

    name: str = "nonlocal"

    def energy(self, disc: Discretization, U: np.ndarray, occ: np.ndarray) -> float:
        return nonlocal_energy(disc.blocks, U, occ)

    def apply(self, disc: Discretization, U: np.ndarray) -> np.ndarray:
        return apply_nonlocal(disc.blocks, U)

    def forces(self, disc: Discretization, state: KSState) -> np.ndarray:
        return nonlocal_forces(disc.blocks, state.U, state.occ, len(disc.model.symbols))


@dataclass(frozen=True)
class LocalShort:
    """E = ∫ n Σ_a ΔV_loc,a(r − R_a), ΔV_loc = V_loc + Z erf(r/r_c)/r; δE/δn = ΔV_loc."""

    name: str = "local_short"

    def energy_potential(self, disc: Discretization, n: np.ndarray) -> tuple[float, np.ndarray]:
        return float(np.sum(n * disc.v_short)) * disc.grid.dV, disc.v_short

    def forces(self, disc: Discretization, state: KSState) -> np.ndarray:
        m = disc.model
        return local_short_forces(m.pseudos, _positions(disc), disc.grid, m.r_c, state.n, disc.q_max)


@dataclass(frozen=True)
class Hartree:
    """E = ½ ∫ (n + b) V_H, V_H = Poisson[n + b] with the ionic Gaussian charges b; δE/δn = V_H."""

    name: str = "hartree_total"

    def energy_potential(self, disc: Discretization, n: np.ndarray) -> tuple[float, np.ndarray]:
        rho = n + disc.b
        V_H = hartree_potential(rho, disc.grid)
        return 0.5 * float(np.sum(rho * V_H)) * disc.grid.dV, V_H

    def forces(self, disc: Discretization, state: KSState) -> np.ndarray:
        m = disc.model
        return compensation_forces(m.pseudos, _positions(disc), disc.grid, m.r_c, state.v_hartree)


@dataclass(frozen=True)
class XC:
    """E = E_xc[n] of `functional` (LDA or GGA); δE/δn = v_xc (the exact derivative of the grid-sampled E_xc)."""

    functional: str
    name: str = "xc"

    def energy_potential(self, disc: Discretization, n: np.ndarray) -> tuple[float, np.ndarray]:
        return xc_energy_potential(n, disc.grid, self.functional)


@dataclass(frozen=True)
class IonIon:
    """E = Σ_{a<b, images} Z_a Z_b erfc(R_ab/(√2 r_c))/R_ab − Σ_a Z_a²/(√(2π) r_c) (precomputed in the Discretization)."""

    name: str = "ion_short"

    def energy(self, disc: Discretization) -> float:
        return disc.E_ion

    def forces(self, disc: Discretization, state: KSState | None = None) -> np.ndarray:
        return disc.F_ion


def model_terms(xc: str) -> tuple:
    """The terms of the Kohn–Sham free energy, in the order their energies are summed."""
    return (Kinetic(), Nonlocal(), LocalShort(), Hartree(), XC(xc), IonIon())




def _positions(disc: Discretization) -> np.ndarray:
    return np.asarray(disc.model.positions, float)
