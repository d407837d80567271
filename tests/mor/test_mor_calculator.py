"""MORCalculator / MORPotential (eV, Å) on a coarse periodic grid (32³, h = 0.375 Bohr, FD4, water): the canonical
frame makes MOR exactly rotation/translation/label-swap equivariant, the forces it returns are −dE/dR in the input
frame, a basis holding the Hi-Fi orbitals gives the Hi-Fi energy, and bad bases or settings are one-line InputErrors."""

import warnings

import numpy as np
import pytest
import torch
from ase import Atoms

from fastqmd.dft.forces import hellmann_feynman_forces
from fastqmd.dft.grid import Grid
from fastqmd.dft.scf import Model, scf
from fastqmd.errors import InputError
from fastqmd.mor.basis import basis_from_orbitals, save_basis
from fastqmd.mor.calculator import DomainWarning, MORCalculator, MORPotential, domain_threshold
from fastqmd.potential import system_from_atoms
from fastqmd.testing import check_gradient, potential_equivariance, random_transform
from fastqmd.units import BOHR_ANG, HARTREE_EV

GRID = Grid.cube(12.0, 32, fd_order=4)
L0, TH = 1.83, np.deg2rad(104.5)


def canonical(s1=1.05, s2=1.0, dtheta=0.0):
    th = TH + np.deg2rad(dtheta)
    return np.array([[0, 0, 0], [s1 * L0 * np.cos(th / 2), s1 * L0 * np.sin(th / 2), 0],
                     [s2 * L0 * np.cos(th / 2), -s2 * L0 * np.sin(th / 2), 0]])


@pytest.fixture(scope="module")
def hifi():
    model = Model(("O", "H", "H"), canonical(), n_empty=4)
    res = scf(model, GRID, e_tol=1e-12, rho_tol=1e-10, max_iter=200)
    return model, res


@pytest.fixture(scope="module")
def basis(hifi):
    model, res = hifi
    return basis_from_orbitals(res.orbitals, GRID, model)


@pytest.fixture(scope="module")
def basis_file(basis, tmp_path_factory):
    return save_basis(tmp_path_factory.mktemp("mor") / "basis.h5", basis)


def lab_atoms(Y_bohr, seed=3, swap=True):
    """The canonical geometry rotated, translated and (optionally) with the H labels swapped, in Å."""
    T = random_transform(3, seed, translation=True)
    X = (Y_bohr * BOHR_ANG) @ T.Q.T + T.t
    if swap:
        X = X[[0, 2, 1]]
    return Atoms("OH2", positions=X, cell=[12 * BOHR_ANG] * 3, pbc=True), T


def test_hifi_energy_in_any_orientation(hifi, basis_file):
    model, res = hifi
    atoms, T = lab_atoms(model.positions)
    atoms.calc = MORCalculator(basis=basis_file, tol=1e-12)
    E = atoms.get_potential_energy()
    assert E == pytest.approx(res.free_energy * HARTREE_EV, abs=1e-8 * HARTREE_EV)
    F_can = hellmann_feynman_forces(res) * HARTREE_EV / BOHR_ANG
    F_lab = (F_can @ T.Q.T)[[0, 2, 1]]
    np.testing.assert_allclose(atoms.get_forces(), F_lab, atol=1e-6 * HARTREE_EV / BOHR_ANG)
    assert atoms.calc.results["mor_iterations"] >= 1


def test_rotating_the_input_rotates_the_forces(basis):
    atoms, _ = lab_atoms(canonical(1.02, 0.98, 3.0), seed=5, swap=False)
    pot = MORPotential(basis=basis, tol=1e-11)
    err = potential_equivariance(pot, system_from_atoms(atoms), seed=11, translation=True, permutation=False,
                                 atol=1e-7)
    assert err < 1e-7


