"""The overlap seam of the NNH energy: the `overlap` union of EnergyModelConfig (and old flat model files), one
Cholesky factorization of S per forward and backward, one graph cache shared by the model's terms and
NNHPotential, and a clear InputError for elements the model lacks."""

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from fastqmd.errors import InputError
from fastqmd.nnh import NNHConfig, OverlapConfig, RepulsionConfig
from fastqmd.nnh.energy import EnergyModel, EnergyModelConfig, LearnedOverlap, energy_forces
from fastqmd.nnh.potential import NNHPotential, frame_of
from fastqmd.potential import system_from_atoms

IRR = "8x0e+4x1o+4x1e+2x2e+2x2o+2x3o+2x3e+2x4e"
BASIS = {"Cu": (0, 1, 2)}


def h_config(**kw) -> NNHConfig:
    return NNHConfig(basis=BASIS, cutoff=3.0, hidden_irreps=IRR, n_layers=1, radial_hidden=8, n_scalars_embed=8,
                     n_radial=4, avg_num_neighbors=8, dtype="float64", **kw)


def flat_config(kind: str) -> dict:
    """An EnergyModelConfig as model files stored it before `overlap` became a union (keys as written then)."""
    h = json.loads(h_config().model_dump_json())
    s = json.loads(OverlapConfig(basis=BASIS, cutoff=3.0, radial_hidden=8, dtype="float64").model_dump_json())
    table = {"method": "GFN1-xTB", "basis": {"Cu": [2, 0, 1]}, "cutoff": 14.5, "taper": 0.5, "r_min": 0.1,
             "step": 0.005}
    if kind == "table":
        h["basis"] = {"Cu": [2, 0, 1]}
    return {"h": h, "overlap": kind, "s": s if kind == "learned" else None,
            "table": table if kind == "table" else None,
            "repulsion": {"species": ["Cu"], "cutoff": 3.0, "n_radial": 8, "embedding_hidden": 16, "many_body": True,
                          "envelope_exponent": 6, "init_scale": 0.1, "dtype": "float64"},
            "energy_mode": "mermin", "electronic_temperature_K": 1000.0, "spin_factor": 2.0,
            "valence_electrons": {"Cu": 11.0}, "reference_energies": {"Cu": -1.5},
            "pyscf_basis": "gth-szv" if kind == "exact" else None}


@pytest.fixture(scope="module")
def cu_model():
    torch.manual_seed(0)
    return EnergyModel(EnergyModelConfig.model_validate(flat_config("learned"))).eval()


@pytest.mark.parametrize("kind", ["exact", "table", "learned"])
def test_old_flat_overlap_config_loads_as_the_union_and_round_trips(kind):
    old = flat_config(kind)
    cfg = EnergyModelConfig.model_validate_json(json.dumps(old))
    assert cfg.overlap.kind == kind
    inner = {"exact": "pyscf_basis", "table": "table", "learned": "s"}[kind]
    got = getattr(cfg.overlap, inner)
    assert (got if isinstance(got, str) else json.loads(got.model_dump_json())) == old[inner]
    assert cfg.s_grad_from_energy is True  # files before the field: the old attribute's default
    assert EnergyModelConfig.model_validate_json(cfg.model_dump_json()) == cfg
    dumped = json.loads(cfg.model_dump_json())
    assert dumped["overlap"]["kind"] == kind and not {"s", "table", "pyscf_basis"} & set(dumped)


def test_old_flat_config_errors_name_the_problem():
    bad = flat_config("exact")
    bad["pyscf_basis"] = None
    with pytest.raises(ValueError, match="pyscf_basis"):
        EnergyModelConfig.model_validate(bad)
    both = flat_config("learned")
    both["pyscf_basis"] = "sto-3g"
    with pytest.raises(ValueError, match="overlap 'learned' takes no 'pyscf_basis'"):
        EnergyModelConfig.model_validate(both)
    other = flat_config("learned")
    other["s"]["basis"] = {"Cu": [0, 1]}
    with pytest.raises(ValueError, match="differs from the H model"):
        EnergyModelConfig.model_validate(other)


def test_s_grad_from_energy_is_a_saved_config_field(cu_model):
    frozen = EnergyModel(cu_model.config.model_copy(update={"s_grad_from_energy": False}))
    frozen.load_state_dict(cu_model.state_dict())
    assert cu_model.s_grad_from_energy and not frozen.s_grad_from_energy
    assert json.loads(frozen.config.model_dump_json())["s_grad_from_energy"] is False
    with pytest.raises(AttributeError):
        frozen.s_grad_from_energy = True  # read-only: the config decides
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=1)
    system = system_from_atoms(atoms)
    frame = frame_of(system)
    out = []
    for m in (cu_model, frozen):
        for p in m.parameters():
            p.requires_grad_(True)
        E = m(frame, system.positions, system.cell).energy
        gs = torch.autograd.grad(E, list(m.s.parameters()), allow_unused=True)
        out.append((E.detach(), [g for g in gs if g is not None]))
    assert torch.equal(out[0][0], out[1][0])  # same energy ...
    assert out[0][1] and not out[1][1]  # ... but no gradient reaches the frozen S head


