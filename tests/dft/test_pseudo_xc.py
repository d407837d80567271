"""GTH pseudopotential and XC checks: tables, projector normalization, V_loc formula, v_xc = δE_xc/δn."""

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import erf

from fastqmd.dft.grid import Grid
from fastqmd.dft.pseudo import load_gth, projector_radial, projector_values, solid_harmonics, vloc, vloc_short
from fastqmd.dft.xc import xc_energy_potential
from fastqmd.testing import check_gradient


def test_gth_tables_match_published_water_parameters():
    O, H = load_gth("O"), load_gth("H")
    assert (O.Z, H.Z) == (6.0, 1.0)
    assert O.r_loc == pytest.approx(0.24762086) and O.C == pytest.approx((-16.58031797, 2.39570092))
    assert O.projectors[0][:2] == (0, pytest.approx(0.22178614)) and O.projectors[0][2][0][0] == pytest.approx(18.26691718)
    assert H.projectors == () and H.C == pytest.approx((-4.18023680, 0.72507482))
    assert load_gth("Si", "pbe").n_projectors == 2 + 3  # two s projectors, one p shell
    with pytest.raises(ValueError):
        load_gth("Xx")


def test_vloc_formula_and_short_range_split():
    O = load_gth("O")
    r = np.array([1e-6, 0.1, 0.5, 1.0, 3.0])
    x = r / O.r_loc
    ref = -O.Z / r * erf(r / (np.sqrt(2) * O.r_loc)) + np.exp(-x**2 / 2) * (O.C[0] + O.C[1] * x**2)
    np.testing.assert_allclose(vloc(O, r), ref, rtol=1e-9)
    # the short-range remainder vanishes at large r and its radial derivative matches finite differences
    V, dV = vloc_short(O, np.array([8.0, 1.3]), r_c=1.0)
    assert abs(V[0]) < 1e-12
    check_gradient(lambda r: vloc_short(O, r, 1.0)[0][0], np.array([1.3]), np.array([dV[1] * 1.3]), h=1e-5,
                   atol=1e-12, rtol=1e-7)


@pytest.mark.parametrize("l,i", [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1)])
def test_projector_radial_normalization(l, i):
    """∫ |p_i^l(r)|² r² dr = 1 with p = R(r) r^l."""
    r_l = 0.45
    val = quad(lambda r: (projector_radial(l, i, r_l, np.array(r))[0] * r**l) ** 2 * r**2, 0, 20 * r_l)[0]
    assert val == pytest.approx(1.0, abs=1e-10)


def test_projectors_on_fine_grid_are_orthonormal_in_m():
    """Sampled p_{lm} Y_lm on a fine grid: Gram matrix of same-(l,i) functions ≈ identity (angular part)."""
    pp = load_gth("Si", "pbe")
    grid = Grid.cube(8.0, 100)
    x, y, z = np.meshgrid(*grid.axes, indexing="ij")
    d = np.array([x.ravel(), y.ravel(), z.ravel()])
    P, _ = projector_values(pp, d)
    G = P @ P.T * grid.dV
    np.testing.assert_allclose(np.diag(G), 1.0, atol=2e-6)
    # s and p projectors are orthogonal to each other by symmetry
    assert np.max(np.abs(G[:2, 2:])) < 1e-8


def test_solid_harmonic_gradients():
    d = np.array([[0.3], [-0.7], [0.5]])
    for l in (0, 1, 2):
        S, dS = solid_harmonics(l, d)
        for k in range(3):
            e = np.zeros((3, 1))
            e[k] = 1e-6
            fd = (solid_harmonics(l, d + e)[0] - solid_harmonics(l, d - e)[0]) / 2e-6
            np.testing.assert_allclose(dS[:, k], fd, atol=1e-8)


@pytest.mark.parametrize("functional", ["teter93", "pz81", "pbe"])
def test_vxc_is_functional_derivative_of_grid_exc(functional):
    """(E_xc[n + εδ] − E_xc[n − εδ])/2ε = ∫ v_xc δ (exact for the grid-sampled functional, incl. the PBE FD gradient)."""
    grid = Grid.cube(6.0, 20, fd_order=4)
    x, y, z = np.meshgrid(*grid.axes, indexing="ij")
    n = 0.3 * np.exp(-(x**2 + y**2 + 0.5 * z**2)) + 0.01
    delta = np.exp(-((x - 0.5) ** 2 + y**2 + z**2))
    E, v = xc_energy_potential(n, grid, functional)
    check_gradient(lambda t: xc_energy_potential(n + t[0] * delta, grid, functional)[0], np.zeros(1),
                   np.array([np.sum(v * delta) * grid.dV]), h=1e-5, atol=1e-12, rtol=1e-6)


def test_uniform_gas_lda_teter93_close_to_pz81_and_slater_exchange():
    grid = Grid.cube(2.0, 8)
    for n0 in (0.01, 0.1, 1.0):
        n = np.full(grid.shape, n0)
        e_t = xc_energy_potential(n, grid, "teter93")[0] / (n0 * 8.0)
        e_p = xc_energy_potential(n, grid, "pz81")[0] / (n0 * 8.0)
        e_x = -0.75 * (3 / np.pi) ** (1 / 3) * n0 ** (1 / 3)
        assert abs(e_t - e_p) < 2e-3 * abs(e_p)  # both fit Ceperley–Alder
        assert e_x > e_p > 1.25 * e_x  # correlation is negative and smaller than exchange
