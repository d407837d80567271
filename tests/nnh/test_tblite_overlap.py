"""Tabulated tblite overlap: agreement with tblite's own S (molecules, periodic Γ), exact derivatives (FD,
gradcheck, gradgradcheck), rotation covariance, state_dict round trip, and forces/stress of an EnergyModel that
uses it (overlap "table")."""

import io

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from fastqmd.nnh.tblite_overlap import (
    TableConfig,
    TabulatedOverlap,
    build_tables,
    dimer_overlaps,
    tblite_overlap,
    tblite_table_config,
)
from fastqmd.nnh import NNHConfig, RepulsionConfig, to_kspace
from fastqmd.nnh.energy import EnergyModel, EnergyModelConfig
from fastqmd.nnh.potential import NNHPotential
from fastqmd.orbitals import orbital_rotation, random_rotation
from fastqmd.potential import system_from_atoms
from fastqmd.reference.base import BasisSpec
from fastqmd.testing import (
    Transform,
    assert_equivariant,
    central_differences,
    finite_difference_forces,
    finite_difference_stress_xx,
)
from fastqmd.units import BOHR_ANG

S_ATOL = 1e-6  # max |S_table − S_tblite| (measured ≤ 5e-8: spline 2e-8 + tail beyond the cutoff < 1e-8/image)
FD_RTOL = 1e-6  # autograd vs central differences, float64, relative to max(1, |value|)
ROT_ATOL = 1e-10  # S(Rx) = D S Dᵀ (the tables are exact functions of the pair vector: round-off)
GAMMA = torch.zeros(1, 3, dtype=torch.float64)


@pytest.fixture(scope="module")
def gfn1():
    return TabulatedOverlap(tblite_table_config("GFN1-xTB", ["Cu", "H", "O"]))


@pytest.fixture(scope="module")
def gfn2():
    return TabulatedOverlap(tblite_table_config("GFN2-xTB", ["H", "O"]))


def tblite_S(method: str, atoms: Atoms) -> np.ndarray:
    """tblite's overlap matrix (Γ for periodic cells), computed here independently of the tables."""
    from tblite.exceptions import TBLiteRuntimeError
    from tblite.interface import Calculator

    kw = {"lattice": atoms.cell.array / BOHR_ANG, "periodic": np.ones(3, bool)} if atoms.pbc.all() else {}
    calc = Calculator(method, atoms.numbers, atoms.positions / BOHR_ANG, **kw)
    calc.set("verbosity", 0)
    calc.set("save-integrals", 1)
    calc.set("temperature", 0.01)  # ~3000 K: converges for every structure below
    try:
        res = calc.singlepoint()
    except TBLiteRuntimeError as exc:
        raise AssertionError(f"tblite SCF failed for {atoms.get_chemical_formula()}: {exc}") from None
    return np.asarray(res.get("overlap-matrix"))


def table_S(model: TabulatedOverlap, atoms: Atoms, pos=None, cell=None) -> torch.Tensor:
    pbc = bool(atoms.pbc.all())
    g = model.graph(atoms.get_chemical_symbols(), atoms.positions, atoms.cell.array, pbc)
    pos = torch.tensor(atoms.positions) if pos is None else pos
    cell = torch.tensor(atoms.cell.array) if cell is None else cell
    return to_kspace(model(pos, cell, g), g, GAMMA)[0]


def rattled(symbols: str, positions, seed: int, sigma: float = 0.08) -> Atoms:
    rng = np.random.default_rng(seed)
    positions = np.asarray(positions, dtype=float)
    return Atoms(symbols, positions=positions + sigma * rng.normal(size=positions.shape))


WATER = [[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]]
MOLECULES = {
    "H2O-GFN2": ("gfn2", "GFN2-xTB", rattled("OHH", WATER, 1)),
    "H2O-GFN1": ("gfn1", "GFN1-xTB", rattled("OHH", WATER, 2)),
    "Cu2H-GFN1": ("gfn1", "GFN1-xTB", rattled("CuCuH", [[0, 0, 0], [2.3, 0.2, 0.1], [1.1, 1.4, -0.3]], 3)),
    "CuOH-GFN1": ("gfn1", "GFN1-xTB", rattled("CuOH", [[0, 0, 0], [1.8, 0.1, 0.0], [2.2, 0.9, 0.3]], 4)),
    "Cu6-GFN1": ("gfn1", "GFN1-xTB", rattled("Cu6", 1.8 * np.array(
        [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1.0]]), 5, sigma=0.15)),
}


@pytest.mark.parametrize("name", sorted(MOLECULES))
def test_molecular_overlap_equals_tblite(name, request):
    which, method, atoms = MOLECULES[name]
    model = request.getfixturevalue(which)
    S = table_S(model, atoms).numpy()
    ref = tblite_S(method, atoms)
    assert S.shape == ref.shape
    assert np.abs(S - ref).max() <= S_ATOL, np.abs(S - ref).max()
    assert np.abs(ref - np.eye(len(ref))).max() > 0.1  # a real test: S is far from the identity


