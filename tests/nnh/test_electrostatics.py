"""The NNH charge channel (`fastqmd.nnh.electrostatics`): the Ewald potential against the Madelung constant of
rock salt (two different cells, two real-space cutoffs), the molecular limit, and the energy model with the channel
on — forces = −∇E and stress = ∂E/∂ε by finite differences at k-points, rotation invariance, neutral charges, and
a zero start (the channel begins as the purely local model)."""

import numpy as np
import pytest
import torch
from ase.build import bulk

from fastqmd.electronic import monkhorst_pack
from fastqmd.errors import InputError
from fastqmd.nnh import NNHConfig, OverlapConfig, RepulsionConfig
from fastqmd.nnh.electrostatics import (COULOMB_EV_A, Electrostatics, ewald_potential, molecular_potential,
                                        potential)
from fastqmd.nnh.energy import EnergyModel, EnergyModelConfig, Frame, energy_forces
from fastqmd.nnh.graph import neighbor_pairs
from fastqmd.testing import check_gradient

MADELUNG_NACL = 1.747564594633  # rock salt, per ion, in units of q²/r0


def ewald(q, pos, cell, r_cut, sigma=0.02, accuracy=1e-10):
    i, j, S = neighbor_pairs(pos, cell, True, r_cut)
    t = torch.as_tensor
    return ewald_potential(t(q, dtype=torch.float64), t(pos), t(cell), t(i), t(j), t(S), sigma, r_cut,
                           accuracy).numpy()


@pytest.mark.parametrize("cubic", [True, False], ids=["conventional-8", "primitive-2"])
@pytest.mark.parametrize("r_cut", [6.0, 9.0])
def test_ewald_gives_the_rock_salt_madelung_constant(cubic, r_cut):
    a = 5.64
    atoms = bulk("NaCl", "rocksalt", a=a, cubic=cubic)
    q = np.where(np.array(atoms.get_chemical_symbols()) == "Na", 1.0, -1.0)
    phi = ewald(q, atoms.positions, atoms.cell.array, r_cut)
    r0 = a / 2
    # point-charge limit (σ = 0.02 Å: erf(r/2σ) = 1 at r ≥ r0); φ_i = −q_i M / r0 at every ion
    np.testing.assert_allclose(phi * r0, -q * MADELUNG_NACL, atol=2e-7)


def test_ewald_is_translation_invariant_and_cell_choice_invariant():
    rng = np.random.default_rng(3)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.2, seed=4)
    q = rng.normal(size=len(atoms))
    q -= q.mean()
    phi = ewald(q, atoms.positions, atoms.cell.array, 7.0, sigma=0.5)
    moved = ewald(q, atoms.positions + [0.3, -1.1, 2.0], atoms.cell.array, 7.0, sigma=0.5)
    wrapped = atoms.copy()
    wrapped.positions += [1.7, 0.2, -0.9]
    wrapped.wrap()
    np.testing.assert_allclose(moved, phi, atol=1e-9)
    np.testing.assert_allclose(ewald(q, wrapped.positions, wrapped.cell.array, 7.0, sigma=0.5), phi, atol=1e-9)
    # the same lattice, another cell: a skewed basis a1, a2 + a1, a3 of the same lattice
    cell2 = atoms.cell.array.copy()
    cell2[1] += cell2[0]
    np.testing.assert_allclose(ewald(q, atoms.positions, cell2, 7.0, sigma=0.5), phi, atol=1e-8)


def test_molecular_potential_is_the_gaussian_pair_sum_and_mixed_pbc_is_refused():
    rng = np.random.default_rng(1)
    pos = rng.normal(size=(5, 3)) * 2
    q = rng.normal(size=5)
    from scipy.special import erf

    ref = np.array([sum(q[j] * erf(np.linalg.norm(pos[i] - pos[j]) / 1.0) / np.linalg.norm(pos[i] - pos[j])
                        for j in range(5) if j != i) for i in range(5)])
    got = molecular_potential(torch.as_tensor(q), torch.as_tensor(pos), 0.5).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    e = torch.zeros(0, dtype=torch.long)
    with pytest.raises(InputError, match="pbc"):
        potential(torch.as_tensor(q), torch.as_tensor(pos), torch.eye(3, dtype=torch.float64) * 10, (True, True, False),
                  e, e, torch.zeros(0, 3, dtype=torch.long), Electrostatics(), 5.0)


