"""Operator checks on coarse grids: FD Laplacian of a plane wave, Poisson of a Gaussian vs the analytic erf/r."""

import numpy as np
import pytest
from scipy.special import erf

from fastqmd.dft.grid import Grid
from fastqmd.dft.poisson import poisson_free, poisson_periodic
from fastqmd.dft.stencils import FIRST_DERIVATIVE, SECOND_DERIVATIVE, divergence, gradient, laplacian, laplacian_symbol


@pytest.mark.parametrize("order", [2, 4, 6, 8])
def test_fd_laplacian_of_plane_wave_matches_symbol_and_order(order):
    """∇²e^{iqx} = λ_FD(q) e^{iqx} exactly; λ_FD → −q² with error O(h^p)."""
    grid = Grid((16, 12, 10), (0.5, 0.6, 0.7), (0.0, 0.0, 0.0), fd_order=order)
    x, y, z = np.meshgrid(*grid.axes, indexing="ij")
    m = (2, 1, 3)
    q = [2 * np.pi * mi / L for mi, L in zip(m, grid.lengths)]
    f = np.cos(q[0] * x + q[1] * y + q[2] * z)
    lap = laplacian(f, grid)
    sym = sum((SECOND_DERIVATIVE[order][0] + 2 * sum(c * np.cos(k * qa * h) for k, c in enumerate(SECOND_DERIVATIVE[order][1:], 1))) / h**2
              for qa, h in zip(q, grid.spacing))
    np.testing.assert_allclose(lap, sym * f, atol=1e-11)
    lam = laplacian_symbol(grid)
    np.testing.assert_allclose(lam[m[0], m[1], m[2]], sym, rtol=1e-12)
    # truncation error: bounded by the leading Taylor term C_p (q h)^p q² with a generous constant
    q2 = sum(qa**2 for qa in q)
    assert abs(sym + q2) <= q2 * max((qa * h) ** order for qa, h in zip(q, grid.spacing))


def test_fd_orders_converge_at_their_rate():
    """Halving h reduces the 1-D error of the FD second derivative by ≈ 2^p."""
    q = 1.3
    for order, c in SECOND_DERIVATIVE.items():
        err = [abs((c[0] + 2 * sum(ck * np.cos(k * q * h) for k, ck in enumerate(c[1:], 1))) / h**2 + q**2) for h in (0.2, 0.1)]
        assert 0.8 * 2**order < err[0] / err[1] < 1.2 * 2**order


def test_gradient_divergence_adjoint_and_accuracy():
    grid = Grid((12, 12, 12), (0.5,) * 3, (0.0,) * 3, fd_order=6)
    rng = np.random.default_rng(0)
    f = rng.standard_normal(grid.shape)
    v = rng.standard_normal((3,) + grid.shape)
    assert abs(np.sum(gradient(f, grid) * v) + np.sum(f * divergence(v, grid))) < 1e-10
    x = grid.axes[0][:, None, None] + 0 * f
    g = gradient(np.sin(2 * np.pi * x / 6.0), grid)
    np.testing.assert_allclose(g[0], 2 * np.pi / 6 * np.cos(2 * np.pi * x / 6.0), atol=2e-4)
    assert len(FIRST_DERIVATIVE[6]) == 3


def _gaussian(grid, center, width):
    d = grid.displacements(np.asarray(center))
    r2 = d[0][:, None, None] ** 2 + d[1][None, :, None] ** 2 + d[2][None, None, :] ** 2
    return np.exp(-r2 / width**2) / (np.pi * width**2) ** 1.5, np.sqrt(r2)


def test_periodic_poisson_of_neutral_gaussian_pair():
    """Two opposite Gaussians far apart: V equals erf(r/w)/r − erf(r'/w)/r' up to the periodic (dipole) images."""
    grid = Grid.cube(24.0, 48)
    g1, r1 = _gaussian(grid, (-3.0, 0, 0), 1.0)
    g2, r2 = _gaussian(grid, (3.0, 0, 0), 1.0)
    V = poisson_periodic(g1 - g2, grid)
    with np.errstate(invalid="ignore", divide="ignore"):
        exact = np.where(r1 > 0, erf(r1) / r1, 2 / np.sqrt(np.pi)) - np.where(r2 > 0, erf(r2) / r2, 2 / np.sqrt(np.pi))
    # image dipoles shift V by a smooth field of ~1e-2 far from the charges; near the charge centers the difference is tight
    near = (r1 < 1.5)
    diff = V - exact
    assert np.ptp(diff[near]) < 5e-3


def test_free_space_poisson_of_gaussian_matches_erf_over_r():
    """Free-space solver: V of a unit Gaussian equals erf(r/w)/r everywhere in the box (to 1e-8)."""
    grid = Grid.cube(12.0, 32, periodic=False)
    g, r = _gaussian(grid, (0.3, -0.2, 0.1), 1.0)
    V = poisson_free(g, grid)
    with np.errstate(invalid="ignore", divide="ignore"):
        exact = np.where(r > 0, erf(r) / r, 2 / np.sqrt(np.pi))
    np.testing.assert_allclose(V, exact, atol=1e-8)
