"""Hellmann–Feynman forces F_a = −∂F/∂R_a of the grid-sampled Mermin free energy (Ha/Bohr).

At self-consistency the free energy is stationary in the orbitals and occupations, so only explicit R dependence
remains: the sum of the terms' explicit forces (terms.py): nonlocal (projectors, nonlocal_pp.py), local (ΔV_loc,
local.py), Hartree (the Gaussian compensating charges, local.py) and ion–ion (erfc pair sum, ions.py). All pieces
differentiate the point-sampled functions analytically, so they are the exact derivative of the energy as sampled
on the grid; the sum over atoms is not zero on a finite grid (egg-box effect).
"""

from __future__ import annotations

import numpy as np

from fastqmd.dft.scf import Discretization, SCFResult
from fastqmd.dft.terms import ForceTerm, KSState


def hellmann_feynman_forces(result: SCFResult) -> np.ndarray:
    """Total forces [n_atoms, 3] in Ha/Bohr for a converged SCF result: Σ over the model's terms with forces."""
    state = KSState(result.orbitals, result.occupations, result.density, result.v_hartree)
    return state_forces(result.disc, state)


def state_forces(disc: Discretization, state: KSState) -> np.ndarray:
    """Σ over the model's terms with explicit R dependence of −∂E_t/∂R at fixed orbitals, occupations and density
    [n_atoms, 3] (Ha/Bohr); the Hellmann–Feynman force when `state` is stationary (SCF, or a reduced solution)."""
    F = np.zeros((len(disc.model.symbols), 3))
    for term in disc.model.terms:
        if isinstance(term, ForceTerm):
            F += term.forces(disc, state)
    return F