def test_overlap_without_scf_is_the_converged_overlap():
    """The tables take S from a 1-iteration (failed) SCF: it must equal S of a converged run."""
    atoms = rattled("OHH", WATER, 6)
    S, _, _ = tblite_overlap("GFN2-xTB", atoms.numbers, atoms.positions)
    assert np.array_equal(S, tblite_S("GFN2-xTB", atoms))


def test_tables_are_exact_couplings_and_onsite_blocks_are_tblite_s(gfn1):
    _, onsite, residual = build_tables(gfn1.config)
    assert residual < 1e-12  # dimer blocks are exactly two-centre couplings in the fastqmd convention
    assert np.allclose(onsite["Cu"], np.eye(9), atol=1e-12)
    # GFN1 H has two s shells; tblite orthogonalises the 2s to the 1s, so ⟨1s|2s⟩ = 8.5e-10, not 0 exactly
    assert np.allclose(onsite["H"], np.eye(2), atol=1e-8) and onsite["H"][0, 1] != 0
    S, _, _ = tblite_overlap("GFN1-xTB", [1, 8], np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.97]]))
    assert np.array_equal(onsite["H"], S[:2, :2]) and np.array_equal(onsite["O"], S[2:, 2:])


def test_periodic_fcc_cu_gamma_equals_tblite_and_is_positive_definite(gfn1):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.1, seed=7)
    S = table_S(gfn1, atoms).numpy()
    ref = tblite_S("GFN1-xTB", atoms)
    assert np.abs(S - ref).max() <= S_ATOL, np.abs(S - ref).max()
    lam, lam_ref = np.linalg.eigvalsh(S).min(), np.linalg.eigvalsh(ref).min()
    assert 0 < lam_ref < 0.05  # nearly singular, as in the Cu datasets
    assert lam > 0 and abs(lam - lam_ref) <= S_ATOL


