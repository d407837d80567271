"""ASE Calculator for the real-space KS solver — the one place where atomic units meet eV/Å.

`RSDFTCalculator(**settings)` (settings: `RSDFTSettings`, frozen, unknown keys rejected) returns
energy = free_energy = the Mermin free energy F (eV; the force-consistent energy), forces = −∂F/∂R (eV/Å) and,
in `calc.results["eigenvalues"]`, the KS eigenvalues (eV). The converged state (orbitals, density, potentials on
the grid, in atomic units) stays available as `calc.scf_result` for MOR. An SCF that does not converge in `max_iter`
iterations raises `SCFNotConverged` (a `fastqmd.errors.CalculationFailed`); `calc.scf_result` is then its last state.
Grid: the atoms' orthorhombic cell (or `box_ang`) with `grid_points` per axis; grid points at origin + i·h with
origin = `origin_ang` (default: the cell origin, so atoms at lattice-aligned positions sit on grid points).
Warm starts between MD steps: orbitals and density are linearly extrapolated from the last two SCF solutions
(U_guess = 2U_k − U_{k−1}Θ with Θ the Procrustes rotation aligning U_{k−1} to U_k; n_guess = 2n_k − n_{k−1}).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from pydantic import BaseModel, ConfigDict, Field

from fastqmd.errors import InputError
from fastqmd.units import BOHR_ANG, HARTREE_EV, KB_EV

Vec3 = tuple[float, float, float]


class RSDFTSettings(BaseModel):
    """User settings of the real-space solver (eV, Å, K at this boundary)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    grid_points: int | tuple[int, int, int] = 64
    fd_order: Literal[2, 4, 6, 8] = 4
    boundary: Literal["periodic", "isolated"] = "periodic"
    box_ang: float | Vec3 | None = None
    origin_ang: Vec3 | None = None
    xc: Literal["teter93", "pz81", "pbe"] = "teter93"
    electronic_temperature_K: float = Field(315.775, gt=0)  # kT = 1e-3 Ha
    n_empty: int = Field(2, ge=0)
    filter_pseudo: bool = False  # Fourier-filter ΔV_loc and projectors to the grid cutoff (a coarse grid, MOR demo)
    eigensolver: Literal["lobpcg", "abpg"] = "lobpcg"
    energy_tol_eV: float = Field(1e-7 * HARTREE_EV, gt=0)  # 1e-7 Ha
    density_tol: float = Field(1e-5, gt=0)
    max_iter: int = Field(100, ge=1)
    warm_start: bool = True
    verbose: bool = False


def make_grid(settings: RSDFTSettings, atoms):
    """Grid (Bohr) from the settings and the atoms' cell."""
    from fastqmd.dft.grid import Grid

    if settings.box_ang is not None:
        box = np.broadcast_to(np.asarray(settings.box_ang, float), (3,))
    else:
        cell = np.asarray(atoms.cell.array)
        if not np.any(cell) or np.abs(cell - np.diag(np.diag(cell))).max() > 1e-8:
            raise InputError("the real-space solver needs an orthorhombic cell (or set box_ang)")
        box = np.diag(cell)
    n = np.broadcast_to(np.asarray(settings.grid_points, int), (3,))
    origin = np.zeros(3) if settings.origin_ang is None else np.asarray(settings.origin_ang, float)
    L = box / BOHR_ANG
    return Grid(tuple(int(v) for v in n), tuple(L / n), tuple(origin / BOHR_ANG), settings.fd_order,
                settings.boundary == "periodic")


def extrapolate(U1: np.ndarray, U0: np.ndarray | None) -> np.ndarray:
    """2U1 − U0Θ with Θ = argmin ‖U1 − ΘᵀU0‖ (orthogonal Procrustes); U1 alone when U0 is None."""
    if U0 is None or U0.shape != U1.shape:
        return U1
    W, _, Vt = np.linalg.svd(U1 @ U0.T)
    return 2 * U1 - (W @ Vt) @ U0


class RSDFTCalculator(Calculator):
    """Real-space finite-difference Kohn–Sham DFT (GTH pseudopotentials, LDA/PBE) as an ASE Calculator."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, **settings):
        super().__init__()
        self.settings = RSDFTSettings(**settings)
        self.scf_result = None
        self._history: list = []  # [(numbers, grid, U, n)] of the last two solutions

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from fastqmd.dft.forces import hellmann_feynman_forces
        from fastqmd.dft.scf import Model, SCFNotConverged, scf

        super().calculate(atoms, properties, system_changes)
        s = self.settings
        grid = make_grid(s, self.atoms)
        R = self.atoms.positions / BOHR_ANG
        if not grid.periodic:
            lo, hi = np.asarray(grid.origin), np.asarray(grid.origin) + grid.lengths
            if np.any(R < lo + 1.0) or np.any(R > hi - 1.0):
                raise InputError("isolated boundary: every atom must lie inside the box, ≥ 1 Bohr from its faces")
        try:
            model = Model(tuple(self.atoms.get_chemical_symbols()), R, xc=s.xc,
                          kT=s.electronic_temperature_K * KB_EV / HARTREE_EV, n_empty=s.n_empty,
                          filter_pseudo=s.filter_pseudo)
            _ = model.pseudos
        except ValueError as exc:
            raise InputError(str(exc)) from None
        key = (tuple(self.atoms.numbers), grid)
        hist = [h for h in self._history if h[0] == key] if s.warm_start else []
        U0 = n0 = None
        if hist:
            U0 = extrapolate(hist[-1][1], hist[-2][1] if len(hist) > 1 else None)
            n0 = 2 * hist[-1][2] - hist[-2][2] if len(hist) > 1 else hist[-1][2]
        try:
            res = scf(model, grid, eigensolver=s.eigensolver, U0=U0, n0=n0, e_tol=s.energy_tol_eV / HARTREE_EV,
                      rho_tol=s.density_tol, max_iter=s.max_iter, verbose=s.verbose)
        except SCFNotConverged as exc:
            self.scf_result = exc.result  # the last state, for inspection or a restart from U0/n0
            raise
        self._history = (hist + [(key, res.orbitals, res.density)])[-2:]
        self.scf_result = res
        F = hellmann_feynman_forces(res)
        self.results = {
            "energy": res.free_energy * HARTREE_EV,
            "free_energy": res.free_energy * HARTREE_EV,
            "forces": F * HARTREE_EV / BOHR_ANG,
            "eigenvalues": res.eigenvalues * HARTREE_EV,
            "scf_iterations": res.iterations,
            "scf_converged": res.converged,
        }
