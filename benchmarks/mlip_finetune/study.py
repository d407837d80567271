"""Issue 12 part 4: fine-tuning SevenNet-0 on PySCF PBE/def2-SVP water with every forgetting-prevention method.

    make replay-data                                                     # the MPtrj replay set (mattersim sdist)
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/mlip_finetune/study.py

1. Fine-tuning set: 60 rotated water molecules (σ = 0.05/0.08/0.12 Å) labelled here (label_water.py); the
   trainer's split (val 0.1, test 0.2 → 42 train / 6 val / 12 test).
2. Pretraining set: the MPtrj sample (1000 structures, `source=MPtrj`), structures of ≤ MAX_ATOMS atoms,
   seeded: HELD_OUT held out (the forgetting), the next POOL the replay memory and the EWC Fisher.
3. Every method of `fastqmd.mlip.finetune` from SevenNet-0 with the same steps, batch, schedule and seed
   (COMMON); each run is resumable and skipped when its finetune.json exists.
4. Observables of the system of interest, per model (pretrained and each fine-tuned one) against PySCF
   PBE/def2-SVP: the three harmonic frequencies (central-difference Hessian at the model's own minimum) and
   MD stability (NVE, 0.5 fs, MD_STEPS steps from the minimum with 300 K Maxwell–Boltzmann velocities:
   energy drift, O–H range).
5. The MD observable against reference MD: each model runs the PySCF PBE/def2-SVP AIMD's settings
   (benchmarks/nnh_water/md_pyscf.yaml: O pinned, Berendsen 300 K, τ = 100 fs, dt = 0.5 fs, 1200 steps, same
   start) with `fastqmd md`, and `fastqmd compare` scores it against that AIMD: VDOS overlap and peaks, ADF
   overlap, mean O–H bonds and H–O–H angle, T. The AIMD is the side-by-side study's (run once, resumable:
   `fastqmd md benchmarks/nnh_water/md_pyscf.yaml`, ~15 CPU-min).
Writes benchmarks/mlip_finetune/finetune.json; runs go to out/mlip_finetune/ (not in git).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = ROOT / "out" / "mlip_finetune"
MPTRJ = ROOT / ".venv" / "share" / "mptrj" / "mptrj-random-1k.xyz"
MAX_ATOMS, HELD_OUT, POOL = 12, 50, 100
STEPS = 200
COMMON = dict(pretrained="sevenn:7net-0", batch_size=4, max_steps=STEPS, eval_every=50, checkpoint_every=50,
              lr=1e-3, ema_decay=0.99, early_stopping_patience=None, seed=0, progress=False,
              split={"val_fraction": 0.1, "test_fraction": 0.2, "seed": 0},
              loss={"energy": 1.0, "forces": 1.0, "stress": 0.0})
SEVENNET_FROZEN = ["net.sevennet.edge_embedding", "net.sevennet.onehot_to_feature_x",
                   *[f"net.sevennet.{i}_{m}" for i in range(4)
                     for m in ("self_connection_intro", "self_interaction_1", "convolution", "self_interaction_2")]]
EWC = {"strength": 1e5, "fisher_batch_size": 1}  # sevenn's reEWC preset λ
REPLAY = {"ratio": 0.5}
METHODS = {
    "vanilla": {},
    "lower_lr": {"lr_factor": 0.1},
    "layer_freezing": {"freeze": SEVENNET_FROZEN},
    "ewc": {"ewc": EWC},
    "replay": {"replay": REPLAY},
    "reewc": {"ewc": EWC, "replay": REPLAY},
}
MD_STEPS, DT_FS, T_K = 400, 0.5, 300.0
FD_H = 5e-3  # Å, central-difference step of the Hessian


def config(method: str, dataset: Path):
    from fastqmd.mlip.finetune import FinetuneConfig

    pre = {"path": str(MPTRJ), "level_of_theory": "MPtrj", "held_out": HELD_OUT, "max_structures": POOL,
           "max_atoms": MAX_ATOMS, "seed": 0}
    return FinetuneConfig.model_validate({**COMMON, "dataset": str(dataset), "output": str(OUT / method),
                                          "method": method, "pretraining": pre, **METHODS[method]})


# ------------------------------------------------------------------ observables of one water molecule


def minimise(atoms, calc, fmax=1e-3):
    from ase.optimize import BFGS

    a = atoms.copy()
    a.calc = calc
    BFGS(a, logfile=None).run(fmax=fmax, steps=200)
    return a


def harmonic_cm1(atoms, forces_fn) -> list[float]:
    """The 3 highest harmonic wavenumbers (cm⁻¹) from the central-difference Hessian H_ij = −∂F_j/∂x_i
    (step FD_H Å), mass-weighted and symmetrised."""
    from ase.units import _amu, _c, _e

    x0, n = atoms.positions.copy(), 3 * len(atoms)
    H = np.zeros((n, n))
    for i in range(n):
        cols = []
        for sgn in (1, -1):
            x = x0.copy().reshape(-1)
            x[i] += sgn * FD_H
            cols.append(forces_fn(x.reshape(-1, 3)).reshape(-1))
        H[i] = -(cols[0] - cols[1]) / (2 * FD_H)
    m = np.repeat(atoms.get_masses(), 3)
    w2 = np.linalg.eigvalsh(0.5 * (H + H.T) / np.sqrt(np.outer(m, m)))  # eV/(Å² amu)
    w = np.sqrt(np.abs(w2[-3:]) * _e / _amu) * 1e10  # rad/s
    return sorted(float(x) for x in w / (2 * np.pi * _c * 100))


def model_observables(atoms0, calc) -> dict:
    """Minimum, harmonic frequencies and an NVE stability run of one water molecule with ASE calculator `calc`."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
    from ase.md.verlet import VelocityVerlet

    a = minimise(atoms0, calc)

    def forces(x):
        b = a.copy()
        b.positions = x
        b.calc = calc
        return b.get_forces()

    r = [a.get_distance(0, 1), a.get_distance(0, 2)]
    out = {"r_OH_A": float(np.mean(r)), "angle_HOH_deg": float(a.get_angle(1, 0, 2)),
           "harmonic_cm1": harmonic_cm1(a, forces)}
    md = a.copy()
    md.calc = calc
    MaxwellBoltzmannDistribution(md, temperature_K=T_K, rng=np.random.default_rng(0))
    Stationary(md)
    ZeroRotation(md)
    dyn = VelocityVerlet(md, timestep=DT_FS * units.fs)
    e, roh = [], []
    t0 = time.process_time()
    for _ in range(MD_STEPS):
        dyn.run(1)
        e.append(md.get_total_energy())
        roh += [md.get_distance(0, 1), md.get_distance(0, 2)]
    e = np.array(e)
    out["md_nve"] = {"steps": MD_STEPS, "dt_fs": DT_FS, "finite": bool(np.isfinite(e).all()),
                     "energy_drift_meV": float(1e3 * (e[-1] - e[0])), "energy_span_meV": float(1e3 * np.ptp(e)),
                     "r_OH_min_max_A": [float(min(roh)), float(max(roh))],
                     "stable": bool(np.isfinite(e).all() and 0.8 < min(roh) and max(roh) < 1.3),
                     "cpu_s_per_step": (time.process_time() - t0) / MD_STEPS}
    return out