BASIS = {"Cu": (0, 1, 2)}


def cu_model(electrostatics=True, seed=0) -> EnergyModel:
    h = NNHConfig(basis=BASIS, cutoff=3.4, hidden_irreps="8x0e+4x1o+4x1e+2x2e+2x2o+2x3o+2x3e+2x4e", n_layers=1,
                  radial_hidden=8, n_scalars_embed=8, n_radial=4, avg_num_neighbors=8, dtype="float64",
                  electrostatics={"gaussian_width_A": 0.3} if electrostatics else None)
    torch.manual_seed(seed)
    model = EnergyModel(EnergyModelConfig(
        h=h, overlap={"kind": "learned", "s": OverlapConfig(basis=BASIS, cutoff=3.4, radial_hidden=8,
                                                             dtype="float64")},
        repulsion=RepulsionConfig(species=("Cu",), cutoff=3.0, dtype="float64"), electronic_temperature_K=3000.0,
        valence_electrons={"Cu": 11.0})).eval()
    return model


def charged(model: EnergyModel, atoms=None) -> EnergyModel:
    """Random charge weights, scaled so that the largest |q_i| of `atoms` (rattled Cu4, default) is 0.3 e."""
    if atoms is None:
        atoms = bulk("Cu", "fcc", a=3.61).repeat((2, 2, 1))
        atoms.rattle(0.1, seed=2)
    with torch.no_grad():
        model.h.charge_weight.normal_(0.0, 1.0)
        pos, cell = torch.as_tensor(atoms.positions), torch.as_tensor(atoms.cell.array)
        g = model.graph(atoms.get_chemical_symbols(), atoms.positions, atoms.cell.array, atoms.pbc)
        q = model.h(pos, cell, g).charges
        model.h.charge_weight.mul_(0.3 / float(q.abs().max()))
    return model


@pytest.fixture(scope="module")
def cell_case():
    atoms = bulk("Cu", "fcc", a=3.61).repeat((2, 2, 1))
    atoms.rattle(0.1, seed=2)
    k, w = monkhorst_pack((2, 2, 2))
    frame = Frame(tuple(atoms.get_chemical_symbols()), (True, True, True), k.numpy(), w.numpy())
    return atoms, frame


def test_charges_start_at_zero_and_leave_h_unchanged(cell_case):
    """Same seed, channel on and off: identical H (zero charges, and no random draw for the charge head)."""
    atoms, frame = cell_case
    on, off = cu_model(True), cu_model(False)
    pos, cell = torch.as_tensor(atoms.positions), torch.as_tensor(atoms.cell.array)
    g = on.graph(frame.symbols, atoms.positions, atoms.cell.array, frame.pbc)
    H_on = on.hamiltonian(frame, pos, cell, g)
    H_off = off.hamiltonian(frame, pos, cell, g)
    torch.testing.assert_close(H_on, H_off, atol=1e-13, rtol=0)


def test_charge_channel_forces_and_stress_match_finite_differences(cell_case):
    atoms, frame = cell_case
    model = charged(cu_model(True))
    cell = torch.as_tensor(atoms.cell.array)
    pos = torch.as_tensor(atoms.positions)
    g = model.graph(frame.symbols, atoms.positions, atoms.cell.array, frame.pbc, skin=0.5)
    parts, F, sigma = energy_forces(model, frame, pos, cell, g, stress=True)
    q = model.h(pos, cell, g).charges
    q = q.detach()
    assert abs(float(q.sum())) < 1e-12 and float(q.abs().max()) > 1e-3  # neutral, and really charged
    shift = model.orbital_level_shift(frame, pos, cell, g, q)
    assert float(shift.abs().max()) > 1e-3  # the channel really shifts the levels

    def energy(x):
        return float(model(frame, torch.as_tensor(x), cell, g).energy.detach())

    check_gradient(energy, atoms.positions.copy(), -F.detach().numpy(), h=1e-4, atol=2e-6, rtol=1e-5,
                   label="charge-channel forces")

    def strained(eps):
        d = torch.eye(3, dtype=torch.float64) + torch.as_tensor(eps)
        return float(model(frame, pos @ d, cell @ d, g).energy)

    V = abs(np.linalg.det(atoms.cell.array))
    fd = np.zeros((3, 3))
    h = 1e-5
    for a in range(3):
        for b in range(3):
            e = np.zeros((3, 3))
            e[a, b] = h
            fd[a, b] = (strained(e) - strained(-e)) / (2 * h) / V
    fd = 0.5 * (fd + fd.T)
    np.testing.assert_allclose(sigma.detach().numpy(), fd, atol=2e-6)


