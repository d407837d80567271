"""NNH-MD with the overfitted water model: `kind: nnh` NVE through `fastqmd md` machinery conserves energy with
the O(Δt²) Verlet error; frames carry eigenvalues. `fastqmd evaluate` writes JSON + PNGs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from ase.io import read, write

from nnh_train_helpers import WATER

from fastqmd.units import HARTREE_EV

# NVE bound: velocity Verlet on a smooth (C², envelope-cut) energy conserves a shadow Hamiltonian; the
# total energy fluctuates by O((ωΔt)²)·E_kin — with ω ≈ 0.7 fs⁻¹ (O–H stretch) and Δt = 0.25 fs that is
# ~1e-3 of E_kin ≈ 0.1 eV (measured: 4.1e-4 eV at 0.25 fs, 1.0e-4 eV at 0.125 fs, ratio 3.97). Bounds: max |E(t) − E(0)| ≤ 5e-3 eV over 60 fs, no secular drift (|slope| ≤ 1e-5 eV/fs),
# and halving Δt shrinks the fluctuation by 4 ± 1.2 (second order), which a wrong force would break.
MAX_DEV_EV = 5e-3
MAX_SLOPE_EV_PER_FS = 1e-5


def run_nve(tmp_path: Path, model: Path, dt: float, steps: int, name: str) -> np.ndarray:
    from fastqmd.md.config import MDConfig
    from fastqmd.md.run import run_md

    xyz = tmp_path / "water.xyz"
    from ase import Atoms

    write(xyz, Atoms("OHH", positions=WATER + [[0.0, 0.0, 0.0], [0.03, 0.0, 0.0], [0.0, -0.02, 0.01]]))
    cfg = MDConfig.model_validate(dict(
        structure={"kind": "file", "path": str(xyz)}, potential={"kind": "nnh", "checkpoint": str(model)},
        ensemble={"kind": "nve"}, temperature_K=300, timestep_fs=dt, steps=steps, seed=1,
        output={"dir": str(tmp_path / name), "traj_every": steps // 4, "checkpoint_every": steps, "progress": False}))
    run_md(cfg, overwrite=True)
    data = np.genfromtxt(tmp_path / name / "thermo.csv", delimiter=",", names=True)
    return data


def test_nnh_nve_conserves_energy(overfit_run, tmp_path):
    from fastqmd.testing import energy_drift

    cfg, _, _ = overfit_run
    model = Path(cfg.output) / "model.pt"
    a = run_nve(tmp_path, model, 0.25, 240, "dt025")
    b = run_nve(tmp_path, model, 0.125, 480, "dt0125")
    da = energy_drift(a["conserved_eV"], a["time_fs"])
    db = energy_drift(b["conserved_eV"], b["time_fs"])
    print("NVE drift", da, db, "T max", a["T_K"].max())
    assert a["T_K"].max() > 50  # the molecule really moves
    assert da.max_abs_dev_eV <= MAX_DEV_EV, da
    assert abs(da.slope_eV_per_fs) <= MAX_SLOPE_EV_PER_FS, da
    assert 2.8 <= da.max_abs_dev_eV / db.max_abs_dev_eV <= 5.2, (da, db)
    frames = read(tmp_path / "dt025" / "trajectory.extxyz", ":")
    assert np.asarray(frames[-1].info["eigenvalues"]).size == 6  # O 2s2p + 2 H 1s: one Γ level each


def test_evaluate_writes_json_and_figures(overfit_run, water_h5, tmp_path):
    cfg, _, _ = overfit_run
    r = subprocess.run([sys.executable, "-m", "fastqmd.cli", "evaluate", str(Path(cfg.output) / "model.pt"),
                        str(water_h5), "-o", str(tmp_path / "ev")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert m["n_samples"] == 8
    assert np.isclose(m["H_mae_uEh"], m["H_mae_eV"] / HARTREE_EV * 1e6, rtol=1e-6)
    assert set(m["H_pair_mae_eV"]) >= {"onsite O-O", "offsite O-H", "offsite H-H"}
    assert m["forces_eV_per_A"]["mae"] < 0.3 and m["eigenvalue_mae_eV"]["all"] < 1.0
    assert (tmp_path / "ev" / "hamiltonian_error.png").stat().st_size > 1000


def test_evaluate_subset_reads_split_json(overfit_run, water_h5, tmp_path):
    cfg, _, _ = overfit_run  # trained with no val/test split: all 8 samples are "train"
    model = str(Path(cfg.output) / "model.pt")
    split = json.loads((Path(cfg.output) / "split.json").read_text())
    assert len(split["train"]) == 8 and split["test"] == []
    run = lambda *a: subprocess.run([sys.executable, "-m", "fastqmd.cli", "evaluate", model, str(water_h5), *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    r = run("--subset", "train", "-o", str(tmp_path / "tr"))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "tr" / "evaluation.json").read_text())["n_samples"] == 8
    r = run("--subset", "test", "-o", str(tmp_path / "te"))
    assert r.returncode == 2 and "test split is empty" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "te").exists()
