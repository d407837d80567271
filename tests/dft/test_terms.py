"""Each energy term of the real-space model, checked on its own (DFTK's hamiltonian_consistency test).

On a tiny grid (16³, h = 0.625 Bohr) with a random, non-self-consistent state (orbitals U, occupations o,
density n = Σ o |u|²/dV), for every term:
- density terms: dE(n + t δn)/dt at t = 0 equals ∫ V δn, V the term's potential;
- orbital terms: dE(U + t δU)/dt equals 2 Σ_n o_n ⟨δu_n|A u_n⟩, A the term's operator (apply);
- terms with forces: F = −∂E/∂R at fixed U, o, n (the discretization rebuilt at every displaced geometry);
all by central differences (`fastqmd.testing.check_gradient`). A term whose potential or forces were wrong by a
few per cent would fail these tolerances by orders of magnitude.
"""

import numpy as np
import pytest

from fastqmd.dft.eigensolvers import orthonormalize
from fastqmd.dft.forces import hellmann_feynman_forces
from fastqmd.dft.grid import Grid
from fastqmd.dft.scf import Model, SCFNotConverged, density, discretize, free_energy_terms, scf
from fastqmd.dft.terms import DensityTerm, ForceTerm, Hartree, IonIon, Kinetic, KSState, LocalShort, Nonlocal, \
    OrbitalTerm, XC
from fastqmd.errors import CalculationFailed
from fastqmd.testing import check_gradient

GRID = Grid.cube(10.0, 16, fd_order=4)
H_T = 1e-4  # step in t (dimensionless direction amplitude)
H_R = 1e-5  # Bohr
DIR_RTOL = 1e-8  # relative error of a directional derivative (truncation + round-off), measured ≤ 5e-10
FORCE_ATOL = 1e-7  # Ha/Bohr; O(h²) truncation, measured ≤ 1.2e-8 at h = 1e-5 (1.2e-6 at 1e-4: sharp O projectors)


def water(xc="teter93", filter_pseudo=False) -> Model:
    L0, th = 1.83, np.deg2rad(104.5)
    pos = np.array([[0, 0, 0], [L0 * np.cos(th / 2), L0 * np.sin(th / 2), 0.1], [L0 * np.cos(th / 2), -L0 * np.sin(th / 2), 0]])
    return Model(("O", "H", "H"), pos + np.array([0.13, 0.07, 0.02]), xc=xc, filter_pseudo=filter_pseudo)


def random_state(model: Model, seed: int = 0):
    rng = np.random.default_rng(seed)
    g = GRID
    x, y, z = np.meshgrid(*g.axes, indexing="ij")
    env = np.exp(-(x**2 + y**2 + z**2) / 8.0).ravel()  # keep orbitals away from the box faces
    U = orthonormalize(rng.standard_normal((model.n_states, g.size)) * env)
    occ = np.array([2.0, 2.0, 1.7, 1.5, 0.6, 0.2])[: model.n_states]
    return U, occ


def directional(f, grad_dot, label=""):
    """check_gradient of t ↦ f(t) at 0 against ⟨∇f, δ⟩ (a [1] array), relative tolerance DIR_RTOL."""
    return check_gradient(lambda t: f(float(t[0])), np.zeros(1), np.array([grad_dot]), h=H_T, atol=0.0,
                          rtol=DIR_RTOL, label=label)


@pytest.mark.parametrize("xc", ["teter93", "pz81", "pbe"])
def test_density_terms_potential_is_the_derivative_of_the_energy(xc):
    model = water(xc)
    disc = discretize(model, GRID)
    U, occ = random_state(model)
    n = density(U, occ, GRID)
    dn = n * np.random.default_rng(1).uniform(-0.5, 0.5, n.shape)  # keeps n + t δn > 0
    terms = [t for t in model.terms if isinstance(t, DensityTerm)]
    assert [type(t) for t in terms] == [LocalShort, Hartree, XC]
    for term in terms:
        _, V = term.energy_potential(disc, n)
        directional(lambda t: term.energy_potential(disc, n + t * dn)[0], float(np.sum(V * dn)) * GRID.dV, term.name)