def test_gradient_forces_are_minus_the_energy_gradient_in_the_input_frame(basis):
    """forces="gradient" is −dE/dX of E(X) = F_MOR(Y(X)) (central differences, every atom); it has no net force or
    torque, and differs from the study's rotated forces Rᵀ F̃ by the grid's net force/torque of F̃ only."""
    atoms, _ = lab_atoms(canonical(1.02, 0.98, 3.0), seed=7)
    pot = MORPotential(basis=basis, tol=1e-13, forces="gradient")
    system = system_from_atoms(atoms)
    F = pot.compute(system).forces.numpy()
    X = atoms.positions

    def energy(R):  # eV at positions R (Å); 4-point stencil: the coarse grid's egg-box makes E rough on 0.2 Å
        return float(pot.compute(system.with_positions(torch.as_tensor(R))).energy)

    check_gradient(energy, X, -F, h=1e-3, points=4, atol=5e-5, label="MOR lab frame")  # eV/Å (1e-6 Ha/Bohr)
    assert np.abs(F.sum(0)).max() < 1e-8
    assert np.abs(np.cross(X - X[0], F).sum(0)).max() < 1e-8
    F_rot = MORPotential(basis=basis, tol=1e-13).compute(system).forces.numpy()
    net, torque = F_rot.sum(0), np.cross(X - X[0], F_rot).sum(0)
    assert np.abs(net).max() > 1e-3  # the coarse grid's egg-box force is real ...
    # ... and it is all that separates the two: F_rot − F is a rigid-body load (zero internal work)
    D = F_rot - F
    np.testing.assert_allclose(D.sum(0), net, atol=1e-8)
    np.testing.assert_allclose(np.cross(X - X[0], D).sum(0), torque, atol=1e-8)


@pytest.mark.parametrize("settings,fragment", [
    ({"fd_order": 8}, "fd_order 8"),
    ({"grid_points": 64}, "grid_points 64"),
    ({"xc": "pbe"}, "xc pbe"),
    ({"boundary": "isolated"}, "boundary isolated"),
    ({"box_ang": 10.0}, "box"),
])
def test_mismatched_settings_refused(basis_file, settings, fragment):
    with pytest.raises(InputError, match=fragment) as exc:
        MORCalculator(basis=basis_file, **settings)
    assert "\n" not in str(exc.value)


def test_other_molecule_refused(basis_file):
    atoms = Atoms("SH2", positions=canonical() * BOHR_ANG, cell=[6.35] * 3, pbc=True)
    atoms.calc = MORCalculator(basis=basis_file)
    with pytest.raises(InputError, match="molecule SHH"):
        atoms.get_potential_energy()


def test_missing_and_corrupt_basis_files_refused(tmp_path):
    with pytest.raises(InputError, match="not found"):
        MORCalculator(basis=tmp_path / "none.h5")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="cannot read"):
        MORCalculator(basis=bad)


def test_distance_to_the_training_domain_warns(basis):
    from dataclasses import replace

    training = np.array([canonical(1.0, 1.0), canonical(1.05, 1.0), canonical(1.05, 1.05)])
    b = replace(basis, extras={"training_geometries_bohr": training.tolist()})
    calc = MORCalculator(basis=b)
    near = Atoms("OH2", positions=canonical(1.02, 1.0) * BOHR_ANG, cell=[6.35] * 3, pbc=True)
    near.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("error", DomainWarning)
        near.get_potential_energy()
    d_near = calc.results["domain_distance_ang"]
    assert 0 < d_near < domain_threshold(training) * BOHR_ANG
    far = Atoms("OH2", positions=canonical(1.3, 1.0, 15.0) * BOHR_ANG, cell=[6.35] * 3, pbc=True)
    far.calc = calc
    with pytest.warns(DomainWarning, match="extrapolating"):
        far.get_potential_energy()


def test_md_potential_kind_mor(basis_file, hifi):
    """`potential: {kind: mor, basis: FILE}` in an MD config builds the MOR potential (same energy as the calculator)."""
    from fastqmd.md.config import MORPotentialConfig, build_potential

    model, res = hifi
    pot = build_potential(MORPotentialConfig(basis=basis_file, tol_Ha=1e-12))
    atoms, _ = lab_atoms(model.positions, seed=2)
    E = float(pot.compute(system_from_atoms(atoms)).energy)
    assert E == pytest.approx(res.free_energy * HARTREE_EV, abs=1e-8 * HARTREE_EV)
