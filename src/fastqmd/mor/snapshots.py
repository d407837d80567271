"""Offline stage, part 1: Hi-Fi Kohn–Sham solves over a parametric grid, into one HDF5 snapshot file.

In:  a `SnapshotsConfig` — the sampling (`fastqmd.mor.sampling`), the Hi-Fi solver settings (`SolverConfig`, atomic
     units: the study's 64³ periodic cube [−6, 6)³ Bohr, FD4, ABPG), the output file, how many warm-start chains and
     Dask workers.
Out: `output` (HDF5, atomic units), attrs format = "fastqmd-mor-snapshots", version, run (the config identity, JSON),
     grid / model / recipe (JSON, as `fastqmd.mor.basis` GridSpec / ModelSpec / FrameRecipe), n_geometries,
     store_orbitals; datasets `order` (the warm-start order of geometry indices) and `chain` [n_geometries];
     group `geometries/<index:06d>` per geometry: attrs index, s1, s2, angle_offset_deg, angle_deg, reproductive,
     chain, warm_from (the geometry whose orbitals started this SCF, −1: cold), converged, iterations, wall_s,
     free_energy (F, Ha), energy (F + TS), mu, energies (every term, JSON); datasets positions [n_atoms, 3] (Bohr,
     canonical frame), forces [n_atoms, 3] (Ha/Bohr, Hellmann–Feynman), eigenvalues [k], occupations [k] (0..2),
     hamiltonian [k, k]; with store_orbitals also orbitals [k, n_grid] (U Uᵀ = 1, ψ = U/√dV) and density [n_grid].
One consistent set (the SCF's output side): the stored orbitals U are `SCFResult.orbitals` with occupations o,
     `density` = n[U, o] = Σ o_n U_n²/dV, `free_energy` = F[U, o], `forces` from (U, o, n), and `hamiltonian` =
     U H[V_eff[n]] Uᵀ, the projected Hamiltonian of the potential of that same density (V_eff[n] = `SCFResult.v_eff`;
     rebuild it with `scf.effective_potential(discretize(model, grid), density)`). Only `eigenvalues` belong to the
     SCF's last input potential (the Ritz values of U; they differ from eig(hamiltonian) by the SCF tolerance).
Flow (as `fastqmd.data.generate`, whose lock and atomic-file helpers it reuses): validate everything, hold an
     exclusive lock on `<output>.lock`, order the geometries so neighbours are close (`warm_start_order`), cut the
     order into `chains` contiguous chains; each chain runs in order, every SCF starting from the previous converged
     orbitals and density of its chain; each finished geometry is journalled atomically as
     `<output>.parts/<index>.h5` (with orbitals and density, so that a resumed chain warm-starts from exactly the
     same arrays; without store_orbitals they are stripped from a part once its chain successor is journalled).
     The first pending geometry is solved here as a probe of the cost t of a solve; the rest run in this process,
     or — when there are several pending chains and `pays_to_start_cluster(n_left, t, workers, CLUSTER_START_S)` of
     `generate` says so (never for workers ≤ 1) — one chain per Dask worker on a LocalCluster; when all are done the
     journal is merged into `output` atomically. Rerunning after a kill -9 resumes: nothing lost, nothing solved
     twice, and the arrays equal those of an uninterrupted run (the SCF is deterministic from its warm start).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt

from fastqmd.config import FrozenModel, check_output_file
from fastqmd.data import generate as _generate
from fastqmd.errors import InputError
from fastqmd.mor.basis import GridSpec, ModelSpec
from fastqmd.mor.sampling import Geometry, SamplingConfig, geometries, split_chains, warm_start_order

CLUSTER_START_S = _generate.CLUSTER_START_S  # start-up + shutdown of a LocalCluster (s), measured for generate
FORMAT = "fastqmd-mor-snapshots"
VERSION = 1
GEOMETRIES = "geometries"
BIG = ("orbitals", "density")  # the grid-sized arrays


class SolverConfig(FrozenModel):
    """Hi-Fi settings in atomic units: a box [−L/2, L/2) (per axis) with grid_points per axis, the model's physics
    and the SCF tolerances."""

    grid_points: PositiveInt | tuple[PositiveInt, PositiveInt, PositiveInt] = 64
    box_bohr: float | tuple[float, float, float] = 12.0
    fd_order: Literal[2, 4, 6, 8] = 4
    boundary: Literal["periodic", "isolated"] = "periodic"
    xc: Literal["teter93", "pz81", "pbe"] = "teter93"
    kT_Ha: float = Field(1e-3, gt=0)
    r_c_bohr: float = Field(1.0, gt=0)
    filter_pseudo: bool = False
    n_empty: NonNegativeInt = 2
    eigensolver: Literal["abpg", "lobpcg"] = "abpg"
    e_tol_Ha: float = Field(1e-8, gt=0)
    rho_tol: float = Field(1e-6, gt=0)
    max_iter: PositiveInt = 400

    def grid(self):
        from fastqmd.dft.grid import Grid

        n = np.broadcast_to(np.asarray(self.grid_points, int), (3,))
        L = np.broadcast_to(np.asarray(self.box_bohr, float), (3,))
        if np.any(L <= 0):
            raise InputError(f"solver.box_bohr must be > 0, got {self.box_bohr}")
        try:
            return Grid(tuple(int(v) for v in n), tuple(float(v) for v in L / n), tuple(float(v) for v in -L / 2),
                        self.fd_order, self.boundary == "periodic")
        except ValueError as exc:
            raise InputError(f"solver: {exc}") from None

    def model(self, symbols, positions_bohr):
        from fastqmd.dft.scf import Model

        return Model(tuple(symbols), np.asarray(positions_bohr, float), self.xc, self.kT_Ha, self.n_empty,
                     self.r_c_bohr, 0.0, self.filter_pseudo)


class SnapshotsConfig(FrozenModel):
    sampling: SamplingConfig
    solver: SolverConfig = SolverConfig()
    output: Path
    store_orbitals: bool = True  # false: energies and forces only (e.g. the 726-geometry test set)
    chains: PositiveInt = 1  # warm-start chains (fixes which SCF starts from which: part of the result)
    workers: NonNegativeInt = 0  # Dask worker processes; ≤ 1: every chain in this process

    def identity(self) -> dict:
        """What the stored numbers depend on (a resumed or consolidated run must match it)."""
        return {"sampling": self.sampling.model_dump(mode="json"), "solver": self.solver.model_dump(mode="json"),
                "chains": self.chains, "store_orbitals": self.store_orbitals}


def key(index: int) -> str:
    return f"{index:06d}"


# ---------------------------------------------------------------- plan


def plan(cfg: SnapshotsConfig) -> tuple[list[Geometry], list[list[int]]]:
    """The geometries and their warm-start chains; every check that needs no solve (InputError)."""
    geoms = geometries(cfg.sampling)
    grid = cfg.solver.grid()
    rec = cfg.sampling.template.recipe
    model = cfg.solver.model(rec.symbols, geoms[0].positions_bohr)
    try:
        _ = model.pseudos
    except (ValueError, KeyError) as exc:
        raise InputError(f"pseudopotentials for {''.join(rec.symbols)}: {exc}") from None
    lo, hi = np.asarray(grid.origin), np.asarray(grid.origin) + grid.lengths
    margin = 0.0 if grid.periodic else 1.0
    for g in geoms:
        X = g.positions_bohr
        if np.any(X < lo + margin) or np.any(X >= hi - margin):
            raise InputError(f"geometry {g.index} (s1 {g.s1:g}, s2 {g.s2:g}, θ {g.angle_deg:g}°) leaves the box "
                             f"[{lo[0]:g}, {hi[0]:g}) Bohr" + (" by less than 1 Bohr (isolated)" if margin else ""))
    return geoms, split_chains(warm_start_order(geoms), cfg.chains)


# ---------------------------------------------------------------- one solve


def solve(cfg: SnapshotsConfig, geom: Geometry, warm: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Hi-Fi SCF at one geometry (from warm = (U0, n0) if given) → the record of the module docstring."""
    from fastqmd.dft.forces import hellmann_feynman_forces
    from fastqmd.dft.hamiltonian import Hamiltonian
    from fastqmd.dft.scf import scf

    s = cfg.solver
    grid = s.grid()
    model = s.model(cfg.sampling.template.recipe.symbols, geom.positions_bohr)
    U0, n0 = warm if warm is not None else (None, None)
    r = scf(model, grid, eigensolver=s.eigensolver, U0=U0, n0=n0, e_tol=s.e_tol_Ha, rho_tol=s.rho_tol,
            max_iter=s.max_iter)
    U = r.orbitals
    HU = Hamiltonian(grid, r.v_eff, r.disc.blocks).apply(U)
    h = U @ HU.T
    return {
        "attrs": {"index": geom.index, "s1": geom.s1, "s2": geom.s2, "angle_offset_deg": geom.angle_offset_deg,
                  "angle_deg": geom.angle_deg, "reproductive": geom.reproductive, "converged": bool(r.converged),
                  "iterations": int(r.iterations), "wall_s": float(r.wall_s), "free_energy": float(r.free_energy),
                  "energy": float(r.energies["energy"]), "mu": float(r.mu),
                  "energies": json.dumps({k: float(v) for k, v in r.energies.items()})},
        "positions": np.asarray(geom.positions_bohr, float), "forces": hellmann_feynman_forces(r),
        "eigenvalues": r.eigenvalues, "occupations": r.occupations, "hamiltonian": 0.5 * (h + h.T),
        "orbitals": U, "density": r.density.ravel(),
    }


