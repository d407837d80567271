"""`fastqmd mor test`: the accuracy map of a basis against a Hi-Fi test set. Coarse grid (20³, h = 0.5 Bohr,
filtered pseudopotentials): a basis from 6 training geometries, a test set of 18 (6 of them reproductive).
Checked: the error definitions, the reproductive/predictive split, errors that fall with the rank, resume after an
interruption (nothing solved twice, a cut journal line redone), and bad input (one line, exit 2, nothing written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from fastqmd.errors import InputError
from fastqmd.mor.accuracy import Journal, accuracy_map, geometry_error, split_summary, summarize, sweep_ranks
from fastqmd.mor.basis import basis_from_snapshots, load_basis, rank_for, save_basis
from fastqmd.mor.snapshots import Snapshots, SnapshotsConfig, generate_snapshots
from fastqmd.testing import cli_error_line, tree_snapshot

SOLVER = {"grid_points": 20, "box_bohr": 10.0, "fd_order": 4, "filter_pseudo": True, "e_tol_Ha": 1e-10,
          "rho_tol": 1e-8}
TRAIN = {"bond_factors": [0.95, 1.05], "angle_offsets_deg": [-5.0, 5.0]}


def snapshots(path: Path, grid: dict, store_orbitals: bool, solver=SOLVER) -> Path:
    cfg = SnapshotsConfig.model_validate({"sampling": {"molecule": "water", "grid": grid, "training": TRAIN},
                                          "solver": solver, "output": str(path), "chains": 1, "workers": 0,
                                          "store_orbitals": store_orbitals})
    generate_snapshots(cfg, progress=False)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("acc")
    train = snapshots(tmp / "train.h5", TRAIN, True)
    test = snapshots(tmp / "test.h5", {"bond_factors": [0.95, 1.0, 1.05], "angle_offsets_deg": [-5.0, 0.0, 5.0]},
                     False)
    basis = save_basis(tmp / "basis.h5", basis_from_snapshots(train, epsilon=1e-6))
    return tmp, basis, test


def test_error_definitions():
    F_hifi = np.array([[9.0, 9.0, 9.0], [0.1, 0.2, 0.0], [0.3, -0.1, 0.0]])
    F_mor = np.array([[0.0, 0.0, 0.0], [0.1, 0.2 + 3e-4, 0.0], [0.3 + 3e-4, -0.1 - 4e-4, 0.0]])
    e = geometry_error(7, False, -17.2, -17.19995, F_hifi, F_mor, pinned=0)
    assert e.energy_error == pytest.approx(5e-5, abs=1e-12)
    assert e.force_errors == pytest.approx((3e-4, 5e-4), abs=1e-12)  # the pinned atom's 15.6 left out
    s = split_summary([e, geometry_error(1, True, 0.0, 2e-4, F_hifi, F_hifi, 0)])
    assert s["predictive"]["n"] == s["reproductive"]["n"] == 1
    assert s["predictive"]["max_force_error_Ha_per_Bohr"] == pytest.approx(5e-4)
    assert s["predictive"]["median_force_error_Ha_per_Bohr"] == pytest.approx(4e-4)
    assert s["reproductive"]["fraction_energy_within_target"] == 0.0  # 2e-4 Ha > 1e-4
    assert summarize([]) == {"n": 0}


def test_map_splits_the_test_set_and_errors_fall_with_the_rank(data, monkeypatch, capsys):
    tmp, basis_path, test = data
    out = tmp / "map.json"
    from fastqmd.cli import main
    import sys

    monkeypatch.setattr(sys, "argv", ["fastqmd", "mor", "test", str(basis_path), str(test), "-o", str(out),
                                      "--sweep", "3e-2,1e-3,1e-6", "--quiet"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0
    m = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert not (tmp / "map.json.journal.jsonl").exists()
    assert m["n_geometries"] == 18 and m["reproductive"]["n"] == 6 and m["predictive"]["n"] == 12
    basis = load_basis(basis_path)
    assert m["rank"] == basis.rank == rank_for(basis.singular_values, 1e-6, "sigma")
    for key in ("max_force_error_Ha_per_Bohr", "median_force_error_Ha_per_Bohr", "max_energy_error_Ha"):
        assert np.isfinite(m["predictive"][key]) and np.isfinite(m["reproductive"][key])
    ranks = [r["rank"] for r in m["rank_sweep"]]
    assert ranks == sorted(ranks) and len(ranks) == 3 and ranks[-1] == m["rank"]
    low, high = m["rank_sweep"][0]["predictive"], m["rank_sweep"][-1]["predictive"]
    assert high["max_force_error_Ha_per_Bohr"] < 0.5 * low["max_force_error_Ha_per_Bohr"]
    assert high["max_energy_error_Ha"] < 0.1 * low["max_energy_error_Ha"]
    # the full basis holds every training orbital: the reproductive geometries are nearly exact, and better than
    # the predictive ones
    rep = m["reproductive"]
    assert rep["max_energy_error_Ha"] < 1e-6 and rep["max_force_error_Ha_per_Bohr"] < 1e-4
    assert rep["max_force_error_Ha_per_Bohr"] < m["predictive"]["max_force_error_Ha_per_Bohr"]
    assert len(m["geometries"]) == 18 and all(len(g["force_errors_Ha_per_Bohr"]) == 2 for g in m["geometries"])
    # MOR is variational in its subspace: E_MOR ≥ E_HiFi − (SCF tolerances) at every geometry
    assert all(g["energy_error_Ha"] >= 0 for g in m["geometries"])


def test_resume_solves_nothing_twice_and_redoes_a_cut_line(data):
    tmp, basis_path, test = data
    basis, ts = load_basis(basis_path), Snapshots(test)
    ref = accuracy_map(basis, ts, tmp / "ref.json", epsilons=())
    out = tmp / "resumed.json"

    class Stop(Exception):
        pass

    seen = []

    def killer(k, e, i, n):
        seen.append(e.index)
        if len(seen) == 7:
            raise Stop

    with pytest.raises(Stop):
        accuracy_map(basis, ts, out, epsilons=(), progress=killer)
    journal = out.with_name(out.name + ".journal.jsonl")
    lines = journal.read_text().splitlines()
    assert len(lines) == 1 + 7
    journal.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])  # kill -9 mid-write
    again = []
    res = accuracy_map(basis, ts, out, epsilons=(), progress=lambda k, e, i, n: again.append(e.index))
    assert sorted(seen[:6] + again) == sorted(int(i) for i in ts.order)  # each geometry solved once, the cut one redone
    a = {g["index"]: g for g in ref["geometries"]}
    for g in res["geometries"]:
        assert g["energy_error_Ha"] == pytest.approx(a[g["index"]]["energy_error_Ha"], abs=1e-8)
        assert np.allclose(g["force_errors_Ha_per_Bohr"], a[g["index"]]["force_errors_Ha_per_Bohr"], atol=1e-5)  # cold vs warm start: 2e-6 seen


def test_headline_by_epsilon_and_a_subsampled_sweep(data):
    tmp, basis_path, test = data
    basis, ts = load_basis(basis_path), Snapshots(test)
    m = accuracy_map(basis, ts, tmp / "sub.json", epsilons=(3e-2,), epsilon=1e-3, sweep_every=3)
    k = rank_for(basis.singular_values, 1e-3, "sigma")
    assert m["rank"] == k < basis.rank and m["epsilon"] == 1e-3
    assert m["reproductive"]["n"] + m["predictive"]["n"] == 18  # the headline on every geometry
    assert [r["rank"] for r in m["rank_sweep"]] == [rank_for(basis.singular_values, 3e-2, "sigma"), k, basis.rank]
    for r in m["rank_sweep"]:  # the sweep on the same 6 of them
        assert r["reproductive"]["n"] + r["predictive"]["n"] == 6


def test_sweep_ranks_keeps_what_the_basis_holds(data):
    basis = load_basis(data[1]).truncated(10)
    basis = type(basis)(**{**basis.__dict__, "epsilon": 1e-3})
    ks = sweep_ranks(basis, (1e-1, 1e-3, 1e-8))
    assert [k for _, k in ks] == sorted({rank_for(basis.singular_values, 1e-1, "sigma"), 10})


def test_a_foreign_journal_is_refused(data, tmp_path):
    _, basis_path, test = data
    (tmp_path / "m.json.journal.jsonl").write_text('{"identity": {"basis": "other"}}\n')
    with pytest.raises(InputError, match="another accuracy run"):
        Journal(tmp_path / "m.json", {"basis": "mine"}, overwrite=False)


@pytest.mark.parametrize("case", ["other-grid", "corrupt-testset", "output-exists", "bad-sweep", "output-is-input",
                                  "epsilon-beyond-basis"])
def test_bad_input_one_line_exit_2_nothing_written(case, data, tmp_path, monkeypatch, capsys):
    src, basis_path, test = data
    basis = shutil.copy(basis_path, tmp_path / "basis.h5")
    testset = shutil.copy(test, tmp_path / "test.h5")
    args = [str(basis), str(testset), "-o", str(tmp_path / "map.json")]
    fragment = {"other-grid": "does not fit", "corrupt-testset": "cannot read the snapshot file",
                "output-exists": "exists; pass --overwrite", "bad-sweep": "--sweep",
                "output-is-input": "is the input", "epsilon-beyond-basis": "rebuild it with a smaller --epsilon"}[case]
    if case == "other-grid":
        other = snapshots(tmp_path / "other.h5", {"bond_factors": [1.0], "angle_offsets_deg": [0.0]}, False,
                          {**SOLVER, "grid_points": 16})
        args[1] = str(other)
    elif case == "corrupt-testset":
        with h5py.File(testset, "r+") as f:
            del f["order"]
    elif case == "output-exists":
        (tmp_path / "map.json").write_text("{}")
    elif case == "bad-sweep":
        args += ["--sweep", "1e-2,two"]
    elif case == "output-is-input":
        args[3] = str(testset)
    elif case == "epsilon-beyond-basis":  # a rank-5 basis asked for the rank of ε = 1e-6
        save_basis(tmp_path / "basis.h5", basis_from_snapshots(src / "train.h5", epsilon=3e-2))
        args += ["--epsilon", "1e-6"]
    before = tree_snapshot(tmp_path)
    line = cli_error_line(["mor", "test", *args], 2, monkeypatch, capsys)
    assert fragment in line
    assert tree_snapshot(tmp_path) == before
