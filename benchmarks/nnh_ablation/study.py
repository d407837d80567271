"""Issue 13 study c: accuracy levers of the NN Hamiltonian, each an ablation on one split, and learning curves.

Lever measured here: an exact cheap part of H as a baseline, so that the network learns only the rest
(`model.h_baseline`, `fastqmd.nnh.core_baseline`):
    none          H = H_θ                                   (study a as committed)
    core          H = H_θ + T + V_nuc                       (PySCF one-electron integrals, exact dH/dR)
    core+hartree  H = H_θ + T + V_nuc + J[ρ_neutral atoms]  (the Hartree matrix of superposed atomic densities)
Everything else is study a's (benchmarks/nnh_water/train.yaml): data (500 thermal PySCF PBE/def2-SVP waters),
split (seed 0, 400/50/50), network, phases (1200 H-only steps, 200 E_rep steps, 600 joint), schedule, float32.

Lever 2, the capacity of E_rep (the double-counting energy E_DFT − Ω[H]) with the core+hartree H frozen after the
H-only phase (1200 H-only steps, then 800 E_rep-only steps, no joint phase), so that H keeps its accuracy:
    core_hartree_rep_eam  E_rep = pair + EAM                    (the default form)
    core_hartree_rep_net  E_rep = pair + EAM + atomic network   (`model.repulsion_network`: a small equivariant
                                                                 trunk of its own, 0e readout)
and both levers with training long enough: core_hartree_long_rep_net (6000 H-only steps, then 1000 E_rep-only
steps with the cosine restarted at 6000, `schedule.restart_steps`).

Lever 3, the energy functional (`model.energy_mode: ks`, `fastqmd.nnh.ks_functional`): the same H models with
E = E_KS[P(H, S)], the reference's own PBE functional at the learned density matrix, variational, no E_rep:
    core_hartree_ks       the H of core_hartree_rep_eam (1200 H-only steps; E_rep unused)
    core_hartree_long_ks  the H of core_hartree_long_rep_net (6000 H-only steps)
    none_ks               the H of none_h_only (train_none_h_only.yaml: no baseline, 1200 H-only steps)

Run (every step resumes, or is skipped when its output exists):
    fastqmd generate examples/water_pyscf.yaml
    fastqmd train benchmarks/nnh_ablation/train_none.yaml           (and train_core, train_core_hartree)
    python benchmarks/nnh_ablation/study.py train                   # + the n_train curve runs (H-only, 1200 steps)
    python benchmarks/nnh_ablation/study.py                         # evaluate and write
Writes benchmarks/nnh_ablation/ablation.json and learning_curves.png:
  - test split (the same 50 keys for every arm) and the 40-molecule OOD set of the side-by-side study (random
    rotation + σ = 0.05 Å Cartesian noise, same engine): H MAE (μEh), occupied-orbital-energy MAE, force MAE;
  - validation H and F MAE against optimizer steps (log-log) with a power-law fit over the second half of the
    H-only phase, extrapolated to the 10 μEh target (an extrapolation: it assumes the power law holds);
  - validation H MAE at the end of the H-only phase against the number of training structures (nested prefixes of
    the seeded training order, `split.n_train`; val and test fixed).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = ROOT / "out" / "nnh_ablation"
DATA = ROOT / "out" / "water_pyscf.h5"
OOD = ROOT / "out" / "mlip_side_by_side" / "water_ood.h5"  # shared with benchmarks/mlip_side_by_side
HARTREE_EV = 27.211386245988
ARMS = {"none": "train_none.yaml", "core": "train_core.yaml", "core_hartree": "train_core_hartree.yaml",
        "core_hartree_rep_eam": "train_core_hartree_rep_eam.yaml",
        "core_hartree_rep_net": "train_core_hartree_rep_net.yaml",
        "core_hartree_long_rep_net": "train_core_hartree_long_rep_net.yaml"}
H_ONLY_OF = {"core_hartree_long_rep_net": 6000}  # arms whose H-only phase is not H_ONLY_STEPS
H_ONLY_STEPS = 1200
N_TRAIN = [50, 100, 200]  # + 400 = the full arm
N_TRAIN_ARMS = ["core_hartree", "none"]
LONG = {"arm": "core_hartree", "steps": 6000, "eval_every": 200}  # H-only, for the steps extrapolation
TARGET_H_UEH = 10.0


def fastqmd(*args: str, log: Path | None = None) -> None:
    cmd = [sys.executable, "-m", "fastqmd.cli", *args]
    print("+ fastqmd", " ".join(args), flush=True)
    with open(log, "a") if log else open(os.devnull, "w") as f:
        subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                       stdout=f if log else None, stderr=subprocess.STDOUT if log else None)


def n_train_config(arm: str, n: int) -> Path:
    """The arm's config, H-only for H_ONLY_STEPS on the first n training structures."""
    cfg = yaml.safe_load((HERE / ARMS[arm]).read_text())
    cfg["output"] = f"out/nnh_ablation/{arm}_n{n}"
    cfg["split"] = {**cfg["split"], "n_train": n}
    cfg["max_steps"] = H_ONLY_STEPS
    cfg["loss"] = {**cfg["loss"], "h_only_steps": H_ONLY_STEPS}
    path = OUT / f"{arm}_n{n}.yaml"
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def long_config() -> Path:
    """The LONG arm's config, H-only for LONG steps (its val curve extends the H learning curve 5×)."""
    cfg = yaml.safe_load((HERE / ARMS[LONG["arm"]]).read_text())
    cfg["output"] = f"out/nnh_ablation/{LONG['arm']}_long"
    cfg["max_steps"] = LONG["steps"]
    cfg["eval_every"] = LONG["eval_every"]
    cfg["loss"] = {**cfg["loss"], "h_only_steps": LONG["steps"]}
    path = OUT / f"{LONG['arm']}_long.yaml"
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def train_keeping_checkpoint(arm: str, at_step: int) -> None:
    """`fastqmd train` of the arm, copying its checkpoint.pt to checkpoint_<at_step>.pt when it holds that step
    (checkpoint_every divides at_step): the H-only phase's end, which the ks arm re-reads."""
    import time

    import torch

    run, keep = OUT / arm, OUT / arm / f"checkpoint_{at_step}.pt"
    cmd = [sys.executable, "-m", "fastqmd.cli", "train", str(HERE / ARMS[arm])]
    with open(OUT / f"{arm}.log", "a") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=log,
                                stderr=subprocess.STDOUT)
        while proc.poll() is None:
            time.sleep(2)
            if not keep.exists() and (run / "checkpoint.pt").exists():
                try:
                    ck = torch.load(run / "checkpoint.pt", weights_only=True)
                except Exception:  # being written (atomic rename: retry)
                    continue
                if ck["progress"]["step"] == at_step:
                    torch.save(ck, keep)
    if proc.returncode:
        raise SystemExit(f"training {arm} failed ({proc.returncode})")


