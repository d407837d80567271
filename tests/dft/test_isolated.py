"""Isolated (free-space) boundary conditions: close to the periodic result for a neutral molecule in a 12 Bohr box,
and forces still the exact derivative of the grid energy."""

import numpy as np

from fastqmd.dft.forces import hellmann_feynman_forces
from fastqmd.dft.grid import Grid
from fastqmd.dft.scf import Model, scf
from fastqmd.testing import check_gradient

TIGHT = dict(e_tol=1e-11, rho_tol=1e-8)


def water():
    L0, th = 1.83, np.deg2rad(104.5)
    pos = np.array([[0, 0, 0], [L0 * np.cos(th / 2), L0 * np.sin(th / 2), 0.05], [L0 * np.cos(th / 2), -L0 * np.sin(th / 2), 0]])
    return Model(("O", "H", "H"), pos - np.array([0.5, 0, 0]))


def test_isolated_close_to_periodic_and_forces_consistent():
    iso, per = Grid.cube(12.0, 24, periodic=False), Grid.cube(12.0, 24, periodic=True)
    model = water()
    r_iso = scf(model, iso, **TIGHT)
    r_per = scf(model, per, **TIGHT)
    assert r_iso.converged and r_per.converged
    # periodic images of a neutral molecule (dipole–dipole) and the Dirichlet wall shift E by < 2 mHa at L = 12
    assert abs(r_iso.free_energy - r_per.free_energy) < 2e-3
    F = hellmann_feynman_forces(r_iso)
    energy = lambda p: scf(model.moved(p), iso, U0=r_iso.orbitals, n0=r_iso.density, **TIGHT).free_energy  # noqa: E731
    # 4-point: at h = 0.5 the 2-point error is 2e-5
    check_gradient(energy, model.positions, -F, h=1e-3, atol=1e-6, indices=[(1, 2)], points=4)