# ---------------------------------------------------------------- journal (one atomic file per geometry)


def parts_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def part_path(parts: Path, index: int) -> Path:
    return parts / f"{key(index)}.h5"


def write_part(parts: Path, rec: dict, chain: int, warm_from: int, big: bool = True) -> None:
    from fastqmd.data.store import atomic_write as _atomic_h5

    def fill(f) -> None:
        g = f.create_group(GEOMETRIES).create_group(key(rec["attrs"]["index"]))
        _write_record(g, rec, chain, warm_from, big)

    _atomic_h5(part_path(parts, rec["attrs"]["index"]), fill)


def _write_record(g, rec: dict, chain: int, warm_from: int, big: bool) -> None:
    for k, v in rec["attrs"].items():
        g.attrs[k] = v
    g.attrs["chain"], g.attrs["warm_from"] = chain, warm_from
    for name in ("positions", "forces", "eigenvalues", "occupations", "hamiltonian") + (BIG if big else ()):
        g.create_dataset(name, data=np.asarray(rec[name], np.float64))


def read_part(parts: Path, index: int, big: bool = True) -> dict:
    import h5py

    with h5py.File(part_path(parts, index), "r") as f:
        g = f[GEOMETRIES][key(index)]
        names = [n for n in g if big or n not in BIG]
        rec = {"attrs": {k: (v.item() if hasattr(v, "item") else v) for k, v in g.attrs.items()}}
        rec.update({n: g[n][()] for n in names})
    return rec