def test_position_and_cell_derivatives_match_central_differences(gfn1):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.1, seed=8)
    g = gfn1.graph(atoms.get_chemical_symbols(), atoms.positions, atoms.cell.array, True)
    W = torch.randn(36, 36, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def L(p, c):
        return (to_kspace(gfn1(p, c, g), g, GAMMA)[0] * W).sum()

    pos, cell = atoms.positions, atoms.cell.array
    p, c = torch.tensor(pos, requires_grad=True), torch.tensor(cell, requires_grad=True)
    gp, gc = torch.autograd.grad(L(p, c), (p, c))
    fd_p = central_differences(lambda x: L(torch.as_tensor(x), torch.tensor(cell)), pos, 1e-5, [(0, 0), (2, 1), (3, 2)])
    fd_c = central_differences(lambda x: L(torch.tensor(pos), torch.as_tensor(x)), cell, 1e-5, [(0, 0), (1, 2)])
    for which, fd, grad in (("p", fd_p, gp), ("c", fd_c, gc)):
        for idx in zip(*np.nonzero(~np.isnan(fd))):
            an = float(grad[idx])
            assert abs(an) > 1e-3 and abs(fd[idx] - an) <= FD_RTOL * max(1.0, abs(fd[idx])), (which, idx, fd[idx], an)


def test_gradcheck_and_gradgradcheck_on_a_tiny_molecule(gfn1):
    atoms = rattled("CuH", [[0, 0, 0], [1.5, 0.3, 0.2]], 9)
    g = gfn1.graph(atoms.get_chemical_symbols(), atoms.positions, np.zeros((3, 3)), False)
    cell = torch.zeros(3, 3, dtype=torch.float64)

    def S(p):
        return to_kspace(gfn1(p, cell, g), g, GAMMA)[0]

    p = torch.tensor(atoms.positions, requires_grad=True)
    assert torch.autograd.gradcheck(S, (p,), eps=1e-6, atol=1e-7, rtol=1e-6)
    assert torch.autograd.gradgradcheck(S, (p,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_rotation_covariance(gfn1):
    atoms = rattled("CuOHH", [[0, 0, 0], [1.9, 0, 0], [2.5, 0.7, 0], [-0.5, 1.4, 0.3]], 10)
    symbols = atoms.get_chemical_symbols()
    R = random_rotation(3)

    def S_of(positions):
        return table_S(gfn1, Atoms(symbols, positions=positions)).numpy()

    def rotate_blocks(S, T):
        D = orbital_rotation(BasisSpec(gfn1.config.basis), symbols, T.Q)
        return D @ S @ D.T

    assert_equivariant(S_of, (atoms.positions,), ("positions",), rotate_blocks, atol=ROT_ATOL,
                       transform=Transform(R, np.zeros(3), np.arange(len(atoms))))
    assert np.abs(S_of(atoms.positions @ R.T) - S_of(atoms.positions)).max() > 0.1


def test_state_dict_round_trip_with_weights_only(gfn2):
    buf = io.BytesIO()
    torch.save({"config": gfn2.config.model_dump_json(), "state": gfn2.state_dict()}, buf)
    buf.seek(0)
    obj = torch.load(buf, weights_only=True)
    cfg = TableConfig.model_validate_json(obj["config"])
    assert cfg == gfn2.config
    fresh = TabulatedOverlap(cfg, build=False)
    atoms = rattled("OHH", WATER, 11)
    assert not torch.equal(table_S(fresh, atoms), table_S(gfn2, atoms))  # unfilled: on-site blocks only (zeros)
    fresh.load_state_dict(obj["state"])
    assert torch.equal(table_S(fresh, atoms), table_S(gfn2, atoms))


def test_cutoff_covers_the_overlap_range(gfn1):
    """Beyond the cutoff every |S| of every element pair is < 1e-8, and S vanishes smoothly there."""
    cfg = gfn1.config
    for a, b in [("Cu", "Cu"), ("Cu", "H"), ("H", "H")]:
        S = dimer_overlaps(cfg.method, a, b, np.array([cfg.cutoff - cfg.taper, cfg.cutoff]))
        na = len(S[0]) - {"Cu": 9, "H": 2}[b]
        assert np.abs(S[:, :na, na:]).max() < 1e-8
    d = torch.tensor([cfg.cutoff - 1e-3, cfg.cutoff, cfg.cutoff + 1.0], dtype=torch.float64)
    f = gfn1.radial(0, 0, d)
    assert f[1:].abs().max() == 0 and f[0].abs().max() < 1e-12


def tiny_energy_model(table: TableConfig, T: float, valence: dict) -> EnergyModel:
    species = tuple(sorted(table.basis))
    h = NNHConfig(basis=table.basis, cutoff=3.0, hidden_irreps="8x0e+4x1o+4x1e+2x2e+2x2o+2x3o+2x3e+2x4e",
                  n_layers=1, radial_hidden=8, n_scalars_embed=8, n_radial=4, avg_num_neighbors=4, dtype="float64")
    torch.manual_seed(0)
    return EnergyModel(EnergyModelConfig(h=h, overlap="table", table=table, electronic_temperature_K=T,
                                         repulsion=RepulsionConfig(species=species, cutoff=3.0, dtype="float64"),
                                         valence_electrons=valence))


def test_energy_model_with_table_overlap_forces_match_fd(gfn2):
    model = tiny_energy_model(gfn2.config, 3000.0, {"H": 1.0, "O": 6.0})
    assert model.cutoff == 3.0  # the long-range S has its own graph; the H network's stays short
    pot = NNHPotential(model)
    system = system_from_atoms(rattled("OHH", WATER, 12))
    F = pot.compute(system).forces.numpy()
    fd = finite_difference_forces(pot, system, h=1e-5)
    assert np.abs(F).max() > 1e-2
    assert np.abs(F - fd).max() <= FD_RTOL * max(1.0, np.abs(F).max()), np.abs(F - fd).max()


def test_energy_model_with_table_overlap_stress_matches_strain_derivative():
    cfg = tblite_table_config("GFN1-xTB", ["Cu"])
    model = tiny_energy_model(cfg, 3000.0, {"Cu": 11.0})
    pot = NNHPotential(model, skin=0.0)
    atoms = bulk("Cu", "fcc", a=3.61).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=13)
    res = pot.compute(system_from_atoms(atoms))
    fd = finite_difference_stress_xx(pot, atoms)
    assert abs(fd) > 1e-4 and abs(float(res.stress[0, 0]) - fd) <= FD_RTOL * max(1.0, abs(fd)), (res.stress, fd)


def test_training_on_a_tblite_dataset_uses_the_tables(tmp_path):
    """overlap "auto" on tblite data → "table": no S pretraining, L_S ≡ 0, the model file rebuilds the same S."""
    import json

    from fastqmd.nnh.checkpoint import load_energy_model
    from fastqmd.nnh.train import TrainConfig, train
    from fastqmd.testing import make_water_dataset

    data = make_water_dataset(tmp_path / "water.h5", n=4)
    tiny = {"cutoff": 3.0, "hidden_irreps": "8x0e+4x1o+4x1e+2x2e", "n_layers": 1, "radial_hidden": 8, "n_radial": 4,
            "n_scalars_embed": 8, "repulsion_cutoff": 2.5, "lmax": 2}
    cfg = TrainConfig(dataset=data, output=tmp_path / "run", split={"val_fraction": 0, "test_fraction": 0}, model=tiny,
                      max_steps=2, batch_size=2, ema_decay=0.0, dtype="float64", progress=False, checkpoint_every=100)
    train(cfg, overwrite=True)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(x["L_S"] == 0.0 and np.isfinite(x["loss"]) for x in lines)
    model = load_energy_model(tmp_path / "run" / "model.pt")
    assert model.config.overlap.kind == "table" and model.config.overlap.table.method == "GFN2-xTB"
    atoms = rattled("OHH", WATER, 14)
    assert np.abs(table_S(model.s, atoms).numpy() - tblite_S("GFN2-xTB", atoms)).max() <= S_ATOL
