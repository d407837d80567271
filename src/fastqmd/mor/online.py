"""Online stage of MOR-QMD: the Kohn–Sham Mermin problem projected on a fixed basis, solved by the
Marzari–Vanderbilt–Payne iteration for frozen wavefunctions (MGmol's MVP solver; PRL 79, 1337 (1997)).

In:  a basis Φ [k, n_grid] (orthonormal rows in the solver's U convention, φ = u/√dV; e.g. `Basis.vectors`), the
     grid, and a `fastqmd.dft.scf.Model` (atoms in Bohr, in the basis' canonical frame).
Out: `OnlineResult` — the density matrix X [k, k] (eigenvalues 0..2, tr X = N_e, the Hi-Fi occupation convention),
     the reduced free energy and its terms (the keys of `SCFResult.energies`), the density, the Hellmann–Feynman
     forces [n_atoms, 3] (Ha/Bohr) and the per-iteration log. Atomic units throughout.

Reduced free energy (the Hi-Fi terms, terms.py, on n = ρ[X] = Σ_ij X_ij φ_i φ_j):
    F[X] = tr X(T + V_nl) + ∫ n ΔV_loc + ½∫(n + b) V_H[n + b] + E_xc[n] + E_ion − TS[X],
    T = ΦTΦᵀ (once per basis), V_nl = Σ_a C_a h_a C_aᵀ with C_a = ⟨φ|β_a⟩ (once per geometry), −TS = 2kT Σ_i s(λ_i/2), s(f) = f ln f + (1 − f) ln(1 − f), λ_i the eigenvalues of X.
Its gradient is h[X] = ∂F_E/∂X = T + V_nl + Φ diag(ΔV_loc + V_H + v_xc) Φᵀ (plus the entropy term kT logit(X/2));
the local potentials enter through one k² n_grid product per h.
MVP iteration (per pass: one density, one Poisson solve, two XC evaluations, one reduced potential matrix):
    X_T = 2 f_FD(h[X]) (μ by bisection so tr X_T = N_e),   Δ = X_T − X,
    F'(0) = tr(h Δ) + tr(kT logit(X/2) Δ)  (= tr(hΔ) − T dS/dβ),   F1 = F[X_T],
    β = −F'(0) / (2(F1 − F0 − F'(0))) clipped to (0, 1] (β = 1 when the quadratic has no minimum),
    X ← X + βΔ  (n and V_H are linear in X, so n(X + βΔ) = n + β(n_T − n); only E_xc is re-evaluated);
stop when |F'(0)| < tol. Warm start: pass the previous X (the basis is fixed, so X carries over between geometries).
Forces: the basis does not move with the atoms, so at a stationary X the exact gradient of F is its explicit part,
F_a = −∂F/∂R_a|_X = the Hi-Fi force terms on the natural orbitals of X (`fastqmd.dft.operator.density_matrix_forces`).
Entropy at saturated occupations (λ = 0 or 2 to round-off) uses f clipped to [1e−14, 1 − 1e−14].
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from fastqmd.dft.grid import Grid
from fastqmd.dft.occupations import fermi_dirac
from fastqmd.dft.operator import (Discretization, Model, density_matrix_forces, discretize,
                                  kinetic_matrix, nonlocal_matrix, potential_matrix, projector_overlaps)
from fastqmd.dft.poisson import hartree_potential
from fastqmd.dft.xc import xc_energy_potential
from fastqmd.errors import CalculationFailed

F_CLIP = 1e-14  # occupation fractions are clipped to [F_CLIP, 1 − F_CLIP] in the entropy gradient
ORTHONORMAL_TOL = 1e-8
OCC_FLOOR = 1e-14  # natural occupations below this are left out of the density (low_rank_density)


@dataclass(frozen=True, eq=False)
class ReducedBasis:
    """A fixed basis Φ [k, n_grid] (Φ Φᵀ = 1) on `grid` with its kinetic matrix T = ΦTΦᵀ [k, k]."""

    Phi: np.ndarray
    grid: Grid
    T: np.ndarray

    @property
    def k(self) -> int:
        return int(self.Phi.shape[0])


def reduced_basis(Phi: np.ndarray, grid: Grid) -> ReducedBasis:
    """Check Φ Φᵀ = 1 and precompute the kinetic matrix (one FD Laplacian of the basis)."""
    Phi = np.ascontiguousarray(Phi, dtype=float)
    if Phi.ndim != 2 or Phi.shape[1] != grid.size:
        raise ValueError(f"basis of shape {Phi.shape} does not live on the grid {grid.shape}")
    err = np.abs(Phi @ Phi.T - np.eye(len(Phi))).max()
    if err > ORTHONORMAL_TOL:
        raise ValueError(f"basis rows are not orthonormal (max |ΦΦᵀ − 1| = {err:.1e})")
    return ReducedBasis(Phi, grid, kinetic_matrix(Phi, grid))


@dataclass(frozen=True, eq=False)
class ReducedProblem:
    """The geometry-dependent reduced operators: the discretization (ΔV_loc, b, projectors, E_ion) and V_nl [k, k]."""

    basis: ReducedBasis
    disc: Discretization
    V_nl: np.ndarray

    @property
    def h_fixed(self) -> np.ndarray:
        """T + V_nl: the part of h that is not a local potential."""
        return self.basis.T + self.V_nl

    @property
    def model(self) -> Model:
        return self.disc.model


def reduced_problem(basis: ReducedBasis, model: Model) -> ReducedProblem:
    """Discretize the atoms (scf.discretize) and project the nonlocal pseudopotential."""
    disc = discretize(model, basis.grid)
    return ReducedProblem(basis, disc, nonlocal_matrix(projector_overlaps(disc, basis.Phi), basis.k))


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Everything at one density matrix X: density n, V_H = Poisson[n + b], v_xc, the terms, F and h[X]."""

    X: np.ndarray
    n: np.ndarray
    v_hartree: np.ndarray
    v_xc: np.ndarray
    energies: dict[str, float]
    h: np.ndarray | None  # [k, k], None when evaluated with_h=False

    @property
    def free_energy(self) -> float:
        return self.energies["free_energy"]