def journalled(parts: Path) -> set[int]:
    return {int(p.stem) for p in parts.glob("*.h5") if p.stem.isdigit()} if parts.is_dir() else set()


def _strip(parts: Path, index: int) -> None:
    """Rewrite part `index` without its grid-sized arrays (atomic)."""
    rec = read_part(parts, index, big=False)
    a = rec["attrs"]
    chain, warm_from = a.pop("chain"), a.pop("warm_from")
    write_part(parts, rec, chain, warm_from, big=False)


def run_chain(cfg_json: str, chain_id: int, chain: list[int], progress=None, limit: int | None = None) -> list[int]:
    """Solve the chain's pending geometries in order (at most `limit` of them), each from its predecessor's
    orbitals and density (read back from the journal when the predecessor was solved by an earlier, interrupted
    run). Returns the indices solved. Runs in this process or as one Dask task; it writes only its own
    geometries' journal files."""
    cfg = SnapshotsConfig.model_validate_json(cfg_json)
    parts = parts_dir(cfg.output)
    by_index = {g.index: g for g in geometries(cfg.sampling)}
    done = journalled(parts)
    solved, warm, prev = [], None, -1
    for i in chain:
        if i in done:
            prev = i
            continue
        if limit is not None and len(solved) >= limit:
            break
        if prev >= 0 and warm is None:
            p = read_part(parts, prev)
            if not all(n in p for n in BIG):
                raise InputError(f"the journal of geometry {prev} has no orbitals to warm-start from; "
                                 f"delete {parts} to start over")
            warm = (p["orbitals"], p["density"].reshape(cfg.solver.grid().shape))
        t0 = time.perf_counter()
        rec = solve(cfg, by_index[i], warm)
        write_part(parts, rec, chain_id, prev)
        if not cfg.store_orbitals and prev >= 0:
            _strip(parts, prev)
        warm, prev = (rec["orbitals"], rec["density"].reshape(cfg.solver.grid().shape)), i
        solved.append(i)
        if progress is not None:
            progress(rec, time.perf_counter() - t0)
    return solved


# ---------------------------------------------------------------- the run


def _check_journal(parts: Path, ident: dict, overwrite: bool) -> None:
    manifest = parts / "manifest.json"
    if manifest.is_file():
        if json.loads(manifest.read_text()) == ident:
            return
        if not overwrite:
            raise InputError(f"{parts} holds an unfinished run of another config; rerun that config, pass "
                             "--overwrite to discard it, or choose another output")
        shutil.rmtree(parts)
    elif parts.is_dir() and any(parts.iterdir()):
        raise InputError(f"{parts} exists without a manifest; delete it or choose another output")
    from fastqmd.atomic import temp_name as _temp_name

    parts.mkdir(exist_ok=True)
    tmp = _temp_name(manifest)
    tmp.write_text(json.dumps(ident, sort_keys=True))
    tmp.replace(manifest)


