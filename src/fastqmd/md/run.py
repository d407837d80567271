"""The restartable MD runner behind `fastqmd md CONFIG.yaml`.

In:  an `MDConfig`. Out (in `output.dir`): trajectory.extxyz, thermo.csv, checkpoint.pt, config.json.

Restart: if `output.dir` holds a checkpoint of the same config (`steps` may grow), the run continues from it:
both output files are cut back to their sizes recorded in the checkpoint and the deterministic continuation
rewrites what followed, so a run killed at any moment (kill -9 included) and rerun produces byte-identical
files to an uninterrupted run. Checkpoints are written to a temporary file, fsynced and renamed into place,
after the output files were fsynced, so the checkpoint never points beyond what is on disk.

Validate first, then write: a rejected run (bad structure, potential, checkpoint, output folder) creates,
cuts or deletes nothing — also with `overwrite`, which replaces an earlier run only once the new one is valid.

Blow-up guard: non-finite energy/forces/positions, T above `guard.max_temperature_K`, or two atoms closer than
`guard.min_distance_A` stop the run with `MDBlowUp` (a `CalculationFailed`: CLI exit code 3); the last good
frame is saved to last_good.extxyz first.

Training-domain guard (`guard.domain`, fastqmd.domain): every `guard.domain_every` steps (and at step 0) the
structure's extrapolation score is computed; its max, the step of the max and the first step above
`guard.domain_threshold` travel in the checkpoint and end in `RunSummary.domain` and domain.json. "warn" prints
one line on stderr the first time; "stop" ends the run exactly like a blow-up (exit code 3, last good frame saved;
a starting structure outside the domain stops before anything is written).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from fastqmd.atomic import atomic_torch_save
from fastqmd.config import check_output_dir
from fastqmd.errors import CalculationFailed, InputError
from fastqmd.md.config import MDConfig, build_integrator, build_potential, check_elements
from fastqmd.md.state import (
    MDState,
    degrees_of_freedom,
    init_state,
    masses_of,
    maxwell_boltzmann,
    state_from_dict,
    state_to_dict,
    temperature,
)
from fastqmd.md.trajectory import (
    THERMO_HEADER,
    AppendFile,
    check_length,
    frame_text,
    state_to_atoms,
    thermo_row,
    truncate_file,
)

TRAJ, THERMO, CKPT = "trajectory.extxyz", "thermo.csv", "checkpoint.pt"
CONFIG, LAST_GOOD, DOMAIN = "config.json", "last_good.extxyz", "domain.json"
DOMAIN_FIELDS = ("domain", "domain_threshold", "domain_action", "domain_every")


class MDBlowUp(CalculationFailed):
    """The simulation became unphysical (NaN, runaway temperature, atoms overlapping): CLI exit code 3."""


@dataclass(frozen=True)
class RunSummary:
    out_dir: Path
    steps_done: int
    resumed_from: int | None
    wall_s: float
    s_per_step: float
    ns_per_day: float
    domain: dict | None = None  # the training-domain guard's report (DomainMonitor.report), with guard.domain


def config_hash(cfg: MDConfig) -> str:
    """Hash of everything that defines the trajectory (not `steps`, not the progress bar)."""
    d = cfg.model_dump(mode="json")
    d.pop("steps")
    d["output"].pop("progress")
    if d["guard"]["domain"] is None:  # no domain guard: the hash of a config written before it existed
        for k in DOMAIN_FIELDS:
            d["guard"].pop(k)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def start_structure(cfg: MDConfig, check_potential: bool = True):
    """The first structure of `cfg.structure`, validated like every structure (`validate_atoms`), with the
    pinned indices and (`check_potential`) the potential's elements checked against it."""
    from ase.data import atomic_numbers

    from fastqmd.structures import build_structures, validate_atoms

    atoms = build_structures(cfg.structure)[0]
    validate_atoms(atoms, "md structure")
    bad = [i for i in cfg.pinned if i >= len(atoms)]
    if bad:
        raise InputError(f"pinned atom index {bad[0]} out of range (structure has {len(atoms)} atoms)")
    if len(set(cfg.pinned)) == len(atoms):
        raise InputError(f"all {len(atoms)} atoms are pinned: nothing would move")
    unknown = [el for el in cfg.masses if el not in atomic_numbers]
    if unknown:
        raise InputError(f"masses: '{unknown[0]}' is not an element symbol")
    if check_potential:
        check_elements(cfg.potential, atoms.get_chemical_symbols())
    return atoms