def train_all() -> None:
    for arm, cfg in ARMS.items():
        if arm == "core_hartree_long_rep_net":
            train_keeping_checkpoint(arm, 6000)
        else:
            fastqmd("train", str(HERE / cfg), log=OUT / f"{arm}.log")
    fastqmd("train", str(HERE / "train_none_h_only.yaml"), log=OUT / "none_h_only.log")
    for arm in N_TRAIN_ARMS:
        for n in N_TRAIN:
            fastqmd("train", str(n_train_config(arm, n)), log=OUT / f"{arm}_n{n}.log")
    fastqmd("train", str(long_config()), log=OUT / f"{LONG['arm']}_long.log")


def val_curve(run: Path) -> list[dict]:
    """[{step, H_uEh, F_meV_A}] of the validation lines of metrics.jsonl (the last line per step wins: resumes)."""
    by_step = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        d = json.loads(line)
        if "val" in d:
            by_step[d["step"]] = {"step": d["step"], "H_uEh": d["val"]["H_mae_eV"] / HARTREE_EV * 1e6,
                                  "F_meV_A": 1e3 * d["val"]["F_mae_eV_A"]}
    return [by_step[s] for s in sorted(by_step)]


def power_law(x, y) -> dict:
    """log y = a + b log x by least squares: {a, b} and the x where y = TARGET_H_UEH (if b < 0)."""
    b, a = np.polyfit(np.log(x), np.log(y), 1)
    out = {"exponent": float(b), "prefactor": float(np.exp(a))}
    out["x_at_target"] = float(np.exp((np.log(TARGET_H_UEH) - a) / b)) if b < 0 else None
    return out


