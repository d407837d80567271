"""The MOR accuracy map: the reduced model against the Hi-Fi model it was made from, geometry by geometry.

In:  a basis (`fastqmd.mor.basis.Basis`) and a Hi-Fi test set (a `fastqmd mor snapshots` file; orbitals not needed),
     both on the same grid, model and molecule; the ranks to test (truncations of the basis, `rank_for` of ε).
Out: per rank and geometry the errors (atomic units, canonical frame, the test set's labels)
         ΔE = |F_HiFi − F_MOR|          (Mermin free energies, Ha)
         ΔF_a = ‖F_HiFi,a − F_MOR,a‖    (Ha/Bohr) for every atom a except the pinned one (the study's "per H atom":
                                          the pinned O carries no dynamics),
     summarized separately over reproductive geometries (on the training grid) and predictive ones (all others):
     n, max and median of ΔF over atoms and geometries, max ΔE — the keys of benchmarks/mor/accuracy_map.json.
The headline rank (the basis' own, or that of a given ε ≤ the basis') is run on every geometry; the other ranks of the
sweep on every `sweep_every`-th geometry of the warm-start order (the same subset for each, so the sweep compares
like with like; the headline row of the sweep is restricted to that subset too).
Solves run in the test set's warm-start order, each rank its own chain (the density matrix X of the previous geometry
starts the next MVP solve; `fastqmd.mor.online`). Each result is journalled (one JSON line, flushed and fsynced) in
`<output>.journal.jsonl`; a rerun after kill -9 skips what is journalled (its first solve starts cold, so a resumed
map agrees with an uninterrupted one to the online tolerance, not bit for bit). The journal's first line is the run
identity; another identity is refused (InputError) unless `overwrite`.
Targets (the companion paper, rank ≈ 34): ΔF ≤ 5e−4 Ha/Bohr on every predictive geometry, ΔE ≤ 1e−4 Ha.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastqmd.errors import InputError

FORCE_TARGET = 5e-4  # Ha/Bohr, every predictive geometry (the companion paper)
ENERGY_TARGET = 1e-4  # Ha
DEFAULT_SWEEP = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


@dataclass(frozen=True)
class GeometryError:
    """One geometry at one rank: ΔE (Ha), ΔF per free atom (Ha/Bohr), MVP iterations, wall time (s)."""

    index: int
    reproductive: bool
    energy_error: float
    force_errors: tuple[float, ...]
    iterations: int
    wall_s: float


def geometry_error(index: int, reproductive: bool, F_hifi: float, F_mor: float, forces_hifi: np.ndarray,
                   forces_mor: np.ndarray, pinned: int, iterations: int = 0, wall_s: float = 0.0) -> GeometryError:
    """ΔE = |F_HiFi − F_MOR|, ΔF_a = ‖F_HiFi,a − F_MOR,a‖ for a ≠ pinned."""
    d = np.linalg.norm(np.asarray(forces_hifi, float) - np.asarray(forces_mor, float), axis=1)
    free = [a for a in range(len(d)) if a != pinned]
    return GeometryError(int(index), bool(reproductive), abs(float(F_hifi) - float(F_mor)),
                         tuple(float(d[a]) for a in free), int(iterations), float(wall_s))


def summarize(errors: list[GeometryError]) -> dict:
    """n, max/median ΔF over all free atoms of the geometries, max/median ΔE, and the targets' verdicts."""
    if not errors:
        return {"n": 0}
    dF = np.concatenate([e.force_errors for e in errors])
    dE = np.array([e.energy_error for e in errors])
    worst = max(errors, key=lambda e: max(e.force_errors))
    return {"n": len(errors), "max_force_error_Ha_per_Bohr": float(dF.max()),
            "median_force_error_Ha_per_Bohr": float(np.median(dF)), "max_energy_error_Ha": float(dE.max()),
            "median_energy_error_Ha": float(np.median(dE)),
            "fraction_force_within_target": float(np.mean([max(e.force_errors) <= FORCE_TARGET for e in errors])),
            "fraction_energy_within_target": float(np.mean(dE <= ENERGY_TARGET)),
            "worst_force_geometry": worst.index, "mean_mvp_iterations": float(np.mean([e.iterations for e in errors]))}


def split_summary(errors: list[GeometryError]) -> dict:
    """{"reproductive": summarize(on the grid), "predictive": summarize(the others)}."""
    return {"reproductive": summarize([e for e in errors if e.reproductive]),
            "predictive": summarize([e for e in errors if not e.reproductive])}


def sweep_ranks(basis, epsilons) -> list[tuple[float, int]]:
    """(ε, k = rank_for(σ, ε, criterion)) for each ε whose rank the basis holds (k ≤ basis.rank), plus the basis'
    own rank (ε of the basis); sorted by k, duplicates dropped."""
    from fastqmd.mor.basis import rank_for

    out = {basis.rank: float(basis.epsilon)}
    for eps in epsilons:
        k = rank_for(basis.singular_values, float(eps), basis.criterion)
        if k <= basis.rank:
            out.setdefault(k, float(eps))
    return sorted(((e, k) for k, e in out.items()), key=lambda t: t[1])


