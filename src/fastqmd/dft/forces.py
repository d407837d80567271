"""Hellmann–Feynman forces F_a = −∂F/∂R_a of the grid-sampled Mermin free energy (Ha/Bohr).

At self-consistency the free energy is stationary in the orbitals and occupations, so only explicit R dependence
remains: F = F_ion (erfc pair sum) + F_local (ΔV_loc and the Gaussian charges, local.py) + F_nonlocal (projectors,
nonlocal_pp.py). All pieces differentiate the point-sampled functions analytically, so they are the exact
derivative of the energy as sampled on the grid; the sum over atoms is not zero on a finite grid (egg-box effect).
"""

from __future__ import annotations

import numpy as np

from fastqmd.dft.local import local_forces
from fastqmd.dft.nonlocal_pp import nonlocal_forces
from fastqmd.dft.scf import SCFResult, q_max


def hellmann_feynman_forces(result: SCFResult) -> np.ndarray:
    """Total forces [n_atoms, 3] in Ha/Bohr for a converged SCF result."""
    disc = result.disc
    model = disc.model
    F = disc.F_ion.copy()
    F += local_forces(model.pseudos, np.asarray(model.positions, float), disc.grid, model.r_c, result.density, result.v_hartree,
                      q_max(model, disc.grid))
    F += nonlocal_forces(disc.blocks, result.orbitals, result.occupations, len(model.symbols))
    return F
