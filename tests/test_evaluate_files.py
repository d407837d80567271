"""`fastqmd evaluate` on a user's own labelled file as well as on a dataset (fastqmd.evaluation):

- an extxyz exported from a dataset scores the same energy/force errors as the dataset itself (the export rounds
  positions to 1e-8 Å, so the metrics agree to ~1e-7 relative, not bit for bit);
- a model that predicts reference + constant has raw energy MAE = |constant| and offset-removed MAE 0; with
  reference + Σ_Z n_Z μ_Z on varying compositions the per-element fit recovers μ and removes it, the constant
  offset does not;
- a universal MLIP spec (sevenn:7net-0) on an extxyz equals SevenNet's own ASE calculator on the same frames;
- the streamed per-orbital-pair |ΔH| statistics equal the all-in-memory values of the old implementation.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from fastqmd.potential import Results
from fastqmd.testing import WATER_A, make_water_dataset

# the export writes positions with 8 decimals (1e-8 Å): E and F of a smooth model move by ~|F|·1e-8 eV
EXPORT_RTOL = 1e-6
OFFSET_ATOL_EV = 1e-10  # float64 round-off of a mean over a few structures
SEVENN_FORCE_ATOL = 1e-6  # same network, same float32 input: equal up to summation order


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "fastqmd.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def water(tmp_path_factory):
    """An 8-sample GFN2 water dataset, its extxyz export and an untrained NNH model in the dataset's basis."""
    from fastqmd.data.store import Dataset
    from fastqmd.nnh.checkpoint import save_model
    from fastqmd.nnh.energy import EnergyModel, EnergyModelConfig
    from fastqmd.nnh.model import NNHConfig
    from fastqmd.nnh.overlap import OverlapConfig
    from fastqmd.nnh.repulsion import RepulsionConfig

    root = tmp_path_factory.mktemp("water")
    h5 = make_water_dataset(root / "water.h5")
    ds = Dataset(h5)
    basis, valence = dict(ds.basis.shells), dict(ds.valence_electrons)
    ds.close()
    torch.manual_seed(0)
    h = NNHConfig(basis=basis, cutoff=3.0, hidden_irreps="8x0e+4x1o+4x1e+2x2e", n_layers=1, radial_hidden=8,
                  n_scalars_embed=4, n_radial=4, avg_num_neighbors=2, dtype="float64")
    cfg = EnergyModelConfig(h=h, overlap={"kind": "learned", "s": OverlapConfig(basis=basis, cutoff=3.0,
                                                                                 radial_hidden=8, dtype="float64")},
                            electronic_temperature_K=300.0,
                            repulsion=RepulsionConfig(species=tuple(sorted(basis)), cutoff=2.5, dtype="float64"),
                            valence_electrons={k: float(v) for k, v in valence.items()})
    model = root / "model.pt"
    save_model(EnergyModel(cfg), model)
    r = cli("dataset", "export", str(h5), "-o", str(root / "water.extxyz"))
    assert r.returncode == 0, r.stderr
    return h5, root / "water.extxyz", model


def test_exported_extxyz_scores_as_the_dataset(water, tmp_path):
    h5, xyz, model = water
    for data, out in ((h5, "ds"), (xyz, "file")):
        r = cli("evaluate", str(model), str(data), "-o", str(tmp_path / out))
        assert r.returncode == 0, r.stderr
    a = json.loads((tmp_path / "ds" / "evaluation.json").read_text())
    b = json.loads((tmp_path / "file" / "evaluation.json").read_text())
    assert a["data_format"] == "fastqmd-dataset"
    assert b["data_format"] == "ase-file" and "H_mae_eV" not in b and "H_mae_eV" in a
    assert a["n_samples"] == b["n_samples"] == 8
    for key in ("energy_eV", "energy_per_atom_eV", "forces_eV_per_A"):
        for s in ("mae", "rmse"):
            assert np.isclose(a[key][s], b[key][s], rtol=EXPORT_RTOL, atol=0), (key, s, a[key], b[key])
    for key in ("energy_offset_constant", "energy_offset"):
        assert np.isclose(a[key]["energy_eV"]["mae"], b[key]["energy_eV"]["mae"], rtol=EXPORT_RTOL)
    ea = np.array([r["energy_error_eV"] for r in a["per_structure"]])
    eb = np.array([r["energy_error_eV"] for r in b["per_structure"]])
    fa = np.array([r["force_mae_meV_per_A"] for r in a["per_structure"]])
    fb = np.array([r["force_mae_meV_per_A"] for r in b["per_structure"]])
    np.testing.assert_allclose(eb, ea, rtol=EXPORT_RTOL)
    np.testing.assert_allclose(fb, fa, rtol=EXPORT_RTOL)
    assert a["energy_offset_used"] == "constant"  # one composition: per-element = constant
    assert np.isclose(a["energy_offset"]["energy_eV"]["mae"], a["energy_offset_constant"]["energy_eV"]["mae"],
                      rtol=1e-9)


