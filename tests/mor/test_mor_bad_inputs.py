"""Bad input to `fastqmd mor snapshots` / `fastqmd mor basis`, in the style of tests/test_bad_inputs.py: the real CLI
(`fastqmd.cli.main`, in-process) ends with one stderr line `error: …`, exit code 2, no traceback, and every file of
the working folder unchanged. One row per case: (id, setup(tmp, shared) -> argv, expected fragment)."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import pytest
import yaml

from fastqmd.testing import cli_error_line, tree_snapshot


def snap_cfg(out: str = "snap.h5", **kw) -> dict:
    d = {"sampling": {"molecule": "water", "grid": {"bond_factors": [1.0], "angle_offsets_deg": [0.0]}},
         "solver": {"grid_points": 16, "box_bohr": 10.0, "filter_pseudo": True}, "output": out}
    d.update(kw)
    return d


def yml(tmp: Path, data: dict, name: str = "c.yaml") -> str:
    (tmp / name).write_text(yaml.safe_dump(data))
    return str(tmp / name)


class Shared:
    """Slow inputs made once: a one-geometry snapshot file with orbitals and one without."""

    def __init__(self, root: Path):
        self.root, self._made = root, {}

    def snapshots(self, store_orbitals: bool = True) -> Path:
        name = f"snap_{store_orbitals}.h5"
        if name not in self._made:
            from fastqmd.mor.snapshots import SnapshotsConfig, generate_snapshots

            cfg = SnapshotsConfig.model_validate(snap_cfg(str(self.root / name), store_orbitals=store_orbitals))
            generate_snapshots(cfg, progress=False)
            self._made[name] = self.root / name
        return self._made[name]

    def basis(self) -> Path:
        """A basis from the one-geometry snapshots (16³ grid)."""
        if "basis" not in self._made:
            from fastqmd.mor.basis import basis_from_snapshots, save_basis

            self._made["basis"] = save_basis(self.root / "basis.h5", basis_from_snapshots(self.snapshots(), 1e-4))
        return self._made["basis"]


def mor_md(tmp: Path, basis: str, symbols: str = "OHH", **potential) -> list[str]:
    """`fastqmd md` of a 3-atom molecule on a MOR basis (the structure written to s.extxyz)."""
    from ase import Atoms
    from ase.io import write

    write(tmp / "s.extxyz", Atoms(symbols, positions=[[0, 0, 0], [0.6, 0.77, 0], [0.6, -0.77, 0]]))
    cfg = {"structure": {"kind": "file", "path": str(tmp / "s.extxyz")},
           "potential": {"kind": "mor", "basis": basis, **potential}, "ensemble": {"kind": "nve"},
           "temperature_K": 300, "timestep_fs": 0.5, "steps": 2, "output": {"dir": str(tmp / "run")}}
    return ["md", yml(tmp, cfg)]


def copy(tmp: Path, src: Path, name: str = "s.h5") -> str:
    shutil.copy(src, tmp / name)
    return str(tmp / name)


def damaged(tmp: Path, shared: Shared, edit) -> str:
    p = copy(tmp, shared.snapshots())
    with h5py.File(p, "r+") as f:
        edit(f)
    return p


def foreign_journal(tmp: Path) -> list[str]:
    (tmp / "snap.h5.parts").mkdir()
    (tmp / "snap.h5.parts" / "manifest.json").write_text('{"other": 1}')
    return ["mor", "snapshots", yml(tmp, snap_cfg())]


HELD: list = []  # output locks held by a "running" generation during a case


def locked_output(tmp: Path) -> list[str]:
    """Another run holds the output's lock (flock on a separate open file: refused like a second process)."""
    from fastqmd.data.generate import output_lock

    cm = output_lock(tmp / "snap.h5")
    cm.__enter__()
    HELD.append(cm)
    return ["mor", "snapshots", yml(tmp, snap_cfg())]


@pytest.fixture(autouse=True)
def release_locks():
    yield
    while HELD:
        HELD.pop().__exit__(None, None, None)


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Path, Shared], list[str]]
    fragment: str


