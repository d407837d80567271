"""The reusable checks of `fastqmd.testing` pass on correct physics and fail on wrong physics.

Fixtures are analytic: f(x) = Σ sin(x) (∂f/∂x = cos x) and a Morse-like pair potential of a 4-atom cluster
whose energy is a function of distances only (invariant), forces covariant, virial stress a rank-2 tensor.
"""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from fastqmd.potential import PotentialCalculator, Results, System, system_from_atoms
from fastqmd.testing import (
    assert_equivariant,
    central_differences,
    check_gradient,
    finite_difference_forces,
    force_error,
    potential_equivariance,
    random_transform,
)

FD_ATOL = 1e-8  # central differences at h = 1e-4 of sin: error h²/6 ≈ 2e-9


def test_check_gradient_numpy_and_torch():
    x = np.random.default_rng(0).normal(size=(4, 3))
    assert check_gradient(lambda y: np.sin(y).sum(), x, np.cos(x), atol=FD_ATOL) < FD_ATOL
    xt = torch.as_tensor(x)
    assert check_gradient(lambda y: torch.sin(y).sum(), xt, torch.cos(xt), atol=FD_ATOL) < FD_ATOL


def test_check_gradient_fails_on_a_wrong_gradient_and_names_the_element():
    x = np.random.default_rng(1).normal(size=(3, 2))
    g = np.cos(x)
    g[2, 1] += 1e-5
    with pytest.raises(AssertionError, match=r"\(2, 1\)"):
        check_gradient(lambda y: np.sin(y).sum(), x, g, atol=FD_ATOL)
    with pytest.raises(AssertionError, match="shape"):
        check_gradient(lambda y: np.sin(y).sum(), x, g.T, atol=FD_ATOL)


def test_check_gradient_on_selected_indices_and_rtol():
    x = np.linspace(0.1, 1.0, 6)
    g = np.cos(x)
    g[0] *= 1.5  # wrong, but not checked
    assert check_gradient(lambda y: np.sin(y).sum(), x, g, indices=[(1,), (4,)], atol=FD_ATOL) < FD_ATOL
    assert np.isnan(central_differences(lambda y: np.sin(y).sum(), x, indices=[(1,)])[0])
    with pytest.raises(AssertionError):
        check_gradient(lambda y: np.sin(y).sum(), x, g, atol=0.0, rtol=0.1)


class PairPotential:
    """E = Σ_{i<j} D (1 − exp(−a (r_ij − r0)))², molecule or periodic (minimum image, cell ≥ 2 cutoffs)."""

    capabilities = frozenset({"stress"})

    def __init__(self, wrong_forces: bool = False):
        self.wrong = wrong_forces

    def energy(self, pos, cell, pbc):
        d = pos[:, None, :] - pos[None, :, :]
        if bool(pbc.any()):
            frac = d @ torch.linalg.inv(cell)
            d = (frac - torch.round(frac)) @ cell
        iu = torch.triu_indices(pos.shape[0], pos.shape[0], 1)
        r = torch.linalg.norm(d[iu[0], iu[1]], dim=-1)
        return (0.3 * (1 - torch.exp(-1.2 * (r - 2.5))) ** 2).sum()

    def compute(self, system: System) -> Results:
        pos = system.positions.detach().clone().requires_grad_(True)
        strain = torch.zeros(3, 3, dtype=pos.dtype, requires_grad=True)
        eps = torch.eye(3, dtype=pos.dtype) + strain
        E = self.energy(pos @ eps, system.cell @ eps, system.pbc)
        gR, gS = torch.autograd.grad(E, (pos, strain))
        F = -gR
        if self.wrong:
            F = F @ torch.diag(torch.tensor([1.0, 1.0, 1.1], dtype=F.dtype))  # not covariant, not −∂E/∂R
        periodic = bool(system.pbc.any())
        V = torch.abs(torch.linalg.det(system.cell)) if periodic else None
        return Results(E.detach(), F.detach(), stress=gS / V if periodic else None)


