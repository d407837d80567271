"""The Behler–Parrinello potential as physics: forces = −∇E and stress = (1/V) ∂E/∂ε by finite differences
(float64), E invariant under rotation, translation and permutation (forces and stress covariant), the energy a
sum of per-atom terms plus the fitted offsets, and an element outside the model is one InputError."""

import numpy as np
import pytest
import torch
from ase import Atoms

from fastqmd.errors import InputError
from fastqmd.mlip.bp import BPSpec
from fastqmd.mlip.kind import Structure, build_model, collate, training_statistics
from fastqmd.mlip.potential import MLIPPotential
from fastqmd.potential import system_from_atoms
from fastqmd.testing import finite_difference_forces, finite_difference_stress_xx, potential_equivariance

FORCE_ATOL = 1e-7  # eV/Å: central differences with h = 2e-5 Å (at h = 1e-4 the h²|E'''|/6 error reached 3e-7)
STRESS_ATOL = 1e-8  # eV/Å³
EQUIVARIANCE_ATOL = 1e-10
ELEMENTS = ["H", "O"]
MOL = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])


def cluster(seed=0):
    rng = np.random.default_rng(seed)
    pos = np.concatenate([MOL, MOL + [2.7, 0.2, 0.1], MOL + [0.3, 2.6, 1.0]]) + 0.08 * rng.normal(size=(9, 3))
    return Atoms("OHHOHHOHH", positions=pos)


def box(seed=1):
    a = cluster(seed)
    a.set_cell([[4.6, 0.0, 0.0], [0.4, 4.4, 0.0], [0.2, -0.3, 4.3]])
    a.pbc = True
    a.wrap()
    return a


def structure(atoms, energy=0.0):
    return Structure("", atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, energy)


def bp_potential(angular="G4", seed=0):
    """An untrained BP model with statistics from a few rattled structures (weights: seeded random init)."""
    torch.manual_seed(seed)
    train = [structure(cluster(s), energy=-10.0 * (s + 1)) for s in range(4)] + [structure(box(9))]
    spec = BPSpec(cutoff=3.5, r_min=0.8, n_radial=6, n_angular=3, zetas=(1.0, 4.0), angular=angular, hidden=(12, 12))
    stats = training_statistics(train, ELEMENTS, spec.cutoff)
    return MLIPPotential(build_model(spec, ELEMENTS, stats, torch.float64)), stats


@pytest.mark.parametrize("angular", ["G4", "G5"])
@pytest.mark.parametrize("system", ["cluster", "box"])
def test_forces_are_minus_the_energy_gradient(angular, system):
    pot, _ = bp_potential(angular)
    s = system_from_atoms(cluster(5) if system == "cluster" else box(6))
    F = pot.compute(s).forces.numpy()
    fd = finite_difference_forces(pot, s, h=2e-5)
    assert np.abs(F).max() > 1e-3  # a real force field, not zeros
    np.testing.assert_allclose(F, fd, rtol=0, atol=FORCE_ATOL)
    if system == "cluster":
        np.testing.assert_allclose(F.sum(0), 0.0, atol=1e-12)  # no external field: Σ F = 0


def test_stress_is_the_strain_derivative_and_symmetric():
    pot, _ = bp_potential()
    atoms = box(7)
    sigma = pot.compute(system_from_atoms(atoms)).stress.numpy()
    assert sigma.shape == (3, 3) and np.abs(sigma).max() > 1e-4
    np.testing.assert_allclose(sigma, sigma.T, atol=1e-14)
    for axis in range(3):  # σ_aa by straining axis a: rotate the axis onto x
        perm = np.roll(np.arange(3), -axis)
        a = Atoms(atoms.numbers, positions=atoms.positions[:, perm], cell=atoms.cell.array[:, perm], pbc=True)
        assert sigma[axis, axis] == pytest.approx(finite_difference_stress_xx(pot, a, h=1e-5), abs=STRESS_ATOL)
    assert pot.compute(system_from_atoms(cluster())).stress is None  # no cell, no stress


@pytest.mark.parametrize("system", ["cluster", "box"])
def test_energy_is_invariant_and_forces_covariant(system):
    pot, _ = bp_potential()
    s = system_from_atoms(cluster(2) if system == "cluster" else box(3))
    periodic = system == "box"
    potential_equivariance(pot, s, seed=4, stress=periodic, translation=True, permutation=True,
                           atol=EQUIVARIANCE_ATOL)
    potential_equivariance(pot, s, seed=5, stress=periodic, improper=True, atol=EQUIVARIANCE_ATOL)  # mirror too


def test_energy_is_a_sum_of_atomic_terms_plus_offsets():
    pot, stats = bp_potential()
    far = cluster(1)
    far.positions[3:] += [30.0, 0.0, 0.0]  # molecules 2 and 3 beyond the cutoff of molecule 1
    parts = [far[:3], far[3:]]
    E = float(pot.compute(system_from_atoms(far)).energy)
    assert E == pytest.approx(sum(float(pot.compute(system_from_atoms(p)).energy) for p in parts), abs=1e-10)
    b = collate([structure(far)], ELEMENTS, 3.5)
    e_i = pot.model.net.atomic_energies(b).detach()
    offsets = np.array(stats.energy_offsets)[b.species.numpy()].sum()
    assert E == pytest.approx(float(e_i.sum()) + offsets, abs=1e-10)


def test_element_outside_the_model_is_one_input_error():
    pot, _ = bp_potential()
    with pytest.raises(InputError, match=r"element\(s\) Cu not in the model \(it knows H, O\)"):
        pot.compute(system_from_atoms(Atoms("OCuH", positions=MOL)))