def test_charge_channel_energy_is_rotation_invariant():
    atoms = bulk("Cu", "fcc", a=3.61).repeat((2, 2, 1))
    atoms.rattle(0.1, seed=5)
    model = charged(cu_model(True, seed=1))
    frame = Frame(tuple(atoms.get_chemical_symbols()), (True, True, True), np.zeros((1, 3)), np.ones(1))
    R = torch.as_tensor(np.linalg.qr(np.random.default_rng(9).normal(size=(3, 3)))[0])

    def E(pos, cell):
        return float(model(frame, pos, cell).energy)

    pos, cell = torch.as_tensor(atoms.positions), torch.as_tensor(atoms.cell.array)
    assert abs(E(pos @ R.T, cell @ R.T) - E(pos, cell)) < 1e-9


def test_charge_channel_on_a_molecule_gives_forces_by_autograd():
    rng = np.random.default_rng(4)
    pos = np.array([[0, 0, 0], [2.3, 0.2, 0], [0.4, 2.2, 0.3], [2.0, 2.1, 1.5]], dtype=float)
    pos += 0.05 * rng.normal(size=pos.shape)
    model = charged(cu_model(True, seed=2))
    frame = Frame(("Cu",) * 4, (False, False, False), np.zeros((1, 3)), np.ones(1))
    cell = torch.zeros(3, 3, dtype=torch.float64)
    _, F, _ = energy_forces(model, frame, torch.as_tensor(pos), cell)

    def energy(x):
        return float(model(frame, torch.as_tensor(x), cell).energy)

    check_gradient(energy, pos.copy(), -F.detach().numpy(), h=1e-4, atol=2e-6, rtol=1e-5, label="molecule")


def test_coulomb_constant_is_ase_s():
    assert abs(COULOMB_EV_A - 14.399645) < 1e-5


def test_too_wide_charges_for_the_cutoff_are_refused():
    with pytest.raises(ValueError, match="too wide"):
        NNHConfig(basis=BASIS, cutoff=3.0, electrostatics={"gaussian_width_A": 1.0})


def test_charge_head_input_statistics_standardise_the_trunk_scalars(cell_case):
    """`charge_feature_statistics` (the trainer's init of the charge head): after it, the head's inputs have mean 0
    and unit spread over the atoms they were measured on, so one Adam step on w moves q by ~q₀·lr."""
    from types import SimpleNamespace

    from fastqmd.nnh.train import charge_feature_statistics

    atoms, frame = cell_case
    model = cu_model(True)
    t = SimpleNamespace(frame=frame, positions=torch.as_tensor(atoms.positions), cell=torch.as_tensor(atoms.cell.array))
    shift, scale = charge_feature_statistics(model, [t], "cpu", floor=1e-12)
    model.h.set_charge_statistics(shift, scale)
    g = model.graph(frame.symbols, atoms.positions, atoms.cell.array, frame.pbc)
    with torch.no_grad():
        s = model.h.node_features(t.positions, t.cell, g)[0][:, model.h.scalar_idx]
    z = (s - model.h.charge_shift) * model.h.charge_scale
    torch.testing.assert_close(z.mean(0), torch.zeros_like(z[0]), atol=1e-8, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones_like(z[0]), atol=1e-6, rtol=0)