def cluster() -> System:
    pos = np.array([[0.0, 0.0, 0.0], [2.4, 0.1, 0.0], [0.3, 2.6, 0.2], [1.1, 0.9, 2.3]])
    return system_from_atoms(Atoms("Cu4", positions=pos))


def test_force_error_and_finite_difference_forces_on_an_analytic_potential():
    s = cluster()
    assert force_error(PairPotential(), s, h=1e-4) < 1e-7
    assert force_error(PairPotential(wrong_forces=True), s, h=1e-4) > 1e-3
    fd = finite_difference_forces(PairPotential(), s, atoms=[1])
    assert np.isnan(fd[0]).all() and np.isfinite(fd[1]).all()


def test_potential_equivariance_passes_and_fails():
    s = cluster()
    assert potential_equivariance(PairPotential(), s, seed=3, atol=1e-10, translation=True, permutation=True) < 1e-10
    assert potential_equivariance(PairPotential(), s, seed=4, atol=1e-10, improper=True) < 1e-10
    with pytest.raises(AssertionError, match="output 1"):
        potential_equivariance(PairPotential(wrong_forces=True), s, seed=3, atol=1e-6)


def test_stress_is_a_rank2_tensor_and_reaches_ase():
    atoms = bulk("Cu", "fcc", a=3.0, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=1)
    s = system_from_atoms(atoms)
    assert potential_equivariance(PairPotential(), s, seed=5, stress=True, atol=1e-10) < 1e-10
    atoms.calc = PotentialCalculator(PairPotential())
    assert "stress" in atoms.calc.implemented_properties
    res = PairPotential().compute(s)
    sig = res.stress.numpy()
    assert np.allclose(atoms.get_stress(voigt=False), sig, rtol=0, atol=1e-14)
    # σ_xx = (1/V) ∂E/∂ε_xx
    from fastqmd.testing import finite_difference_stress_xx

    assert abs(finite_difference_stress_xx(PairPotential(), atoms) - sig[0, 0]) < 1e-7


def test_custom_output_transform_and_wrong_kind_fails():
    """A rank-2 output declared as a vector must fail; with its own transform Q M Qᵀ it passes."""
    x = np.random.default_rng(2).normal(size=(5, 3))

    def gyration(p):  # [3, 3] Σ (r − r̄)(r − r̄)ᵀ
        c = p - p.mean(0)
        return c.T @ c

    assert assert_equivariant(gyration, [x], ["positions"], lambda M, T: T.Q @ M @ T.Q.T, seed=1,
                              translation=True) < 1e-12
    with pytest.raises(AssertionError):
        assert_equivariant(gyration, [x], ["positions"], "vector", seed=1)
    with pytest.raises(ValueError, match="unknown kind"):
        assert_equivariant(gyration, [x], ["position"], "tensor")


def test_random_transform_is_a_rotation_and_a_permutation():
    T = random_transform(6, seed=2, improper=True, translation=True, permutation=True)
    assert np.allclose(T.Q @ T.Q.T, np.eye(3)) and np.isclose(np.linalg.det(T.Q), -1.0)
    assert sorted(T.perm) == list(range(6)) and np.abs(T.t).max() > 0


def test_calculator_potential_and_emt_equivariance():
    """Any ASE Calculator goes through the same checks (EMT: exact to round-off)."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=2)
    assert potential_equivariance(EMT(), system_from_atoms(atoms), seed=7, atol=1e-10, permutation=True) < 1e-10


def test_four_point_differences_are_fourth_order():
    """On f = Σ sin x at h = 1e-2: 2-point error h²/6 ≈ 1.7e-5, 4-point h⁴/30 ≈ 3e-10."""
    x = np.array([0.3, 1.1])
    f = lambda y: np.sin(y).sum()  # noqa: E731
    assert check_gradient(f, x, np.cos(x), h=1e-2, atol=1e-9, points=4) < 1e-9
    with pytest.raises(AssertionError):
        check_gradient(f, x, np.cos(x), h=1e-2, atol=1e-9, points=2)
    with pytest.raises(ValueError):
        central_differences(f, x, points=3)
