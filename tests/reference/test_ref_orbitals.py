"""The fastqmd real-spherical-harmonics convention, its Wigner matrices, and PySCF's native AO convention."""

import numpy as np
import pytest
from numpy.polynomial.legendre import leggauss

from fastqmd.orbitals import e3nn_change_of_basis, orbital_rotation, random_rotation, real_sph_harm, real_wigner_D
from fastqmd.reference.base import BasisSpec
from fastqmd.testing import assert_equivariant

EXACT = 1e-10  # analytic identities evaluated in float64


def sphere_quadrature(n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre in cos θ × uniform φ: exact for polynomials of degree < 2n on the sphere. ([m,3], [m])"""
    x, w = leggauss(n)
    phi = np.arange(2 * n) * np.pi / n
    ct, ph = np.meshgrid(x, phi, indexing="ij")
    st = np.sqrt(1 - ct**2)
    pts = np.stack([st * np.cos(ph), st * np.sin(ph), ct], -1).reshape(-1, 3)
    wts = (w[:, None] * np.full(2 * n, np.pi / n)[None, :]).reshape(-1)
    return pts, wts


@pytest.mark.parametrize("l", range(6))
def test_real_harmonics_are_orthonormal(l):
    pts, w = sphere_quadrature()
    Y = real_sph_harm(l, pts)
    assert np.abs(Y.T @ (w[:, None] * Y) - np.eye(2 * l + 1)).max() < EXACT


def test_low_l_match_the_documented_cartesian_forms():
    """l=1 is c·(y, z, x), l=2 is (xy, yz, 3z²-r², xz, x²-y²) with positive prefactors (no Condon-Shortley)."""
    rng = np.random.default_rng(0)
    u = rng.normal(size=(50, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    x, y, z = u.T
    c1 = np.sqrt(3 / (4 * np.pi))
    assert np.abs(real_sph_harm(1, u) - c1 * np.stack([y, z, x], 1)).max() < EXACT
    c = 0.5 * np.sqrt(15 / np.pi)
    z2 = 0.25 * np.sqrt(5 / np.pi) * (3 * z**2 - 1)
    d = np.stack([c * x * y, c * y * z, z2, c * x * z, 0.5 * c * (x**2 - y**2)], 1)
    assert np.abs(real_sph_harm(2, u) - d).max() < EXACT


@pytest.mark.parametrize("l", range(5))
def test_wigner_D_rotates_harmonics_and_is_a_representation(l):
    R1, R2 = random_rotation(1), random_rotation(2)
    D1, D2 = real_wigner_D(l, R1), real_wigner_D(l, R2)
    u = np.random.default_rng(3).normal(size=(40, 3))
    assert_equivariant(lambda r: real_sph_harm(l, r), [u], ["vector"], lambda Y, T: Y @ real_wigner_D(l, T.Q).T,
                       seed=1, atol=EXACT)  # Y(R r) = D Y(r), R = random_rotation(1) = R1
    assert np.abs(D1 @ D1.T - np.eye(2 * l + 1)).max() < EXACT
    assert np.abs(real_wigner_D(l, R1 @ R2) - D1 @ D2).max() < EXACT
    assert np.abs(real_wigner_D(l, np.eye(3)) - np.eye(2 * l + 1)).max() < EXACT


def test_l1_wigner_is_the_rotation_matrix_in_yzx_order():
    R = random_rotation(4)
    P = np.eye(3)[[1, 2, 0]]  # (x, y, z) -> (y, z, x)
    assert np.abs(real_wigner_D(1, R) - P @ R @ P.T).max() < EXACT


def test_orbital_rotation_is_block_diagonal_per_atom_and_shell():
    basis = BasisSpec({"O": (0, 1, 2), "H": (0,)})
    R = random_rotation(5)
    D = orbital_rotation(basis, ["O", "H", "H"], R)
    assert D.shape == (11, 11)
    assert np.abs(D[1:4, 1:4] - real_wigner_D(1, R)).max() < EXACT
    assert np.abs(D[4:9, 4:9] - real_wigner_D(2, R)).max() < EXACT
    assert D[0, 0] == pytest.approx(1.0) and D[9, 9] == pytest.approx(1.0)
    assert np.abs(D[1:4, 4:9]).max() == 0.0


def test_pyscf_native_ao_convention_is_as_documented():
    """PySCF spherical AOs equal fastqmd Y_lm × radial after `pyscf_to_fastqmd_perm` (only p is reordered)."""
    from pyscf import gto

    from fastqmd.reference.pyscf_mol import pyscf_to_fastqmd_perm

    mol = gto.M(atom="He 0 0 0", basis={"He": [[l, (1.0, 1.0)] for l in range(5)]}, unit="B", verbose=0)
    pts = np.random.default_rng(0).normal(size=(200, 3))
    pts *= 0.8 / np.linalg.norm(pts, axis=1, keepdims=True)  # all points at r = 0.8 Bohr: same radial factor
    ao = mol.eval_gto("GTOval_sph", pts)[:, pyscf_to_fastqmd_perm(mol)]
    i = 0
    for l in range(5):
        blk = ao[:, i : i + 2 * l + 1]
        i += 2 * l + 1
        Y = real_sph_harm(l, pts)
        ratio = blk / Y  # one positive constant (the radial factor) for the whole shell
        ok = np.abs(Y) > 1e-3
        assert np.all(ratio[ok] > 0)
        assert np.ptp(ratio[ok]) < 1e-8 * ratio[ok].max()


@pytest.mark.parametrize("l", range(5))
def test_e3nn_change_of_basis_maps_harmonics_and_wigner_matrices(l):
    import torch
    from e3nn import o3

    T = e3nn_change_of_basis(l)
    assert np.abs(T @ T.T - np.eye(2 * l + 1)).max() < EXACT
    u = np.random.default_rng(7).normal(size=(30, 3))
    Ye = o3.spherical_harmonics(l, torch.as_tensor(u), normalize=True, normalization="integral").numpy()
    assert np.abs(Ye - real_sph_harm(l, u) @ T.T).max() < EXACT
    R = random_rotation(8)
    De = o3.Irrep(l, (-1) ** l).D_from_matrix(torch.as_tensor(R)).numpy()
    assert np.abs(De - T @ real_wigner_D(l, R) @ T.T).max() < 1e-6  # e3nn's D goes via Euler angles: ~1e-7
    if l == 1:  # e3nn orders l=1 as (x, y, z): the Cartesian vector itself
        assert np.abs(T - np.eye(3)[[2, 0, 1]]).max() < EXACT