def metrics_of(ev: dict) -> dict:
    eig = ev.get("eigenvalue_mae_eV") or {}
    return {"n_samples": ev["n_samples"], "H_mae_uEh": ev["H_mae_uEh"], "H_mae_eV": ev["H_mae_eV"],
            "orbital_energy_mae_uEh": {k: v / HARTREE_EV * 1e6 for k, v in eig.items() if v is not None},
            "force_mae_meV_per_A": 1e3 * ev["forces_eV_per_A"]["mae"],
            "energy_mae_meV_per_atom": ev.get("energy_mae_meV_per_atom"),
            "energy_mae_meV_per_atom_offset_removed": ev.get("energy_mae_meV_per_atom_offset")}


def evaluate_arm(arm: str, h_only_steps: int = H_ONLY_STEPS) -> dict:
    from fastqmd.nnh.evaluate import evaluate_files

    run = OUT / arm
    keys = json.loads((run / "split.json").read_text())["test"]
    out = {}
    for name, data, k in (("test_split", DATA, keys), ("ood", OOD, None)):
        target = run / f"eval_{name}" / "evaluation.json"
        if not target.exists():
            evaluate_files(run / "model.pt", data, run / f"eval_{name}", keys=k)
        out[name] = metrics_of(json.loads(target.read_text()))
    summary = json.loads((run / "summary.json").read_text())
    curve = val_curve(run)
    late = [p for p in curve if h_only_steps / 2 <= p["step"] <= h_only_steps]
    out["training"] = {"wall_time_s": summary.get("wall_time_s"), "steps": summary.get("steps"),
                       "config": f"benchmarks/nnh_ablation/{ARMS[arm]}" if arm in ARMS else
                       f"out/nnh_ablation/{arm}.yaml (written by study.py)"}
    out["val_curve"] = curve
    out["h_steps_power_law"] = power_law([p["step"] for p in late], [p["H_uEh"] for p in late]) if late else None
    return out


KS = {"xc": "PBE", "pyscf_basis": "def2-SVP"}  # the dataset's functional (examples/water_pyscf.yaml)
# lever 3, energy_mode "ks": the same H models, energy E_KS[P(H, S)] (fastqmd.nnh.ks_functional), no E_rep
KS_ARMS = {"core_hartree_ks": ("core_hartree_rep_eam", "checkpoint.pt"),
           "core_hartree_long_ks": ("core_hartree_long_rep_net", "checkpoint_6000.pt"),  # the end of its H-only phase
           "none_ks": ("none_h_only", "checkpoint.pt")}


def evaluate_ks_arm(arm: str) -> dict:
    """The source arm's H (the EMA weights of its checkpoint) re-read as energy_mode "ks"."""
    from fastqmd.nnh.checkpoint import load_energy_model, save_model
    from fastqmd.nnh.evaluate import evaluate_files
    from fastqmd.nnh.ks_functional import KSFunctional, with_ks_energy

    run, name = OUT / KS_ARMS[arm][0], KS_ARMS[arm][1]
    src = run / name
    ks_path = OUT / arm / "model.pt"
    if not ks_path.exists():
        ks_path.parent.mkdir(parents=True, exist_ok=True)
        save_model(with_ks_energy(load_energy_model(src), KSFunctional(**KS)), ks_path)
    keys = json.loads((run / "split.json").read_text())["test"]
    out = {"source": f"{KS_ARMS[arm][0]} ({name}: final EMA weights)", "energy_mode": "ks"}
    for name, data, k in (("test_split", DATA, keys), ("ood", OOD, None)):
        target = OUT / arm / f"eval_{name}" / "evaluation.json"
        if not target.exists():
            evaluate_files(ks_path, data, OUT / arm / f"eval_{name}", keys=k)
        out[name] = metrics_of(json.loads(target.read_text()))
    ev = json.loads((OUT / arm / "eval_ood" / "evaluation.json").read_text())
    out["ood"]["by_domain_score"] = ood_by_domain(run, ev["per_structure"])
    return out


