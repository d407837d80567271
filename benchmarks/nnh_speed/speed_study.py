"""Issue 4, study c: NNH-MD seconds per MD step for Cu 64/125/216 vs tblite GFN1-xTB and PySCF PBC, one run.

Commands (the committed results; CPU, one thread; the exact command is also stored in the JSON):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nnh_speed/speed_study.py --pyscf-full 4 \
        --pyscf-full-only benchmarks/nnh_speed/pyscf_full_scf_cu4.json          # SCF cycle count, once
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nnh_speed/speed_study.py --pyscf-full '' \
        --pyscf-full-from benchmarks/nnh_speed/pyscf_full_scf_cu4.json --out benchmarks/nnh_speed/speed_study.json

Systems: fcc Cu, a = 3.61 Å, 4³/5³/6³ primitive supercells (N = 64/125/216), every Cartesian component rattled
uniformly in ±0.05 Å (seeded), Γ point. Every time is recorded twice, medians over repeats: wall seconds
(time.perf_counter) and CPU seconds of this process (time.process_time). All codes run on one thread
(OMP_NUM_THREADS=1, torch.set_num_threads(1)), so on a shared, loaded machine the CPU time is the cost on an
idle core and the wall time additionally counts waiting for a core; ratios are given for both.

NNH-MD: `NNHPotential.compute(System)` — what the MD integrators call each step (fastqmd.md.integrators):
    E = Ω[H_θ(R), S(R)] + E_rep(R) (+ Σ e_Z), F = −∂E/∂R, stress (periodic cell) by autograd,
with the MD default `eigenvalues: true` (ε stored per frame; they come from the Ω forward's own eigensolution, so
no second eigensolve) and without it. The model is an
untrained `EnergyModel` built as `fastqmd.nnh.train.build_energy_config` builds it (float32 network, float64
S, eigensolve and free energy; overlap "table" = tblite GFN1 S from radial splines; 11 valence electrons per
Cu; T_el = 300 K): timing does not depend on the weights. Between repeats the atoms move by ≤ 1e-3 Å, as in
MD, so the cached neighbour graphs (skin 0.5 Å) are reused; the graph build is timed separately.
Breakdown of one step (same functions as `fastqmd.nnh.energy.energy_forces`, timed stage by stage):
    network fwd  : H blocks (NNHModel) + assembly to H(Γ)          overlap fwd : TabulatedOverlap → S(Γ)
    eigensolve   : Ω forward = Cholesky(S), eigh(L⁻¹HL⁻ᵀ), Fermi level, Ω   repulsion fwd
    backward     : ∂Ω/∂H = ρ, ∂Ω/∂S = −W (eigensolve bwd), then H, S, E_rep back to (R, cell)
and step / (network fwd + network bwd + one eigensolve) for the issue's ≤ 1.5 target.
tblite: (a) `fastqmd.reference.xtb.TBLiteEngine.compute` = what `fastqmd md` with a tblite reference potential
runs per step (new calculator each step: cold SCC start, save-integrals, H rebuilt for the dataset);
(b) warm start: one `tblite.interface.Calculator`, `update(positions)` and `singlepoint(res)` restarting from the
previous step's wavefunction (the cheapest tblite MD step). Same GFN1-xTB, 300 K, accuracy 0.01.
PySCF PBC: `fastqmd.reference.pyscf_pbc.PySCFPBCEngine` (PBE, gth-szv-molopt-sr, gth-pbe, Γ, RKS+multigrid,
conv_tol 1e-9, precision 1e-8). A full SCF + forces at 64 atoms does not fit a 20-minute run; measured:
per size N_p (small cubic cells) the setup + first cycle (cell build, initial guess), the mean time of later
SCF cycles (max_cycle limited) and the analytic gradient; the number of SCF cycles to convergence at the
smallest size. Extrapolated to N: t(N) = t_setup(N) + n_cyc·t_cycle(N) + t_grad(N), each term a power law
a·N^b fitted through the measured sizes (labelled "extrapolated" with its basis in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk

A_CU = 3.61  # Å
RATTLE_A = 0.05  # Å, uniform per Cartesian component
MD_JITTER_A = 1e-3  # Å, displacement between timed steps (graph caches stay valid, as in MD)
VALENCE_CU = 11.0
T_EL_K = 300.0
DEFAULT_SPEC = {
    "cutoff": 5.0,
    "hidden_irreps": "32x0e+16x1o+8x1e+8x2e+4x2o+4x3o+4x3e+4x4e",
    "n_layers": 2,
    "lmax": 4,
    "overlap": "table",
}
STUDY_B_YAML = Path(__file__).resolve().parents[1] / "nnh_cu" / "train.yaml"


# ------------------------------------------------------------------ structures and model


def cu_supercell(n: int, seed: int = 0, cubic: bool = False, reps: tuple[int, int, int] | None = None) -> Atoms:
    """fcc Cu (a = 3.61 Å) n×n×n primitive (or conventional) supercell, rattled uniformly in ±RATTLE_A Å."""
    atoms = bulk("Cu", "fcc", a=A_CU, cubic=cubic).repeat(reps or (n, n, n))
    rng = np.random.default_rng(seed)
    atoms.positions = atoms.positions + rng.uniform(-RATTLE_A, RATTLE_A, atoms.positions.shape)
    return atoms


def model_spec():
    """ModelSpec of study b (its YAML's `model:` section if the file exists, else the issue's default)."""
    from fastqmd.nnh.train import ModelSpec

    if STUDY_B_YAML.exists():
        import yaml

        section = (yaml.safe_load(STUDY_B_YAML.read_text()) or {}).get("model") or {}
        return ModelSpec(**{**section, "overlap": "table"}), str(STUDY_B_YAML)
    return ModelSpec(**DEFAULT_SPEC), "default of the issue-4 brief (no benchmarks/nnh_cu/train.yaml)"


def build_model(spec, atoms64: Atoms):
    """EnergyModel as `build_energy_config` makes it for a tblite GFN1 Cu dataset (constants set directly:
    11 valence electrons, T_el 300 K, e_Cu = 0; avg_num_neighbors = mean neighbour count of the 64-atom cell)."""
    from fastqmd.nnh.tblite_overlap import tblite_table_config
    from fastqmd.nnh.energy import EnergyModel, EnergyModelConfig
    from fastqmd.nnh.graph import build_graph
    from fastqmd.nnh.model import NNHConfig
    from fastqmd.nnh.repulsion import RepulsionConfig

    table = tblite_table_config("GFN1-xTB", ["Cu"])
    basis = {"Cu": tuple(table.basis["Cu"])}
    n_orb = {"Cu": sum(2 * l + 1 for l in basis["Cu"])}
    g = build_graph(
        atoms64.get_chemical_symbols(),
        atoms64.positions,
        np.array(atoms64.cell),
        (True,) * 3,
        spec.cutoff,
        ["Cu"],
        n_orb,
    )
    avg = spec.avg_num_neighbors or g.edge_i.numel() / len(atoms64)
    h = NNHConfig(
        basis=basis,
        cutoff=spec.cutoff,
        hidden_irreps=spec.hidden_irreps,
        n_layers=spec.n_layers,
        lmax=spec.lmax,
        n_radial=spec.n_radial,
        radial_hidden=spec.radial_hidden,
        n_scalars_embed=spec.n_scalars_embed,
        avg_num_neighbors=avg,
        dtype="float32",
    )
    rep = RepulsionConfig(
        species=("Cu",),
        cutoff=spec.repulsion_cutoff,
        n_radial=spec.n_radial,
        many_body=spec.repulsion_many_body,
        dtype="float32",
    )
    cfg = EnergyModelConfig(
        h=h,
        overlap="table",
        table=table,
        repulsion=rep,
        energy_mode=spec.energy_mode,
        electronic_temperature_K=T_EL_K,
        valence_electrons={"Cu": VALENCE_CU},
        reference_energies={"Cu": 0.0},
    )
    torch.manual_seed(0)
    model = EnergyModel(cfg)
    return model, cfg


class Stopwatch:
    """Wall (perf_counter) and CPU (process_time: this process's CPU seconds, all threads) time of each lap.
    With one thread the CPU time is what a step costs on an idle core; the wall time includes waiting for a
    core on a loaded machine (both are reported)."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.start()

    def start(self) -> None:
        self._t = (time.perf_counter(), time.process_time())

    def lap(self, key: str) -> None:
        now = (time.perf_counter(), time.process_time())
        self.wall[key], self.cpu[key] = now[0] - self._t[0], now[1] - self._t[1]
        self._t = now


def summary(walls, cpus) -> dict:
    """Medians (and all values) of wall and CPU seconds."""
    return {"median_s": median(walls), "median_cpu_s": median(cpus), "all_s": list(walls), "all_cpu_s": list(cpus)}


def median(xs) -> float:
    return float(np.median(np.asarray(xs, dtype=float)))


def jitter(atoms: Atoms, rng) -> None:
    atoms.positions = atoms.positions + rng.uniform(-MD_JITTER_A, MD_JITTER_A, atoms.positions.shape)


# ------------------------------------------------------------------ NNH


def nnh_steps(pot, atoms: Atoms, repeats: int, eigenvalues: bool, warmup: bool = True) -> dict:
    """Seconds per `NNHPotential.compute` (energy, forces, stress[, eigenvalues]), after one untimed call
    (`warmup`: the first call for a size builds the neighbour graphs)."""
    from fastqmd.potential import system_from_atoms

    pot.eigenvalues = eigenvalues
    atoms = atoms.copy()
    rng = np.random.default_rng(1)
    if warmup:
        pot.compute(system_from_atoms(atoms))
    sw, walls, cpus = Stopwatch(), [], []
    for _ in range(repeats):
        jitter(atoms, rng)
        system = system_from_atoms(atoms)
        sw.start()
        res = pot.compute(system)
        sw.lap("step")
        walls.append(sw.wall["step"])
        cpus.append(sw.cpu["step"])
    assert torch.isfinite(res.forces).all() and torch.isfinite(res.energy)
    return dict(**summary(walls, cpus), graph_builds=pot.n_graph_builds)


def nnh_breakdown_once(model, atoms: Atoms, skin: float = 0.5) -> tuple[dict, dict, dict]:
    """One step of `energy_forces` (+ the stored-eigenvalue eigensolve) timed stage by stage (module docstring).
    Returns (wall s, CPU s, info) per stage."""
    from fastqmd.electronic import free_energy, solve_spectrum
    from fastqmd.nnh.blocks import to_kspace
    from fastqmd.nnh.overlap import check_positive_definite
    from fastqmd.nnh.potential import frame_of
    from fastqmd.potential import system_from_atoms

    system = system_from_atoms(atoms)
    frame = frame_of(system)
    pos_np, cell_np = atoms.positions.copy(), np.array(atoms.cell)
    sw = Stopwatch()
    g = model.graph(frame.symbols, pos_np, cell_np, frame.pbc, skin=skin)
    sw.lap("graph_build_network_s")
    model.graphs.clear()  # force the overlap graph (cutoff ≈ 14.5 Å + skin) to be rebuilt and timed
    sg = model.graphs.get(frame.symbols, frame.pbc, pos_np, cell_np, model.s.cutoff, 0.5, torch.device("cpu"))
    sw.lap("graph_build_overlap_s")
    info = {"n_edges_network": int(g.edge_i.numel()), "n_edges_overlap": int(sg.edge_i.numel())}

    dt = model.dtype
    pos = system.positions.clone().requires_grad_(True)
    cell = system.cell.clone().requires_grad_(True)
    k64 = torch.as_tensor(frame.kpoints, dtype=torch.float64)
    kw = torch.as_tensor(frame.kweights, dtype=torch.float64)
    n_el = model.n_electrons(frame.symbols)
    sw.start()
    p, c = pos.to(dt), cell.to(dt)
    blocks = model.h(p, c, g)
    sw.lap("network_fwd_blocks_s")
    H = to_kspace(blocks, g, k64.to(dt)).to(torch.float64)
    sw.lap("network_fwd_assembly_s")
    S = to_kspace(model.s(pos, cell, sg), sg, k64)
    check_positive_definite(S)
    sw.lap("overlap_fwd_s")
    Hl, Sl = H.detach().requires_grad_(True), S.detach().requires_grad_(True)
    sw.start()
    omega = free_energy(
        Hl, Sl, kw, n_electrons=n_el, kT=model.kT, spin_factor=model.config.spin_factor, mode=model.config.energy_mode
    )
    sw.lap("eigensolve_fwd_s")
    e_rep = model.rep(p, c, g).to(torch.float64)
    sw.lap("repulsion_fwd_s")
    gH, gS = torch.autograd.grad(omega, (Hl, Sl))
    sw.lap("eigensolve_bwd_s")
    gp_h = torch.autograd.grad(H, (pos, cell), gH)
    sw.lap("network_bwd_s")
    gp_s = torch.autograd.grad(S, (pos, cell), gS)
    sw.lap("overlap_bwd_s")
    gp_r = torch.autograd.grad(e_rep, (pos, cell))
    sw.lap("repulsion_bwd_s")
    solve_spectrum(H.detach(), S.detach(), kw, n_el, model.kT, model.config.spin_factor)
    sw.lap("separate_eigensolve_s")  # not part of a step (ε come from Ω's forward): what a 2nd solve would cost
    for d in (sw.wall, sw.cpu):
        d["network_fwd_s"] = d["network_fwd_blocks_s"] + d["network_fwd_assembly_s"]
    F = -(gp_h[0] + gp_s[0] + gp_r[0])
    assert torch.isfinite(F).all()
    info["forces"], info["energy"] = F.detach(), float((omega + e_rep).detach())
    return sw.wall, sw.cpu, info


STAGES = [
    "network_fwd_s",
    "overlap_fwd_s",
    "eigensolve_fwd_s",
    "repulsion_fwd_s",
    "eigensolve_bwd_s",
    "network_bwd_s",
    "overlap_bwd_s",
    "repulsion_bwd_s",
]


def derived(med: dict) -> dict:
    """Sums of the stage medians."""
    out = dict(med)
    out["sum_stages_energy_forces_stress_s"] = sum(med[k] for k in STAGES)
    out["backward_total_s"] = sum(med[k] for k in STAGES if k.endswith("bwd_s"))
    out["network_fwd_bwd_plus_one_eigensolve_s"] = med["network_fwd_s"] + med["network_bwd_s"] + med["eigensolve_fwd_s"]
    return out


def criterion(med: dict, step_md: float, step_noev: float) -> dict:
    """step / (network fwd + bwd + one eigensolve) — the issue's ≤ 1.5 — and stage-sum consistency checks."""
    base = med["network_fwd_bwd_plus_one_eigensolve_s"]
    return {
        "step_no_eigenvalues_over_net_fwd_bwd_plus_eigensolve": step_noev / base,
        "step_md_default_over_net_fwd_bwd_plus_eigensolve": step_md / base,
        "stage_sum_over_step_no_eigenvalues": med["sum_stages_energy_forces_stress_s"] / step_noev,
        "stage_sum_over_step_md_default": med["sum_stages_energy_forces_stress_s"] / step_md,
    }


def nnh_breakdown(model, atoms: Atoms, repeats: int) -> dict:
    from fastqmd.nnh.energy import energy_forces
    from fastqmd.nnh.potential import frame_of
    from fastqmd.potential import system_from_atoms

    atoms = atoms.copy()
    rng = np.random.default_rng(2)
    runs = []
    for _ in range(repeats):
        jitter(atoms, rng)
        runs.append(nnh_breakdown_once(model, atoms))
    # the staged computation is the same function as the MD path: check the forces and energy agree
    system = system_from_atoms(atoms)
    frame = frame_of(system)
    g = model.graph(frame.symbols, atoms.positions, np.array(atoms.cell), frame.pbc, skin=0.5)
    parts, F, _ = energy_forces(
        model, frame, system.positions.clone().requires_grad_(True), system.cell, g, stress=True
    )
    info = runs[-1][2]
    check = {
        "max_abs_force_diff_eV_A": float((F - info["forces"]).abs().max()),
        "energy_diff_eV": abs(float(parts.energy.detach()) - model.reference_energy(frame.symbols) - info["energy"]),
    }
    wall = derived({k: median([r[0][k] for r in runs]) for k in runs[0][0]})
    cpu = derived({k: median([r[1][k] for r in runs]) for k in runs[0][1]})
    return {
        "median": wall,
        "median_cpu": cpu,
        "n_edges_network": info["n_edges_network"],
        "n_edges_overlap": info["n_edges_overlap"],
        "consistency_with_energy_forces": check,
    }


# ------------------------------------------------------------------ tblite


def tblite_engine_steps(atoms: Atoms, repeats: int) -> dict:
    """Seconds per `TBLiteEngine.compute` (fastqmd's reference MD step: cold start each call)."""
    from fastqmd.reference.xtb import TBLiteEngine

    eng = TBLiteEngine("GFN1-xTB", electronic_temperature_K=T_EL_K)
    atoms = atoms.copy()
    rng = np.random.default_rng(3)
    sw, walls, cpus = Stopwatch(), [], []
    for _ in range(repeats):
        jitter(atoms, rng)
        sw.start()
        s = eng.compute(atoms)
        sw.lap("step")
        walls.append(sw.wall["step"])
        cpus.append(sw.cpu["step"])
    return dict(**summary(walls, cpus), energy_eV=s.energy)


def tblite_warm_steps(atoms: Atoms, repeats: int) -> dict:
    """Seconds per warm-started tblite step: one Calculator, update(positions), singlepoint(previous result).
    The first (cold) call is reported separately and not in the median."""
    from tblite.interface import Calculator

    from fastqmd.units import BOHR_ANG, HARTREE_EV, KB_EV

    atoms = atoms.copy()
    calc = Calculator(
        "GFN1-xTB",
        atoms.numbers,
        atoms.positions / BOHR_ANG,
        lattice=np.array(atoms.cell) / BOHR_ANG,
        periodic=np.ones(3, dtype=bool),
    )
    calc.set("verbosity", 0)
    calc.set("temperature", T_EL_K * KB_EV / HARTREE_EV)
    calc.set("accuracy", 0.01)
    sw = Stopwatch()
    res = calc.singlepoint()
    sw.lap("cold")
    cold = {"first_cold_s": sw.wall["cold"], "first_cold_cpu_s": sw.cpu["cold"]}
    rng = np.random.default_rng(3)
    walls, cpus = [], []
    for _ in range(repeats):
        jitter(atoms, rng)
        sw.start()
        calc.update(positions=atoms.positions / BOHR_ANG)
        res = calc.singlepoint(res)
        np.asarray(res.get("gradient"))
        sw.lap("step")
        walls.append(sw.wall["step"])
        cpus.append(sw.cpu["step"])
    if not walls:
        return dict(
            **summary([cold["first_cold_s"]], [cold["first_cold_cpu_s"]]),
            **cold,
            note="no warm repeat at this size: the first (cold) step is reported",
        )
    return dict(**summary(walls, cpus), **cold)


def tblite_extrapolate(rows: list[dict]) -> None:
    """Sizes without a tblite measurement get warm_EXTRAPOLATED: a·N^b through the measured warm steps (≥ 2 sizes)."""
    done = [r for r in rows if r["tblite"]["warm"]]
    if len(done) < 2:
        return
    ns = [r["n_atoms"] for r in done]
    for r in rows:
        if r["tblite"]["warm"]:
            continue
        ext = {"extrapolated": True, "basis": f"power law a·N^b through the measured warm steps at N = {ns}"}
        for suffix in ("_s", "_cpu_s"):
            a, b = power_law(ns, [d["tblite"]["warm"]["median" + suffix] for d in done])
            ext["median" + suffix], ext["exponent" + suffix] = a * r["n_atoms"] ** b, b
        r["tblite"]["warm_EXTRAPOLATED"] = ext


# ------------------------------------------------------------------ PySCF


PYSCF_SHAPES = {"4": (1, 1, 1), "8": (1, 1, 2), "16": (1, 2, 2), "32": (2, 2, 2)}  # conventional fcc cells
PYSCF_SMEARING_K = 0.0  # the engine default (no smearing); set by --pyscf-smearing-K


def pyscf_engine():
    from fastqmd.reference.pyscf_pbc import PySCFPBCEngine

    return PySCFPBCEngine(
        xc="PBE", basis="gth-szv-molopt-sr", pseudo="gth-pbe", kmesh=(1, 1, 1), smearing_K=PYSCF_SMEARING_K
    )


def pyscf_full_scf(size: str, max_cycle: int) -> dict:
    """A converged SCF (+ gradient) at one small size: its cycle count enters the extrapolation."""
    atoms = cu_supercell(1, seed=5, cubic=True, reps=PYSCF_SHAPES[size])
    full = pyscf_cycles(atoms, max_cycle)
    full["note"] = f"full SCF to conv_tol 1e-9 (max_cycle {max_cycle}) + gradient: sets the SCF cycle count"
    full["settings"] = pyscf_engine().settings
    print(
        f"pyscf full N={len(atoms)}: {full['n_cycles_run']} cycles, converged {full['converged']}, "
        f"{full['build_cell_s'] + full['scf_s'] + full['gradient_s']:.1f} s wall",
        flush=True,
    )
    return full


def pyscf_cycles(atoms: Atoms, max_cycle: int, gradient: bool = True) -> dict:
    """Cell build, SCF with `max_cycle` cycles (per-cycle wall and CPU times from the SCF callback), gradient.
    Keys ending in _s are wall seconds, _cpu_s CPU seconds."""
    eng = pyscf_engine()
    sw = Stopwatch()
    cell = eng.build_cell(atoms)
    sw.lap("build_cell")
    mf = eng.build_scf(cell)
    mf.max_cycle = max_cycle
    stamps = []
    mf.callback = lambda env: stamps.append((time.perf_counter(), time.process_time()))
    sw.start()
    t1 = sw._t
    mf.kernel()
    sw.lap("scf")
    out = {
        "n_atoms": len(atoms),
        "nao": int(cell.nao),
        "mesh": [int(m) for m in cell.mesh],
        "n_cycles_run": len(stamps),
        "converged": bool(mf.converged),
        "energy_Ha": float(mf.e_tot),
    }
    for j, suffix in ((0, "_s"), (1, "_cpu_s")):
        cyc = np.diff([t1[j]] + [st[j] for st in stamps])  # cycle 0 includes the initial guess and first Fock build
        build = sw.wall["build_cell"] if j == 0 else sw.cpu["build_cell"]
        scf = sw.wall["scf"] if j == 0 else sw.cpu["scf"]
        out["cycle" + suffix] = [float(x) for x in cyc]
        out["build_cell" + suffix], out["scf" + suffix] = build, scf
        out["setup" + suffix] = build + float(cyc[0])  # cell build + initial guess + first cycle
        out["later_cycle_mean" + suffix] = float(np.mean(cyc[1:])) if len(cyc) > 1 else None
    if gradient:
        sw.start()
        mf.nuc_grad_method().kernel()
        sw.lap("gradient")
        out["gradient_s"], out["gradient_cpu_s"] = sw.wall["gradient"], sw.cpu["gradient"]
    return out


def power_law(ns, ts) -> tuple[float, float]:
    """(a, b) of t = a·N^b, least squares in log space (exact through two points)."""
    b, loga = np.polyfit(np.log(ns), np.log(ts), 1)
    return float(np.exp(loga)), float(b)


def pyscf_study(sizes: list[str], max_cycle: int, full: dict | None, targets: list[int]) -> dict:
    """Measured PySCF costs at small cubic Cu cells and their labelled extrapolation to `targets`; `full` is a
    `pyscf_full_scf` result (from this run or an earlier one, its origin recorded in it)."""
    shapes = PYSCF_SHAPES
    meas = []
    for s in sizes:
        atoms = cu_supercell(1, seed=5, cubic=True, reps=shapes[s])
        r = pyscf_cycles(atoms, max_cycle)
        print(
            f"pyscf N={len(atoms)}: "
            + json.dumps({k: r[k] for k in ("setup_s", "later_cycle_mean_s", "gradient_s", "later_cycle_mean_cpu_s")}),
            flush=True,
        )
        meas.append(r)
    ns = [m["n_atoms"] for m in meas]
    n_cyc = full["n_cycles_run"] if full else None
    how = "measured to converge" if full and full["converged"] else "run WITHOUT converging (a lower bound)"
    fits, extrap = {}, {}
    if len(meas) >= 2 and n_cyc is not None:
        for suffix in ("_s", "_cpu_s"):
            for k in ("setup", "later_cycle_mean", "gradient"):
                fits[k + suffix] = power_law(ns, [m[k + suffix] for m in meas])
        for n in targets:
            row = {
                "extrapolated": True,
                "lower_bound": not full["converged"],
                "basis": f"power laws a·N^b fitted to N = {ns} (setup = cell build + initial guess + first SCF "
                f"cycle; later cycles: mean of cycles 2..{max_cycle}; analytic gradient), with the "
                f"{n_cyc} cycles {how} at N = {full['n_atoms']}; the cycle count at "
                "larger N is assumed equal (metals usually need more: likely an underestimate)",
            }
            for suffix in ("_s", "_cpu_s"):
                parts = {
                    k: fits[k + suffix][0] * n ** fits[k + suffix][1] for k in ("setup", "later_cycle_mean", "gradient")
                }
                row["step" + suffix] = parts["setup"] + (n_cyc - 1) * parts["later_cycle_mean"] + parts["gradient"]
                row["parts" + suffix] = parts
            extrap[str(n)] = row
    return {
        "settings": pyscf_engine().settings,
        "structures": "rattled cubic fcc Cu cells, conventional 1x1x1/1x1x2/1x2x2 (4/8/16 atoms), ±0.05 Å",
        "measured": meas,
        "full_scf": full,
        "fits": {k: {"a": a, "b": b} for k, (a, b) in fits.items()},
        "extrapolated": extrap,
    }


# ------------------------------------------------------------------ report


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
    }