def consolidate(cfg: SnapshotsConfig, geoms: list[Geometry], chains: list[list[int]]) -> None:
    """Merge the complete journal into `output` (atomic), then remove the journal."""
    import h5py

    from fastqmd.data.store import atomic_write as _atomic_h5

    parts = parts_dir(cfg.output)
    rec0 = cfg.sampling.template.recipe
    grid = cfg.solver.grid()
    model = cfg.solver.model(rec0.symbols, geoms[0].positions_bohr)
    chain_of = np.zeros(len(geoms), int)
    for c, ch in enumerate(chains):
        chain_of[ch] = c

    def fill(f) -> None:
        f.attrs["format"], f.attrs["version"] = FORMAT, VERSION
        f.attrs["run"] = json.dumps(cfg.identity(), sort_keys=True)
        f.attrs["grid"] = json.dumps(asdict(GridSpec.of(grid)))
        f.attrs["model"] = json.dumps(asdict(ModelSpec.of(model)))
        f.attrs["recipe"] = json.dumps(rec0.to_dict())
        f.attrs["n_geometries"], f.attrs["store_orbitals"] = len(geoms), cfg.store_orbitals
        f.attrs["units"] = "Hartree, Bohr; orbitals U with U Uᵀ = 1 (ψ = U/√dV); density in electrons/Bohr³"
        f.create_dataset("order", data=np.asarray(sum(chains, []), int))
        f.create_dataset("chain", data=chain_of)
        out = f.create_group(GEOMETRIES)
        for g in geoms:
            with h5py.File(part_path(parts, g.index), "r") as p:
                src = p[GEOMETRIES][key(g.index)]
                dst = out.create_group(key(g.index))
                for k, v in src.attrs.items():
                    dst.attrs[k] = v
                for name in src:
                    if cfg.store_orbitals or name not in BIG:
                        src.copy(src[name], dst, name=name)

    _atomic_h5(cfg.output, fill)
    shutil.rmtree(parts, ignore_errors=True)


def generate_snapshots(cfg: SnapshotsConfig, overwrite: bool = False, progress: bool = True) -> dict:
    """Run (or resume) the snapshot generation of `cfg` into `cfg.output`; returns a small report.

    Everything that can be refused (config, geometries, grid, output path, a foreign journal, the lock) is
    refused before any solve. An existing complete output is refused without `overwrite` (then replaced only
    when the new run is complete)."""
    from fastqmd.data.generate import _remove_stale_temps, output_lock, pays_to_start_cluster

    t0 = time.perf_counter()
    out = check_output_file(cfg.output, overwrite=overwrite)
    geoms, chains = plan(cfg)
    with output_lock(out):
        _remove_stale_temps(out)
        parts = parts_dir(out)
        _check_journal(parts, cfg.identity(), overwrite)
        before = journalled(parts)
        todo = [c for c in chains if not set(c) <= before]
        cfg_json = cfg.model_dump_json()
        report = _Progress(progress, len(geoms), len(before & {g.index for g in geoms}))
        ran_on = "nothing to do"
        if todo:
            ran_on = "this process"
            t0_probe = time.perf_counter()  # the probe: one geometry here measures the cost of a solve
            run_chain(cfg_json, chains.index(todo[0]), todo[0], report.geometry, limit=1)
            t_solve = time.perf_counter() - t0_probe
            n_left = len(geoms) - len(journalled(parts))
            n_chains = sum(not set(c) <= journalled(parts) for c in todo)
            if n_chains > 1 and pays_to_start_cluster(n_left, t_solve, min(cfg.workers, n_chains), CLUSTER_START_S):
                ran_on += " + " + _run_on_dask(cfg, cfg_json, chains, todo, report)
            else:
                for ch in todo:
                    run_chain(cfg_json, chains.index(ch), ch, report.geometry)
        missing = {g.index for g in geoms} - journalled(parts)
        if missing:  # a chain task that died without raising
            raise InputError(f"{len(missing)} geometries were not solved (e.g. {min(missing)}); rerun to resume")
        consolidate(cfg, geoms, chains)
    return {"n_geometries": len(geoms), "already_done": len(before), "solved": len(geoms) - len(before),
            "chains": len(chains), "ran_on": ran_on, "wall_s": time.perf_counter() - t0, "output": str(out)}