def test_orbital_terms_operator_is_the_derivative_of_the_energy():
    model = water()
    disc = discretize(model, GRID)
    U, occ = random_state(model)
    dU = np.random.default_rng(2).standard_normal(U.shape) * 1e-2
    terms = [t for t in model.terms if isinstance(t, OrbitalTerm)]
    assert [type(t) for t in terms] == [Kinetic, Nonlocal]
    assert disc.blocks, "oxygen must carry nonlocal projectors, else the Nonlocal check is empty"
    for term in terms:
        AU = term.apply(disc, U)
        directional(lambda t: term.energy(disc, U + t * dU, occ), 2 * float(np.sum(occ[:, None] * dU * AU)), term.name)


def test_wrong_potential_fails_the_consistency_check():
    model = water()
    disc = discretize(model, GRID)
    U, occ = random_state(model)
    n = density(U, occ, GRID)
    dn = n * 0.3
    _, V = Hartree().energy_potential(disc, n)
    with pytest.raises(AssertionError):
        directional(lambda t: Hartree().energy_potential(disc, n + t * dn)[0], 1.01 * float(np.sum(V * dn)) * GRID.dV)


def term_energy(term, model, positions, U, occ, n):
    disc = discretize(model.moved(positions), GRID)
    if isinstance(term, DensityTerm):
        return term.energy_potential(disc, n)[0]
    if isinstance(term, OrbitalTerm):
        return term.energy(disc, U, occ)
    return term.energy(disc)


@pytest.mark.parametrize("filter_pseudo", [False, True])
def test_term_forces_are_minus_the_position_derivative_of_the_term_energy(filter_pseudo):
    model = water(filter_pseudo=filter_pseudo)
    disc = discretize(model, GRID)
    U, occ = random_state(model)
    n = density(U, occ, GRID)
    state = KSState(U, occ, n, Hartree().energy_potential(disc, n)[1])
    terms = [t for t in model.terms if isinstance(t, ForceTerm)]
    assert [type(t) for t in terms] == [Nonlocal, LocalShort, Hartree, IonIon]
    R0 = np.asarray(model.positions, float)
    checked = [(0, 0), (0, 2), (1, 1), (2, 0)]
    for term in terms:
        F = term.forces(disc, state)
        check_gradient(lambda R: term_energy(term, model, R, U, occ, n), R0, -F, h=H_R, atol=FORCE_ATOL,
                       indices=checked, label=term.name)


def test_free_energy_is_the_sum_of_the_terms_and_forces_the_sum_of_term_forces():
    model = water()
    res = scf(model, GRID, e_tol=1e-9, rho_tol=1e-6)
    terms, *_ = free_energy_terms(res.disc, res.orbitals, res.occupations, res.energies["minus_TS"])
    names = [t.name for t in model.terms]
    assert list(res.energies) == [*names, "minus_TS", "free_energy", "energy"]
    assert sum(terms[k] for k in names) + terms["minus_TS"] == pytest.approx(res.free_energy, abs=1e-8)
    state = KSState(res.orbitals, res.occupations, res.density, res.v_hartree)
    total = sum(t.forces(res.disc, state) for t in model.terms if isinstance(t, ForceTerm))
    assert np.abs(total - hellmann_feynman_forces(res)).max() < 1e-12


def test_unconverged_scf_raises_calculation_failed_with_the_last_state():
    model = water()
    with pytest.raises(SCFNotConverged, match="not converged in 3 iterations") as exc:
        scf(model, GRID, max_iter=3)
    assert isinstance(exc.value, CalculationFailed)
    last = exc.value.result
    assert not last.converged and last.iterations == 3 and len(last.history) == 3
    assert GRID.integrate(last.density) == pytest.approx(model.n_electrons, abs=1e-8)
    kept = scf(model, GRID, max_iter=3, raise_unconverged=False)  # convergence studies may ask for the state
    assert not kept.converged and kept.free_energy == last.free_energy
