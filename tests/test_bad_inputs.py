"""The error promise, for every bad input we know of: the real CLI (`fastqmd.cli.main`, in-process) ends with
exactly one stderr line `error: …` and exit code 2 — 3 for a calculation that failed on valid input —, prints
no traceback, and (exit 2) leaves every file of the working folder as it was: nothing created, nothing
changed, no empty run folder.

One row per case: (id, setup(tmp, shared) -> argv, expected fragment of the message[, exit code]).
`shared` builds the slower inputs (a dataset, an NNH model file, a finished MD run) once per module.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.io import write

from fastqmd.testing import cli_error_line, tree_snapshot

# ---------------------------------------------------------------- inputs


def md_cfg(out: str = "run", **kw) -> dict:
    d = {
        "structure": {"kind": "rattled_bulk", "element": "Cu", "supercell": 2, "cubic": True,
                      "max_displacement_fraction": 0.01, "seed": 3},
        "potential": {"kind": "emt"},
        "ensemble": {"kind": "nve"},
        "temperature_K": 300, "timestep_fs": 2.0, "steps": 10,
        "output": {"dir": out, "traj_every": 5, "checkpoint_every": 5, "progress": False},
    }
    d.update(kw)
    return d


def yml(tmp: Path, data: dict, name: str = "c.yaml") -> str:
    (tmp / name).write_text(yaml.safe_dump(data))
    return str(tmp / name)


def xyz(tmp: Path, atoms: Atoms, name: str = "s.extxyz") -> str:
    write(tmp / name, atoms, format="extxyz")
    return str(tmp / name)


def cu(n: int = 4, nan: bool = False) -> Atoms:
    from ase.build import bulk

    a = bulk("Cu", "fcc", a=3.61, cubic=True)
    a = a if n == 4 else a.repeat((2, 1, 1))
    if nan:
        a.positions[1, 0] = np.nan
    return a


def close_pair(pbc: bool = True) -> Atoms:
    return Atoms("H2", positions=[[1.0, 1.0, 1.0], [1.1, 1.0, 1.0]], cell=[4, 4, 4], pbc=pbc)


def traj(tmp: Path, frames: list[Atoms], name: str, times=None) -> str:
    for i, f in enumerate(frames):
        f.info["time_fs"] = float(i) if times is None else times[i]
    write(tmp / name, frames, format="extxyz")
    return str(tmp / name)


def fake_dataset(path: Path) -> Path:
    """Two water samples in a def2-SVP-like basis (O 3s2p1d, H 2s1p), written with the fastqmd store."""
    from fastqmd.data.store import Header, atomic_write, write_header, write_sample
    from fastqmd.reference.base import BasisSpec, Sample

    basis = BasisSpec({"O": (0, 0, 0, 1, 1, 2), "H": (0, 0, 1)})
    rng = np.random.default_rng(0)
    nao = 14 + 5 + 5

    def sample():
        A = rng.normal(size=(1, nao, nao))
        return Sample(numbers=np.array([8, 1, 1]), positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]],
                      cell=np.zeros((3, 3)), pbc=np.zeros(3, bool), energy=-2077.5, forces=rng.normal(size=(3, 3)),
                      basis=basis, kpoints=np.zeros((1, 3)), kweights=np.ones(1), H=A + A.transpose(0, 2, 1),
                      S=np.eye(nao)[None], eigenvalues=np.zeros((1, nao)), occupations=np.zeros((1, nao)),
                      n_electrons=10.0, fermi_level=None, electronic_temperature_K=0.0, engine="fake",
                      settings={"a": 1}, versions={}, wall_time_s=0.1, extras={})

    def fill(f):
        write_header(f, Header("fake", {"a": 1}))
        for i in range(2):
            write_sample(f, i, sample(), "test[0]", 0.9)

    atomic_write(path, fill)
    return path


class Shared:
    """Slower inputs, built on first use and reused by all rows (outside each row's snapshot folder)."""

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict[str, Path] = {}

    def _once(self, name, make):
        if name not in self._cache:
            self._cache[name] = make(self.root / name)
        return self._cache[name]

    def dataset(self) -> Path:
        return self._once("water.h5", fake_dataset)

    def model(self, basis: dict) -> Path:
        """An (untrained) NNH model file for elements/shells `basis`."""
        def make(path):
            import torch

            from fastqmd.nnh.checkpoint import save_model
            from fastqmd.nnh.energy import EnergyModel, EnergyModelConfig
            from fastqmd.nnh.model import NNHConfig
            from fastqmd.nnh.overlap import OverlapConfig
            from fastqmd.nnh.repulsion import RepulsionConfig

            torch.manual_seed(0)
            h = NNHConfig(basis=basis, cutoff=3.0, hidden_irreps="4x0e+2x1o+2x1e+2x2e+2x2o+1x3o+1x3e+1x4e",
                          n_layers=1, radial_hidden=8, n_scalars_embed=4, n_radial=4, avg_num_neighbors=4,
                          dtype="float64")
            s = OverlapConfig(basis=basis, cutoff=3.0, radial_hidden=8, dtype="float64")
            cfg = EnergyModelConfig(h=h, overlap={"kind": "learned", "s": s}, electronic_temperature_K=300.0,
                                    repulsion=RepulsionConfig(species=tuple(sorted(basis)), cutoff=2.5,
                                                              dtype="float64"),
                                    valence_electrons={el: 1.0 for el in basis})
            save_model(EnergyModel(cfg), path)
            return path

        return self._once("model_" + "_".join(f"{k}{''.join(map(str, v))}" for k, v in sorted(basis.items())) + ".pt",
                          make)


def dataset_copy(tmp: Path, shared: Shared, name: str = "d.h5") -> Path:
    shutil.copy(shared.dataset(), tmp / name)
    return tmp / name


def damaged(tmp: Path, shared: Shared, edit: Callable) -> str:
    p = dataset_copy(tmp, shared)
    with h5py.File(p, "r+") as f:
        edit(f)
    return str(p)


def finished_run(tmp: Path) -> str:
    """A complete 10-step EMT run in tmp/run (what --overwrite would replace)."""
    from fastqmd.md.config import MDConfig
    from fastqmd.md.run import run_md

    run_md(MDConfig.model_validate(md_cfg(str(tmp / "run"))))
    return str(tmp / "run")


def md_over_run(tmp: Path, **kw) -> list[str]:
    """`md --overwrite` of an invalid config onto the finished run in tmp/run."""
    finished_run(tmp)
    return ["md", yml(tmp, md_cfg(str(tmp / "run"), **kw)), "--overwrite"]


def symlink_to(tmp: Path, target: Path, name: str) -> str:
    os.symlink(target, tmp / name)
    return str(tmp / name)


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Path, Shared], list[str]]
    fragment: str
    code: int = 2


