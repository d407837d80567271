"""The reduced (MOR) Mermin problem on a coarse periodic grid (32³, h = 0.375 Bohr, FD4, water in the canonical
frame): the public operator API projects the Hi-Fi Hamiltonian exactly; a basis holding the Hi-Fi orbitals
reproduces the Hi-Fi free energy and forces; the reduced forces are −dF_MOR/dR; the MVP iteration never raises F,
its F'(0) is the directional derivative of F, and a warm start saves iterations."""

import numpy as np
import pytest

from fastqmd.dft import operator as op
from fastqmd.dft.forces import hellmann_feynman_forces
from fastqmd.dft.grid import Grid
from fastqmd.dft.scf import Model, free_energy_terms, scf
from fastqmd.mor.online import (entropy_gradient, evaluate, fermi_dirac_matrix, initial_density_matrix,
                                low_rank_density, mvp_solve, reduced_basis, reduced_problem, solve)
from fastqmd.testing import check_gradient, directional_difference

GRID = Grid.cube(12.0, 32, fd_order=4)
HIFI_TIGHT = dict(e_tol=1e-12, rho_tol=1e-10, max_iter=200)
E_TOL = 1e-8  # Ha: Hi-Fi free energy reproduced by a basis holding its orbitals
F_TOL = 1e-6  # Ha/Bohr: Hi-Fi forces reproduced
FD_TOL = 1e-6  # Ha/Bohr: reduced forces vs central differences of the reduced free energy
MATRIX_TOL = 1e-10  # Ha: projected operators, energy identities


def water(s1=1.05, s2=1.0, dtheta=0.0):
    """Canonical-frame water (Bohr): O on the grid origin point, H1 = s1 L0 (cos θ/2, sin θ/2, 0), H2 mirrored."""
    L0, th = 1.83, np.deg2rad(104.5 + dtheta)
    pos = np.array([[0, 0, 0], [s1 * L0 * np.cos(th / 2), s1 * L0 * np.sin(th / 2), 0],
                    [s2 * L0 * np.cos(th / 2), -s2 * L0 * np.sin(th / 2), 0]])
    return Model(("O", "H", "H"), pos, n_empty=4)


@pytest.fixture(scope="module")
def hifi():
    model = water()
    res = scf(model, GRID, **HIFI_TIGHT)
    assert res.converged
    return model, res, hellmann_feynman_forces(res)


@pytest.fixture(scope="module")
def basis(hifi):
    """The 8 Hi-Fi states (4 occupied + 4 empty), mixed by a random rotation so the basis is not the eigenbasis."""
    _, res, _ = hifi
    Q = np.linalg.qr(np.random.default_rng(0).standard_normal((8, 8)))[0]
    return reduced_basis(Q @ res.orbitals, GRID)


def test_projected_hamiltonian_is_the_hifi_operator(hifi, basis):
    model, res, _ = hifi
    disc, Phi = res.disc, basis.Phi
    H_ref = Phi @ op.apply_hamiltonian(disc, res.v_eff, Phi).T
    ov = op.projector_overlaps(disc, Phi)
    H = basis.T + op.nonlocal_matrix(ov, basis.k) + op.potential_matrix(Phi, res.v_eff)
    np.testing.assert_allclose(H, H_ref, atol=MATRIX_TOL)
    V_eff, parts = op.density_potentials(disc, res.density)
    np.testing.assert_allclose(V_eff, res.v_eff, atol=1e-12)


def test_density_and_forces_of_a_density_matrix(hifi, basis):
    """X = Φ U_HFᵀ diag(o) U_HF Φᵀ gives the Hi-Fi density, and the Hi-Fi force terms give the Hi-Fi forces."""
    model, res, F_hf = hifi
    C = basis.Phi @ res.orbitals.T  # [k, n_states]
    X = (C * res.occupations) @ C.T
    n = op.basis_density(basis.Phi, X, GRID)
    np.testing.assert_allclose(n, res.density, atol=1e-12)
    np.testing.assert_allclose(low_rank_density(basis.Phi, X, GRID), n, atol=1e-12)  # occupied natural orbitals
    F = op.density_matrix_forces(res.disc, basis.Phi, X, n, res.v_hartree)
    np.testing.assert_allclose(F, F_hf, atol=1e-10)