def initial_state(cfg: MDConfig, atoms, potential, integrator) -> MDState:
    """Structure → masses, pinned mask, degrees of freedom, Maxwell–Boltzmann velocities → first state."""
    n = len(atoms)
    fixed = torch.zeros(n, dtype=torch.bool)
    fixed[list(cfg.pinned)] = True
    conserving = cfg.ensemble.kind != "langevin"
    dof = degrees_of_freedom(n, len(set(cfg.pinned)), momentum_conserved=conserving)
    masses = masses_of(atoms, cfg.masses)
    v = maxwell_boltzmann(masses, fixed, cfg.temperature_K, dof, cfg.seed, remove_com=True)
    try:
        state = integrator.init(init_state(atoms, potential, v, masses, fixed, dof, cfg.device))
    except Exception as exc:
        if cfg.potential.kind != "ase" or isinstance(exc, InputError | CalculationFailed):
            raise
        # a third-party calculator that fails on a valid starting structure was set up wrongly
        msg = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        raise InputError(f"potential '{cfg.potential.factory}' failed on the starting structure ({msg})") from None
    if not (torch.isfinite(state.energy) and torch.isfinite(state.forces).all()):
        raise CalculationFailed("md: the potential gives non-finite energy or forces for the starting structure")
    return state


def check_state(state: MDState, cfg: MDConfig, check_distance: bool) -> str | None:
    """Reason the state is unphysical, or None."""
    if not (torch.isfinite(state.energy) and torch.isfinite(state.forces).all()
            and torch.isfinite(state.positions).all()):
        return "non-finite energy, forces or positions"
    t = float(temperature(state.velocities, state.masses, state.dof))
    if t > cfg.guard.max_temperature_K:
        return f"temperature {t:.0f} K above the limit {cfg.guard.max_temperature_K:.0f} K"
    if check_distance and cfg.guard.min_distance_A > 0:
        from fastqmd.neighbors import min_distance

        s = state.system
        d = min_distance(s.positions.cpu().numpy(), s.cell.cpu().numpy(), s.pbc.cpu().numpy(),
                         cfg.guard.min_distance_A)
        if d < cfg.guard.min_distance_A:
            return f"two atoms {d:.3f} Å apart (limit {cfg.guard.min_distance_A} Å)"
    return None


def save_checkpoint(path: Path, state: MDState, traj_bytes: int, log_bytes: int, chash: str,
                    domain: dict | None = None) -> None:
    """Atomic (temp file, fsync, rename), and loadable with torch.load(weights_only=True). `domain`: the
    domain guard's state (DomainMonitor.to_dict), stored only when there is one."""
    ck = {"state": state_to_dict(state), "traj_bytes": traj_bytes, "log_bytes": log_bytes, "config_hash": chash}
    if domain is not None:
        ck["domain"] = domain
    atomic_torch_save(ck, path)


def load_checkpoint(path: Path, device: str) -> dict:
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
        ck["state"] = state_from_dict(_fresh(ck["state"]))
    except Exception as exc:  # a foreign or corrupt file
        raise InputError(f"cannot read checkpoint {path}: {type(exc).__name__}") from None
    return ck


def domain_monitor(cfg: MDConfig, numbers, state: dict | None = None):
    """The training-domain guard of `cfg.guard` (None without `guard.domain`): its file loaded (InputError for a
    bad one) and its elements checked against the structure's atomic `numbers`."""
    g = cfg.guard
    if g.domain is None:
        return None
    from fastqmd.domain import DomainMonitor, load_domain, unseen_elements

    dom = load_domain(g.domain)
    missing = unseen_elements(dom, [int(z) for z in numbers])
    if missing:
        raise InputError(f"guard.domain {g.domain} was fitted on {', '.join(dom.elements)}; the structure also "
                         f"has {', '.join(missing)}")
    return DomainMonitor(dom, g.domain_threshold, g.domain_action, warn=_warn_line, state=state)


