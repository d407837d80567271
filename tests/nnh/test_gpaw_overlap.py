"""Tabulated GPAW LCAO overlap (pseudo-orbital + PAW projector terms): agreement with the gpaw-lcao engine's own
S(k) at every k-point (Bloch phases, atoms outside the cell), GPAW's eigenvalues from the engine's H with the
tabulated S, exact derivatives (FD in positions and cell, gradgradcheck), rotation covariance, the cutoffs, and
training on a gpaw-lcao dataset (overlap "auto" → the tables, model file round trip with weights_only).

Measured (docs/GPAW.md): |S_table − S_GPAW| ≤ 1e-8 at every k of rattled Cu₂ (6e-8 on rattled Cu₄ at Γ): the
level of GPAW's own interpolation of its Fourier–Bessel two-centre expansions (halving the table step does not
change it). S is ill-conditioned (λ_min 1.7e-5), so this moves eigenvalues ≥ 60 eV above E_F by up to 30 meV, and
those below E_F + 2 eV by < 2e-6 eV.
"""

import io

import numpy as np
import pytest
import scipy.linalg
import torch
from ase.build import bulk

pytest.importorskip("gpaw")

from fastqmd.nnh.energy import Frame  # noqa: E402
from fastqmd.nnh.gpaw_overlap import (  # noqa: E402
    GPAWTableConfig,
    GPAWTabulatedOverlap,
    GPAWTabulatedS,
    dimer_integrals,
    gpaw_table_config,
)
from fastqmd.nnh.graph import GraphCache  # noqa: E402
from fastqmd.orbitals import orbital_rotation, random_rotation  # noqa: E402
from fastqmd.reference.base import BasisSpec  # noqa: E402
from fastqmd.reference.gpaw_lcao import GPAWLCAOEngine  # noqa: E402
from fastqmd.testing import central_differences  # noqa: E402

S_ATOL = 1e-7  # |S_table − S_GPAW| (measured 1e-8 on Cu₂, 6e-8 on Cu₄)
EIG_ATOL_EV = 1e-4  # eigenvalues up to E_F + 2 eV, engine H with the tabulated S (measured 2e-6)
FD_RTOL = 1e-6
ROT_ATOL = 1e-10


@pytest.fixture(scope="module")
def cu_tables():
    return GPAWTabulatedOverlap(gpaw_table_config(["Cu"]))


def provider_S(tables, atoms, kpts) -> torch.Tensor:
    frame = Frame(symbols=tuple(atoms.get_chemical_symbols()), pbc=(True, True, True), kpoints=np.asarray(kpts),
                  kweights=np.full(len(kpts), 1.0 / len(kpts)))
    prov = GPAWTabulatedS(tables, GraphCache(tables.species, tables.n_orb))
    return prov(frame, torch.tensor(atoms.positions), torch.tensor(atoms.cell.array))


@pytest.fixture(scope="module")
def cu2_sample():
    """The engine on Cu₂ (one atom displaced and moved out of the cell by a lattice vector), 3×2×1 k, h = 0.3 Å."""
    at = bulk("Cu", "fcc", a=3.61).repeat((2, 1, 1))
    at.positions[1] += [0.1, -0.05, 0.07]
    at.positions[0] -= at.cell[1] + np.array([0.05, 0.0, 0.0])
    return at, GPAWLCAOEngine(kpts=(3, 2, 1), grid_spacing_A=0.3).compute(at)


def test_config_reads_gpaw_shells_projectors_and_cutoffs(cu_tables):
    cfg = cu_tables.config
    assert cfg.basis == {"Cu": (0, 2, 0, 2, 1)} and cfg.projectors == {"Cu": (0, 1, 2, 0, 1, 2)}
    # GPAW drops pairs beyond rc_a + rc_b = 9.49 Å (orbitals) and 6.81 Å (projector–orbital); below 1e-8 earlier
    assert 8.5 < cfg.cutoff <= 9.6 and 6.0 < cfg.p_cutoff <= 6.9
    O, Pab, Pba = dimer_integrals("Cu", "Cu", np.array([cfg.cutoff - cfg.taper]), "PBE", "dzp", {})
    assert np.abs(O).max() < 1e-8
    O, Pab, Pba = dimer_integrals("Cu", "Cu", np.array([cfg.p_cutoff - cfg.taper]), "PBE", "dzp", {})
    assert max(np.abs(Pab).max(), np.abs(Pba).max()) < 1e-8


