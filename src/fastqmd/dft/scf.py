"""Self-consistent field: scf(model, grid, eigensolver=, mixer=) → SCFResult.

Mermin free energy (atomic units), minimized over orthonormal orbitals and Fermi–Dirac occupations o_n:
F = Σ_n o_n ⟨u_n|−½∇²_FD|u_n⟩ + E_nl + ∫ n ΔV_loc + ½∫(n+b) V_H + E_xc[n] + E_ion − TS,
V_H = Poisson[n + b] (periodic FFT or free space), E_ion = erfc pair sum − self energy (see ions.py); the terms are
`Model.terms` (terms.py), and V_eff = Σ of the density terms' potentials δE_t/δn.
Loop: V_eff[n_in] → eigensolver step → occupations (μ by bisection) → n_out, F → mix n_in ← mixer(n_in, n_out);
stop when |ΔF| < e_tol on two consecutive iterations and ∫|n_out − n_in| < rho_tol. No convergence within
max_iter raises `SCFNotConverged` (a `fastqmd.errors.CalculationFailed`) carrying the last state as `.result`.
Default mixers: Pulay (α = 0.5, 8 vectors) with LOBPCG; with ABPG the potential is rebuilt every iteration from a
linearly mixed density (α = 0.5; α = 1, MGmol's choice, sloshes with period 2 for some geometries on coarse grids).
Warm starts: pass the previous orbitals `U0` and density `n0` (the ASE calculator extrapolates them between MD steps).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from fastqmd.dft.eigensolvers import ABPG, LOBPCG, make_eigensolver, orthonormalize
from fastqmd.dft.grid import Grid
from fastqmd.dft.hamiltonian import Hamiltonian
from fastqmd.dft.ions import ion_energy_forces
from fastqmd.dft.local import compensation_charge, local_potential
from fastqmd.dft.mixing import LinearMixer, PulayMixer
from fastqmd.dft.nonlocal_pp import ProjectorBlock, projector_blocks
from fastqmd.dft.occupations import fermi_dirac
from fastqmd.dft.pseudo import GTHPseudo, load_gth
from fastqmd.dft.terms import DensityTerm, Kinetic, OrbitalTerm, model_terms
from fastqmd.errors import CalculationFailed


@dataclass(frozen=True, eq=False)
class Model:
    """Atoms (symbols, positions [n, 3] in Bohr) and the physics: XC functional, GTH table, smearing kT (Ha)."""

    symbols: tuple[str, ...]
    positions: np.ndarray
    xc: str = "teter93"
    kT: float = 1e-3
    n_empty: int = 2
    r_c: float = 1.0
    charge: float = 0.0
    filter_pseudo: bool = False  # Fourier-filter ΔV_loc and projectors to the grid cutoff (filtering.py)

    @property
    def pseudos(self) -> list[GTHPseudo]:
        table = "pbe" if self.xc.lower() == "pbe" else "lda"
        return [load_gth(s, table) for s in self.symbols]

    @property
    def n_electrons(self) -> float:
        return sum(p.Z for p in self.pseudos) - self.charge

    @property
    def n_states(self) -> int:
        return int(np.ceil(self.n_electrons / 2)) + self.n_empty

    @property
    def terms(self) -> tuple:
        """The energy terms of F, in summation order (terms.py)."""
        return model_terms(self.xc)

    def moved(self, positions: np.ndarray) -> Model:
        return Model(self.symbols, np.asarray(positions, float), self.xc, self.kT, self.n_empty, self.r_c, self.charge,
                     self.filter_pseudo)


@dataclass(eq=False)
class Discretization:
    """Geometry-dependent grid quantities: ΔV_loc, ionic Gaussian charge b, projectors, ion–ion energy/forces."""

    model: Model
    grid: Grid
    v_short: np.ndarray
    b: np.ndarray
    blocks: list[ProjectorBlock]
    E_ion: float
    F_ion: np.ndarray

    @property
    def q_max(self) -> float | None:
        return q_max(self.model, self.grid)


def discretize(model: Model, grid: Grid) -> Discretization:
    pps, R = model.pseudos, np.asarray(model.positions, float)
    Z = np.array([p.Z for p in pps])
    E_ion, F_ion = ion_energy_forces(Z, R, grid, model.r_c)
    q = q_max(model, grid)
    return Discretization(model, grid, local_potential(pps, R, grid, model.r_c, q), compensation_charge(pps, R, grid, model.r_c),
                          projector_blocks(pps, R, grid, model.r_c, q), E_ion, F_ion)


def q_max(model: Model, grid: Grid) -> float | None:
    """Filter cutoff π/h_max when the model asks for filtered pseudopotentials, else None."""
    return float(np.pi / max(grid.spacing)) if model.filter_pseudo else None


@dataclass(eq=False)
class SCFResult:
    """Converged KS state: orbitals U [k, n_grid] (orthonormal, ψ = U/√dV), density n and potentials on the grid."""

    disc: Discretization
    eigenvalues: np.ndarray
    occupations: np.ndarray
    orbitals: np.ndarray
    density: np.ndarray
    v_hartree: np.ndarray
    v_xc: np.ndarray
    v_eff: np.ndarray
    mu: float
    energies: dict[str, float]
    converged: bool
    iterations: int
    wall_s: float
    history: list[float] = field(default_factory=list)

    @property
    def free_energy(self) -> float:
        return self.energies["free_energy"]

    @property
    def grid(self) -> Grid:
        return self.disc.grid

    def orbitals_on_grid(self) -> np.ndarray:
        """ψ_n(r) [k, n_x, n_y, n_z] normalized to ∫|ψ|² = 1."""
        return self.orbitals.reshape((-1,) + self.grid.shape) / np.sqrt(self.grid.dV)


def density(U: np.ndarray, occ: np.ndarray, grid: Grid) -> np.ndarray:
    """n(r) = Σ_n o_n u_n(r)² / dV."""
    return (occ @ (U * U)).reshape(grid.shape) / grid.dV


def effective_potential(disc: Discretization, n: np.ndarray) -> tuple[np.ndarray, dict[str, tuple[float, np.ndarray]]]:
    """(V_eff = Σ_t δE_t/δn over the model's density terms, {term name: (E_t, δE_t/δn)}) for density n."""
    parts = {t.name: t.energy_potential(disc, n) for t in disc.model.terms if isinstance(t, DensityTerm)}
    V_eff = None
    for _, V in parts.values():
        V_eff = V if V_eff is None else V_eff + V
    return V_eff, parts


def free_energy_terms(disc: Discretization, U: np.ndarray, occ: np.ndarray, mTS: float,
                      eps: np.ndarray | None = None, V_in: np.ndarray | None = None):
    """Energy terms {name: E_t} (plus minus_TS, free_energy, energy) at orbitals U with occupations occ;
    returns (terms, n, V_eff, V_H, v_xc).

    When U are Ritz vectors of H[V_in] with Ritz values eps, the kinetic energy follows from the band energy,
    Σ o_n ⟨u_n|T|u_n⟩ = Σ o_n ε_n − ∫ n V_in − E_nl (saves one Laplacian per SCF iteration)."""
    g = disc.grid
    n = density(U, occ, g)
    V_eff, parts = effective_potential(disc, n)
    t: dict[str, float] = {}
    for term in disc.model.terms:
        if isinstance(term, DensityTerm):
            t[term.name] = parts[term.name][0]
        elif isinstance(term, Kinetic) and eps is not None:
            t[term.name] = np.nan  # from the band energy below, once E_nl is known
        elif isinstance(term, OrbitalTerm):
            t[term.name] = term.energy(disc, U, occ)
        else:
            t[term.name] = term.energy(disc)
    if eps is not None:
        t["kinetic"] = float(occ @ eps) - float(np.sum(n * V_in)) * g.dV - t["nonlocal"]
    t["minus_TS"] = mTS
    t["free_energy"] = sum(t.values())
    t["energy"] = t["free_energy"] - mTS
    return t, n, V_eff, parts["hartree_total"][1], parts["xc"][1]


def initial_orbitals(model: Model, grid: Grid, seed: int = 0) -> np.ndarray:
    """Random values under a Gaussian envelope around the atoms (width 2 Bohr), orthonormalized."""
    rng = np.random.default_rng(seed)
    env = np.zeros(grid.shape)
    for R in np.asarray(model.positions, float):
        dx, dy, dz = grid.displacements(R)
        env += np.exp(-(dx[:, None, None] ** 2 + dy[None, :, None] ** 2 + dz[None, None, :] ** 2) / 4.0)
    U = rng.standard_normal((model.n_states, grid.size)) * env.ravel()
    return orthonormalize(U)


class SCFNotConverged(CalculationFailed):
    """The real-space SCF did not converge within max_iter; `.result` is the last state (converged False)."""

    def __init__(self, message: str, result: SCFResult):
        super().__init__(message)
        self.result = result


def scf(model: Model, grid: Grid, eigensolver="lobpcg", mixer=None, U0: np.ndarray | None = None,
        n0: np.ndarray | None = None, e_tol: float = 1e-7, rho_tol: float = 1e-5, max_iter: int = 100,
        verbose: bool = False, raise_unconverged: bool = True) -> SCFResult:
    """Solve the Kohn–Sham equations; returns the converged state (Mermin free energy in Ha). Without
    convergence in max_iter iterations: SCFNotConverged (or, with raise_unconverged=False, the last state with
    converged False, e.g. for convergence studies)."""
    t0 = time.perf_counter()
    solver = make_eigensolver(eigensolver) if isinstance(eigensolver, str) else eigensolver
    if mixer is None:
        mixer = LinearMixer(0.5) if isinstance(solver, ABPG) else PulayMixer(0.5, 8)
    if hasattr(solver, "reset"):
        solver.reset()
    mixer.reset()
    if grid.periodic and model.charge != 0:
        raise ValueError("charged cells need a background correction that is not implemented: use isolated boundaries")
    disc = discretize(model, grid)
    N_e = model.n_electrons
    n_in = -disc.b * (N_e / -grid.integrate(disc.b)) if n0 is None else np.maximum(n0, 0.0) * (N_e / grid.integrate(n0))
    V_eff = effective_potential(disc, n_in)[0]
    if U0 is None:
        U = initial_orbitals(model, grid)
        _, U, _, _ = LOBPCG(maxiter=30).step(Hamiltonian(grid, V_eff, disc.blocks), U)
    else:
        U = orthonormalize(np.asarray(U0, float)[: model.n_states])
    F_prev, small, history = None, 0, []
    converged = False
    for it in range(1, max_iter + 1):
        H = Hamiltonian(grid, V_eff, disc.blocks)
        eps, U_ritz, U, res = solver.step(H, U)
        occ, mu, mTS = fermi_dirac(eps, N_e, model.kT)
        terms, n_out, V_out, V_H, v_xc = free_energy_terms(disc, U_ritz, occ, mTS, eps, V_eff)
        F = terms["free_energy"]
        dn = grid.integrate(np.abs(n_out - n_in))
        history.append(F)
        if verbose:
            print(f"scf {it:3d}  F = {F:.10f}  dF = {F - F_prev if F_prev is not None else 0:.2e}  |dn| = {dn:.2e}  res = {res:.2e}")
        small = small + 1 if (F_prev is not None and abs(F - F_prev) < e_tol) else 0
        F_prev = F
        if small >= 2 and dn < rho_tol:
            converged = True
            break
        n_in = mixer(n_in, n_out)
        V_eff = effective_potential(disc, n_in)[0]
    result = SCFResult(disc, eps, occ, U_ritz, n_out, V_H, v_xc, V_out, mu, terms, converged, it,
                       time.perf_counter() - t0, history)
    if not converged and raise_unconverged:
        dF = abs(history[-1] - history[-2]) if len(history) > 1 else float("nan")
        raise SCFNotConverged(f"real-space SCF not converged in {max_iter} iterations (|ΔF| = {dF:.1e} Ha, "
                              f"∫|Δn| = {dn:.1e}; tolerances {e_tol:g} Ha, {rho_tol:g})", result)
    return result