def _warn_line(message: str) -> None:
    print(f"warning: md: {message}", file=sys.stderr, flush=True)


def _fresh(obj):
    """Deep copy with every tensor cloned into a new allocation: loaded tensors may sit at other memory
    alignments, which changes the rounding of vectorized sums (and so breaks bitwise restarts)."""
    if isinstance(obj, torch.Tensor):
        return obj.clone(memory_format=torch.contiguous_format)
    if isinstance(obj, dict):
        return {k: _fresh(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return type(obj)(_fresh(v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: _fresh(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                                           if f.init})
    return obj


def _progress(enabled: bool, total: int, start: int):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    p = Progress(
        TextColumn("md"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), disable=not enabled, transient=False,
    )
    task = p.add_task("md", total=total, completed=start, rate="")
    return p, task


def rate_text(s_per_step: float, dt_fs: float) -> tuple[float, str]:
    """ns/day = Δt[fs]·1e-6 · 86400 / (s/step)."""
    ns_day = dt_fs * 1e-6 * 86400 / s_per_step if s_per_step > 0 else float("inf")
    return ns_day, f"{ns_day:.3g} ns/day  {s_per_step:.3g} s/step"


@dataclass(frozen=True)
class Plan:
    """A run decided before anything is written: everything in it has been validated."""

    out: Path
    potential: object
    integrator: object
    state: MDState  # the first state of a new run, or the checkpoint's
    config_hash: str
    resume_bytes: tuple[int, int] | None  # (trajectory, thermo) sizes to cut back to; None: a new run
    monitor: object = None  # the training-domain guard (fastqmd.domain.DomainMonitor), or None


def plan_run(cfg: MDConfig, overwrite: bool = False, potential=None) -> Plan:
    """Check everything a run needs — output folder, structure, potential (built and evaluated once),
    integrator, the checkpoint of a resumed run — and write nothing."""
    out = check_output_dir(cfg.output.dir)
    for name in (TRAJ, THERMO, CKPT, CONFIG, LAST_GOOD, DOMAIN):
        if (out / name).is_dir():
            raise InputError(f"{out / name} is a folder; the run writes a file there")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise InputError("md device 'cuda' requested but CUDA is not available")
    chash = config_hash(cfg)
    resume = (out / CKPT).exists() and not overwrite
    atoms = None if resume else start_structure(cfg, check_potential=potential is None)
    potential = potential if potential is not None else build_potential(cfg.potential)
    integ = build_integrator(cfg)
    if not resume:
        monitor = domain_monitor(cfg, atoms.numbers)
        state = initial_state(cfg, atoms, potential, integ)
        reason = monitor.check(state.system.to_atoms(), 0) if monitor is not None else None
        if reason is not None:
            raise MDBlowUp(f"MD not started: the starting structure's {reason} ({cfg.guard.domain}); nothing written")
        return Plan(out, potential, integ, state, chash, None, monitor)
    ck = load_checkpoint(out / CKPT, cfg.device)
    if ck["config_hash"] != chash:
        raise InputError(f"{out} holds a run of a different config; use another output.dir or --overwrite")
    check_length(out / TRAJ, ck["traj_bytes"])
    check_length(out / THERMO, ck["log_bytes"])
    monitor = domain_monitor(cfg, ck["state"].system.numbers.tolist(), ck.get("domain"))
    return Plan(out, potential, integ, ck["state"], chash, (ck["traj_bytes"], ck["log_bytes"]), monitor)


def start_run(cfg: MDConfig, plan: Plan) -> None:
    """The first writes of a planned run: create the folder, then cut the files back to the checkpoint
    (resume) or delete the previous run's files (new run, also `--overwrite`), and record the config."""
    out = plan.out
    out.mkdir(parents=True, exist_ok=True)
    if plan.resume_bytes is not None:
        truncate_file(out / TRAJ, plan.resume_bytes[0])
        truncate_file(out / THERMO, plan.resume_bytes[1])
    else:
        for name in (TRAJ, THERMO, CKPT, LAST_GOOD, DOMAIN):
            (out / name).unlink(missing_ok=True)
    (out / CONFIG).write_text(json.dumps(cfg.model_dump(mode="json"), indent=2))


def run_md(cfg: MDConfig, overwrite: bool = False, potential=None) -> RunSummary:
    """Run (or resume) the MD of `cfg`. `potential` overrides the config's potential (library use).

    `plan_run` validates everything before `start_run` creates, cuts back or (`overwrite`) deletes files of
    `output.dir`: a rejected run leaves an earlier run's files byte-identical."""
    plan = plan_run(cfg, overwrite, potential)
    start_run(cfg, plan)
    state, resumed_from = plan.state, (plan.state.step if plan.resume_bytes is not None else None)
    traj, log = AppendFile(plan.out / TRAJ), AppendFile(plan.out / THERMO, THERMO_HEADER)
    try:
        if resumed_from is None:
            _write(state, plan.integrator, cfg, traj, log)
            save_checkpoint(plan.out / CKPT, state, traj.sync(), log.sync(), plan.config_hash,
                            _monitor_state(plan.monitor))
        return _loop(state, plan.integrator, plan.potential, cfg, traj, log, plan.out / CKPT, plan.config_hash,
                     resumed_from, plan.monitor)
    finally:
        traj.close()
        log.close()


def _write(state: MDState, integ, cfg: MDConfig, traj: AppendFile, log: AppendFile) -> None:
    conserved = None
    if state.step % cfg.output.traj_every == 0:
        conserved = integ.conserved(state)
        traj.write(frame_text(state_to_atoms(state, conserved)))
    if state.step % cfg.output.log_every == 0:
        log.write(thermo_row(state, integ.conserved(state) if conserved is None else conserved))


def _monitor_state(monitor) -> dict | None:
    return monitor.to_dict() if monitor is not None else None


def _write_domain_report(monitor, cfg: MDConfig) -> dict | None:
    """domain.json in the output folder (the guard's report); None without a domain guard."""
    if monitor is None:
        return None
    report = {"domain": str(cfg.guard.domain), **monitor.report()}
    (Path(cfg.output.dir) / DOMAIN).write_text(json.dumps(report, indent=1))
    return report


def _loop(state, integ, potential, cfg, traj, log, ckpt_path, chash, resumed_from, monitor=None) -> RunSummary:
    start_step, t0 = state.step, time.perf_counter()
    prog, task = _progress(cfg.output.progress, cfg.steps, start_step)
    with prog:
        while state.step < cfg.steps:
            new = integ.step(state, potential)
            reason = check_state(new, cfg, new.step % cfg.guard.distance_every == 0)
            if reason is None and monitor is not None and new.step % cfg.guard.domain_every == 0:
                reason = monitor.check(new.system.to_atoms(), new.step)
            if reason is not None:
                _write_domain_report(monitor, cfg)
                last = Path(cfg.output.dir) / LAST_GOOD
                last.write_text(frame_text(state_to_atoms(state, integ.conserved(state))))
                traj.sync()
                log.sync()
                raise MDBlowUp(f"MD stopped at step {new.step}: {reason}; last good frame (step {state.step}) "
                               f"saved to {last}")
            state = new
            _write(state, integ, cfg, traj, log)
            if state.step % cfg.output.checkpoint_every == 0 or state.step == cfg.steps:
                save_checkpoint(ckpt_path, state, traj.sync(), log.sync(), chash, _monitor_state(monitor))
            done = state.step - start_step
            sps = (time.perf_counter() - t0) / max(done, 1)
            prog.update(task, completed=state.step, rate=rate_text(sps, cfg.timestep_fs)[1])
    wall = time.perf_counter() - t0
    sps = wall / max(state.step - start_step, 1)
    return RunSummary(Path(cfg.output.dir), state.step, resumed_from, wall, sps, rate_text(sps, cfg.timestep_fs)[0],
                      _write_domain_report(monitor, cfg))
