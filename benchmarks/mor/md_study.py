"""MOR-QMD MD study (issue 11 part 6): the study's pinned-O 300 K water run with Hi-Fi and with MOR from the same
start (its Fig. 2 and 3: O–H1, O–H2, ∠HOH, kinetic, total energy, temperature vs time), and an NVE run of a freely
moving, rotating molecule with MOR (gradient forces) checked against Hi-Fi at every `--every`-th frame.

In:  the trajectories of examples/mor/md_64_hifi.yaml, md_64_mor.yaml and md_64_free_mor.yaml (run them first).
Out: benchmarks/mor/md_compare.json (`fastqmd compare` of Hi-Fi vs MOR, its figure md_compare.png),
     md_study.json (time-series agreement, NVE conservation, Hi-Fi vs MOR along the free run), md_timeseries.png.
Commands (the order they ran in):
    OMP_NUM_THREADS=1 .venv/bin/fastqmd md examples/mor/md_64_hifi.yaml
    OMP_NUM_THREADS=1 .venv/bin/fastqmd md examples/mor/md_64_mor.yaml
    OMP_NUM_THREADS=1 .venv/bin/fastqmd md examples/mor/md_64_free_mor.yaml
    .venv/bin/fastqmd mor hyper demo_out/mor/basis_64.h5 -o demo_out/mor/hyper_64_h4.h5 --table-spacing 0.046875
    OMP_NUM_THREADS=1 .venv/bin/fastqmd md examples/mor/md_64_hyper.yaml
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mor/md_study.py
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
HIFI_KW = dict(grid_points=64, box_ang=6.350126526766093, fd_order=4, filter_pseudo=False, n_empty=2,
               eigensolver="abpg", energy_tol_eV=2.7e-6, density_tol=1e-5)  # examples/mor/md_64_hifi.yaml, tighter ρ
HA_BOHR = 27.211386245988 / 0.529177210903  # eV/Å per Ha/Bohr


def geometry_series(traj: list) -> dict[str, np.ndarray]:
    """r(O–H1), r(O–H2) (Å) and ∠HOH (degrees) per frame (atoms in the order O, H, H)."""
    P = np.array([a.positions for a in traj])
    d1, d2 = P[:, 1] - P[:, 0], P[:, 2] - P[:, 0]
    r1, r2 = np.linalg.norm(d1, axis=1), np.linalg.norm(d2, axis=1)
    ang = np.degrees(np.arccos(np.clip((d1 * d2).sum(1) / (r1 * r2), -1, 1)))
    return {"r_OH1_A": r1, "r_OH2_A": r2, "angle_deg": ang}


def thermo(path: Path) -> dict[str, np.ndarray]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def agreement(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> dict:
    """RMS and max |a − b| over the common frames, and the first time the difference exceeds 10 % of a's range."""
    n = min(len(a), len(b))
    d = np.abs(a[:n] - b[:n])
    thr = 0.1 * (a[:n].max() - a[:n].min())
    over = np.nonzero(d > thr)[0]
    return {"rms_diff": float(np.sqrt(np.mean(d**2))), "max_diff": float(d.max()), "range_ref": float(np.ptp(a[:n])),
            "first_time_over_10pct_range_fs": float(t[over[0]]) if len(over) else None}