def pbe_reference() -> dict:
    path = OUT / "pbe_reference.json"
    if path.exists():
        return json.loads(path.read_text())
    from ase.build import molecule

    from fastqmd.reference.calculator import EngineCalculator
    from fastqmd.reference.pyscf_mol import PySCFMolEngine

    calc = EngineCalculator(PySCFMolEngine(xc="PBE", basis="def2-SVP"))
    t0 = time.process_time()
    a = minimise(molecule("H2O"), calc)

    def forces(x):
        b = a.copy()
        b.positions = x
        b.calc = calc
        return b.get_forces()

    ref = {"r_OH_A": float(np.mean([a.get_distance(0, 1), a.get_distance(0, 2)])),
           "angle_HOH_deg": float(a.get_angle(1, 0, 2)), "harmonic_cm1": harmonic_cm1(a, forces),
           "positions_A": a.positions.tolist(), "cpu_s": time.process_time() - t0}
    path.write_text(json.dumps(ref, indent=1))
    return ref


# ------------------------------------------------------------------ MD against the PBE AIMD

AIMD_CONFIG = ROOT / "benchmarks" / "nnh_water" / "md_pyscf.yaml"
AIMD_TRAJ = ROOT / "out" / "nnh_water" / "md_pyscf" / "trajectory.extxyz"


def md_vs_aimd(name: str, potential: dict) -> dict:
    """`fastqmd md` with the AIMD's settings and `potential`, then `fastqmd compare` against the AIMD (both
    resumable, kept under OUT/md_NAME) → the comparison's overlaps and means."""
    import subprocess

    import yaml

    fq = str(ROOT / ".venv" / "bin" / "fastqmd")
    if not AIMD_TRAJ.with_name("md.done").exists():
        subprocess.run([fq, "md", str(AIMD_CONFIG)], cwd=ROOT, check=True)
        AIMD_TRAJ.with_name("md.done").touch()
    d = OUT / f"md_{name}"
    cfg = yaml.safe_load(AIMD_CONFIG.read_text())
    cfg.update(potential=potential, output={**cfg["output"], "dir": str(d)})
    if not (d / "md.done").exists():
        path = OUT / f"md_{name}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        r = subprocess.run([fq, "md", str(path)], cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:  # a blow-up (exit 3) is a result: unstable MD
            return {"stable": False, "md_exit_code": r.returncode, "message": (r.stderr or r.stdout)[-300:]}
        (d / "md.done").touch()
    cmp = OUT / f"compare_{name}"
    if not cmp.with_suffix(".json").exists():
        subprocess.run([fq, "compare", str(AIMD_TRAJ), str(d / "trajectory.extxyz"), "-o", str(cmp)], cwd=ROOT,
                       check=True, capture_output=True)
    c = next(iter(json.loads(cmp.with_suffix(".json").read_text())["metrics"].values()))
    ref, sur = c["reference"], c["surrogate"]
    return {"stable": True, "vdos_overlap": c.get("vdos_overlap"), "adf_overlap": c.get("adf_overlap"),
            "vdos_peaks_cm1": sur.get("vdos_peaks_cm1"), "vdos_peaks_cm1_aimd": ref.get("vdos_peaks_cm1"),
            "bond_length_mean_A": sur.get("bond_length_mean_A"),
            "bond_length_mean_A_aimd": ref.get("bond_length_mean_A"),
            "bond_angle_mean_deg": sur.get("bond_angle_mean_deg"),
            "bond_angle_mean_deg_aimd": ref.get("bond_angle_mean_deg"),
            "T_mean_K": sur.get("T_mean_K"), "T_mean_K_aimd": ref.get("T_mean_K"),
            "settings": "benchmarks/nnh_water/md_pyscf.yaml (1200 × 0.5 fs, Berendsen 300 K, O pinned)"}