class ShiftedReference:
    """A 'model' that returns each structure's reference forces and reference energy + shift(numbers)."""

    capabilities = frozenset()

    def __init__(self, frames, shift):
        self.frames, self.shift = frames, shift

    def compute(self, system):
        x = system.positions.numpy()
        a = next(f for f in self.frames if f.positions.shape == x.shape and np.allclose(f.positions, x, atol=1e-9))
        E = a.get_potential_energy() + self.shift(a.numbers)
        return Results(torch.tensor(E, dtype=torch.float64), torch.as_tensor(a.get_forces()))


def labelled_file(path: Path, frames) -> Path:
    rng = np.random.default_rng(1)
    for a in frames:
        a.calc = SinglePointCalculator(a, energy=float(rng.normal() * 3), forces=rng.normal(size=(len(a), 3)))
    write(path, frames, format="extxyz")
    return path


def test_constant_offset_is_removed(tmp_path):
    from fastqmd.evaluation import evaluate_potential

    rng = np.random.default_rng(0)
    frames = [Atoms("OHH", positions=WATER_A + 0.05 * rng.normal(size=(3, 3))) for _ in range(5)]
    path = labelled_file(tmp_path / "w.extxyz", frames)
    c = 0.37  # eV per structure
    m = evaluate_potential(ShiftedReference(read(path, ":"), lambda z: c), path)
    assert m["energy_offset_used"] == "constant"
    assert np.isclose(m["energy_eV"]["mae"], c, rtol=1e-12)
    assert np.isclose(m["energy_per_atom_eV"]["mae"], c / 3, rtol=1e-12)
    assert np.isclose(m["energy_offset_constant"]["offset_eV"], c, rtol=1e-12)
    assert m["energy_offset_constant"]["energy_eV"]["mae"] < OFFSET_ATOL_EV
    assert m["energy_mae_meV_per_atom_offset"] < 1e3 * OFFSET_ATOL_EV
    assert m["forces_eV_per_A"]["mae"] == 0.0
    assert all(abs(r["energy_error_eV"] - c) < 1e-12 for r in m["per_structure"])


def test_per_element_offset_is_recovered_where_compositions_vary(tmp_path):
    from ase.build import molecule

    from fastqmd.evaluation import evaluate_potential

    frames = [molecule(n) for n in ("H2O", "CH4", "H2", "CO2", "C2H6", "H2O2")]
    path = labelled_file(tmp_path / "mix.extxyz", frames)
    mu = {1: -0.2, 6: 1.3, 8: 0.45}  # eV per atom of H, C, O
    m = evaluate_potential(ShiftedReference(read(path, ":"), lambda z: sum(mu[int(x)] for x in z)), path)
    assert m["energy_offset_used"] == "per_element" and m["energy_offset"]["rank"] == 3
    fitted = m["energy_offset"]["per_element_eV"]  # E_ref ≈ E_model + n·μ_fit: μ_fit = −μ
    for el, z in (("H", 1), ("C", 6), ("O", 8)):
        assert np.isclose(fitted[el], -mu[z], atol=1e-10)
    assert m["energy_offset"]["energy_eV"]["mae"] < OFFSET_ATOL_EV
    assert m["energy_offset_constant"]["energy_eV"]["mae"] > 0.3  # one constant cannot absorb it
    assert np.isclose(m["energy_mae_meV_per_atom_offset"], 1e3 * m["energy_offset"]["energy_per_atom_eV"]["mae"])


def test_universal_spec_on_an_extxyz_equals_its_own_calculator(tmp_path):
    pytest.importorskip("sevenn")
    from sevenn.calculator import SevenNetCalculator

    rng = np.random.default_rng(3)
    frames = [Atoms("OHH", positions=WATER_A + 0.05 * rng.normal(size=(3, 3))) for _ in range(3)]
    path = labelled_file(tmp_path / "w3.extxyz", frames)
    r = cli("evaluate", "sevenn:7net-0", str(path), "-o", str(tmp_path / "ev"))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert m["model"] == "sevenn:7net-0" and m["n_samples"] == 3 and m["data_format"] == "ase-file"
    calc = SevenNetCalculator("7net-0", device="cpu")
    dE, dF = [], []
    for a in read(path, ":"):
        E_ref, F_ref = a.get_potential_energy(), a.get_forces()
        b = a.copy()
        b.calc = calc
        dE.append(b.get_potential_energy() - E_ref)
        dF.append(b.get_forces() - F_ref)
    dF = np.concatenate(dF).ravel()
    assert np.isclose(m["forces_eV_per_A"]["mae"], np.abs(dF).mean(), atol=SEVENN_FORCE_ATOL)
    assert np.isclose(m["energy_eV"]["mae"], np.abs(dE).mean(), atol=1e-5)
    dE = np.array(dE)
    assert np.isclose(m["energy_offset_constant"]["energy_eV"]["mae"], np.abs(dE - dE.mean()).mean(), atol=1e-5)