def test_forward_and_force_loss_factor_s_once(cu_model, monkeypatch):
    """One Cholesky factorization of S(k) per energy + force-loss gradient (it used to be three)."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=2)
    system = system_from_atoms(atoms)
    frame = frame_of(system, (2, 1, 1))
    for p in cu_model.parameters():
        p.requires_grad_(True)
    calls = []
    real = torch.linalg.cholesky_ex
    monkeypatch.setattr(torch.linalg, "cholesky_ex", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(torch.linalg, "cholesky", lambda *a, **k: pytest.fail("unexpected torch.linalg.cholesky"))
    _, F, _ = energy_forces(cu_model, frame, system.positions.clone().requires_grad_(True), system.cell,
                            create_graph=True)
    grads = torch.autograd.grad((F**2).sum(), [p for p in cu_model.parameters() if p.requires_grad],
                                allow_unused=True)
    assert any(g is not None and bool(g.abs().max() > 0) for g in grads)
    assert len(calls) == 1


def test_one_graph_cache_serves_the_model_and_the_potential(cu_model):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.02, seed=3)
    pot = NNHPotential(cu_model, skin=0.4)
    cu_model.graphs.clear()
    builds = cu_model.graphs.n_builds
    s = system_from_atoms(atoms)
    e_pot = float(pot.compute(s).energy)
    assert cu_model.graphs.n_builds == builds + 1
    g = pot.graph(pot.frame(s), s.positions.numpy(), s.cell.numpy())
    assert cu_model.graphs.get(atoms.get_chemical_symbols(), atoms.pbc, atoms.positions, atoms.cell.array,
                               cu_model.cutoff, 0.4, "cpu") is g  # the same cached object
    with torch.no_grad():  # no explicit graph: the model's cache builds one at its cutoff (skin 0)
        e_model = float(cu_model(pot.frame(s), s.positions, s.cell).energy)
    assert abs(e_model - e_pot) < 1e-10
    assert cu_model.graphs.n_builds == builds + 2


def test_potential_rejects_elements_the_model_lacks_before_any_work(cu_model, monkeypatch):
    pot = NNHPotential(cu_model)
    monkeypatch.setattr(cu_model.graphs, "get", lambda *a, **k: pytest.fail("work done before the check"))
    atoms = Atoms("CuOH", positions=[[0, 0, 0], [1.9, 0, 0], [2.5, 0.8, 0]])
    with pytest.raises(InputError) as err:
        pot.compute(system_from_atoms(atoms))
    msg = str(err.value)
    assert msg == "the NNH model has no element H, O (its elements: Cu)" and "\n" not in msg


def test_learned_overlap_is_the_union_member(cu_model):
    assert isinstance(cu_model.config.overlap, LearnedOverlap)
    assert cu_model.overlap.cell_differentiable
    assert np.isclose(cu_model.cutoff, 3.0)


def test_old_model_file_loads_with_the_same_energy(cu_model, tmp_path):
    """A model.pt written before the union (flat overlap keys, no s_grad_from_energy) loads and gives the same E;
    the dtype override reaches the learned S head inside the union."""
    from fastqmd.nnh.checkpoint import MODEL_FORMAT, atomic_save, load_energy_model

    path = tmp_path / "old_model.pt"
    atomic_save({"format": MODEL_FORMAT, "version": 1, "config": json.dumps(flat_config("learned")),
                 "state": cu_model.state_dict()}, path)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=4)
    s = system_from_atoms(atoms)
    e_ref = float(NNHPotential(cu_model).compute(s).energy)
    loaded = load_energy_model(path)
    assert loaded.config == cu_model.config
    assert float(NNHPotential(loaded).compute(s).energy) == e_ref
    m32 = load_energy_model(path, dtype="float32")
    assert m32.config.overlap.s.dtype == "float32" and m32.s.onsite[0].dtype == torch.float32


def test_provider_called_without_a_graph_gives_the_model_s(cu_model):
    """S(frame, positions, cell): without the caller's graph the provider takes one from the model's cache."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=6)
    system = system_from_atoms(atoms)
    frame = frame_of(system, (2, 1, 1))
    g = cu_model.graph(frame.symbols, atoms.positions, atoms.cell.array, frame.pbc)
    with torch.no_grad():
        S_model = cu_model(frame, system.positions, system.cell, g).S
        S_alone = cu_model.overlap(frame, system.positions, system.cell)
    assert S_alone.shape == (2, 36, 36) and S_alone.is_complex()
    assert (S_alone - S_model).abs().max() < 1e-14