def test_overlap_equals_the_engines_at_every_kpoint(cu_tables, cu2_sample):
    atoms, sample = cu2_sample
    S = provider_S(cu_tables, atoms, sample.kpoints).numpy()
    assert S.shape == sample.S.shape and np.iscomplexobj(S)
    err = np.abs(S - sample.S).max()
    assert err <= S_ATOL, err
    window = sample.fermi_level + 2.0
    for k in range(len(sample.kpoints)):
        eps = scipy.linalg.eigh(sample.H[k], S[k], eigvals_only=True)
        keep = sample.eigenvalues[k] <= window
        assert keep.sum() >= 10
        assert np.abs(eps[keep] - sample.eigenvalues[k][keep]).max() <= EIG_ATOL_EV


def test_gamma_is_real_and_positive_definite(cu_tables):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.1, seed=3)
    S = provider_S(cu_tables, atoms, np.zeros((1, 3)))
    assert S.dtype == torch.float64
    lam = torch.linalg.eigvalsh(S[0])
    assert 0 < float(lam.min()) < 1e-3  # nearly singular, as measured on Cu32 (1.7e-5)


def test_position_and_cell_derivatives_match_central_differences(cu_tables):
    atoms = bulk("Cu", "fcc", a=3.61).repeat((2, 1, 1))
    atoms.rattle(0.1, seed=8)
    kpts = np.array([[0.0, 0.0, 0.0], [0.25, -0.25, 0.5]])
    gc = GraphCache(cu_tables.species, cu_tables.n_orb)
    o_graph = gc.get(atoms.get_chemical_symbols(), True, atoms.positions, atoms.cell.array, cu_tables.cutoff, 0.5)
    p_graph = gc.get(atoms.get_chemical_symbols(), True, atoms.positions, atoms.cell.array, cu_tables.p_cutoff, 0.5)
    W = torch.randn(2, 30, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def L(p, c):
        S = cu_tables(p, c, o_graph, p_graph, kpts)
        return (S.real * W).sum() + (S.imag * W.flip(0)).sum()

    pos, cell = atoms.positions, atoms.cell.array
    p, c = torch.tensor(pos, requires_grad=True), torch.tensor(cell, requires_grad=True)
    gp, gcell = torch.autograd.grad(L(p, c), (p, c))
    fd_p = central_differences(lambda x: L(torch.as_tensor(x), torch.tensor(cell)), pos, 1e-5, [(0, 0), (1, 2)])
    fd_c = central_differences(lambda x: L(torch.tensor(pos), torch.as_tensor(x)), cell, 1e-5, [(0, 0), (1, 2)])
    for which, fd, grad in (("p", fd_p, gp), ("c", fd_c, gcell)):
        for idx in zip(*np.nonzero(~np.isnan(fd))):
            an = float(grad[idx])
            assert abs(an) > 1e-3 and abs(fd[idx] - an) <= FD_RTOL * max(1.0, abs(fd[idx])), (which, idx, fd[idx], an)


def test_gradgradcheck_on_a_small_cell(cu_tables):
    atoms = bulk("Cu", "fcc", a=3.61)
    atoms.cell[0] *= 2.7  # few images: a cheap check of second derivatives
    gc = GraphCache(cu_tables.species, cu_tables.n_orb)
    sym = atoms.get_chemical_symbols()
    og = gc.get(sym, True, atoms.positions, atoms.cell.array, cu_tables.cutoff, 0.5)
    pg = gc.get(sym, True, atoms.positions, atoms.cell.array, cu_tables.p_cutoff, 0.5)
    pos = torch.tensor(atoms.positions + 0.1, requires_grad=True)
    cell = torch.tensor(atoms.cell.array)

    def S(c):
        return cu_tables(pos, c, og, pg, np.zeros((1, 3)))[0, :6, :6]

    c = cell.clone().requires_grad_(True)
    assert torch.autograd.gradgradcheck(S, (c,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_rotation_covariance(cu_tables):
    atoms = bulk("Cu", "fcc", a=3.61).repeat((2, 1, 1))
    atoms.rattle(0.1, seed=10)
    R = random_rotation(5)
    rot = atoms.copy()
    rot.positions = atoms.positions @ R.T
    rot.set_cell(atoms.cell.array @ R.T, scale_atoms=False)
    kpts = np.array([[0.0, 0.0, 0.0], [0.2, 0.1, -0.3]])
    S, Sr = provider_S(cu_tables, atoms, kpts).numpy(), provider_S(cu_tables, rot, kpts).numpy()
    D = orbital_rotation(BasisSpec(cu_tables.config.basis), atoms.get_chemical_symbols(), R)
    assert np.abs(Sr - D @ S @ D.T).max() <= ROT_ATOL
    assert np.abs(Sr - S).max() > 0.1


def test_state_dict_round_trip_with_weights_only(cu_tables):
    buf = io.BytesIO()
    torch.save({"config": cu_tables.config.model_dump_json(), "state": cu_tables.state_dict()}, buf)
    buf.seek(0)
    obj = torch.load(buf, weights_only=True)
    fresh = GPAWTabulatedOverlap(GPAWTableConfig.model_validate_json(obj["config"]), build=False)
    fresh.load_state_dict(obj["state"])
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=2)
    assert torch.equal(provider_S(fresh, atoms, np.zeros((1, 3))), provider_S(cu_tables, atoms, np.zeros((1, 3))))


def test_training_on_a_gpaw_dataset_uses_the_tables(tmp_path, cu2_sample):
    """overlap "auto" on gpaw-lcao data → GPAW tables: no S pretraining, L_S ≡ 0, the model file rebuilds the S."""
    import json

    from fastqmd.data.store import Header, atomic_write, write_header, write_sample
    from fastqmd.nnh.checkpoint import load_energy_model
    from fastqmd.nnh.train import TrainConfig, train

    atoms, sample = cu2_sample
    eng = GPAWLCAOEngine(kpts=(3, 2, 1), grid_spacing_A=0.3)

    def fill(f):
        write_header(f, Header(eng.name, eng.settings))
        for i in range(2):
            write_sample(f, i, sample, "test-cu2", 0.9)

    atomic_write(tmp_path / "cu.h5", fill)
    tiny = {"cutoff": 3.0, "hidden_irreps": "8x0e+4x1o+4x1e+2x2e+2x2o+2x3o+2x3e+2x4e", "n_layers": 1,
            "radial_hidden": 8, "n_radial": 4, "n_scalars_embed": 8, "repulsion_cutoff": 2.5, "lmax": 4}
    cfg = TrainConfig(dataset=tmp_path / "cu.h5", output=tmp_path / "run", split={"val_fraction": 0,
                      "test_fraction": 0}, model=tiny, max_steps=2, batch_size=1, ema_decay=0.0, dtype="float64",
                      progress=False, checkpoint_every=100, loss={"h_only_steps": 1, "force_ramp_steps": 1})
    train(cfg, overwrite=True)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if "loss" in x]  # the H-only step, then the first step with forces (E_rep fitted)
    assert len(steps) == 2 and all(x["L_S"] == 0.0 and np.isfinite(x["loss"]) for x in steps)
    assert any("repulsion_fit" in x for x in lines)
    model = load_energy_model(tmp_path / "run" / "model.pt")
    assert model.config.overlap.kind == "gpaw-table"
    S = provider_S(model.s, atoms, sample.kpoints).numpy()
    assert np.abs(S - sample.S).max() <= S_ATOL
