"""Physics checks of the equivariant MLIP (issue 12 part 2) on the MLIP seam (`fastqmd.mlip.kind`): forces and stress
are derivatives of the energy, E is invariant (F, σ covariant) under rigid motions, reflections and relabelling,
E_i sees exactly n_layers × cutoff, the trunk is the NN Hamiltonian's, and `fastqmd train` overfits a few waters."""

import json

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.build import bulk

from fastqmd.errors import InputError
from fastqmd.mlip.equivariant import EquivariantEnergy, EquivariantSpec
from fastqmd.mlip.kind import Structure, TrainingStatistics, build_model, collate, load_mlip
from fastqmd.mlip.potential import MLIPPotential
from fastqmd.potential import system_from_atoms
from fastqmd.testing import (WATER_A, finite_difference_forces, finite_difference_stress_xx, make_water_dataset,
                             potential_equivariance)

FD_ATOL = 1e-7  # eV/Å: central differences (h = 1e-4 Å) vs autograd forces, float64, |F| ~ 0.1–1
STRESS_ATOL = 1e-8  # eV/Å³: central differences (h = 1e-5) of σ_xx
EQUIV_ATOL = 1e-10  # eV, eV/Å, eV/Å³: float64 invariance/covariance
LOCAL_ATOL = 1e-13  # eV: E_i unchanged by an atom outside its receptive field (float64 round-off)
SEEN_ATOL = 1e-8  # eV: an atom inside it moves E_i by more (measured 4e-6 at random init)
OVERFIT_FACTOR = 20.0  # training loss before / after, 4 waters, STEPS full-batch steps (measured ×268)
STEPS = 80

ELEMENTS = ["H", "O", "Cu"]  # the kind's order: by atomic number
SMALL = dict(cutoff=3.0, n_radial=6, radial_hidden=16, lmax=2, n_scalars_embed=8,
             hidden_irreps="8x0e+4x1o+4x1e+2x2e+2x2o", n_layers=2, readout_hidden=4)
STATS = TrainingStatistics(energy_offsets=(-13.0, -430.0, -3.5), energy_std_per_atom=0.1, force_rms=1.0,
                           avg_num_neighbors=6.0)


def small_model(**kw):
    return build_model(EquivariantSpec(**(SMALL | kw)), ELEMENTS, STATS, torch.float64)


@pytest.fixture(scope="module")
def potential():
    torch.manual_seed(0)
    return MLIPPotential(small_model())


@pytest.fixture
def copper():
    a = bulk("Cu", "fcc", a=3.61, cubic=True)  # 4 atoms, 3.61 Å < 2 × cutoff: self-image edges
    a.rattle(0.08, seed=3)
    a.set_cell(a.cell.array @ np.array([[1.0, 0.03, 0.0], [0.0, 1.0, -0.02], [0.01, 0.0, 1.0]]), scale_atoms=True)
    return a


@pytest.fixture
def water():
    rng = np.random.default_rng(1)
    return Atoms("OHH", positions=WATER_A + 0.05 * rng.normal(size=(3, 3)))


@pytest.mark.parametrize("structure", ["copper", "water"])
def test_forces_are_minus_the_energy_gradient(potential, structure, request):
    system = system_from_atoms(request.getfixturevalue(structure))
    F = potential.compute(system).forces.numpy()
    fd = finite_difference_forces(potential, system, h=1e-4)
    assert np.abs(F).max() > 1e-3  # a non-trivial check
    np.testing.assert_allclose(F, fd, rtol=0, atol=FD_ATOL)


def test_stress_is_the_strain_derivative_of_the_energy(potential, copper):
    sigma = potential.compute(system_from_atoms(copper)).stress.numpy()
    fd = finite_difference_stress_xx(potential, copper, h=1e-5)
    assert abs(sigma[0, 0]) > 1e-4
    assert abs(sigma[0, 0] - fd) < STRESS_ATOL
    np.testing.assert_allclose(sigma, sigma.T, atol=1e-14)


def test_molecules_have_no_stress_and_forces_sum_to_zero(potential, water):
    r = potential.compute(system_from_atoms(water))
    assert r.stress is None
    np.testing.assert_allclose(r.forces.numpy().sum(0), 0.0, atol=1e-12)


def test_periodic_energy_invariant_forces_and_stress_covariant(potential, copper):
    system = system_from_atoms(copper)
    for seed, improper in [(0, False), (1, True)]:
        potential_equivariance(potential, system, seed=seed, stress=True, improper=improper, translation=True,
                               permutation=True, atol=EQUIV_ATOL)


def test_molecule_energy_invariant_forces_covariant(potential, water):
    system = system_from_atoms(water)
    for seed, improper in [(2, False), (3, True)]:
        potential_equivariance(potential, system, seed=seed, improper=improper, translation=True, permutation=True,
                               atol=EQUIV_ATOL)


def e_first_atom(net: EquivariantEnergy, x) -> float:
    """E_0: the per-atom energy of the first of a line of Cu atoms at positions x (Å) along the x axis."""
    x = np.asarray(x, dtype=float)
    pos = np.stack([x, np.zeros_like(x), np.zeros_like(x)], axis=1)
    s = Structure("", np.full(len(x), 29), pos, np.zeros((3, 3)), np.zeros(3, bool), 0.0)
    with torch.no_grad():
        return float(net.atomic_energies(collate([s], ELEMENTS, net.cutoff))[0])


