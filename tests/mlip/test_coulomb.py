"""The analytic point-charge labeller (`fastqmd.mlip.coulomb`): Coulomb's law for two charges, forces as −∇E by
central differences, Newton's third law, the unit constant, and a labelled set as an ordinary fastqmd dataset."""

import numpy as np
import pytest
from ase import Atoms, units

from fastqmd.errors import InputError
from fastqmd.mlip.coulomb import COULOMB_K_EV_A, charges_of, coulomb_energy_forces, write_coulomb_dataset
from fastqmd.testing import check_gradient

FD_ATOL = 1e-7  # eV/Å: central differences with h = 1e-4 Å on |F| ~ 1 eV/Å (error h²/6·|F‴| ~ 1e-8)
EXACT = 1e-12


def test_k_e_is_the_coulomb_constant_in_ase_units():
    """e²/(4πε₀) from SI constants = Hartree·Bohr = 14.399645 eV·Å."""
    k_si = units._e / (4 * np.pi * units._eps0) * 1e10  # (C/(F/m)) → V·m → eV·Å for one e
    assert abs(COULOMB_K_EV_A - k_si) < 1e-6
    assert abs(COULOMB_K_EV_A - 14.399645) < 1e-6


@pytest.mark.parametrize("q1, q2", [(0.5, -0.5), (1.0, 0.5), (-1.0, -1.0)])
def test_two_charges_follow_coulombs_law(q1, q2):
    """E = k q₁q₂/d, F₁ = k q₁q₂ (R₁ − R₂)/d³ = −F₂ (attractive for opposite signs)."""
    R = np.array([[0.3, -0.2, 0.1], [2.1, 1.4, -3.0]])
    d = np.linalg.norm(R[0] - R[1])
    E, F = coulomb_energy_forces(R, np.array([q1, q2]))
    assert abs(E - COULOMB_K_EV_A * q1 * q2 / d) < EXACT
    np.testing.assert_allclose(F[0], COULOMB_K_EV_A * q1 * q2 * (R[0] - R[1]) / d**3, atol=EXACT)
    np.testing.assert_allclose(F[1], -F[0], atol=EXACT)
    assert (np.dot(F[0], R[1] - R[0]) > 0) == (q1 * q2 < 0)


def test_forces_are_minus_the_gradient_and_sum_to_zero():
    rng = np.random.default_rng(0)
    R = rng.uniform(-4, 4, (9, 3))
    q = rng.choice([-1.0, -0.5, 0.5, 1.0], 9)
    E, F = coulomb_energy_forces(R, q)
    check_gradient(lambda x: coulomb_energy_forces(x, q)[0], R, -F, h=1e-4, atol=FD_ATOL, label="Coulomb forces")
    np.testing.assert_allclose(F.sum(axis=0), 0.0, atol=1e-12)
    pairs = sum(COULOMB_K_EV_A * q[i] * q[j] / np.linalg.norm(R[i] - R[j]) for i in range(9) for j in range(i))
    assert abs(E - pairs) < 1e-11  # every pair once


def test_neutral_particles_feel_nothing_and_coincident_charges_are_refused():
    R = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 2.5, 0.0]])
    E, F = coulomb_energy_forces(R, np.array([0.0, 1.0, -1.0]))
    assert np.all(F[0] == 0.0) and abs(E + COULOMB_K_EV_A / np.hypot(3.0, 2.5)) < EXACT
    with pytest.raises(ValueError, match="coincide"):
        coulomb_energy_forces(np.zeros((2, 3)), np.array([1.0, -1.0]))


def test_charges_by_element():
    assert list(charges_of(["Na", "Ar", "Cl"], {"Na": 1, "Cl": -1, "Ar": 0})) == [1.0, 0.0, -1.0]
    with pytest.raises(InputError, match="no charge given for element.*Ar"):
        charges_of(["Na", "Ar"], {"Na": 1})


def test_a_labelled_set_is_a_dataset_the_trainer_and_evaluator_read(tmp_path):
    """Written through the store, read back by the MLIP trainer's reader and the shared scorer's reader:
    the same structures and the analytic labels, the charge map in the header."""
    from fastqmd.data.store import read_header
    from fastqmd.evaluation import dataset_labelled
    from fastqmd.mlip.kind import MLIPSamples

    q = {"Na": 1.0, "Cl": -1.0, "Ar": 0.0}
    rng = np.random.default_rng(1)
    frames = [Atoms("NaClAr2", positions=rng.uniform(0, 6, (4, 3))) for _ in range(3)]
    path = write_coulomb_dataset(tmp_path / "c.h5", frames, q)
    h = read_header(path)
    assert h.engine == "coulomb" and h.settings["charges_e"] == q
    samples = MLIPSamples(path)
    assert len(samples) == 3
    for a, s, lab in zip(frames, (samples[i] for i in range(3)), dataset_labelled(path)):
        E, F = coulomb_energy_forces(a.positions, charges_of(a.get_chemical_symbols(), q))
        assert list(s.numbers) == list(a.numbers) and not s.pbc.any()
        np.testing.assert_array_equal(s.positions, a.positions)
        assert s.energy == E and lab.energy == E
        np.testing.assert_array_equal(s.forces, F)
        np.testing.assert_array_equal(lab.forces, F)