CASES = [
    # ---- mor snapshots
    Case("snapshots-missing-config", lambda t, s: ["mor", "snapshots", str(t / "none.yaml")], "config file not found"),
    Case("snapshots-unknown-molecule", lambda t, s: ["mor", "snapshots", yml(t, snap_cfg(sampling={
        "molecule": "ammonia", "grid": {"bond_factors": [1.0], "angle_offsets_deg": [0.0]}}))],
         "unknown molecule 'ammonia' (known: water)"),
    Case("snapshots-unknown-key", lambda t, s: ["mor", "snapshots", yml(t, snap_cfg(chain=2))], "unknown config key 'chain'"),
    Case("snapshots-unknown-solver-key", lambda t, s: ["mor", "snapshots", yml(t, snap_cfg(
        solver={"grid_points": 16, "spacing": 0.5}))], "unknown config key 'solver.spacing'"),
    Case("snapshots-bad-fd-order", lambda t, s: ["mor", "snapshots", yml(t, snap_cfg(solver={"fd_order": 3}))],
         "solver.fd_order"),
    Case("snapshots-grid-too-small", lambda t, s: ["mor", "snapshots", yml(t, snap_cfg(
        solver={"grid_points": 4, "fd_order": 8}))], "too small for FD order 8"),
    Case("snapshots-negative-bond-factor", lambda t, s: ["mor", "snapshots", yml(t, snap_cfg(sampling={
        "grid": {"bond_factors": [-1.0], "angle_offsets_deg": [0.0]}}))], "bond_factors must be > 0"),
    Case("snapshots-angle-out-of-range", lambda t, s: ["mor", "snapshots", yml(t, snap_cfg(sampling={
        "grid": {"bond_factors": [1.0], "angle_offsets_deg": [80.0]}}))], "outside (0, 180)"),
    Case("snapshots-molecule-leaves-isolated-box", lambda t, s: ["mor", "snapshots", yml(t, snap_cfg(
        solver={"grid_points": 16, "box_bohr": 4.0, "boundary": "isolated"}))], "leaves the box"),
    Case("snapshots-output-exists", lambda t, s: (copy(t, s.snapshots(), "snap.h5"),
                                                  ["mor", "snapshots", yml(t, snap_cfg())])[1],
         "exists; pass --overwrite"),
    Case("snapshots-output-folder-missing", lambda t, s: ["mor", "snapshots", yml(t, snap_cfg("nodir/snap.h5"))],
         "the folder nodir does not exist"),
    Case("snapshots-output-is-a-folder", lambda t, s: ((t / "out").mkdir(), ["mor", "snapshots", yml(t, snap_cfg("out"))])[1],
         "is a folder"),
    Case("snapshots-foreign-journal", lambda t, s: foreign_journal(t), "unfinished run of another config"),
    Case("snapshots-output-locked-by-another-run", lambda t, s: locked_output(t), "is being generated by another run"),
    # ---- mor basis
    Case("basis-missing-snapshots", lambda t, s: ["mor", "basis", str(t / "none.h5"), "-o", "b.h5"],
         "snapshot file not found"),
    Case("basis-corrupt-snapshots", lambda t, s: ((t / "x.h5").write_bytes(b"garbage" * 100),
                                                  ["mor", "basis", str(t / "x.h5"), "-o", "b.h5"])[1],
         "cannot read the snapshot file"),
    Case("basis-truncated-snapshots", lambda t, s: ((t / "x.h5").write_bytes(s.snapshots().read_bytes()[:4096]),
                                                    ["mor", "basis", str(t / "x.h5"), "-o", "b.h5"])[1],
         "cannot read the snapshot file"),
    Case("basis-foreign-h5", lambda t, s: (h5py.File(t / "x.h5", "w").close(),
                                           ["mor", "basis", str(t / "x.h5"), "-o", "b.h5"])[1],
         "not a fastqmd MOR snapshot file"),
    Case("basis-snapshots-missing-a-geometry-group", lambda t, s: [
        "mor", "basis", damaged(t, s, lambda f: f["geometries"].pop("000000")), "-o", "b.h5"],
         "0 geometries, the header says 1"),
    Case("basis-snapshots-without-orbitals", lambda t, s: ["mor", "basis", copy(t, s.snapshots(False)), "-o", "b.h5"],
         "store_orbitals: false"),
    Case("basis-output-exists", lambda t, s: ((t / "b.h5").write_text("old"),
                                              ["mor", "basis", copy(t, s.snapshots()), "-o", "b.h5"])[1],
         "b.h5 exists; pass --overwrite"),
    Case("basis-output-is-the-input", lambda t, s: ["mor", "basis", copy(t, s.snapshots()), "-o", "s.h5",
                                                    "--overwrite"], "is the input"),
    Case("basis-bad-criterion", lambda t, s: ["mor", "basis", copy(t, s.snapshots()), "-o", "b.h5", "--criterion",
                                              "sigma3"], "--criterion must be sigma or sigma2"),
    Case("basis-bad-states", lambda t, s: ["mor", "basis", copy(t, s.snapshots()), "-o", "b.h5", "--states",
                                           "empty"], "--states must be occupied or all"),
    Case("basis-epsilon-zero", lambda t, s: ["mor", "basis", copy(t, s.snapshots()), "-o", "b.h5", "--epsilon", "0"],
         "--epsilon must be > 0"),
    # ---- mor test / mor hyper
    Case("test-missing-basis", lambda t, s: ["mor", "test", str(t / "none.h5"), copy(t, s.snapshots(False)), "-o",
                                             "m.json"], "basis file not found"),
    Case("test-testset-is-a-basis", lambda t, s: ["mor", "test", copy(t, s.basis(), "b.h5"), copy(t, s.basis(), "c.h5"),
                                                  "-o", "m.json"], "not a fastqmd MOR snapshot file"),
    Case("test-sweep-out-of-range", lambda t, s: ["mor", "test", copy(t, s.basis(), "b.h5"), copy(t, s.snapshots(False)),
                                                  "-o", "m.json", "--sweep", "1e-2,2"], "--sweep values must lie in (0, 1)"),
    Case("test-missing-hyper", lambda t, s: ["mor", "test", copy(t, s.basis(), "b.h5"), copy(t, s.snapshots(False)),
                                             "-o", "m.json", "--hyper", str(t / "none.h5")], "hyper-reduction file not found"),
    Case("hyper-missing-basis", lambda t, s: ["mor", "hyper", str(t / "none.h5"), "-o", "h.h5"], "basis file not found"),
    Case("hyper-output-is-the-basis", lambda t, s: ["mor", "hyper", copy(t, s.basis(), "b.h5"), "-o", "b.h5",
                                                    "--overwrite"], "is the input"),
    Case("hyper-negative-margin", lambda t, s: ["mor", "hyper", copy(t, s.basis(), "b.h5"), "-o", "h.h5",
                                                "--table-margin", "-1"], "--table-margin must be > 0"),
    # ---- md with a MOR potential
    Case("md-mor-basis-missing", lambda t, s: mor_md(t, str(t / "none.h5")), "basis file not found"),
    Case("md-mor-basis-corrupt", lambda t, s: ((t / "b.h5").write_bytes(b"garbage" * 100), mor_md(t, str(t / "b.h5")))[1],
         "cannot read the basis file"),
    Case("md-mor-basis-is-snapshots", lambda t, s: mor_md(t, copy(t, s.snapshots())), "not a fastqmd MOR basis file"),
    Case("md-mor-other-molecule", lambda t, s: mor_md(t, copy(t, s.basis(), "b.h5"), symbols="NHH"),
         "molecule NHH ≠ basis OHH"),
    Case("md-mor-unknown-forces", lambda t, s: mor_md(t, copy(t, s.basis(), "b.h5"), forces="exact"), "forces"),
    Case("md-mor-zero-tolerance", lambda t, s: mor_md(t, copy(t, s.basis(), "b.h5"), tol_Ha=0), "tol_Ha"),
    Case("basis-epsilon-one", lambda t, s: ["mor", "basis", copy(t, s.snapshots()), "-o", "b.h5", "--epsilon", "1"],
         "--epsilon must be < 1"),
]


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Shared:
    return Shared(tmp_path_factory.mktemp("shared"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_mor_input_is_one_line_and_changes_nothing(case: Case, shared, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = case.setup(work, shared)
    before = tree_snapshot(work)
    line = cli_error_line(argv, 2, monkeypatch, capsys)
    assert case.fragment in line, line
    assert tree_snapshot(work) == before, "a rejected command changed files"


def test_basis_overwrite_replaces_the_basis_and_its_summary(shared, tmp_path, monkeypatch, capsys):
    """The positive side: --overwrite replaces an existing basis with the new one (JSON and PNG beside it)."""
    from fastqmd.cli import main
    from fastqmd.mor.basis import load_basis

    monkeypatch.chdir(tmp_path)
    s = copy(tmp_path, shared.snapshots())
    (tmp_path / "b.h5").write_text("old")
    monkeypatch.setattr(sys, "argv", ["fastqmd", "mor", "basis", s, "-o", "b.h5", "--overwrite", "--states", "all"])
    try:
        main()
    except SystemExit as e:
        assert e.code in (None, 0)
    b = load_basis(tmp_path / "b.h5")
    assert b.n_snapshots == 6 and sorted(os.listdir(tmp_path)) == ["b.h5", "b.json", "b.png", "s.h5"]