def test_receptive_field_is_layers_times_cutoff():
    """Atoms 2.0 Å apart, cutoff 3.0 Å, 2 layers (field 6 Å): the atom at 4 Å (beyond the cutoff, two hops) moves
    E_0 through message passing; the atom at 6.4 Å (three hops) cannot, however it moves beyond 6 Å."""
    torch.manual_seed(1)
    net = small_model().net
    assert net.receptive_field == pytest.approx(6.0)
    x = np.array([0.0, 2.0, 4.0, 6.4])
    e0 = e_first_atom(net, x)
    for dx in (-0.2, 0.3, 5.0):
        assert abs(e_first_atom(net, x + [0, 0, 0, dx]) - e0) < LOCAL_ATOL
    assert abs(e_first_atom(net, x + [0, 0, 0.3, 0]) - e0) > SEEN_ATOL  # two hops: seen
    one_layer = small_model(n_layers=1).net  # field 3 Å: now the 4 Å atom is invisible, the 2 Å one is not
    e1 = e_first_atom(one_layer, x)
    assert abs(e_first_atom(one_layer, x + [0, 0, 0.3, 0]) - e1) < LOCAL_ATOL
    assert abs(e_first_atom(one_layer, x + [0, 0.3, 0, 0]) - e1) > SEEN_ATOL


def test_float32_model_agrees_with_float64(copper):
    torch.manual_seed(0)
    m64 = small_model()
    m32 = build_model(EquivariantSpec(**SMALL), ELEMENTS, STATS, torch.float32)
    m32.load_state_dict({k: v.float() for k, v in m64.state_dict().items()})
    r64 = MLIPPotential(m64).compute(system_from_atoms(copper))
    r32 = MLIPPotential(m32).compute(system_from_atoms(copper))
    assert abs(float(r32.energy - r64.energy)) < 1e-4  # |E| ~ 14 eV from the offsets
    np.testing.assert_allclose(r32.forces.numpy(), r64.forces.numpy(), atol=1e-4)


def test_element_outside_the_model_is_one_input_error(potential):
    with pytest.raises(InputError, match="Na"):
        potential.compute(system_from_atoms(Atoms("NaCl", positions=[[0, 0, 0], [2.4, 0, 0]])))


@pytest.mark.parametrize("bad", ["garbage", "4x1o+4x2e", "4x0e+2x0o"])
def test_unusable_hidden_irreps_are_refused(bad):
    with pytest.raises(ValueError, match="hidden_irreps"):
        EquivariantSpec(hidden_irreps=bad)


def test_the_trunk_is_the_nn_hamiltonians(potential):
    """One backbone, two heads: the energy model's trunk has the NNH model's parameter names, and an NNH model's
    trunk weights loaded into it give the same node features h_i (float64, to round-off)."""
    from fastqmd.nnh import NNHConfig, NNHModel

    trunk = lambda m: {k: v for k, v in m.state_dict().items() if k.startswith(("embed.", "layers."))}  # noqa: E731
    heads = {k.split(".")[0] for k in potential.model.net.state_dict()} - {"embed", "layers"}
    assert heads == {"readout_hidden", "readout_energy"}
    torch.manual_seed(2)
    nnh = NNHModel(NNHConfig(basis={"Cu": (0, 1)}, avg_num_neighbors=6.0, dtype="float64",
                             **{k: v for k, v in SMALL.items() if k != "readout_hidden"}))
    net = build_model(EquivariantSpec(**SMALL), ["Cu"], TrainingStatistics((-3.5,), 0.1, 1.0, 6.0), torch.float64).net
    assert trunk(net).keys() == trunk(nnh).keys()
    net.load_state_dict(trunk(nnh), strict=False)
    a = bulk("Cu", "fcc", a=3.61, cubic=True)
    a.rattle(0.05, seed=1)
    b = collate([Structure("", a.numbers, a.positions, a.cell.array, a.pbc, 0.0)], ["Cu"], SMALL["cutoff"])
    g = nnh.graph(a.get_chemical_symbols(), a.positions, a.cell.array, True)
    with torch.no_grad():
        h_nnh, *_ = nnh.node_features(torch.tensor(a.positions), torch.tensor(a.cell.array), g)
        h_e, *_ = net.trunk(b.edge_vectors(), b.species, b.edge_i, b.edge_j)
    # the two neighbour lists may order edges differently: equal up to summation order
    torch.testing.assert_close(h_e, h_nnh, rtol=0, atol=1e-12)


def test_tiny_overfit_through_fastqmd_train(tmp_path):
    """`model.kind: equivariant` on the one trainer: 4 GFN2 waters, the training loss falls by OVERFIT_FACTOR, and
    the saved model reloads as a potential that reproduces the training energies better than the offsets alone."""
    from fastqmd.mlip.kind import train
    from fastqmd.training.registry import load_train_config

    data = make_water_dataset(tmp_path / "w.h5", n=4, seed=0, rattle=0.1)
    cfg_path = tmp_path / "train.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "dataset": str(data), "output": str(tmp_path / "run"), "model": {"kind": "equivariant", **SMALL},
        "split": {"val_fraction": 0.0, "test_fraction": 0.0}, "lr": 1e-2, "ema_decay": 0.0, "batch_size": 4,
        "max_steps": STEPS, "eval_every": STEPS, "checkpoint_every": STEPS, "early_stopping_patience": None,
        "schedule": {"kind": "constant"}, "dtype": "float64", "progress": False}))
    _, cfg = load_train_config(cfg_path)
    assert train(cfg)["steps"] == STEPS
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
              if "loss" in r]
    first, last = losses[0], float(np.mean(losses[-5:]))
    print(f"loss {first:.3e} -> {last:.3e} (x{first / last:.0f})")
    assert first / last > OVERFIT_FACTOR
    model = load_mlip(tmp_path / "run" / "model.pt")
    assert model.architecture == "equivariant" and isinstance(model.net, EquivariantEnergy)