CUDA = __import__("torch").cuda.is_available()
FILE_STRUCTURE = {"kind": "file", "path": "s.extxyz"}
O_H = {"O": (0, 0, 0, 1, 1, 2), "H": (0, 0, 1)}  # the fake dataset's basis

CASES = [
    # ---- configs (already worked; kept as regression)
    Case("md-missing-config", lambda t, s: ["md", str(t / "nothing.yaml")], "config file not found"),
    Case("md-unknown-key", lambda t, s: ["md", yml(t, md_cfg(temprature_K=300))], "unknown config key 'temprature_K'"),
    Case("md-wrong-type", lambda t, s: ["md", yml(t, md_cfg(timestep_fs="fast"))], "timestep_fs"),
    Case("md-every-problem-named", lambda t, s: ["md", yml(t, {k: v for k, v in md_cfg().items()
                                                              if k not in ("steps", "temperature_K")})],
         "missing config key 'temperature_K'; missing config key 'steps'"),
    Case("md-unknown-kind", lambda t, s: ["md", yml(t, md_cfg(structure={"kind": "foo"}))],
         "config key 'structure.kind': unknown kind 'foo' (expected one of 'rattled_bulk', 'molecule', 'file')"),
    Case("md-missing-kind", lambda t, s: ["md", yml(t, md_cfg(potential={}))], "missing config key 'potential.kind'"),
    Case("md-key-inside-a-kind", lambda t, s: ["md", yml(t, md_cfg(structure={"kind": "rattled_bulk",
                                                                               "supercell": 0}))],
         "config key 'structure.supercell': Input should be greater than 0 (got 0)"),
    Case("md-bad-yaml", lambda t, s: ["md", str((t / "c.yaml").write_text("a: [") and t / "c.yaml")], "invalid YAML"),
    Case("md-unknown-factory", lambda t, s: ["md", yml(t, md_cfg(potential={"kind": "ase",
                                                                            "factory": "no_such_module:Calc"}))],
         "no_such_module"),
    Case("md-pinned-out-of-range", lambda t, s: ["md", yml(t, md_cfg(pinned=[99]))], "pinned atom index 99"),
    Case("md-all-pinned", lambda t, s: ["md", yml(t, md_cfg(pinned=list(range(32))))], "all 32 atoms are pinned"),
    Case("md-masses-not-an-element", lambda t, s: ["md", yml(t, md_cfg(masses={"Xx": 3.0}))], "'Xx' is not an element"),
    Case("md-negative-temperature", lambda t, s: ["md", yml(t, md_cfg(temperature_K=-5))], "temperature_K"),
    Case("md-thermostat-at-0K", lambda t, s: ["md", yml(t, md_cfg(temperature_K=0, ensemble={"kind": "langevin"}))],
         "needs temperature_K > 0"),
    Case("md-molecule-name-and-path", lambda t, s: ["md", yml(t, md_cfg(structure={
        "kind": "molecule", "name": "H2O", "path": "x.xyz", "sampling": "random"}))],
         "exactly one of 'name' or 'path'"),
    # ---- structures: the checks of `generate`, shared by md and rsdft
    Case("md-nan-structure", lambda t, s: (xyz(t, cu(nan=True)), ["md", yml(t, md_cfg(structure=FILE_STRUCTURE))])[1],
         "non-finite"),
    Case("md-close-atoms", lambda t, s: (xyz(t, close_pair()), ["md", yml(t, md_cfg(structure=FILE_STRUCTURE))])[1],
         "0.100 Å apart"),
    Case("md-structure-file-missing", lambda t, s: ["md", yml(t, md_cfg(structure=FILE_STRUCTURE))],
         "structure file not found"),
    Case("md-emt-element", lambda t, s: ["md", yml(t, md_cfg(structure={"kind": "rattled_bulk", "element": "Fe",
                                                                        "supercell": 2, "cubic": True}))],
         "no parameters for Fe"),
    Case("md-ase-calculator-fails-on-start", lambda t, s: ["md", yml(t, md_cfg(
        structure={"kind": "rattled_bulk", "element": "Fe", "supercell": 2, "cubic": True},
        potential={"kind": "ase", "factory": "ase.calculators.emt:EMT"}))],
         "potential 'ase.calculators.emt:EMT' failed on the starting structure (NotImplementedError"),
    # ---- md: nothing of an earlier run changes unless the new run is valid
    Case("md-overwrite-nan-keeps-old-run", lambda t, s: (xyz(t, cu(nan=True)),
                                                        md_over_run(t, structure=FILE_STRUCTURE))[1], "non-finite"),
    Case("md-overwrite-emt-keeps-old-run", lambda t, s: md_over_run(
        t, structure={"kind": "rattled_bulk", "element": "Fe", "supercell": 2, "cubic": True}), "Fe"),
    Case("md-overwrite-bad-factory-keeps-old-run", lambda t, s: md_over_run(
        t, potential={"kind": "ase", "factory": "no_such_module:Calc"}), "no_such_module"),
    Case("md-resume-other-config", lambda t, s: (finished_run(t),
                                                 ["md", yml(t, md_cfg(str(t / "run"), timestep_fs=1.0))])[1],
         "different config"),
    Case("md-output-dir-is-a-file", lambda t, s: ((t / "f").write_text("x"), ["md", yml(t, md_cfg(str(t / "f")))])[1],
         "is a file"),
    Case("md-output-parent-is-a-file", lambda t, s: ((t / "f").write_text("x"),
                                                     ["md", yml(t, md_cfg(str(t / "f" / "run")))])[1], "is a file"),
    Case("md-output-file-is-a-folder", lambda t, s: ((t / "run" / "thermo.csv").mkdir(parents=True),
                                                     ["md", yml(t, md_cfg(str(t / "run")))])[1], "is a folder"),
    Case("md-steps-0", lambda t, s: ["md", yml(t, md_cfg()), "--steps", "0"], "--steps must be ≥ 1"),
    *([] if CUDA else [Case("md-cuda-without-cuda", lambda t, s: ["md", yml(t, md_cfg(device="cuda"))],
                            "CUDA is not available")]),
    Case("md-blowup-exit-3", lambda t, s: ["md", yml(t, md_cfg(str(t / "hot"), guard={"max_temperature_K": 150}))],
         "last good frame", 3),
    # ---- datasets
    Case("info-missing", lambda t, s: ["dataset", "info", str(t / "none.h5")], "dataset not found"),
    Case("info-not-hdf5", lambda t, s: ["dataset", "info", str((t / "x.h5").write_text("x") and t / "x.h5")],
         "not a readable HDF5"),
    Case("info-corrupt-settings", lambda t, s: ["dataset", "info", damaged(t, s, lambda f: f.attrs.__setitem__(
        "settings", "{not json"))], "corrupt dataset header"),
    Case("info-no-schema-version", lambda t, s: ["dataset", "info", damaged(t, s, lambda f: f.attrs.__delitem__(
        "schema_version"))], "missing attribute 'schema_version'"),
    Case("info-corrupt-basis", lambda t, s: ["dataset", "info", damaged(t, s, lambda f: f.attrs.__setitem__(
        "basis", "[1, 2"))], "corrupt dataset header"),
    Case("info-no-samples-group", lambda t, s: ["dataset", "info", damaged(t, s, lambda f: f.__delitem__("samples"))],
         "corrupt dataset header"),
    Case("info-sample-without-status", lambda t, s: ["dataset", "info", damaged(t, s, lambda f: f[
        "samples/00000001"].attrs.__delitem__("status"))], "sample 00000001 is damaged (no attribute 'status')"),
    Case("info-sample-without-numbers", lambda t, s: ["dataset", "info", damaged(t, s, lambda f: f[
        "samples/00000001"].__delitem__("numbers"))], "sample 00000001 is damaged (no array 'numbers')"),
    Case("export-sample-without-numbers", lambda t, s: ["dataset", "export", damaged(t, s, lambda f: f[
        "samples/00000000"].__delitem__("numbers"))], "sample 00000000 is damaged (no 'numbers')"),
    Case("export-onto-itself", lambda t, s: ["dataset", "export", str(dataset_copy(t, s)), "-o", str(t / "d.h5")],
         "is the input"),
    Case("export-onto-itself-overwrite", lambda t, s: ["dataset", "export", str(dataset_copy(t, s)), "-o",
                                                       str(t / "d.h5"), "--overwrite"], "is the input"),
    Case("export-onto-itself-symlink", lambda t, s: ["dataset", "export", str(dataset_copy(t, s)), "-o",
                                                     symlink_to(t, t / "d.h5", "link.extxyz"), "--overwrite"],
         "is the input"),
    Case("export-onto-itself-relative", lambda t, s: (dataset_copy(t, s), (t / "sub").mkdir(),
                                                      ["dataset", "export", "d.h5", "-o", "sub/../d.h5"])[2],
         "is the input"),
    Case("export-existing-output", lambda t, s: ((t / "d.extxyz").write_text("keep"),
                                                 ["dataset", "export", str(dataset_copy(t, s))])[1],
         "exists; pass --overwrite"),
    Case("export-missing-parent", lambda t, s: ["dataset", "export", str(dataset_copy(t, s)), "-o",
                                                str(t / "no" / "x.extxyz")], "does not exist"),
    Case("export-to-folder", lambda t, s: ["dataset", "export", str(dataset_copy(t, s)), "-o", str(t)], "is a folder"),
    Case("export-format", lambda t, s: ["dataset", "export", str(dataset_copy(t, s)), "--format", "xyz"],
         "unsupported export format"),
    # ---- generate (option level; the rest is the generate tests')
    Case("generate-missing-config", lambda t, s: ["generate", str(t / "g.yaml")], "config file not found"),
    Case("generate-negative-workers", lambda t, s: ["generate", str(t / "g.yaml"), "--workers", "-1"],
         "--workers must be ≥ 0"),
    Case("generate-close-atoms", lambda t, s: (xyz(t, close_pair(pbc=False), "close.extxyz"), ["generate", yml(t, {
        "structures": [{"kind": "file", "path": "close.extxyz"}], "engine": {"kind": "tblite"}, "output": "g.h5"})])[1],
         "structure 0 (file[0]): two atoms are 0.100 Å apart"),
    Case("generate-unknown-engine", lambda t, s: ["generate", yml(t, {
        "structures": [{"kind": "rattled_bulk"}], "engine": {"kind": "vasp"}, "output": "g.h5"})],
         "config key 'engine.kind': unknown kind 'vasp'"),
    Case("generate-output-is-folder", lambda t, s: ((t / "g.h5").mkdir(), ["generate", yml(t, {
        "structures": [{"kind": "rattled_bulk", "supercell": 1}], "engine": {"kind": "tblite"}, "output": "g.h5"})])[1],
         "is a folder"),
    Case("generate-output-missing-parent", lambda t, s: ["generate", yml(t, {
        "structures": [{"kind": "rattled_bulk", "supercell": 1}], "engine": {"kind": "tblite"},
        "output": "no/g.h5"})], "does not exist"),
    # ---- analysis
    Case("analyze-missing", lambda t, s: ["analyze", str(t / "none.extxyz")], "trajectory not found"),
    Case("analyze-nan-frame", lambda t, s: ["analyze", traj(t, [cu(), cu(nan=True)], "a.extxyz")], "frame 1"),
    Case("analyze-atoms-change", lambda t, s: ["analyze", traj(t, [cu(), cu(8)], "a.extxyz")], "other atoms"),
    Case("analyze-no-times", lambda t, s: ["analyze", str((write(t / "p.xyz", [cu(), cu()]), t / "p.xyz")[1])],
         "--timestep-fs"),
    Case("analyze-times-not-increasing", lambda t, s: ["analyze", traj(t, [cu(), cu(), cu()], "a.extxyz",
                                                                        times=[0.0, 2.0, 2.0])],
         "time_fs does not increase at frame 2"),
    Case("analyze-nan-time", lambda t, s: ["analyze", traj(t, [cu(), cu()], "a.extxyz", times=[0.0, np.nan])],
         "frame 1 has a non-finite time_fs"),
    Case("analyze-negative-rmax", lambda t, s: ["analyze", traj(t, [cu(), cu()], "a.extxyz"), "--rmax", "-3"],
         "--rmax must be > 0"),
    Case("analyze-negative-timestep", lambda t, s: ["analyze", traj(t, [cu(), cu()], "a.extxyz"),
                                                    "--timestep-fs", "-1"], "--timestep-fs must be > 0"),
    Case("analyze-output-missing-parent", lambda t, s: ["analyze", traj(t, [cu(), cu()], "a.extxyz"), "-o",
                                                        str(t / "no" / "a")], "does not exist"),
    Case("analyze-output-is-folder", lambda t, s: ((t / "a_analysis.json").mkdir(),
                                                   ["analyze", traj(t, [cu(), cu()], "a.extxyz")])[1], "is a folder"),
    Case("compare-different-systems", lambda t, s: ["compare", traj(t, [cu(), cu()], "r.extxyz"),
                                                    traj(t, [cu(8), cu(8)], "b.extxyz")], "is not the system"),
    Case("compare-other-species", lambda t, s: ["compare", traj(t, [cu(), cu()], "r.extxyz"),
                                                traj(t, [Atoms("Ag4", positions=cu().positions, cell=cu().cell,
                                                               pbc=True)] * 2, "b.extxyz")], "is not the system"),
    Case("compare-nan-frame", lambda t, s: ["compare", traj(t, [cu(), cu()], "r.extxyz"),
                                            traj(t, [cu(), cu(nan=True)], "b.extxyz")], "non-finite"),
    Case("compare-output-missing-parent", lambda t, s: ["compare", traj(t, [cu(), cu()], "r.extxyz"),
                                                        traj(t, [cu(), cu()], "b.extxyz"), "-o", str(t / "no" / "c")],
         "does not exist"),
    # ---- real-space DFT
    Case("rsdft-close-atoms", lambda t, s: ["rsdft", "single", xyz(t, close_pair())], "0.100 Å apart"),
    Case("rsdft-close-through-small-box", lambda t, s: ["rsdft", "single", xyz(t, Atoms("H2", positions=[
        [0.2, 0.5, 0.5], [0.94, 0.5, 0.5]]), "h2.xyz"), "--box-ang", "1.0"], "0.260 Å apart"),
    Case("rsdft-nan", lambda t, s: ["rsdft", "single", xyz(t, cu(nan=True))], "non-finite"),
    Case("rsdft-missing", lambda t, s: ["rsdft", "single", str(t / "none.xyz")], "structure file not found"),
    Case("rsdft-points", lambda t, s: ["rsdft", "single", xyz(t, close_pair()), "--points", "4"], "--points must be"),
    Case("rsdft-box", lambda t, s: ["rsdft", "single", xyz(t, close_pair()), "--box-ang", "-5"], "--box-ang must be"),
    # ---- NNH training and evaluation
    Case("train-missing-config", lambda t, s: ["train", str(t / "t.yaml")], "config file not found"),
    Case("train-max-steps-0", lambda t, s: ["train", str(t / "t.yaml"), "--max-steps", "0"], "--max-steps must be"),
    Case("md-nnh-element-model-lacks", lambda t, s: ["md", yml(t, md_cfg(
        structure={"kind": "molecule", "name": "H2O", "sampling": "random"},
        potential={"kind": "nnh", "checkpoint": str(s.model({"O": O_H["O"]}))}))], "has no element H"),
    Case("md-nnh-missing-model", lambda t, s: ["md", yml(t, md_cfg(potential={"kind": "nnh",
                                                                             "checkpoint": str(t / "m.pt")}))],
         "model file not found"),
    Case("train-missing-dataset", lambda t, s: ["train", yml(t, {"dataset": "none.h5", "output": "tr"})],
         "dataset not found"),
    Case("train-every-problem-named", lambda t, s: ["train", yml(t, {"dataset": str(s.dataset()), "output": "tr",
                                                                     "lr": -1, "foo": 2})],
         "config key 'lr': Input should be greater than 0 (got -1); unknown config key 'foo'"),
    Case("train-h-baseline-not-pyscf-mol", lambda t, s: ["train", yml(t, {"dataset": str(s.dataset()), "output": "tr",
                                                                          "model": {"h_baseline": "core"},
                                                                          "split": {"val_fraction": 0,
                                                                                    "test_fraction": 0}})],
         "model.h_baseline 'core' needs a molecular PySCF dataset"),
    Case("train-h-baseline-unknown", lambda t, s: ["train", yml(t, {"dataset": str(s.dataset()), "output": "tr",
                                                                    "model": {"h_baseline": "hartree"}})],
         "config key 'model.h_baseline'"),
    Case("train-restart-step-not-positive", lambda t, s: ["train", yml(t, {"dataset": str(s.dataset()), "output": "tr",
                                                                           "schedule": {"restart_steps": [0]}})],
         "config key 'schedule.restart_steps.0'"),
    Case("train-repulsion-network-unknown-key", lambda t, s: ["train", yml(t, {
        "dataset": str(s.dataset()), "output": "tr", "model": {"repulsion_network": {"layers": 2}}})],
         "config key 'model.repulsion_network.layers'"),
    Case("train-electrostatics-width-not-positive", lambda t, s: ["train", yml(t, {
        "dataset": str(s.dataset()), "output": "tr", "model": {"electrostatics": {"gaussian_width_A": -1}}})],
         "config key 'model.electrostatics.gaussian_width_A'"),
    Case("train-overlap-table-foreign-engine", lambda t, s: ["train", yml(t, {"dataset": str(s.dataset()),
                                                                              "output": "tr",
                                                                              "model": {"overlap": "table"},
                                                                              "split": {"val_fraction": 0,
                                                                                        "test_fraction": 0}})],
         "overlap 'table' needs a tblite or gpaw-lcao dataset (this one is 'fake')"),
    Case("train-ks-with-force-loss", lambda t, s: ["train", yml(t, {"dataset": str(s.dataset()), "output": "tr",
                                                                    "model": {"energy_mode": "ks"}})],
         "energy_mode 'ks' learns H alone"),
    Case("train-ks-not-pyscf-mol", lambda t, s: ["train", yml(t, {"dataset": str(s.dataset()), "output": "tr",
                                                                  "model": {"energy_mode": "ks", "overlap": "learned"},
                                                                  "loss": {"beta_F": 0, "gamma_E": 0},
                                                                  "split": {"val_fraction": 0, "test_fraction": 0}})],
         "model.energy_mode 'ks' needs unsmeared closed-shell molecular PySCF data"),
    Case("train-output-is-a-file", lambda t, s: ((t / "tr").write_text("x"), ["train", yml(
        t, {"dataset": str(s.dataset()), "output": "tr"})])[1], "not a folder"),
    Case("evaluate-missing-model", lambda t, s: ["evaluate", str(t / "m.pt"), str(s.dataset()), "-o", str(t / "ev")],
         "model file not found"),
    Case("evaluate-output-is-file", lambda t, s: ((t / "ev").write_text("x"),
                                                  ["evaluate", str(s.model(O_H)), str(s.dataset()), "-o",
                                                   str(t / "ev")])[1], "is a file"),
    Case("evaluate-other-basis", lambda t, s: ["evaluate", str(s.model({"O": (0, 1), "H": (0,)})), str(s.dataset()),
                                               "-o", str(t / "ev")], "basis of H"),
    Case("evaluate-element-model-lacks", lambda t, s: ["evaluate", str(s.model({"O": O_H["O"]})), str(s.dataset()),
                                                       "-o", str(t / "ev")], "has no element H"),
    Case("evaluate-bands-foreign-engine", lambda t, s: ["evaluate", str(s.model(O_H)), str(s.dataset()), "--bands",
                                                        "fcc-Cu:2", "-o", str(t / "ev")], "made by 'fake'"),
    Case("evaluate-bands-bad-spec", lambda t, s: ["evaluate", str(s.model(O_H)), str(s.dataset()), "--bands",
                                                  "foo", "-o", str(t / "ev")], "--bands 'foo'"),
    *([] if CUDA else [Case("evaluate-cuda-without-cuda", lambda t, s: [
        "evaluate", str(s.model(O_H)), str(s.dataset()), "--device", "cuda", "-o", str(t / "ev")],
        "CUDA is not available")]),
    Case("evaluate-subset-without-split", lambda t, s: ["evaluate", str(s.model(O_H)), str(s.dataset()), "--subset",
                                                        "test", "-o", str(t / "ev")], "split.json"),
    Case("evaluate-file-without-labels", lambda t, s: ["evaluate", str(s.model(O_H)), xyz(t, Atoms(
        "OHH", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])), "-o", str(t / "ev")],
         "has an energy or forces"),
    Case("evaluate-file-element-model-lacks", lambda t, s: ["evaluate", str(s.model(O_H)), xyz(t, Atoms(
        "OHCu", positions=[[0, 0, 0], [0.96, 0, 0], [-2.0, 0.5, 0]], info={"energy": -1.0})), "-o", str(t / "ev")],
         "s.extxyz: the NNH model has no element Cu"),
    Case("evaluate-unreadable-file", lambda t, s: ["evaluate", str(s.model(O_H)), str(
        (t / "x.extxyz").write_text("3\nnot an extxyz line\nO 0 0\n") and t / "x.extxyz"), "-o", str(t / "ev")],
         "cannot read"),
    Case("evaluate-unknown-universal-checkpoint", lambda t, s: ["evaluate", "sevenn:7net-nope", str(s.dataset()),
                                                                "-o", str(t / "ev")], "unknown sevenn checkpoint"),
    Case("evaluate-unknown-universal-kind", lambda t, s: ["evaluate", "mace:medium", str(s.dataset()), "-o",
                                                          str(t / "ev")], "unknown kind 'mace'"),
]


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Shared:
    return Shared(tmp_path_factory.mktemp("shared"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case: Case, shared, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = case.setup(work, shared)
    before = tree_snapshot(work)
    line = cli_error_line(argv, case.code, monkeypatch, capsys)
    assert case.fragment in line, line
    if case.code == 2:
        assert tree_snapshot(work) == before, "a rejected command changed files"
    else:  # a failed calculation saves its last good state
        assert (work / "hot" / "last_good.extxyz").is_file()


def test_md_overwrite_replaces_the_old_run_once_valid(tmp_path):
    """The positive side of the --overwrite rows above: a valid new config does replace the old run."""
    from fastqmd.md.config import MDConfig
    from fastqmd.md.run import run_md

    run = finished_run(tmp_path)
    old = (Path(run) / "thermo.csv").read_text()
    run_md(MDConfig.model_validate(md_cfg(run, timestep_fs=1.0)), overwrite=True)
    new = (Path(run) / "thermo.csv").read_text()
    assert new != old and new.count("\n") == old.count("\n")
    assert json.loads((Path(run) / "config.json").read_text())["timestep_fs"] == 1.0


def test_export_overwrite_replaces_an_export(tmp_path, monkeypatch, capsys):
    """`--overwrite` replaces an earlier export (never the dataset) with the complete new file."""
    from fastqmd.cli import main
    from ase.io import read

    d = fake_dataset(tmp_path / "d.h5")
    (tmp_path / "d.extxyz").write_text("old")
    monkeypatch.setattr(sys, "argv", ["fastqmd", "dataset", "export", str(d), "--overwrite"])
    main_exit = None
    try:
        main()
    except SystemExit as e:  # typer's standalone mode exits 0 on success
        main_exit = e.code
    assert main_exit in (None, 0)
    assert len(read(tmp_path / "d.extxyz", ":")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.extxyz", "d.h5"]  # no temporary left