def run_series(run: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(thermo columns, geometry series) of one `fastqmd md` run folder."""
    from ase.io import read

    th = thermo(run / "thermo.csv")
    g = geometry_series(read(run / "trajectory.extxyz", ":"))
    return th, {**g, "E_kin_eV": th["E_kin_eV"], "E_tot_eV": th["E_tot_eV"], "T_K": th["T_K"]}


def pinned_study(out: dict, hifi_dir: Path, mor_dir: Path, hyper_dir: Path | None = None) -> None:
    runs = [mor_dir] + ([hyper_dir] if hyper_dir is not None and hyper_dir.exists() else [])
    rel = lambda p: str(Path(p).relative_to(ROOT))  # noqa: E731  (paths in the JSON relative to the repository)
    cmd = [str(ROOT / ".venv/bin/fastqmd"), "compare", rel(hifi_dir / "trajectory.extxyz"),
           *(rel(r / "trajectory.extxyz") for r in runs), "-o", rel(HERE / "md_compare")]
    subprocess.run(cmd, check=True, cwd=ROOT)
    out["compare_command"] = " ".join(["fastqmd", *cmd[1:]])
    th, sh = run_series(hifi_dir)
    t = th["time_fs"]
    names = ["MOR-QMD (exact reduced)", "MOR-QMD hyper-reduced"]
    out["pinned"] = {"runs": [str(r.relative_to(ROOT)) for r in [hifi_dir, *runs]]}
    surrogate = {}
    for name, r in zip(names, runs):
        tm, sm = run_series(r)
        surrogate[name] = sm
        out["pinned"][name] = {"frames": [len(th["step"]), len(tm["step"])],
                               "agreement": {k: agreement(sh[k], sm[k], t) for k in sh},
                               "mean": {k: [float(sh[k].mean()), float(sm[k].mean())] for k in sh}}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 3, figsize=(14, 7), sharex=True)
    for a, k in zip(ax.ravel(), sh):
        a.plot(t, sh[k], "r-", lw=1.5, label="Hi-Fi (real-space KS)")
        for (name, sm), style in zip(surrogate.items(), ("k--", "b:")):
            n = min(len(t), len(sm[k]))
            a.plot(t[:n], sm[k][:n], style, lw=1.2, label=name)
        a.set_ylabel(k)
    for a in ax[1]:
        a.set_xlabel("t (fs)")
    ax[0, 0].legend(fontsize=8)
    fig.suptitle("water, pinned O, Berendsen 300 K, dt 40 a.u., 64³ FD4: Hi-Fi vs MOR (rank 33) from the same start")
    fig.tight_layout()
    fig.savefig(HERE / "md_timeseries.png", dpi=110)
    plt.close(fig)


def free_study(out: dict, free_dir: Path, every: int) -> None:
    """NVE conservation of the MOR run, and Hi-Fi energy/forces at every `every`-th frame (warm-started along)."""
    from ase.io import read

    from fastqmd.dft.calculator import RSDFTCalculator

    th = thermo(free_dir / "thermo.csv")
    cons = th["conserved_eV"]
    t = th["time_fs"]
    slope = np.polyfit(t, cons, 1)[0] * 1000  # eV/ps
    out["free_nve"] = {"frames": len(t), "t_end_fs": float(t[-1]),
                       "conserved_max_abs_dev_meV": float(np.abs(cons - cons[0]).max() * 1000),
                       "conserved_drift_meV_per_ps": float(slope * 1000),
                       "E_kin_std_meV": float(th["E_kin_eV"].std() * 1000), "T_mean_K": float(th["T_K"].mean())}
    from fastqmd.mor.basis import load_basis
    from fastqmd.mor.frame import canonical_frame

    recipe = load_basis(ROOT / "demo_out/mor/basis_64.h5").recipe
    traj = read(free_dir / "trajectory.extxyz", ":")
    calc, calc_c = RSDFTCalculator(**HIFI_KW), RSDFTCalculator(**HIFI_KW)
    rows, t0 = [], time.perf_counter()
    for i in range(0, len(traj), every):
        a = traj[i]
        E_mor, F_mor = a.get_potential_energy(), a.get_forces()
        b = a.copy()
        b.calc = calc
        E_hi, F_hi = b.get_potential_energy(), b.get_forces()
        # Hi-Fi at the canonical placement of the same internal geometry (what MOR reduces): the lab placement
        # differs from it by the grid's egg-box (FD on a grid is not rotation/translation invariant)
        fr = canonical_frame(a.positions / 0.529177210903, recipe)
        c = a.copy()
        c.positions = fr.to_canonical(a.positions / 0.529177210903) * 0.529177210903
        c.calc = calc_c
        E_c, F_c = c.get_potential_energy(), fr.vectors_from_canonical(c.get_forces())
        norm = lambda F: np.linalg.norm(F, axis=1)  # noqa: E731
        rows.append({"frame": i, "time_fs": float(a.info.get("time_fs", i)), "E_mor_eV": float(E_mor),
                     "E_hifi_eV": float(E_hi), "E_hifi_canonical_eV": float(E_c),
                     "dF_max_Ha_per_Bohr": float(norm(F_hi - F_mor).max() / HA_BOHR),
                     "dF_H_max_Ha_per_Bohr": float(norm(F_hi - F_mor)[1:].max() / HA_BOHR),
                     "dF_H_vs_canonical_Ha_per_Bohr": float(norm(F_c - F_mor)[1:].max() / HA_BOHR),
                     "eggbox_dF_H_Ha_per_Bohr": float(norm(F_c - F_hi)[1:].max() / HA_BOHR),
                     "net_force_mor_eV_per_A": float(np.linalg.norm(F_mor.sum(0))),
                     "net_force_hifi_eV_per_A": float(np.linalg.norm(F_hi.sum(0)))})
        print(f"frame {i}: dE {E_mor - E_hi:+.2e} eV (vs canonical {E_mor - E_c:+.2e})  dF_H "
              f"{rows[-1]['dF_H_max_Ha_per_Bohr']:.2e} (vs canonical {rows[-1]['dF_H_vs_canonical_Ha_per_Bohr']:.2e}) "
              f"Ha/Bohr", flush=True)
    dE = np.array([r["E_mor_eV"] - r["E_hifi_eV"] for r in rows])
    dEc = np.array([r["E_mor_eV"] - r["E_hifi_canonical_eV"] for r in rows]) / 27.211386245988
    out["free_nve"]["hifi_check"] = {
        "every": every, "n": len(rows), "hifi_settings": HIFI_KW, "wall_s": time.perf_counter() - t0,
        "max_abs_dE_Ha": float(np.abs(dE).max() / 27.211386245988),
        "dE_spread_Ha": float(np.ptp(dE) / 27.211386245988),  # after the constant offset
        "max_dF_H_Ha_per_Bohr": float(max(r["dF_H_max_Ha_per_Bohr"] for r in rows)),
        "median_dF_H_Ha_per_Bohr": float(np.median([r["dF_H_max_Ha_per_Bohr"] for r in rows])),
        "max_dF_any_atom_Ha_per_Bohr": float(max(r["dF_max_Ha_per_Bohr"] for r in rows)),
        "vs_hifi_canonical": {"max_abs_dE_Ha": float(np.abs(dEc).max()),
                              "max_dF_H_Ha_per_Bohr": float(max(r["dF_H_vs_canonical_Ha_per_Bohr"] for r in rows)),
                              "median_dF_H_Ha_per_Bohr": float(np.median([r["dF_H_vs_canonical_Ha_per_Bohr"]
                                                                          for r in rows]))},
        "eggbox_hifi_lab_vs_canonical": {
            "max_abs_dE_Ha": float(np.abs([r["E_hifi_eV"] - r["E_hifi_canonical_eV"] for r in rows]).max()
                                   / 27.211386245988),
            "max_dF_H_Ha_per_Bohr": float(max(r["eggbox_dF_H_Ha_per_Bohr"] for r in rows))},
        "frames": rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hifi", default="demo_out/mor/md_64_hifi")
    ap.add_argument("--mor", default="demo_out/mor/md_64_mor")
    ap.add_argument("--free", default="demo_out/mor/md_64_free_mor")
    ap.add_argument("--hyper-run", default="demo_out/mor/md_64_hyper")
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--skip-free", action="store_true")
    ap.add_argument("--skip-pinned", action="store_true", help="keep the pinned results already in --out")
    ap.add_argument("--out", default=str(HERE / "md_study.json"))
    args = ap.parse_args()
    out: dict = {"command": " ".join(["OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "?"),
                                      ".venv/bin/python", "benchmarks/mor/md_study.py", *sys.argv[1:]]),
                 "configs": ["examples/mor/md_64_hifi.yaml", "examples/mor/md_64_mor.yaml",
                             "examples/mor/md_64_free_mor.yaml"],
                 "machine": {"platform": platform.platform(), "load_avg_1min": os.getloadavg()[0]}}
    old = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    if args.skip_pinned:
        out.update({k: old[k] for k in ("pinned", "compare_command") if k in old})
    else:
        pinned_study(out, ROOT / args.hifi, ROOT / args.mor, ROOT / args.hyper_run)
    if args.skip_free:
        out.update({k: old[k] for k in ("free_nve",) if k in old})
    else:
        free_study(out, ROOT / args.free, args.every)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out.get("pinned", {}), indent=1)[:3000])


if __name__ == "__main__":
    main()