def ood_by_domain(run: Path, rows: list[dict]) -> dict:
    """The OOD force MAE split at training-domain score 1 (`fastqmd.domain`, fitted on the run's training split;
    rows of evaluation.json and OOD frames are in the same order)."""
    from fastqmd.domain import fit_domain, read_frames, score, train_keys

    domain = fit_domain(read_frames(DATA, train_keys(run)))
    scores = [score(domain, a).score for a in read_frames(OOD)]
    split = {"inside": [r for r, sc in zip(rows, scores) if sc <= 1.0],
             "outside": [r for r, sc in zip(rows, scores) if sc > 1.0]}
    return {f"{k}_force_mae_meV_per_A": (sum(r["force_mae_meV_per_A"] for r in v) / len(v) if v else None)
            for k, v in split.items()} | {f"n_{k}": len(v) for k, v in split.items()}


SHIP = ROOT / "models" / "water-pbe-nnh-ks"


def ship(result: dict) -> None:
    """models/water-pbe-nnh-ks: the core_hartree_long_ks model with its card (study a adds the MD metrics)."""
    import shutil

    import torch

    r = result["ks_arms"]["core_hartree_long_ks"]
    SHIP.mkdir(parents=True, exist_ok=True)
    shutil.copy(OUT / "core_hartree_long_ks" / "model.pt", SHIP / "model.pt")
    src = torch.load(OUT / "core_hartree_long_rep_net" / "checkpoint_6000.pt", weights_only=True)
    old = json.loads((SHIP / "card.json").read_text()) if (SHIP / "card.json").exists() else {}
    keys = ("H_mae_uEh", "orbital_energy_mae_uEh", "force_mae_meV_per_A", "energy_mae_meV_per_atom",
            "energy_mae_meV_per_atom_offset_removed")
    card = {
        "name": "water-pbe-nnh-ks", "kind": "nnh",
        "architecture": "NNH, H = H_θ + H⁰ (core+hartree), energy_mode ks",
        "reference": "PySCF PBE/def2-SVP (pyscf-mol)",
        "energy": "E_KS[P(H_θ, S)]: the reference PBE functional at the learned density matrix (PySCF, per call); "
                  "no E_rep, no fitted constants",
        "data": {"config": "examples/water_pyscf.yaml", "n_train": 400,
                 "split": {"val_fraction": 0.1, "test_fraction": 0.1, "seed": 0}},
        "metrics": {"test_split": {k: r["test_split"][k] for k in keys} | {"n": r["test_split"]["n_samples"]},
                    "ood": {k: r["ood"][k] for k in keys} | {"by_domain_score": r["ood"].get("by_domain_score"),
                        "n": r["ood"]["n_samples"], "set": "40 rotated waters, N(0, 0.05² Å²) Cartesian noise, "
                                                          "same engine"},
                    **({"md_vs_reference": old["metrics"]["md_vs_reference"]}
                       if "md_vs_reference" in old.get("metrics", {}) else {})},
        "training_cost_s": src["progress"]["wall_s_all_runs"],
        "training_machine": "shared 2-core CPU, one thread, no GPU (up to 3 other processes at once)",
        "training_steps": 6000,
        "command": "python benchmarks/nnh_ablation/study.py train && python benchmarks/nnh_ablation/study.py "
                   "(the step-6000 EMA weights of train_core_hartree_long_rep_net.yaml's H-only phase, re-read as "
                   "energy_mode ks; the same H-only phase: fastqmd train benchmarks/nnh_water/train.yaml)",
        "structure": {"kind": "molecule", "name": "H2O", "sampling": "random", "displacement_A": 0.02, "seed": 0},
        "md": {"potential": {"kind": "nnh", "checkpoint": "models/water-pbe-nnh-ks/model.pt"}},
        "limits": "one neutral closed-shell water molecule (the training data); each call runs one PySCF Fock "
                  "build and gradient (0.22 s against 0.38 s for the PBE SCF + gradient: 1.7x faster, "
                  "study_a.json), so it is a fidelity tier, not a speed tier; models/water-pbe-nnh (Ω + E_rep) "
                  "takes 0.027 s",
    }
    (SHIP / "card.json").write_text(json.dumps(card, indent=1) + "\n")


