"""Fourier-filtered pseudopotentials: identity in the fine-grid limit, consistent forces when filtered."""

import numpy as np
import pytest

from fastqmd.dft.filtering import AnalyticRadial, FilteredRadial, filter_function
from fastqmd.dft.forces import hellmann_feynman_forces
from fastqmd.dft.grid import Grid
from fastqmd.dft.pseudo import load_gth
from fastqmd.dft.scf import Model, scf
from fastqmd.testing import check_gradient


def test_filter_is_identity_for_a_large_cutoff():
    """With q_max far above the pseudopotential's spectrum the filtered functions equal the analytic ones."""
    r = np.linspace(0.0, 3.0, 13)
    for pp in (load_gth("O"), load_gth("Si", "pbe")):
        f, a = FilteredRadial(pp, 1.0, 80.0), AnalyticRadial(pp, 1.0)
        np.testing.assert_allclose(f.vloc_short(r)[0], a.vloc_short(r)[0], atol=1e-8)
        for l, r_l, h in pp.projectors:
            for i in range(1, len(h) + 1):
                scale = np.abs(a.projector(l, i, r_l, r)[0]).max()
                np.testing.assert_allclose(f.projector(l, i, r_l, r)[0], a.projector(l, i, r_l, r)[0], atol=1e-6 * scale)
                np.testing.assert_allclose(f.projector(l, i, r_l, r[1:])[1], a.projector(l, i, r_l, r[1:])[1], atol=1e-4 * scale)


def test_filter_function_limits():
    q = np.array([0.0, 0.5, 0.97, 1.2])
    f = filter_function(q, 1.0)
    assert f[0] == pytest.approx(1.0) and f[1] > 0.99 and f[2] < 0.01 and f[3] < 1e-10


def test_filtered_forces_match_central_differences():
    grid = Grid.cube(12.0, 32, fd_order=4)
    L0, th = 1.83, np.deg2rad(104.5)
    pos = np.array([[0.1, 0.05, 0.02], [L0 * np.cos(th / 2), L0 * np.sin(th / 2), 0.1], [L0 * np.cos(th / 2), -L0 * np.sin(th / 2), 0]])
    model = Model(("O", "H", "H"), pos, filter_pseudo=True)
    res = scf(model, grid, e_tol=1e-11, rho_tol=1e-8)
    F = hellmann_feynman_forces(res)
    energy = lambda p: scf(model.moved(p), grid, U0=res.orbitals, n0=res.density, e_tol=1e-11,  # noqa: E731
                           rho_tol=1e-8).free_energy
    # 4-point: the O surface is still rough at h = 0.375
    check_gradient(energy, pos, -F, h=1e-3, atol=1e-5, indices=[(0, 0), (1, 1)], points=4)
    # filtering cuts the egg-box force (Σ F; 9.6 Ha/Bohr point-sampled at this grid, test_scf_forces)
    assert abs(F.sum(0)[0]) < 1.5
