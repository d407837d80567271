"""MD engine speed: fastqmd velocity Verlet vs ASE's VelocityVerlet on the same EMT system, and the engine's own
per-step overhead with a zero-cost potential at ~10³ and ~10⁴ atoms.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/md_engine.py [--device cpu] [--out benchmarks/md_engine.json]

Both EMT runs reuse the calculator's neighbour list between steps (fastqmd: reset=False), so the ratio
measures the integrators and adapters, not the force field. One run each (the issue asks for one run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import torch
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.verlet import VelocityVerlet as AseVV

from fastqmd.md.config import MDConfig
from fastqmd.md.integrators import NoseHooverVerlet, VelocityVerlet
from fastqmd.md.run import run_md
from fastqmd.md.state import degrees_of_freedom, init_state, masses_of, maxwell_boltzmann
from fastqmd.potential import ZeroPotential, calculator_to_potential


def state_for(atoms, potential, device, integ):
    n = len(atoms)
    fixed = torch.zeros(n, dtype=torch.bool)
    dof = degrees_of_freedom(n, 0, True)
    m = masses_of(atoms)
    v = maxwell_boltzmann(m, fixed, 300.0, dof, 0)
    return integ.init(init_state(atoms, potential, v, m, fixed, dof, device))


def time_steps(integ, s, pot, n, device):
    for _ in range(3):
        s = integ.step(s, pot)
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        s = integ.step(s, pot)
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def emt_vs_ase(n_steps: int, rep: int) -> dict:
    a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((rep,) * 3)
    a.rattle(0.05, seed=1)
    integ = VelocityVerlet(2.0)
    s = state_for(a, calculator_to_potential(EMT(), reset=False), "cpu", integ)
    ours = time_steps(integ, s, calculator_to_potential(EMT(), reset=False), n_steps, "cpu")
    b = a.copy()
    b.set_velocities(s.velocities.numpy() / units.fs)
    b.calc = EMT()
    dyn = AseVV(b, timestep=2 * units.fs)
    dyn.run(3)
    t = time.perf_counter()
    dyn.run(n_steps)
    ase_s = (time.perf_counter() - t) / n_steps
    return {"n_atoms": len(a), "steps": n_steps, "fastqmd_steps_per_s": 1 / ours, "ase_steps_per_s": 1 / ase_s,
            "ratio_fastqmd_over_ase": ase_s / ours}


def zero_overhead(n_rep: int, device: str, n_steps: int) -> dict:
    a = bulk("Cu", "fcc", a=3.61).repeat((n_rep,) * 3)
    out = {"n_atoms": len(a), "device": device}
    for name, integ in [("velocity_verlet", VelocityVerlet(1.0)), ("nose_hoover", NoseHooverVerlet(1.0, 300.0, 50.0))]:
        s = state_for(a, ZeroPotential(), device, integ)
        out[f"{name}_ms_per_step"] = 1e3 * time_steps(integ, s, ZeroPotential(), n_steps, device)
    return out


def runner_overhead(n_rep: int, n_steps: int) -> dict:
    """Whole `run_md` loop (guard every step, distance check every 10 (limit 0.01 Å: free flight), thermo row
    every step, one checkpoint)
    with the zero potential, minus nothing: what the runner costs per step on top of the potential."""
    with tempfile.TemporaryDirectory() as d:
        cfg = MDConfig.model_validate({
            "structure": {"kind": "rattled_bulk", "element": "Cu", "supercell": n_rep,
                          "max_displacement_fraction": 0.0},
            "potential": {"kind": "emt"}, "ensemble": {"kind": "nve"}, "temperature_K": 300, "timestep_fs": 1.0,
            "steps": n_steps, "guard": {"min_distance_A": 0.01},
            "output": {"dir": d, "traj_every": n_steps, "checkpoint_every": n_steps,
                                         "progress": False}})
        s = run_md(cfg, potential=ZeroPotential())
    return {"n_atoms": n_rep**3, "steps": n_steps, "runner_ms_per_step": 1e3 * s.s_per_step}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/md_engine.json")
    args = ap.parse_args()
    res = {
        "command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python benchmarks/md_engine.py "
                   f"--device {args.device} --out {args.out}",
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "emt_vs_ase": [emt_vs_ase(300, 2), emt_vs_ase(100, 3)],
        "zero_potential": [zero_overhead(10, args.device, 2000), zero_overhead(22, args.device, 300)],
        "runner_zero_potential": [runner_overhead(10, 1000), runner_overhead(22, 200)],
    }
    print(json.dumps(res, indent=1))
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