def n_train_curve(arm: str, full: list[dict]) -> list[dict] | None:
    points = []
    for n in N_TRAIN:
        run = OUT / f"{arm}_n{n}"
        if not (run / "summary.json").exists():
            return None
        v = [p for p in val_curve(run) if p["step"] == H_ONLY_STEPS]
        points.append({"n_train": n, "val_H_uEh": v[0]["H_uEh"] if v else None})
    at = [p for p in full if p["step"] == H_ONLY_STEPS]
    points.append({"n_train": 400, "val_H_uEh": at[0]["H_uEh"] if at else None})
    return points


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.4))
    for arm, r in result["arms"].items():
        c = r["val_curve"]
        s = [p["step"] for p in c]
        (line,) = ax[0].loglog(s, [p["H_uEh"] for p in c], "o-", ms=3, label=arm)
        ax[1].loglog(s, [p["F_meV_A"] for p in c], "o-", ms=3, color=line.get_color(), label=arm)
        fit = r.get("h_steps_power_law")
        if fit:
            x = np.geomspace(H_ONLY_STEPS / 2, H_ONLY_STEPS * 8)
            ax[0].loglog(x, fit["prefactor"] * x ** fit["exponent"], "--", color=line.get_color(), lw=0.8)
        nt = result.get("n_train_curves", {}).get(arm)
        if nt:
            ax[2].loglog([p["n_train"] for p in nt], [p["val_H_uEh"] for p in nt], "s-", color=line.get_color(),
                         label=arm)
    ks_steps = {"core_hartree_ks": H_ONLY_STEPS, "core_hartree_long_ks": 6000, "none_ks": H_ONLY_STEPS}
    for arm, r in result.get("ks_arms", {}).items():  # energy_mode ks: test-split forces of the same H
        ax[1].loglog([ks_steps[arm]], [r["test_split"]["force_mae_meV_per_A"]], "*", ms=13, mec="k",
                     label=f"{arm} (E_KS[P(H)], test split)")
    for a in ax[:2]:
        for b in (H_ONLY_STEPS, H_ONLY_STEPS + 200):
            a.axvline(b, color="0.7", lw=0.6)
        a.set_xlabel("optimizer steps (batch 8)")
    ax[0].axhline(TARGET_H_UEH, color="k", ls=":", label="target 10 μEh")
    ax[0].set_ylabel("validation H MAE (μEh)")
    ax[0].set_title("H error vs steps (dashed: power law, H-only phase)")
    ax[1].axhline(20, color="k", ls=":", label="target 20 meV/Å")
    ax[1].set_ylabel("validation force MAE (meV/Å)")
    ax[1].set_title("force error vs steps (phases: H | E_rep | joint); ★ energy_mode ks")
    ax[2].set_xlabel("training structures")
    ax[2].set_ylabel(f"validation H MAE after {H_ONLY_STEPS} H-only steps (μEh)")
    ax[2].set_title("H error vs training set size")
    for a in ax:
        a.legend(fontsize=7, loc="lower left" if a is ax[1] else "best", framealpha=0.6)
        a.grid(alpha=0.3, which="both")
    fig.suptitle("Water PySCF PBE/def2-SVP NNH: the exact-baseline and E_rep ablations (same data, split, network)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    if "train" in sys.argv[1:]:
        train_all()
    sys.path.insert(0, str(ROOT / "benchmarks" / "mlip_universal"))
    from measure import rotated_water_set

    OOD.parent.mkdir(parents=True, exist_ok=True)
    rotated_water_set(OOD, [0.05] * 40, seed=2026, rotation_seed=9000)  # the side-by-side study's OOD set
    # arms whose runs are not in out/ (an earlier session's) keep their committed results
    committed = json.loads((HERE / "ablation.json").read_text()) if (HERE / "ablation.json").exists() else {}
    arms = {arm: evaluate_arm(arm, H_ONLY_OF.get(arm, H_ONLY_STEPS)) if (OUT / arm / "summary.json").exists()
            else committed["arms"][arm]
            for arm in ARMS if (OUT / arm / "summary.json").exists() or arm in committed.get("arms", {})}
    long_name = f"{LONG['arm']}_long"
    if (OUT / long_name / "summary.json").exists():  # H-only: its forces lack E_rep and are not meaningful
        arms[long_name] = evaluate_arm(long_name, h_only_steps=LONG["steps"])
        arms[long_name]["note"] = f"H-only for {LONG['steps']} steps (no E_rep fit): judge H, not forces"
    elif long_name in committed.get("arms", {}):
        arms[long_name] = committed["arms"][long_name]
    ks_arms = {a: evaluate_ks_arm(a) if (OUT / run / name).exists() else committed.get("ks_arms", {}).get(a)
               for a, (run, name) in KS_ARMS.items()}
    result = {
        "what": "issue 13 study c: the exact-baseline lever (model.h_baseline) and the E_rep-capacity lever "
                "(model.repulsion_network) on study a's water data, split and network; test split, OOD set and "
                "learning curves",
        "commands": ["fastqmd generate examples/water_pyscf.yaml",
                     *[f"fastqmd train benchmarks/nnh_ablation/{c}" for c in ARMS.values()],
                     "fastqmd train benchmarks/nnh_ablation/train_none_h_only.yaml",
                     "python benchmarks/nnh_ablation/study.py train", "python benchmarks/nnh_ablation/study.py"],
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(), "device": "cpu",
                    "note": "shared 2-core machine, OMP_NUM_THREADS=1, up to 4 processes at once: wall times are "
                            "not comparable between arms"},
        "dataset": "out/water_pyscf.h5 (examples/water_pyscf.yaml)",
        "ood_set": "40 rotated ASE H2O + N(0, 0.05² Å²) noise, PySCF PBE/def2-SVP (benchmarks/mlip_side_by_side)",
        "target_H_mae_uEh": TARGET_H_UEH,
        "arms": arms,
        "ks_arms": {a: r for a, r in ks_arms.items() if r},
        "n_train_curves": {a: c for a in N_TRAIN_ARMS if a in arms and (c := n_train_curve(a, arms[a]["val_curve"]))},
        "n_train_note": "50/100/200: H-only runs of 1200 steps (cosine to its floor at 1200); 400: the full arm at "
                        "step 1200 of its 2000-step schedule (lr still 1/3 of the peak) — not the same schedule. "
                        "Flat from 50 to 200 structures (200-24 epochs): at 1200 steps the H error is limited by "
                        "optimisation, not by data",
    }
    for a, c in result["n_train_curves"].items():
        pts = [(p["n_train"], p["val_H_uEh"]) for p in c if p["val_H_uEh"]]
        if len(pts) >= 2:
            result.setdefault("n_train_power_law", {})[a] = power_law(*zip(*pts))
    (HERE / "ablation.json").write_text(json.dumps(result, indent=1) + "\n")
    if (OUT / "core_hartree_long_ks" / "model.pt").exists():
        ship(result)
    plot(result, HERE / "learning_curves.png")
    table = {a: {k: (r["test_split"]["H_mae_uEh"], r["test_split"]["force_mae_meV_per_A"],
                     r["ood"]["H_mae_uEh"], r["ood"]["force_mae_meV_per_A"]) for k in ["H, F test; H, F OOD"]}
             for a, r in arms.items()}
    table.update({a: (r["test_split"]["H_mae_uEh"], r["test_split"]["force_mae_meV_per_A"], r["ood"]["H_mae_uEh"],
                      r["ood"]["force_mae_meV_per_A"]) for a, r in result["ks_arms"].items()})
    print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