def _run_on_dask(cfg, cfg_json, chains, todo, report) -> str:
    """One Dask task per pending chain on a LocalCluster of min(workers, chains) processes; progress by polling the
    journal (the tasks write their own geometries' files; the client holds the lock)."""
    from fastqmd.data.generate import _close, make_client

    n = min(cfg.workers, len(todo))
    client = make_client(n, 1)
    try:
        futs = [client.submit(run_chain, cfg_json, chains.index(ch), ch, key=f"fastqmd-mor-chain-{chains.index(ch)}")
                for ch in todo]
        parts = parts_dir(cfg.output)
        while not all(f.done() for f in futs):
            time.sleep(0.5)
            report.poll(len(journalled(parts)))
        for f in futs:
            f.result()  # re-raises a chain's error (e.g. SCFNotConverged) here
    finally:
        _close(client)
    return f"LocalCluster({n})"


class _Progress:
    """One line per solved geometry (in this process) or per poll (Dask): done/total, the last energy and time."""

    def __init__(self, enabled: bool, total: int, done: int):
        self.enabled, self.total, self.done = enabled, total, done

    def geometry(self, rec: dict, wall_s: float) -> None:
        self.done += 1
        if self.enabled:
            a = rec["attrs"]
            print(f"[{self.done}/{self.total}] geometry {a['index']}: s1 {a['s1']:.4f} s2 {a['s2']:.4f} "
                  f"θ {a['angle_deg']:.2f}°  F = {a['free_energy']:.8f} Ha  {a['iterations']} SCF it  {wall_s:.1f} s",
                  flush=True)

    def poll(self, done: int) -> None:
        if self.enabled and done != self.done:
            print(f"[{done}/{self.total}] geometries solved", flush=True)
        self.done = done


# ---------------------------------------------------------------- reading


class Snapshots:
    """A finished snapshot file, read (attrs and small arrays eagerly, orbitals on demand)."""

    def __init__(self, path: str | Path):
        import h5py

        from fastqmd.mor.frame import FrameRecipe

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"snapshot file not found: {self.path}")
        try:
            with h5py.File(self.path, "r") as f:
                if f.attrs.get("format") != FORMAT:
                    raise InputError(f"{self.path} is not a fastqmd MOR snapshot file")
                g = json.loads(f.attrs["grid"])
                self.grid = GridSpec(tuple(g["shape"]), tuple(g["spacing"]), tuple(g["origin"]), g["fd_order"],
                                     g["periodic"])
                m = json.loads(f.attrs["model"])
                self.model = ModelSpec(**{**m, "symbols": tuple(m["symbols"])})
                self.recipe = FrameRecipe.from_dict(json.loads(f.attrs["recipe"]))
                self.run = json.loads(f.attrs["run"])
                self.store_orbitals = bool(f.attrs["store_orbitals"])
                self.order = f["order"][()]
                grp = f[GEOMETRIES]
                self.keys = sorted(grp)
                if len(self.keys) != int(f.attrs["n_geometries"]):
                    raise InputError(f"{self.path}: {len(self.keys)} geometries, the header says "
                                     f"{int(f.attrs['n_geometries'])}")
                self.records = [{**{k: (v.item() if hasattr(v, "item") else v) for k, v in grp[k].attrs.items()},
                                 **{n: grp[k][n][()] for n in ("positions", "forces", "eigenvalues", "occupations")}}
                                for k in self.keys]
        except InputError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"cannot read the snapshot file {self.path} (corrupt or not a snapshot file: {reason})") from None

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def n_occupied(self) -> int:
        return int(np.ceil(self.model.n_electrons / 2 - 1e-9))

    def orbital_matrix(self, states: Literal["occupied", "all"] = "occupied") -> np.ndarray:
        """[m, n_grid] unit rows: per geometry (file order) its occupied (ceil(N_e/2) lowest) or all stored orbitals."""
        import h5py

        if not self.store_orbitals:
            raise InputError(f"{self.path} was made with store_orbitals: false; it holds no orbitals for a basis")
        rows = []
        try:
            with h5py.File(self.path, "r") as f:
                for k in self.keys:
                    U = f[GEOMETRIES][k]["orbitals"]
                    rows.append(U[: self.n_occupied] if states == "occupied" else U[()])
        except (OSError, KeyError) as exc:
            raise InputError(f"cannot read orbitals from {self.path} ({str(exc).splitlines()[0]})") from None
        M = np.concatenate(rows)
        if M.shape[1] != self.grid.size:
            raise InputError(f"{self.path}: orbitals have {M.shape[1]} grid values, the grid {self.grid.shape} "
                             f"{self.grid.size}")
        return M