def test_reduced_free_energy_equals_the_hifi_functional(hifi, basis):
    """F[X] from the reduced matrices = the Hi-Fi terms (free_energy_terms) on the natural orbitals of X."""
    model, res, _ = hifi
    problem = reduced_problem(basis, water(1.02, 0.97, 2.0))
    X = initial_density_matrix(problem)
    ev = evaluate(problem, X)
    U, occ = op.natural_orbitals(basis.Phi, X)
    terms, *_ = free_energy_terms(problem.disc, U, occ, ev.energies["minus_TS"])
    for name, value in terms.items():
        assert ev.energies[name] == pytest.approx(value, abs=MATRIX_TOL), name


def test_basis_with_the_hifi_orbitals_reproduces_hifi(hifi, basis):
    model, res, F_hf = hifi
    out = solve(basis, model, tol=1e-12)
    assert out.converged
    assert abs(out.free_energy - res.free_energy) < E_TOL
    assert np.abs(out.forces - F_hf).max() < F_TOL
    np.testing.assert_allclose(out.eigenvalues[:4], res.eigenvalues[:4], atol=1e-6)


def test_free_energy_never_increases_along_the_iterations(basis):
    out = solve(basis, water(1.02, 0.97, 3.0), tol=1e-12)
    assert out.converged and out.iterations >= 5
    for step in out.log:
        assert step.dF0 < 0
        assert step.F <= step.F0 + 1e-13
    F = [s.F for s in out.log]
    assert F[-1] < out.log[0].F0


def test_line_search_slope_is_the_directional_derivative():
    """F'(0) = tr(hΔ) + tr(kT logit(X/2) Δ) equals dF[X + βΔ]/dβ at β = 0 (central differences), at a smearing
    (kT = 0.05 Ha) where the entropy term matters, from a non-stationary X."""
    model = Model(("O", "H", "H"), water().positions, kT=0.05, n_empty=4)
    res = scf(model, GRID, e_tol=1e-9, rho_tol=1e-7)
    b = reduced_basis(res.orbitals, GRID)
    problem = reduced_problem(b, model.moved(water(1.0, 0.96, -3.0).positions))
    X0 = initial_density_matrix(problem)
    X = 0.5 * (X0 + fermi_dirac_matrix(b.T, model.n_electrons, model.kT)[0])  # partially occupied, not stationary
    ev = evaluate(problem, X)
    D = fermi_dirac_matrix(ev.h, model.n_electrons, model.kT)[0] - X
    assert np.linalg.eigvalsh(X).min() > 1e-6
    dF0 = float(np.sum((ev.h + entropy_gradient(X, model.kT)) * D))
    fd = directional_difference(lambda x: evaluate(problem, x).free_energy, X, D, h=1e-4)
    assert dF0 < 0
    assert dF0 == pytest.approx(fd, abs=1e-8)


@pytest.fixture(scope="module")
def displaced(basis):
    """A geometry off the basis' own (H1 stretched and bent), solved tightly."""
    model = water(1.03, 0.98, 2.0)
    return model, solve(basis, model, tol=1e-13)


@pytest.mark.parametrize("atom,axis", [(1, 0), (2, 1), (1, 2), (0, 0)])
def test_reduced_forces_are_the_gradient_of_the_reduced_free_energy(basis, displaced, atom, axis):
    model, out = displaced

    def F_mor(R):
        return solve(basis, model.moved(R), X0=out.X, tol=1e-13, forces=False).free_energy

    check_gradient(F_mor, model.positions, -out.forces, h=1e-3, atol=FD_TOL, indices=[(atom, axis)], points=4,
                   label="MOR")


def test_warm_start_needs_fewer_iterations(basis, displaced):
    model, out = displaced
    R = model.positions.copy()
    R[1] += [0.01, -0.01, 0.0]
    cold = solve(basis, model.moved(R), tol=1e-10)
    warm = solve(basis, model.moved(R), X0=out.X, tol=1e-10)
    assert warm.free_energy == pytest.approx(cold.free_energy, abs=1e-9)
    assert warm.iterations < cold.iterations


def test_bad_basis_refused():
    with pytest.raises(ValueError, match="orthonormal"):
        reduced_basis(np.ones((2, GRID.size)), GRID)
    with pytest.raises(ValueError, match="grid"):
        reduced_basis(np.eye(2, 10), GRID)


def test_unconverged_raises_calculation_failed(basis):
    from fastqmd.errors import CalculationFailed

    problem = reduced_problem(basis, water(1.02, 0.97, 3.0))
    with pytest.raises(CalculationFailed, match="not converged"):
        mvp_solve(problem, max_iter=2, tol=1e-14)