def other_jobs() -> list[str]:
    """Command lines of other heavy Python jobs on the machine at the end of the run (for the record)."""
    import subprocess

    try:
        out = subprocess.run(
            ["pgrep", "-fa", "fastqmd|pytest|torchrun"], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return []
    return [line for line in out.splitlines() if str(os.getpid()) not in line.split()[:1]]


def versions() -> dict:
    out = {}
    for p in ("fastqmd", "torch", "e3nn", "numpy", "scipy", "ase", "tblite", "pyscf"):
        try:
            out[p] = version(p)
        except Exception:  # noqa: BLE001  (a missing package is recorded, not fatal)
            out[p] = None
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["sizes"]
    ns = [r["n_atoms"] for r in rows]
    x = np.arange(len(ns))
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    for ax, key, what in ((axes[0], "_s", "wall"), (axes[1], "_cpu_s", "CPU")):
        series = [
            ("NNH-MD step (MD default)", [r["nnh"]["step_md_default"]["median" + key] for r in rows], "C0", None),
            (
                "tblite GFN1 warm start (hatched: extrapolated)",
                [
                    (r["tblite"]["warm"] or r["tblite"].get("warm_EXTRAPOLATED") or {}).get("median" + key, np.nan)
                    for r in rows
                ],
                "C1",
                None,
            ),
            (
                "tblite GFN1 fastqmd engine (cold)",
                [r["tblite"]["engine"]["median" + key] if r["tblite"]["engine"] else np.nan for r in rows],
                "C3",
                None,
            ),
            (
                "PySCF PBC PBE/SZV, EXTRAPOLATED",
                [r["pyscf"]["step" + key] if r["pyscf"] else np.nan for r in rows],
                "C2",
                "//",
            ),
        ]
        w = 0.2
        for k, (lab, vals, col, hatch) in enumerate(series):
            bars = ax.bar(x + (k - 1.5) * w, vals, w, label=lab, color=col, hatch=hatch, edgecolor="k", lw=0.5)
            if k == 1:
                for bar, r in zip(bars, rows, strict=True):
                    bar.set_hatch(None if r["tblite"]["warm"] else "//")
            ax.bar_label(
                bars, labels=[f"{v:.3g}" if np.isfinite(v) else "" for v in vals], fontsize=7, rotation=90, padding=2
            )
        ax.set_yscale("log")
        ax.set_ylim(top=ax.get_ylim()[1] * 30)  # room for the bar labels and the legend
        ax.set_xticks(x, [f"Cu{n}" for n in ns])
        ax.set_ylabel(f"{what} seconds per MD step (energy + forces)")
        ax.set_title(f"{what} s/step, 1 thread, median")
        ax.legend(fontsize=7, loc="upper left")
    bx = axes[2]
    stages = [
        ("network_fwd_s", "network fwd"),
        ("network_bwd_s", "network bwd"),
        ("eigensolve_fwd_s", "eigensolve (Ω fwd)"),
        ("eigensolve_bwd_s", "eigensolve bwd (ρ, W)"),
        ("overlap_fwd_s", "overlap fwd (table)"),
        ("overlap_bwd_s", "overlap bwd"),
        ("repulsion_fwd_s", "repulsion fwd"),
        ("repulsion_bwd_s", "repulsion bwd"),
    ]
    bottom = np.zeros(len(ns))
    for k, (key, lab) in enumerate(stages):
        vals = np.array([r["nnh"]["breakdown"]["median_cpu"][key] for r in rows])
        bx.bar(x, vals, 0.5, bottom=bottom, label=lab, color=plt.cm.tab10(k))
        bottom += vals
    bx.plot(
        x, [r["nnh"]["step_md_default"]["median_cpu_s"] for r in rows], "k_", ms=30, mew=2, label="measured MD step"
    )
    bx.set_xticks(x, [f"Cu{n}" for n in ns])
    bx.set_ylabel("CPU seconds")
    bx.set_title("NNH-MD step breakdown (stage medians, stacked, CPU s)")
    bx.legend(fontsize=7)
    la = result["load_average"]
    fig.suptitle(
        f"fastqmd issue 4c: Cu fcc, Γ; {result['machine']['nproc']}-core shared CPU, 1-min load avg "
        f"{la['start'][0]:.1f} at start, {la['end'][0]:.1f} at end",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 5, 6], help="primitive supercell n (N = n³)")
    ap.add_argument("--repeats", type=int, nargs="+", default=[3, 2, 2], help="NNH steps and breakdowns, per size")
    ap.add_argument("--tblite-warm-repeats", type=int, nargs="+", default=[3, 2, 1], help="per size")
    ap.add_argument("--tblite-engine-repeats", type=int, nargs="+", default=[2, 1, 0], help="per size (0: skip)")
    ap.add_argument("--pyscf-sizes", nargs="*", default=["4", "8", "16"], choices=["4", "8", "16", "32"])
    ap.add_argument("--pyscf-max-cycle", type=int, default=3)
    ap.add_argument("--pyscf-full", default="4", help="size of the converged SCF that sets the cycle count ('' off)")
    ap.add_argument("--pyscf-full-max-cycle", type=int, default=60)
    ap.add_argument(
        "--pyscf-full-from",
        type=Path,
        default=None,
        help="take the converged-SCF cycle count from this JSON (written by --pyscf-full-only)",
    )
    ap.add_argument(
        "--pyscf-full-only",
        type=Path,
        default=None,
        help="only run the converged SCF at --pyscf-full and write it to this JSON",
    )
    ap.add_argument("--pyscf-smearing-K", type=float, default=0.0, help="0: the engine default (no smearing)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="JSON path (the PNG goes beside it)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    global PYSCF_SMEARING_K
    PYSCF_SMEARING_K = args.pyscf_smearing_K
    if args.pyscf_full_only:
        full = pyscf_full_scf(args.pyscf_full, args.pyscf_full_max_cycle)
        full.update(
            command=f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} python {' '.join(sys.argv)}",
            date_utc=datetime.now(UTC).isoformat(timespec="seconds"),
            load_average_end=os.getloadavg(),
            versions=versions(),
        )
        args.pyscf_full_only.write_text(json.dumps(full, indent=1, default=float))
        return full
    from fastqmd.nnh.potential import NNHPotential

    load_start = os.getloadavg()
    t_start = time.perf_counter()
    # (a primitive fcc n³ supercell has n³ atoms)
    spec, spec_source = model_spec()
    atoms = {n: cu_supercell(n, seed=n) for n in args.sizes}
    model, cfg = build_model(spec, cu_supercell(4, seed=4))
    n_params = sum(p.numel() for p in model.h.parameters()) + sum(p.numel() for p in model.rep.parameters())
    if args.pyscf_full_from:
        full = json.loads(args.pyscf_full_from.read_text())
        full["origin"] = f"earlier run, {args.pyscf_full_from} ({full.get('date_utc')})"
    else:
        full = None
    result = {
        "command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} python {' '.join(sys.argv)}",
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "complete": False,
        "machine": machine(),
        "versions": versions(),
        "threads": {
            "torch": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
        },
        "load_average": {"start": list(load_start)},
        "wall_s_total": None,
        "cpu_s_total": None,
        "model": {
            "spec": spec.model_dump(),
            "spec_source": spec_source,
            "n_params_network_and_repulsion": n_params,
            "overlap_table": cfg.overlap.table.model_dump(),
            "avg_num_neighbors": cfg.h.avg_num_neighbors,
            "weights": "untrained (seeded init): timing does not depend on the weights",
            "dtypes": "network + repulsion float32; S, eigensolve, free energy float64",
        },
        "structures": f"fcc Cu a = {A_CU} Å, n³ primitive supercells, rattled ±{RATTLE_A} Å uniform; Γ point; "
        f"between timed steps atoms move ≤ {MD_JITTER_A} Å (graph caches reused)",
        "stage_order": "NNH + tblite at the first size, then PySCF, then the other sizes; the JSON and PNG are "
        "rewritten after each stage (a run stopped early leaves complete stages, 'complete': false)",
        "sizes": [],
        "pyscf": None,
    }
    cpu0 = time.process_time()

    def write() -> None:
        py = result["pyscf"]
        tblite_extrapolate(result["sizes"])
        for row in result["sizes"]:
            row["pyscf"] = py["extrapolated"].get(str(row["n_atoms"])) if py else None
            row["ratios"] = {"nnh_step": "step_md_default (eigenvalues stored, stress computed)"}
            for suffix in ("_s", "_cpu_s"):
                nnh = row["nnh"]["step_md_default"]["median" + suffix]
                eng = row["tblite"]["engine"]
                warm = row["tblite"]["warm"] or row["tblite"].get("warm_EXTRAPOLATED")
                row["ratios"]["by_wall_time" if suffix == "_s" else "by_cpu_time"] = {
                    "tblite_warm_over_nnh" + ("" if row["tblite"]["warm"] else "_EXTRAPOLATED"): (
                        warm["median" + suffix] / nnh if warm else None
                    ),
                    "tblite_engine_over_nnh": eng["median" + suffix] / nnh if eng else None,
                    "pyscf_EXTRAPOLATED_over_nnh": row["pyscf"]["step" + suffix] / nnh if row["pyscf"] else None,
                }
        result["load_average"]["end"] = list(os.getloadavg())
        result["load_average"]["other_jobs_running_at_end"] = other_jobs()
        result["wall_s_total"] = time.perf_counter() - t_start
        result["cpu_s_total"] = time.process_time() - cpu0
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1, default=float))
            plot(result, args.out.with_suffix(".png"))

    def size_stage(k: int, n: int) -> None:
        at = atoms[n]
        N = len(at)
        row = {"n_atoms": N, "supercell": [n, n, n], "nao": N * 9, "load_average_at_start": list(os.getloadavg())}
        reps = args.repeats[min(k, len(args.repeats) - 1)]
        pot = NNHPotential(model)
        md = nnh_steps(pot, at, reps, eigenvalues=True)
        noev = nnh_steps(pot, at, reps, eigenvalues=False, warmup=False)  # graphs already cached
        bd = nnh_breakdown(model, at, reps)
        row["nnh"] = {"repeats": reps, "step_md_default": md, "step_no_eigenvalues": noev, "breakdown": bd}
        for suffix, med in (("_s", bd["median"]), ("_cpu_s", bd["median_cpu"])):
            row["nnh"]["criterion" + suffix] = criterion(med, md["median" + suffix], noev["median" + suffix])
        print(
            f"Cu{N} NNH: step {md['median_s']:.3f} s wall / {md['median_cpu_s']:.3f} s CPU (no eigenvalues "
            f"{noev['median_s']:.3f} / {noev['median_cpu_s']:.3f}); CPU stages "
            f"{json.dumps({k: round(v, 4) for k, v in bd['median_cpu'].items()})}; "
            f"{json.dumps(row['nnh']['criterion_cpu_s'])}",
            flush=True,
        )
        wr = args.tblite_warm_repeats[min(k, len(args.tblite_warm_repeats) - 1)]
        er = args.tblite_engine_repeats[min(k, len(args.tblite_engine_repeats) - 1)]
        if wr < 0:
            row["tblite"] = {"warm": None, "engine": None, "note": "not measured at this size (run-time budget)"}
        else:
            warm = tblite_warm_steps(at, wr)
            eng = tblite_engine_steps(at, er) if er > 0 else None
            row["tblite"] = {"warm": warm, "engine": eng}
            print(
                f"Cu{N} tblite: warm {warm['median_s']:.2f} s wall / {warm['median_cpu_s']:.2f} s CPU "
                f"(cold {warm['first_cold_s']:.2f} s / {warm['first_cold_cpu_s']:.2f} s CPU), "
                f"engine {eng['median_cpu_s'] if eng else None} s CPU",
                flush=True,
            )
        result["sizes"].append(row)
        write()

    size_stage(0, args.sizes[0])
    if full is None and args.pyscf_full:
        full = pyscf_full_scf(args.pyscf_full, args.pyscf_full_max_cycle)
        full["origin"] = "this run"
    if args.pyscf_sizes:
        result["load_average"]["at_pyscf_start"] = list(os.getloadavg())
        result["pyscf"] = pyscf_study(args.pyscf_sizes, args.pyscf_max_cycle, full, [n**3 for n in args.sizes])
        write()
    for k, n in enumerate(args.sizes[1:], start=1):
        size_stage(k, n)
    result["complete"] = True
    write()
    return result


if __name__ == "__main__":
    if os.environ.get("OMP_NUM_THREADS") is None:
        print("warning: OMP_NUM_THREADS is not set; the study is meant to run with OMP_NUM_THREADS=1", flush=True)
    main()
