"""NNHPotential: forces = −∇E (and stress = strain derivative) by central differences through the full
potential, at exact degeneracies (perfect fcc Cu, Td methane); the force loss has finite parameter gradients there."""

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from fastqmd.nnh import NNHConfig, OverlapConfig, RepulsionConfig
from fastqmd.nnh.energy import EnergyModel, EnergyModelConfig, energy_forces
from fastqmd.nnh.potential import NNHPotential, frame_of
from fastqmd.potential import PotentialCalculator, full_to_voigt, system_from_atoms
from fastqmd.testing import finite_difference_forces, finite_difference_stress_xx

FD_RTOL = 1e-6  # max |F − F_fd| ≤ FD_RTOL · max(1, max |F|) (float64, h = 1e-5 Å: O(h²) error ~1e-10)
DEGENERACY_TOL = 1e-8  # eV: levels this close count as degenerate
IRR = "8x0e+4x1o+4x1e+2x2e+2x2o+2x3o+2x3e+2x4e"


def tiny(basis, species, overlap, T, valence, cutoff=3.0, **kw):
    h = NNHConfig(basis=basis, cutoff=cutoff, hidden_irreps=IRR, n_layers=1, radial_hidden=8, n_scalars_embed=8,
                  n_radial=4, avg_num_neighbors=8, dtype="float64")
    s = OverlapConfig(basis=basis, cutoff=cutoff, radial_hidden=8, dtype="float64") if overlap == "learned" else None
    torch.manual_seed(0)
    return EnergyModel(EnergyModelConfig(h=h, overlap=overlap, s=s, repulsion=RepulsionConfig(
        species=species, cutoff=cutoff, dtype="float64"), electronic_temperature_K=T, valence_electrons=valence, **kw))


@pytest.fixture(scope="module")
def cu_model():
    return tiny({"Cu": (0, 1, 2)}, ("Cu",), "learned", 1000.0, {"Cu": 11.0})


@pytest.fixture(scope="module")
def ch4_model():
    return tiny({"C": (0, 0, 1), "H": (0,)}, ("C", "H"), "exact", 300.0, {"C": 6.0, "H": 1.0}, pyscf_basis="sto-3g")


def assert_fd_forces(pot, system):
    res = pot.compute(system)
    F = res.forces.numpy()
    fd = finite_difference_forces(pot, system, h=1e-5)
    assert np.isfinite(F).all()
    assert np.abs(F - fd).max() <= FD_RTOL * max(1.0, np.abs(F).max()), np.abs(F - fd).max()
    return res


def has_degeneracy(eig):
    d = np.diff(np.sort(np.asarray(eig).reshape(-1)))
    return bool((d < DEGENERACY_TOL).any())


def test_perfect_fcc_forces_and_stress_match_fd(cu_model):
    pot = NNHPotential(cu_model, kpoints_mesh=(2, 2, 2), skin=1.0)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    res = assert_fd_forces(pot, system_from_atoms(atoms))
    assert has_degeneracy(res.eigenvalues[0])  # degenerate by symmetry
    assert np.abs(res.forces.numpy()).max() < 1e-10  # perfect crystal: zero by symmetry
    # stress σ_xx = (1/V) ∂E/∂ε_xx by central differences of a homogeneous strain
    fd = finite_difference_stress_xx(pot, atoms)
    assert abs(float(res.stress[0, 0]) - fd) <= FD_RTOL * max(1.0, abs(fd))
    atoms.calc = PotentialCalculator(pot)  # ASE sees the stress the potential declares (Voigt)
    assert np.allclose(atoms.get_stress(), full_to_voigt(res.stress.numpy()), rtol=0, atol=1e-12)


def test_rattled_fcc_and_ase_calculator(cu_model):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=3)
    pot = NNHPotential(cu_model, kpoints_mesh=(1, 1, 1), skin=1.0)
    res = assert_fd_forces(pot, system_from_atoms(atoms))
    assert np.abs(res.forces.numpy()).max() > 1e-3
    atoms.calc = PotentialCalculator(pot)
    assert np.allclose(atoms.get_forces(), res.forces.numpy(), atol=1e-12)
    assert atoms.calc.results["eigenvalues"].shape == (1, 4 * 9)


def test_symmetric_methane_exact_overlap_forces_match_fd(ch4_model):
    pot = NNHPotential(ch4_model)
    res = assert_fd_forces(pot, system_from_atoms(molecule("CH4")))
    assert has_degeneracy(res.eigenvalues)  # T2 levels of Td methane
    assert np.abs(res.forces.numpy()).max() > 1e-3  # radial forces on H are allowed by symmetry


@pytest.mark.parametrize("which", ["fcc", "ch4"])
def test_force_loss_parameter_gradient_is_finite_at_degeneracy(which, cu_model, ch4_model):
    if which == "fcc":
        model, atoms, mesh = cu_model, bulk("Cu", "fcc", a=3.61, cubic=True), (2, 2, 2)
    else:
        model, atoms, mesh = ch4_model, molecule("CH4"), (1, 1, 1)
    for p in model.parameters():
        p.requires_grad_(True)
    system = system_from_atoms(atoms)
    frame = frame_of(system, mesh)
    g = model.graph(frame.symbols, atoms.positions, atoms.cell.array, frame.pbc)
    _, F, _ = energy_forces(model, frame, system.positions.clone().requires_grad_(True), system.cell, g,
                            create_graph=True)
    loss = ((F - 0.1) ** 2).mean()
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad], allow_unused=True)
    flat = torch.cat([x.reshape(-1) for x in grads if x is not None])
    assert torch.isfinite(flat).all() and float(flat.abs().max()) > 0


def test_graph_rebuilt_only_when_needed_and_energy_independent_of_it(cu_model):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))  # larger than any training cell
    atoms.rattle(0.02, seed=5)
    pot = NNHPotential(cu_model, skin=0.4)
    s = system_from_atoms(atoms)
    e0 = float(pot.compute(s).energy)
    p = s.positions.clone()
    p[0, 0] += 0.1  # < skin/2: graph kept
    e1 = float(pot.compute(s.with_positions(p)).energy)
    assert pot.n_graph_builds == 1
    fresh = NNHPotential(cu_model, skin=0.0)
    assert abs(float(fresh.compute(s.with_positions(p)).energy) - e1) < 1e-10
    assert e0 != e1