def minus_TS(X: np.ndarray, kT: float) -> float:
    """−TS = 2kT Σ_i [f_i ln f_i + (1 − f_i) ln(1 − f_i)], f_i = λ_i(X)/2 (≤ 0; terms with f ∈ {0, 1} vanish)."""
    f = np.clip(np.linalg.eigvalsh(X) / 2, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where((f > 0) & (f < 1), f * np.log(f) + (1 - f) * np.log1p(-f), 0.0)
    return float(2 * kT * s.sum())


def entropy_gradient(X: np.ndarray, kT: float) -> np.ndarray:
    """∂(−TS)/∂X = kT logit(X/2) = W diag(kT ln(f/(1 − f))) Wᵀ, X = W diag(2f) Wᵀ (f clipped, module doc)."""
    lam, W = np.linalg.eigh(X)
    f = np.clip(lam / 2, F_CLIP, 1 - F_CLIP)
    return (W * (kT * (np.log(f) - np.log1p(-f)))) @ W.T


def low_rank_density(Phi: np.ndarray, X: np.ndarray, grid: Grid) -> np.ndarray:
    """n = ρ[X] from the occupied natural orbitals only: X = Q diag(λ) Qᵀ, n = Σ_{λ_i > λ_min} λ_i (q_iᵀΦ)²/dV.

    Dropping λ_i ≤ OCC_FLOOR changes n by at most OCC_FLOOR max φ² (Fermi–Dirac tails at kT = 1e−3 Ha are ~e^{−100});
    cost m k n_grid for m kept states instead of k² n_grid (basis_density)."""
    lam, Q = np.linalg.eigh(0.5 * (X + X.T))
    keep = lam > OCC_FLOOR
    C = Q[:, keep].T @ Phi  # [m, n_grid]
    return (lam[keep] @ (C * C)).reshape(grid.shape) / grid.dV


def fermi_dirac_matrix(h: np.ndarray, n_electrons: float, kT: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(X_T = Q diag(2 f_FD(ε)) Qᵀ, ε, μ) for h = Q diag(ε) Qᵀ; μ by bisection (occupations.fermi_dirac)."""
    eps, Q = np.linalg.eigh(0.5 * (h + h.T))
    occ, mu, _ = fermi_dirac(eps, n_electrons, kT)
    return (Q * occ) @ Q.T, eps, mu


def evaluate(problem: ReducedProblem, X: np.ndarray, n: np.ndarray | None = None,
             v_hartree: np.ndarray | None = None, timings: dict | None = None, with_h: bool = True) -> Evaluation:
    """F[X] and h[X] (module doc). n = ρ[X] and v_hartree = Poisson[n + b] may be passed when known (linearity);
    with_h=False leaves h None (the line-search probe F1 needs only F; `with_hamiltonian` adds it later)."""
    tm = timings if timings is not None else {}
    b, disc, Phi = problem.basis, problem.disc, problem.basis.Phi
    g = b.grid
    t0 = time.perf_counter()
    if n is None:
        n = low_rank_density(Phi, X, g)
    t1 = time.perf_counter()
    if v_hartree is None:
        v_hartree = hartree_potential(n + disc.b, g)
    t2 = time.perf_counter()
    E_xc, v_xc = xc_energy_potential(n, g, problem.model.xc)
    t3 = time.perf_counter()
    h = reduced_hamiltonian(problem, v_hartree, v_xc) if with_h else None
    t4 = time.perf_counter()
    e = {"kinetic": float(np.sum(X * b.T)), "nonlocal": float(np.sum(X * problem.V_nl)),
         "local_short": float(np.sum(n * disc.v_short)) * g.dV,
         "hartree_total": 0.5 * float(np.sum((n + disc.b) * v_hartree)) * g.dV, "xc": E_xc, "ion_short": disc.E_ion}
    e["minus_TS"] = minus_TS(X, problem.model.kT)
    e["free_energy"] = sum(e.values())
    e["energy"] = e["free_energy"] - e["minus_TS"]
    for key, dt in (("density", t1 - t0), ("hartree", t2 - t1), ("xc", t3 - t2), ("matrices", t4 - t3)):
        tm[key] = tm.get(key, 0.0) + dt
    return Evaluation(X, n, v_hartree, v_xc, e, h)


def reduced_hamiltonian(problem: ReducedProblem, v_hartree: np.ndarray, v_xc: np.ndarray) -> np.ndarray:
    """h = T + V_nl + Φ diag(ΔV_loc + V_H + v_xc) Φᵀ [k, k] (symmetrized)."""
    h = problem.h_fixed + potential_matrix(problem.basis.Phi, problem.disc.v_short + v_hartree + v_xc)
    return 0.5 * (h + h.T)


def with_hamiltonian(problem: ReducedProblem, ev: Evaluation, timings: dict | None = None) -> Evaluation:
    """`ev` with h[X] filled in (from its own V_H and v_xc)."""
    t0 = time.perf_counter()
    h = reduced_hamiltonian(problem, ev.v_hartree, ev.v_xc)
    if timings is not None:
        timings["matrices"] = timings.get("matrices", 0.0) + time.perf_counter() - t0
    return Evaluation(ev.X, ev.n, ev.v_hartree, ev.v_xc, ev.energies, h)


def initial_density_matrix(problem: ReducedProblem) -> np.ndarray:
    """Cold start: X_T of h at the neutral density n0 = −b (the ionic Gaussians, N_e electrons), as scf starts."""
    disc, g = problem.disc, problem.basis.grid
    N_e = problem.model.n_electrons
    n0 = -disc.b * (N_e / -g.integrate(disc.b))
    h = reduced_hamiltonian(problem, hartree_potential(n0 + disc.b, g), xc_energy_potential(n0, g, problem.model.xc)[1])
    return fermi_dirac_matrix(h, N_e, problem.model.kT)[0]


@dataclass(frozen=True)
class IterationLog:
    """One MVP pass: F before the step, F'(0), F1 = F[X_T], the step β and F after it (Ha)."""

    F0: float
    dF0: float
    F1: float
    beta: float
    F: float


@dataclass(frozen=True, eq=False)
class OnlineResult:
    """The reduced solution (atomic units): X [k, k], energies, density, potentials, forces, log, timings (s)."""

    X: np.ndarray
    energies: dict[str, float]
    eigenvalues: np.ndarray  # of the final h (Ha)
    h: np.ndarray  # [k, k] the final reduced Hamiltonian (Ha)
    mu: float
    density: np.ndarray
    v_hartree: np.ndarray
    forces: np.ndarray | None  # [n_atoms, 3] Ha/Bohr (None when not asked)
    converged: bool
    iterations: int
    dF0: float
    log: tuple[IterationLog, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def free_energy(self) -> float:
        return self.energies["free_energy"]


class OnlineNotConverged(CalculationFailed):
    """The MVP iteration did not reach |F'(0)| < tol in max_iter passes; `.result` is the last state."""

    def __init__(self, message: str, result: OnlineResult):
        super().__init__(message)
        self.result = result


def mvp_iterate(ev, probe, step, n_electrons: float, kT: float, tol: float, max_iter: int, verbose: bool = False):
    """The MVP passes (module doc) on any evaluation of F and h: `ev` at the start X (with .X, .h, .free_energy),
    `probe(X_T)` → the evaluation at the Fermi–Dirac target (its h may be missing), `step(ev, ev1, β, Δ)` → the
    evaluation at X + βΔ with h. Returns (last evaluation, log, converged, F'(0)). Shared by the exact grid path
    (`mvp_solve`) and the hyper-reduced one (`fastqmd.mor.hyper.hyper_solve`)."""
    log: list[IterationLog] = []
    converged, dF0 = False, np.inf
    for _ in range(max_iter):
        X_T = fermi_dirac_matrix(ev.h, n_electrons, kT)[0]
        D = X_T - ev.X
        dF0 = float(np.sum((ev.h + entropy_gradient(ev.X, kT)) * D))
        if abs(dF0) < tol:
            converged = True
            break
        ev1 = probe(X_T)
        a = ev1.free_energy - ev.free_energy - dF0
        beta = 1.0 if a <= 0 or dF0 >= 0 else float(np.clip(-dF0 / (2 * a), 1e-6, 1.0))
        ev_next = step(ev, ev1, beta, D)
        log.append(IterationLog(ev.free_energy, dF0, ev1.free_energy, beta, ev_next.free_energy))
        if verbose:
            print(f"mvp {len(log):3d}  F = {ev_next.free_energy:.12f}  F'(0) = {dF0:.2e}  beta = {beta:.3f}")
        ev = ev_next
    return ev, log, converged, dF0


def mvp_solve(problem: ReducedProblem, X0: np.ndarray | None = None, tol: float = 1e-10, max_iter: int = 100,
              forces: bool = True, raise_unconverged: bool = True, verbose: bool = False) -> OnlineResult:
    """Minimize the reduced Mermin free energy over density matrices X (module doc); warm start from X0."""
    t_start = time.perf_counter()
    tm: dict[str, float] = {}
    N_e, kT = problem.model.n_electrons, problem.model.kT
    X = initial_density_matrix(problem) if X0 is None else 0.5 * (X0 + X0.T)

    def step(ev, ev1, beta, D):  # n and V_H are linear in X: interpolate them, re-evaluate only XC
        if beta == 1.0:
            return with_hamiltonian(problem, ev1, tm)
        return evaluate(problem, ev.X + beta * D, ev.n + beta * (ev1.n - ev.n),
                        ev.v_hartree + beta * (ev1.v_hartree - ev.v_hartree), timings=tm)

    ev, log, converged, dF0 = mvp_iterate(evaluate(problem, X, timings=tm),
                                          lambda X_T: evaluate(problem, X_T, timings=tm, with_h=False), step,
                                          N_e, kT, tol, max_iter, verbose)
    eps, _ = np.linalg.eigh(ev.h)
    mu = fermi_dirac(eps, N_e, kT)[1]
    t0 = time.perf_counter()
    F = density_matrix_forces(problem.disc, problem.basis.Phi, ev.X, ev.n, ev.v_hartree, OCC_FLOOR) if forces else None
    tm["forces"] = time.perf_counter() - t0
    tm["total"] = time.perf_counter() - t_start
    result = OnlineResult(ev.X, ev.energies, eps, ev.h, mu, ev.n, ev.v_hartree, F, converged, len(log), dF0, tuple(log), tm)
    if not converged and raise_unconverged:
        raise OnlineNotConverged(f"MOR online solver not converged in {max_iter} iterations "
                                 f"(|F'(0)| = {abs(dF0):.1e} Ha, tolerance {tol:g})", result)
    return result


def solve(basis: ReducedBasis, model: Model, X0: np.ndarray | None = None, **kw) -> OnlineResult:
    """`mvp_solve(reduced_problem(basis, model), X0, **kw)` with the time of the reduced problem in timings."""
    t0 = time.perf_counter()
    problem = reduced_problem(basis, model)
    dt = time.perf_counter() - t0
    res = mvp_solve(problem, X0, **kw)
    res.timings["geometry"] = dt
    res.timings["total"] += dt
    return res
