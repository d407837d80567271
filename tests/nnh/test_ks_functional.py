"""energy_mode 'ks' (fastqmd.nnh.ks_functional): E_KS at the SCF density matrix is the reference energy and its
Fock matrix the reference H; ∂E/∂R at fixed P equals finite differences; a model's energy E_KS[P(H_θ(R), S(R))]
has forces = −∇E; the trainer builds it from the dataset's own functional, trains H alone and refuses what it
cannot do with one line."""

import numpy as np
import pytest
import torch
from ase.build import molecule
from nnh_tiny_models import tiny_model

from fastqmd.nnh.ks_functional import KSFunctional, PySCFKS, with_ks_energy

SPEC = KSFunctional(xc="PBE", pyscf_basis="sto-3g")


def water(seed=1):
    atoms = molecule("H2O")
    atoms.rattle(0.05, seed=seed)
    return atoms


def test_ks_energy_at_the_scf_density_is_the_reference_and_its_fock_matrix_is_h():
    from fastqmd.reference.pyscf_mol import PySCFMolEngine, pyscf_to_fastqmd_perm

    atoms = water()
    eng = PySCFMolEngine(xc="PBE", basis="sto-3g")
    sample = eng.compute(atoms)
    mol, mf = eng._scf(atoms)
    p = pyscf_to_fastqmd_perm(mol)
    P = mf.make_rdm1()[np.ix_(p, p)]
    op = PySCFKS(atoms.get_chemical_symbols(), SPEC)
    E, F, dE = op.evaluate(P, atoms.positions)
    # E_KS is stationary at the SCF density: the SCF's last-iteration energy agrees to second order (measured 2e-5
    # eV with def2-SVP); F[P_SCF] is the stored KS Hamiltonian in the fastqmd orbital order
    assert abs(E - sample.energy) < 1e-4, (E, sample.energy)
    assert np.abs(F - sample.H[0]).max() < 1e-4, np.abs(F - sample.H[0]).max()
    h = 1e-4
    for a, x in ((0, 1), (1, 0), (2, 2)):
        pp, pm = atoms.positions.copy(), atoms.positions.copy()
        pp[a, x] += h
        pm[a, x] -= h
        fd = (op.evaluate(P, pp)[0] - op.evaluate(P, pm)[0]) / (2 * h)  # ∂E/∂R at fixed P (incl. grid response)
        assert abs(fd - dE[a, x]) < 1e-6 * max(1.0, abs(fd)), (a, x, fd, dE[a, x])


def tiny_ks_model():
    return tiny_model("core+hartree", electronic_temperature_K=0.0, energy_mode="ks", ks_functional=SPEC)


def test_ks_model_forces_are_minus_the_gradient_and_rotate_with_the_molecule():
    from fastqmd.nnh.potential import NNHPotential
    from fastqmd.orbitals import random_rotation
    from fastqmd.potential import system_from_atoms
    from fastqmd.testing import finite_difference_forces

    atoms = water(seed=3)
    pot = NNHPotential(tiny_ks_model())
    system = system_from_atoms(atoms)
    res = pot.compute(system)
    F, fd = res.forces.numpy(), finite_difference_forces(pot, system, h=1e-4)
    assert np.abs(F).max() > 0.1
    assert np.abs(F - fd).max() <= 1e-6 * max(1.0, np.abs(F).max()), np.abs(F - fd).max()
    R = random_rotation(5)
    turned = atoms.copy()
    turned.positions = atoms.positions @ R.T + 1.0
    r2 = pot.compute(system_from_atoms(turned))
    # invariant up to the XC grid: PySCF's Lebedev grids keep their orientation (the reference's error too)
    assert abs(float(r2.energy) - float(res.energy)) < 3e-5, float(r2.energy) - float(res.energy)
    assert np.abs(r2.forces.numpy() - F @ R.T).max() < 1e-3, np.abs(r2.forces.numpy() - F @ R.T).max()


def test_ks_model_refuses_a_periodic_structure_with_one_line():
    from ase import Atoms

    from fastqmd.errors import InputError
    from fastqmd.nnh.potential import NNHPotential
    from fastqmd.potential import system_from_atoms

    atoms = water()
    cell = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions + 3.0, cell=[8.0, 8.0, 8.0], pbc=True)
    with pytest.raises(InputError, match="treats molecules only"):
        NNHPotential(tiny_ks_model()).compute(system_from_atoms(cell))


def test_with_ks_energy_keeps_h_and_drops_e_rep():
    from fastqmd.nnh.potential import frame_of
    from fastqmd.potential import system_from_atoms

    ks = tiny_ks_model()
    mermin = ks.config.model_copy(update={"energy_mode": "mermin", "ks_functional": None})
    from fastqmd.nnh.energy import EnergyModel

    m = EnergyModel(type(mermin).model_validate(mermin.model_dump()))
    m.load_state_dict(ks.state_dict())
    again = with_ks_energy(m, SPEC)
    atoms = water()
    frame = frame_of(system_from_atoms(atoms))
    x = torch.tensor(atoms.positions)
    a, b = again(frame, x, torch.zeros(3, 3, dtype=torch.float64)), ks(frame, x, torch.zeros(3, 3, dtype=torch.float64))
    assert float(a.energy) == pytest.approx(float(b.energy), abs=1e-10)
    assert float(a.repulsion) == 0.0 and again.config.reference_energies == {}


def test_training_in_ks_mode_learns_h_alone_and_refuses_force_losses(tmp_path):
    from fastqmd.errors import InputError
    from fastqmd.nnh.checkpoint import load_energy_model
    from fastqmd.nnh.train import TrainConfig, train
    from fastqmd.reference.pyscf_mol import PySCFMolEngine
    from fastqmd.testing import make_water_dataset

    data = make_water_dataset(tmp_path / "w.h5", n=4, engine=PySCFMolEngine(xc="PBE", basis="sto-3g"))
    model = dict(cutoff=3.0, hidden_irreps="8x0e+4x1o+4x1e+2x2e", n_layers=1, radial_hidden=16, n_radial=6,
                 n_scalars_embed=8, repulsion_cutoff=2.5, lmax=2, h_baseline="core+hartree", energy_mode="ks")
    base = dict(dataset=data, output=tmp_path / "ks", model=model, split=dict(val_fraction=0.25, test_fraction=0),
                max_steps=3, batch_size=2, dtype="float64", progress=False, eval_every=3)
    with pytest.raises(InputError, match="energy_mode 'ks' learns H alone"):
        train(TrainConfig(**base, loss=dict(beta_F=1.0, gamma_E=0.0)), overwrite=True)
    summary = train(TrainConfig(**base, loss=dict(beta_F=0.0, gamma_E=0.0)), overwrite=True)
    m = load_energy_model(tmp_path / "ks" / "model.pt")
    assert m.config.energy_mode == "ks" and m.config.ks_functional == SPEC and m.config.reference_energies == {}
    assert np.isfinite(summary["test"]["F_mae_eV_A"]) if summary.get("test") else True
    tb = make_water_dataset(tmp_path / "tb.h5", n=4)
    with pytest.raises(InputError, match="needs unsmeared closed-shell molecular PySCF data"):
        train(TrainConfig(**{**base, "dataset": tb, "output": tmp_path / "tb",
                             "model": {**model, "h_baseline": "none"}}, loss=dict(beta_F=0.0, gamma_E=0.0)),
              overwrite=True)
