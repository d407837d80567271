"""`fastqmd mor hyper BASIS -o FILE` and `potential: {kind: mor, basis, hyper}` in `fastqmd md`: the file built from
a basis' own training geometries drives MD with the grid-free step (energies equal MORCalculator(basis, hyper)); a
hyper-reduction of another basis is refused in one line. Coarse grid: 20³, h = 0.5 Bohr, filtered pseudopotentials."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.io import read, write

from fastqmd.mor.snapshots import Snapshots, SnapshotsConfig, generate_snapshots
from fastqmd.testing import cli_error_line, tree_snapshot
from fastqmd.units import BOHR_ANG

SOLVER = {"grid_points": 20, "box_bohr": 10.0, "fd_order": 4, "filter_pseudo": True, "e_tol_Ha": 1e-10,
          "rho_tol": 1e-8, "n_empty": 2}
GRID = {"bond_factors": [0.97, 1.03], "angle_offsets_deg": [-4.0, 4.0]}


def run_cli(argv, monkeypatch):
    from fastqmd.cli import main

    monkeypatch.setattr(sys, "argv", ["fastqmd", *argv])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code in (0, None)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hyper")
    cfg = SnapshotsConfig.model_validate({"sampling": {"molecule": "water", "grid": GRID, "training": GRID},
                                          "solver": SOLVER, "output": str(tmp / "snap.h5"), "chains": 1,
                                          "workers": 0})
    generate_snapshots(cfg, progress=False)
    mp = pytest.MonkeyPatch()
    try:
        run_cli(["mor", "basis", str(tmp / "snap.h5"), "-o", str(tmp / "basis.h5"), "--epsilon", "1e-3"], mp)
        run_cli(["mor", "hyper", str(tmp / "basis.h5"), "-o", str(tmp / "hyper.h5"), "--table-margin", "0.2"], mp)
        run_cli(["mor", "basis", str(tmp / "snap.h5"), "-o", str(tmp / "other.h5"), "--epsilon", "1e-3",
                 "--states", "all"], mp)
    finally:
        mp.undo()
    return tmp


def test_md_with_the_hyper_file_runs_the_grid_free_step(built, tmp_path, monkeypatch):
    from fastqmd.mor.calculator import MORCalculator

    snap = Snapshots(built / "snap.h5")
    Y = snap.records[1]["positions"] * BOHR_ANG  # a training geometry: inside the tables
    write(tmp_path / "w.extxyz", Atoms("OHH", positions=Y))
    cfg = {"structure": {"kind": "file", "path": str(tmp_path / "w.extxyz")},
           "potential": {"kind": "mor", "basis": str(built / "basis.h5"), "hyper": str(built / "hyper.h5")},
           "ensemble": {"kind": "nve"}, "temperature_K": 50, "timestep_fs": 0.25, "steps": 3, "seed": 0,
           "pinned": [0], "output": {"dir": str(tmp_path / "run"), "progress": False}}
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(cfg))
    run_cli(["md", str(tmp_path / "md.yaml")], monkeypatch)
    frames = read(tmp_path / "run" / "trajectory.extxyz", ":")
    assert len(frames) == 4
    for a in (frames[0], frames[-1]):
        b = Atoms("OHH", positions=a.positions)
        b.calc = MORCalculator(basis=str(built / "basis.h5"), hyper=str(built / "hyper.h5"), warm_start=False)
        E = b.get_potential_energy()
        assert b.calc.results["mor_hyper"] is True
        assert E == pytest.approx(a.get_potential_energy(), abs=1e-7)
        assert np.allclose(b.get_forces(), a.get_forces(), atol=2e-3)  # eV/Å: cold vs warm start at |F′(0)| < 1e-9 Ha (4e-4 seen)
        exact = Atoms("OHH", positions=a.positions)
        exact.calc = MORCalculator(basis=str(built / "basis.h5"))
        assert abs(exact.get_potential_energy() - E) < 5e-3  # eV; hyper vs exact reduced model, 1.6e-3 measured


def test_a_hyper_file_of_another_basis_is_refused(built, tmp_path, monkeypatch, capsys):
    write(tmp_path / "w.extxyz", Atoms("OHH", positions=[[0, 0, 0], [0.6, 0.77, 0], [0.6, -0.77, 0]]))
    cfg = {"structure": {"kind": "file", "path": str(tmp_path / "w.extxyz")},
           "potential": {"kind": "mor", "basis": str(built / "other.h5"), "hyper": str(built / "hyper.h5")},
           "ensemble": {"kind": "nve"}, "temperature_K": 50, "timestep_fs": 0.25, "steps": 2,
           "output": {"dir": str(tmp_path / "run")}}
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(cfg))
    before = tree_snapshot(tmp_path)
    line = cli_error_line(["md", str(tmp_path / "md.yaml")], 2, monkeypatch, capsys)
    assert "hyper-reduction" in line and "basis" in line
    assert tree_snapshot(tmp_path) == before


def test_same_rank_and_grid_but_other_vectors_is_refused(built):
    from dataclasses import replace

    from fastqmd.errors import InputError
    from fastqmd.mor.basis import load_basis
    from fastqmd.mor.calculator import load_hyper_for

    basis = load_basis(built / "basis.h5")
    assert load_hyper_for(str(built / "hyper.h5"), basis).k == basis.rank
    V = basis.vectors.copy()
    V[[0, 1]] = V[[1, 0]]  # still orthonormal, same span and rank: another basis all the same
    with pytest.raises(InputError, match="made from another basis"):
        load_hyper_for(str(built / "hyper.h5"), replace(basis, vectors=V))


def test_hyper_output_exists_is_refused(built, tmp_path, monkeypatch, capsys):
    (tmp_path / "h.h5").write_text("old")
    before = tree_snapshot(tmp_path)
    line = cli_error_line(["mor", "hyper", str(built / "basis.h5"), "-o", str(tmp_path / "h.h5")], 2, monkeypatch,
                          capsys)
    assert "exists; pass --overwrite" in line and tree_snapshot(tmp_path) == before


def test_accuracy_map_of_the_grid_free_step(built, tmp_path, monkeypatch):
    """`fastqmd mor test --hyper`: the map of the hyper-reduced step at the basis' rank (no sweep); on the training
    geometries it stays within the hyper-vs-exact error of the step (1.6 meV ≈ 6e-5 Ha measured at 20³)."""
    import json

    out = tmp_path / "map.json"
    run_cli(["mor", "test", str(built / "basis.h5"), str(built / "snap.h5"), "-o", str(out), "--hyper",
             str(built / "hyper.h5"), "--quiet"], monkeypatch)
    m = json.loads(out.read_text())
    assert m["hyper"]["geometries_outside_tables"] == 0 and m["reproductive"]["n"] == 6
    assert [r["rank"] for r in m["rank_sweep"]] == [m["rank"]]
    assert 0 < m["reproductive"]["max_energy_error_Ha"] < 5e-4