# ------------------------------------------------------------------ the study


def main() -> None:
    sys.path.insert(0, str(HERE))
    from label_water import main as label

    from fastqmd.mlip.finetune import finetune, load_pretrained
    from fastqmd.mlip.potential import MLIPPotential
    from fastqmd.potential import PotentialCalculator

    if not MPTRJ.exists():
        raise SystemExit(f"{MPTRJ} missing: run `make replay-data`")
    dataset = label()
    from ase import Atoms

    ref = pbe_reference()
    start = Atoms("OH2", positions=ref["positions_A"])
    methods, t_all = {}, time.process_time()
    pre_obs = model_observables(start, PotentialCalculator(MLIPPotential(load_pretrained("sevenn:7net-0"))))
    pre_obs["md_vs_aimd"] = md_vs_aimd("pretrained", {"kind": "sevenn", "model": "7net-0"})
    for method in METHODS:
        cfg = config(method, dataset)
        t0 = time.process_time()
        report = OUT / method / "finetune.json"
        if not report.exists():
            finetune(cfg)
        r = json.loads(report.read_text())
        cpu = time.process_time() - t0
        summary = json.loads((OUT / method / "summary.json").read_text())
        obs = model_observables(start, PotentialCalculator(MLIPPotential.from_file(OUT / method / "model.pt")))
        ft, pre = r["ft_test"], r["pretraining_held_out"]
        methods[method] = {
            "ft_force_mae_before_meV_per_A": ft["before"]["F_mae_meV_A"],
            "ft_force_mae_after_meV_per_A": ft["after"]["F_mae_meV_A"],
            "ft_energy_mae_before_meV_per_atom": ft["before"]["E_mae_meV_atom"],
            "ft_energy_mae_after_meV_per_atom": ft["after"]["E_mae_meV_atom"],
            "pretrain_force_mae_before_meV_per_A": pre["before"]["F_mae_meV_A"],
            "pretrain_force_mae_after_meV_per_A": pre["after"]["F_mae_meV_A"],
            "pretrain_energy_mae_before_meV_per_atom": pre["before"]["E_mae_meV_atom"],
            "pretrain_energy_mae_after_meV_per_atom": pre["after"]["E_mae_meV_atom"],
            "harmonic_cm1": obs["harmonic_cm1"],
            "harmonic_mae_vs_pbe_cm1": float(np.mean(np.abs(np.subtract(obs["harmonic_cm1"], ref["harmonic_cm1"])))),
            "r_OH_A": obs["r_OH_A"], "angle_HOH_deg": obs["angle_HOH_deg"], "md_nve": obs["md_nve"],
            "md_vs_aimd": md_vs_aimd(method, {"kind": "mlip", "model": str(OUT / method / "model.pt")}),
            "lr": r["lr"], "settings": METHODS[method], "train_wall_s": summary["wall_time_s_all_runs"],
            "cpu_s_this_run": cpu,
        }
        print(method, {k: v for k, v in methods[method].items() if "mae" in k}, flush=True)
    pre_obs["harmonic_mae_vs_pbe_cm1"] = float(np.mean(np.abs(np.subtract(pre_obs["harmonic_cm1"],
                                                                            ref["harmonic_cm1"]))))
    import torch

    out = {"command": "make replay-data && OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python "
                      "benchmarks/mlip_finetune/study.py",
           "fine_tuning_set": {"path": str(dataset.relative_to(ROOT)), "level_of_theory": "pyscf-mol PBE def2-SVP",
                               "n": 60, "split": COMMON["split"]},
           "pretraining_set": {"source": "mattersim 1.2.3 sdist data/benchmarks/mptrj-random-1k.xyz (MIT)",
                               "max_atoms": MAX_ATOMS, "held_out": HELD_OUT, "pool": POOL},
           "common": COMMON, "steps": STEPS,
           "pbe_reference": {k: v for k, v in ref.items() if k != "positions_A"},
           "pretrained_observables": pre_obs, "methods": methods,
           "cpu_s_total": time.process_time() - t_all,
           "versions": {"python": platform.python_version(), "torch": torch.__version__}}
    (HERE / "finetune.json").write_text(json.dumps(out, indent=1))
    print(HERE / "finetune.json")


if __name__ == "__main__":
    main()