class Journal:
    """`<output>.journal.jsonl`: the identity line, then one line per (rank, geometry) result (fsynced)."""

    def __init__(self, output: Path, identity: dict, overwrite: bool):
        self.path = output.with_name(output.name + ".journal.jsonl")
        self.done: dict[tuple[int, int], GeometryError] = {}
        if self.path.exists():
            lines = self.path.read_text().splitlines()
            try:
                head = json.loads(lines[0]) if lines else None
            except json.JSONDecodeError:
                head = None
            if head != {"identity": identity}:
                if not overwrite:
                    raise InputError(f"{self.path} belongs to another accuracy run (other basis, test set or ranks); "
                                     "remove it or pass --overwrite")
                self.path.unlink()
            else:
                for line in lines[1:]:
                    try:
                        r = json.loads(line)
                    except json.JSONDecodeError:  # a line cut by kill -9: redone
                        continue
                    self.done[(r["rank"], r["index"])] = GeometryError(
                        r["index"], r["reproductive"], r["energy_error"], tuple(r["force_errors"]), r["iterations"],
                        r["wall_s"])
        if not self.path.exists():
            self._append({"identity": identity})

    def _append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def add(self, rank: int, e: GeometryError) -> None:
        self._append({"rank": rank, "index": e.index, "reproductive": e.reproductive, "energy_error": e.energy_error,
                      "force_errors": list(e.force_errors), "iterations": e.iterations, "wall_s": e.wall_s})
        self.done[(rank, e.index)] = e


def check_pair(basis, testset) -> None:
    """InputError unless the test set was made on the basis' grid, physics and molecule."""
    basis.check_compatible(grid=testset.grid, model=testset.model, symbols=testset.recipe.symbols)
    if testset.recipe.pinned != basis.recipe.pinned:
        raise InputError(f"the test set pins atom {testset.recipe.pinned}, the basis atom {basis.recipe.pinned}")


def run_rank(basis, testset, k: int, journal: Journal, tol: float = 1e-9, max_iter: int = 100,
             progress=None, every: int = 1, hyper=None) -> list[GeometryError]:
    """Every `every`-th test geometry of the warm-start order at rank k (the first k basis vectors), journalled.
    With `hyper` (a HyperReduction of rank k) the grid-free step is used wherever its tables cover the geometry
    (the exact step elsewhere, as MORCalculator does; `GeometryError.wall_s` < 0 marks those)."""
    from fastqmd.mor.hyper import hyper_solve
    from fastqmd.mor.online import reduced_basis, solve

    rb = reduced_basis(basis.vectors[:k], basis.grid.grid())
    by_index = {int(r["index"]): r for r in testset.records}
    order = [int(i) for i in testset.order][::every]
    X, out = None, []
    for i in order:
        if (k, i) in journal.done:
            out.append(journal.done[(k, i)])
            continue
        r = by_index[i]
        t0 = time.perf_counter()
        covered = hyper is not None and hyper.covers(r["positions"])
        if covered:
            res = hyper_solve(hyper, r["positions"], X0=X, tol=tol, max_iter=max_iter)
        else:
            res = solve(rb, basis.model.model(r["positions"]), X0=X, tol=tol, max_iter=max_iter)
        X = res.X
        wall = time.perf_counter() - t0
        e = geometry_error(i, r["reproductive"], r["free_energy"], res.free_energy, r["forces"], res.forces,
                           basis.recipe.pinned, res.iterations, wall if (hyper is None or covered) else -wall)
        journal.add(k, e)
        out.append(e)
        if progress:
            progress(k, e, len(out), len(order))
    return out