def old_pair_statistics(model, targets):
    """The pre-streaming implementation: every |ΔH| kept, pair blocks summed atom pair by atom pair."""
    from fastqmd.nnh.evaluate import predict

    n_orb = model.h.layout.n_orbitals
    heat_sum, heat_n, abs_h = {}, {}, []
    for t in targets:
        _, _, H, _ = predict(model, t)
        d = np.abs(H - t.H.numpy())
        abs_h.append(d.reshape(-1))
        off = np.cumsum([0] + [n_orb[s] for s in t.frame.symbols])
        dm = d.mean(0)
        for a, sa in enumerate(t.frame.symbols):
            for b, sb in enumerate(t.frame.symbols):
                key = f"{'onsite' if a == b else 'offsite'} {sa}-{sb}"
                heat_sum[key] = heat_sum.get(key, 0) + dm[off[a]:off[a + 1], off[b]:off[b + 1]]
                heat_n[key] = heat_n.get(key, 0) + 1
    return float(np.concatenate(abs_h).mean()), {k: heat_sum[k] / heat_n[k] for k in heat_sum}


def test_streamed_pair_statistics_equal_the_in_memory_ones(water):
    from fastqmd.nnh.checkpoint import load_energy_model
    from fastqmd.nnh.evaluate import evaluate
    from fastqmd.nnh.targets import load_targets

    h5, _, path = water
    model = load_energy_model(path)
    targets = load_targets(h5)
    m, arrays = evaluate(model, targets)
    h_old, heat_old = old_pair_statistics(model, targets)
    assert np.isclose(m["H_mae_eV"], h_old, rtol=1e-12)
    assert set(arrays["heat"]) == set(heat_old)
    for k in heat_old:
        np.testing.assert_allclose(arrays["heat"][k], heat_old[k], rtol=1e-12, atol=0)


def test_pair_block_sums_with_several_atoms_per_species():
    """Two waters in one structure (O-O and H-H off-site blocks, several on-site blocks) against the atom loop."""
    from fastqmd.nnh.evaluate import pair_block_sums

    symbols = ("O", "H", "H", "O", "H", "H")
    n_orb = {"O": 4, "H": 1}
    nao = sum(n_orb[s] for s in symbols)
    d = np.random.default_rng(0).random((nao, nao))
    got = pair_block_sums(d, symbols, n_orb)
    off = np.cumsum([0] + [n_orb[s] for s in symbols])
    want: dict = {}
    for a, sa in enumerate(symbols):
        for b, sb in enumerate(symbols):
            key = f"{'onsite' if a == b else 'offsite'} {sa}-{sb}"
            s, n = want.get(key, (0, 0))
            want[key] = (s + d[off[a]:off[a + 1], off[b]:off[b + 1]], n + 1)
    assert set(got) == set(want)
    for k, (s, n) in want.items():
        assert got[k][1] == n
        np.testing.assert_allclose(got[k][0], s, rtol=1e-14)


def test_orbital_energies_in_a_file_score_as_the_dataset_levels(water, tmp_path):
    """info["orbital_energies"] (Γ levels; occupations from the model's electron count) gives the dataset's
    eigenvalue MAE: all, occupied and the ±1 eV window."""
    from fastqmd.data.store import Dataset

    h5, xyz, model = water
    frames = read(xyz, ":")
    ds = Dataset(h5)
    for a, k in zip(frames, ds.keys("ok")):
        a.info["orbital_energies"] = ds.read(k, ("eigenvalues",))["eigenvalues"][0]
    ds.close()
    write(tmp_path / "levels.extxyz", frames, format="extxyz")
    for data, out in ((h5, "ds"), (tmp_path / "levels.extxyz", "file")):
        r = cli("evaluate", str(model), str(data), "-o", str(tmp_path / out))
        assert r.returncode == 0, r.stderr
    a = json.loads((tmp_path / "ds" / "evaluation.json").read_text())["eigenvalue_mae_eV"]
    b = json.loads((tmp_path / "file" / "evaluation.json").read_text())["eigenvalue_mae_eV"]
    assert set(a) == set(b) and a["all"] > 0
    for k in a:
        assert (a[k] is None and b[k] is None) or np.isclose(a[k], b[k], rtol=EXPORT_RTOL), (k, a[k], b[k])


def test_universal_spec_on_a_dataset_equals_evaluate_universal(water, tmp_path):
    """The shared scorer and `fastqmd.mlip.universal.evaluate_universal` (same loaded SevenNet-0) agree on a
    dataset: raw and per-element-offset energy errors, force errors."""
    pytest.importorskip("sevenn")
    from fastqmd.evaluation import evaluate_potential
    from fastqmd.mlip.universal import evaluate_universal, load_universal

    h5, _, _ = water
    pot = load_universal("sevenn", "7net-0")
    a = evaluate_potential(pot, h5, covers=pot.check_numbers)
    b = evaluate_universal(pot, h5)
    assert a["n_samples"] == b["n_samples"] == 8
    for key in ("energy_eV", "energy_per_atom_eV", "forces_eV_per_A"):
        for s in ("mae", "rmse"):
            assert np.isclose(a[key][s], b[key][s], rtol=1e-9), (key, s)
    assert np.isclose(a["energy_offset"]["energy_eV"]["mae"], b["energy_offset"]["energy_eV"]["mae"], rtol=1e-6)
    assert a["energy_offset"]["per_element_eV"].keys() == b["energy_offset"]["per_element_eV"].keys()