def accuracy_map(basis, testset, output: Path, epsilons=DEFAULT_SWEEP, tol: float = 1e-9, overwrite: bool = False,
                 progress=None, epsilon: float | None = None, sweep_every: int = 1, hyper=None) -> dict:
    """The map at the headline rank (rank_for(σ, `epsilon`), default the basis' own rank) on every test geometry,
    and the rank sweep (module doc) on every `sweep_every`-th geometry of the warm-start order; returns the summary
    dict written to `output`."""
    from fastqmd.mor.basis import energy_fractions, rank_for

    check_pair(basis, testset)
    head_eps = float(basis.epsilon) if epsilon is None else float(epsilon)
    head_k = basis.rank if epsilon is None else rank_for(basis.singular_values, head_eps, basis.criterion)
    if head_k > basis.rank:
        raise InputError(f"ε = {head_eps:g} needs rank {head_k}; the basis holds {basis.rank} vectors (rebuild it "
                         "with a smaller --epsilon)")
    hr = None
    if hyper is not None:  # the grid-free step at the headline rank; no sweep (one table set per rank)
        from fastqmd.mor.calculator import load_hyper_for

        hr = load_hyper_for(hyper, basis.truncated(head_k) if head_k < basis.rank else basis)
        epsilons = ()
    ranks = [(e, k) for e, k in sweep_ranks(basis, epsilons) if k != head_k] + [(head_eps, head_k)]
    if hr is not None:
        ranks = [(head_eps, head_k)]
    ranks.sort(key=lambda t: t[1])
    identity = {"basis": str(basis.source), "basis_rank": basis.rank, "testset": str(testset.path),
                "n_geometries": len(testset), "ranks": [k for _, k in ranks], "headline_rank": head_k, "tol": tol,
                "sweep_every": sweep_every, "hyper": None if hyper is None else str(hyper)}
    journal = Journal(output, identity, overwrite)
    per_rank = {}
    t0 = time.perf_counter()
    per_rank[head_k] = run_rank(basis, testset, head_k, journal, tol, progress=progress, hyper=hr)
    for _, k in ranks:
        if k != head_k:
            per_rank[k] = run_rank(basis, testset, k, journal, tol, progress=progress, every=sweep_every)
    sweep_set = {int(i) for i in list(testset.order)[::sweep_every]}
    fr = energy_fractions(basis.singular_values, basis.criterion)
    head = per_rank[head_k]
    return {"n_geometries": len(testset), "rank": head_k, "energy_fraction": float(fr[head_k - 1]),
            "epsilon": head_eps, "criterion": basis.criterion, **split_summary(head),
            "targets": {"max_force_error_Ha_per_Bohr": FORCE_TARGET, "max_energy_error_Ha": ENERGY_TARGET,
                        "source": "companion paper: predictive force error ≤ 5e-4 Ha/Bohr at rank ≈ 34"},
            "rank_sweep": [{"epsilon": eps, "rank": k, "energy_fraction": float(fr[k - 1]),
                            **split_summary([e for e in per_rank[k] if e.index in sweep_set])} for eps, k in ranks],
            "rank_sweep_geometries": f"every {sweep_every}-th of the warm-start order ({len(sweep_set)})",
            "basis": str(basis.source), "testset": str(testset.path), "online_tol_Ha": tol,
            **({} if hr is None else {"hyper": {"file": str(hyper), "geometries_outside_tables":
                                                sum(e.wall_s < 0 for e in head),
                                                "mean_step_s": float(np.mean([abs(e.wall_s) for e in head]))}}),
            "wall_s_this_run": time.perf_counter() - t0,
            "geometries": [{"index": e.index, "reproductive": e.reproductive, "energy_error_Ha": e.energy_error,
                            "force_errors_Ha_per_Bohr": list(e.force_errors), "mvp_iterations": e.iterations}
                           for e in head]}


def plot_map(summary: dict, path: Path) -> Path:
    """Histograms of ΔF (per free atom) and ΔE, reproductive vs predictive, and the errors vs rank."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    geo = summary["geometries"]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    for rep, colour in ((False, "tab:blue"), (True, "tab:orange")):
        g = [x for x in geo if x["reproductive"] == rep]
        if not g:
            continue
        label = f"{'reproductive' if rep else 'predictive'} ({len(g)})"
        dF = np.concatenate([x["force_errors_Ha_per_Bohr"] for x in g])
        dE = np.array([x["energy_error_Ha"] for x in g])
        ax[0].hist(np.log10(np.maximum(dF, 1e-12)), bins=40, alpha=0.6, color=colour, label=label)
        ax[1].hist(np.log10(np.maximum(dE, 1e-14)), bins=40, alpha=0.6, color=colour, label=label)
    ax[0].axvline(np.log10(FORCE_TARGET), color="k", ls="--", lw=1, label="target 5e-4")
    ax[1].axvline(np.log10(ENERGY_TARGET), color="k", ls="--", lw=1, label="target 1e-4")
    ax[0].set_xlabel("log10 ‖F_HiFi − F_MOR‖ per H (Ha/Bohr)")
    ax[1].set_xlabel("log10 |E_HiFi − E_MOR| (Ha)")
    for a in ax[:2]:
        a.set_ylabel("count")
        a.legend(fontsize=8)
    sw = summary["rank_sweep"]
    ks = [s["rank"] for s in sw]
    for key, name, m in (("max_force_error_Ha_per_Bohr", "max ΔF (Ha/Bohr)", "o-"),
                         ("median_force_error_Ha_per_Bohr", "median ΔF (Ha/Bohr)", "s--"),
                         ("max_energy_error_Ha", "max ΔE (Ha)", "^-")):
        ax[2].semilogy(ks, [s["predictive"].get(key, np.nan) for s in sw], m, label=f"predictive {name}")
    ax[2].axhline(FORCE_TARGET, color="k", ls="--", lw=1)
    ax[2].set_xlabel("rank k")
    ax[2].legend(fontsize=8)
    ax[2].set_title("error vs rank (ε = " + ", ".join(f"{s['epsilon']:g}" for s in sw) + ")", fontsize=8)
    fig.suptitle(f"MOR vs Hi-Fi: {summary['n_geometries']} geometries, rank {summary['rank']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
