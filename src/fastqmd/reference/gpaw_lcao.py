"""GPAW in LCAO mode as a fastqmd reference engine: Kohn-Sham DFT (PBE by default) in numerical atomic orbitals.

In:  a fully periodic ASE `Atoms` (Å, cell rows).
Out: a `Sample`: energy per cell (eV, GPAW's `free_energy`: the Mermin free energy F = U − TS of the Fermi-Dirac
     occupations, relative to GPAW's isolated-atom reference energies, which are in extras), forces
     F = −∂F/∂R (eV/Å), H(k) and S(k) (eV / dimensionless) at every k-point of a Γ-centred Monkhorst-Pack mesh,
     eigenvalues (eV), occupations (electrons per orbital), Fermi level, in the fastqmd orbital convention.

Level of theory: PAW setups (PyPI `gpaw-data`, found without any download; `setups={'Pd': '10'}` picks a
named setup), a numerical-atomic-orbital basis (`dzp`: double-zeta valence + p polarization; Cu: 15
functions per atom), the density and potential on a real-space grid of spacing `grid_spacing_A`.

H, S: `gpaw.lcao.tools.get_lcao_hamiltonian`, the LCAO Hamiltonian of the converged potential and the PAW
overlap (S includes the PAW correction; the basis is not normalized, S_ii 0.3–1.0). Their generalized
eigenvalues are GPAW's (tests/reference/test_gpaw_lcao.py, 1e-8 eV at every k-point).

Ordering: GPAW's real spherical harmonics (`gpaw.sphere.spherical_harmonics`, p = (y, z, x), d = (xy, yz,
3z²−r², zx, x²−y²), no Condon-Shortley sign) are exactly the fastqmd ones (fitted for l ≤ 3 and checked by
rotation in the tests), so no permutation is applied. An atom's shells follow GPAW's radial order
(`setup.basis.bf_j`; Cu dzp: s, d, s′, d′, p).

k-points and phases: GPAW's Bloch sums H(k) = Σ_R e^{i 2π k·n} H(0, R) are the fastqmd convention (checked
against a supercell in the tests), but GPAW wraps every atom into the cell first. The stored matrices belong to
the positions as given: for atom a at x_a = x_a^wrapped − n_a·cell, each block gets
H_μν ← conj(p_μ) H_μν p_ν with p_μ = e^{i 2π k·n_a(μ)} (`unwrap_phases`). Point-group symmetry is off (no
rattled structure has any); `time_reversal=True` keeps only one of k, −k (H(−k) = conj H(k)) with doubled
weight: half the cost of a k-mesh, same energy and forces.
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np
from ase import Atoms

from fastqmd.errors import InputError
from fastqmd.reference.base import BasisSpec, EnergyForces, Sample, SCFError, valence_by_element
from fastqmd.reference.pyscf_mol import fermi_level
from fastqmd.units import KB_EV

SPIN_DEGENERACY = 2.0  # closed-shell (spin-paired) calculations only


def gpaw_versions() -> dict[str, str]:
    from importlib.metadata import version

    import gpaw

    return {"gpaw": version("gpaw"), "gpaw-data": version("gpaw-data"), "libxc": gpaw.get_libraries()["libxc"],
            "numpy": np.__version__}


def setup_file_names(symbol: str, setup: str, xc: str, basis: str) -> tuple[str, str]:
    """GPAW's file names of an element's PAW setup and basis: ('Cu.PBE', 'Cu.dzp.basis') for the standard
    setup, ('Pd.10.PBE', 'Pd.10.dzp.basis') for setup '10'. A reduced basis 'szp(dzp)' (GPAW's syntax: the
    single-zeta-polarized subset of the dzp file) reads the file of the basis in parentheses, Cu.dzp.basis."""
    stem = symbol if setup == "paw" else f"{symbol}.{setup}"
    m = re.fullmatch(r"\w+\((\w+)\)", basis)
    return f"{stem}.{xc}", f"{stem}.{m.group(1) if m else basis}.basis"


def unwrap_phases(kpts: np.ndarray, shift: np.ndarray, orbital_atom: np.ndarray) -> np.ndarray:
    """p [nk, nao] = e^{i 2π k·n_a} per orbital, for n_a [N, 3] = wrapped − given fractional position of atom a.

    A matrix of the wrapped structure becomes that of the given one as M_μν ← conj(p_μ) M_μν p_ν: moving atom
    ν by a lattice vector m·cell multiplies its Bloch sum Σ_R e^{i 2π k·n} φ_ν(r − R) by e^{−i 2π k·m}.
    """
    return np.exp(2j * np.pi * kpts @ shift[orbital_atom].T)  # [nk, nao]


class GPAWLCAOEngine:
    """Spin-paired GPAW LCAO. Cheap to construct; a fresh GPAW calculator is built per structure."""

    name = "gpaw-lcao"

    def __init__(
        self,
        xc: str = "PBE",
        basis: str = "dzp",
        setups: dict[str, str] | None = None,
        kpts: tuple[int, int, int] = (1, 1, 1),
        time_reversal: bool = False,
        electronic_temperature_K: float = 1000.0,
        grid_spacing_A: float = 0.2,
        energy_tol_eV: float = 5e-4,
        density_tol: float = 1e-4,
        maxiter: int = 333,
    ):
        self.xc, self.basis = xc, basis
        self.setups = dict(sorted((setups or {}).items()))
        self.kpts = tuple(int(k) for k in kpts)
        self.time_reversal = bool(time_reversal)
        self.temperature_K, self.h = float(electronic_temperature_K), float(grid_spacing_A)
        self.energy_tol_eV, self.density_tol, self.maxiter = float(energy_tol_eV), float(density_tol), int(maxiter)
        if self.temperature_K <= 0:
            raise InputError("gpaw-lcao needs electronic_temperature_K > 0 (Fermi-Dirac occupations of a metal)")

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "mode": "lcao",
            "xc": self.xc,
            "basis": self.basis,
            "setups": dict(self.setups),
            "kpts": list(self.kpts),
            "gamma_centred": True,
            "time_reversal": self.time_reversal,
            "electronic_temperature_K": self.temperature_K,
            "grid_spacing_A": self.h,
            "energy_tol_eV": self.energy_tol_eV,
            "density_tol": self.density_tol,
        }

    def check(self, atoms: Atoms) -> None:
        if not all(atoms.pbc):
            raise InputError("engine gpaw-lcao needs a fully periodic structure (pbc = True, True, True)")
        from gpaw.setup_data import search_for_file
        from gpaw.xc import XC

        xc_name = XC(self.xc).get_setup_name()
        for sym in sorted(set(atoms.get_chemical_symbols())):
            for name in setup_file_names(sym, self.setups.get(sym, "paw"), xc_name, self.basis):
                try:
                    search_for_file(name)
                except (OSError, RuntimeError):  # GPAW raises FileNotFoundError (26.x) or RuntimeError
                    raise InputError(f"element {sym}: GPAW has no file {name} (setups/basis "
                                     f"{self.setups.get(sym, 'paw')}/{self.basis}, xc {self.xc})") from None

    def _calculator(self, gpts: tuple[int, int, int] | None = None):
        """A GPAW calculator of these settings (the grid from `grid_spacing_A`, or exactly `gpts` points)."""
        from gpaw import GPAW

        grid = {"h": self.h} if gpts is None else {"gpts": tuple(int(g) for g in gpts)}
        return GPAW(
            mode="lcao", basis=self.basis, xc=self.xc, setups=self.setups or "paw", **grid,
            kpts={"size": self.kpts, "gamma": True},
            symmetry={"point_group": False, "time_reversal": self.time_reversal},
            occupations={"name": "fermi-dirac", "width": self.temperature_K * KB_EV},
            convergence={"energy": self.energy_tol_eV, "density": self.density_tol},
            maxiter=self.maxiter, nbands="nao", spinpol=False, txt=None,
        )

    def _scf(self, atoms: Atoms):
        """(GPAW calculator after SCF and forces, free energy eV, forces [N, 3] eV/Å, timings); SCFError if
        the SCF does not converge within `maxiter`."""
        from gpaw import KohnShamConvergenceError

        work = atoms.copy()
        work.calc = self._calculator()
        t0 = time.perf_counter()
        try:
            energy = float(work.get_potential_energy(force_consistent=True))
            t_scf = time.perf_counter() - t0
            forces = np.array(work.get_forces())
        except KohnShamConvergenceError:
            raise SCFError(f"GPAW LCAO {self.xc}/{self.basis} SCF not converged in {self.maxiter} "
                           f"iterations") from None
        return work.calc, energy, forces, {"scf": t_scf, "forces": time.perf_counter() - t0 - t_scf}

    @staticmethod
    def _spectrum(calc) -> tuple[np.ndarray, np.ndarray]:
        """(ε [nk, nbands] eV, occupations [nk, nbands] electrons per orbital) at GPAW's k-points."""
        nk = len(calc.get_k_point_weights())
        eps = np.stack([calc.get_eigenvalues(kpt=k) for k in range(nk)])
        occ = np.stack([calc.get_occupation_numbers(kpt=k, raw=True) for k in range(nk)]) * SPIN_DEGENERACY
        return eps, occ

    def energy_forces(self, atoms: Atoms) -> EnergyForces:
        calc, energy, forces, _ = self._scf(atoms)
        eps, _ = self._spectrum(calc)
        return EnergyForces(energy, forces, eps, float(calc.get_fermi_level()))

    def compute(self, atoms: Atoms) -> Sample:
        self.check(atoms)
        t0 = time.perf_counter()
        calc, energy, forces, timing = self._scf(atoms)
        sample = self._sample(atoms, calc, energy, forces, timing)
        sample.wall_time_s = time.perf_counter() - t0
        return sample

    def band_structure(self, prim: Atoms, kpts_frac: np.ndarray, mesh: tuple[int, int, int],
                       gpts: tuple[int, int, int] | None = None) -> tuple[np.ndarray, float]:
        """Reference bands of a crystal at any k: the SCF density of `prim` on the Γ-centred `mesh` (the same
        sampling as the Γ point of the mesh-sized supercell), then its Kohn–Sham Hamiltonian diagonalised at
        `kpts_frac` [nk, 3] (fractional, reciprocal basis of prim's cell; GPAW `fixed_density`, no symmetry).
        The grid follows `grid_spacing_A` unless `gpts` fixes it (the supercell's grid / mesh reproduces a
        supercell calculation exactly; grids that differ move Cu levels by ~30 meV at h = 0.3 Å).
        Returns (ε [nk, nbands] eV, E_F of the SCF eV)."""
        self.check(prim)
        engine = GPAWLCAOEngine(**{**self._init_args(), "kpts": tuple(int(m) for m in mesh)})
        work = prim.copy()
        work.calc = engine._calculator(gpts)
        from gpaw import KohnShamConvergenceError

        try:
            work.get_potential_energy()
        except KohnShamConvergenceError:
            raise SCFError(f"GPAW LCAO {self.xc}/{self.basis} SCF not converged in {self.maxiter} "
                           f"iterations") from None
        mu = float(work.calc.get_fermi_level())
        kpts = np.asarray(kpts_frac, dtype=np.float64).reshape(-1, 3)
        bands = work.calc.fixed_density(kpts=kpts, symmetry="off", txt=None)
        return np.stack([bands.get_eigenvalues(kpt=k) for k in range(len(kpts))]), mu

    def _init_args(self) -> dict[str, Any]:
        return {"xc": self.xc, "basis": self.basis, "setups": dict(self.setups), "kpts": self.kpts,
                "time_reversal": self.time_reversal, "electronic_temperature_K": self.temperature_K,
                "grid_spacing_A": self.h, "energy_tol_eV": self.energy_tol_eV, "density_tol": self.density_tol,
                "maxiter": self.maxiter}

    @staticmethod
    def basis_spec(calc, symbols: list[str]) -> BasisSpec:
        """Per-element shell l's in GPAW's radial order (`setups[a].basis.bf_j`)."""
        shells: dict[str, tuple[int, ...]] = {}
        for a, sym in enumerate(symbols):
            shells.setdefault(sym, tuple(int(bf.l) for bf in calc.setups[a].basis.bf_j))
        return BasisSpec(shells)

    def _matrices(self, calc, atoms: Atoms, basis: BasisSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(k fractional [nk, 3], H [nk, nao, nao] eV, S [nk, nao, nao]) for the positions as given."""
        from gpaw.lcao.tools import get_lcao_hamiltonian

        H_skMM, S = get_lcao_hamiltonian(calc)
        H = H_skMM[0]
        kpts = np.asarray(calc.get_ibz_k_points(), dtype=np.float64)
        if H.shape[-1] != basis.offsets(atoms.get_chemical_symbols())[-1]:
            raise SCFError(f"GPAW's LCAO matrices have {H.shape[-1]} orbitals, the basis description "
                           f"{basis.offsets(atoms.get_chemical_symbols())[-1]}")
        if np.iscomplexobj(H):
            shift = np.round(calc.dft.relpos_ac - atoms.cell.scaled_positions(atoms.positions))  # [N, 3]
            orbital_atom = np.repeat(np.arange(len(atoms)), np.diff(basis.offsets(atoms.get_chemical_symbols())))
            p = unwrap_phases(kpts, shift, orbital_atom)  # [nk, nao]
            H = p.conj()[:, :, None] * H * p[:, None, :]
            S = p.conj()[:, :, None] * S * p[:, None, :]
        return kpts, H, S

    def _sample(self, atoms: Atoms, calc, energy: float, forces: np.ndarray, timing: dict) -> Sample:
        symbols = atoms.get_chemical_symbols()
        basis = self.basis_spec(calc, symbols)
        kpts, H, S = self._matrices(calc, atoms, basis)
        eps, occ = self._spectrum(calc)  # [nk, nao]
        kT = self.temperature_K * KB_EV
        homo, lumo, _ = fermi_level(eps, occ, SPIN_DEGENERACY, kT)
        extras = {
            "homo_eV": homo,
            "lumo_eV": lumo,
            "energy_zero_kT_eV": float(calc.get_potential_energy()),  # GPAW's extrapolation to kT → 0
            "reference_energy_eV": float(calc.get_reference_energy()),  # isolated atoms; energy is relative to it
            "n_scf_iterations": int(calc.get_number_of_iterations()),
            "timing_s": timing,
            "valence_electrons": valence_by_element(symbols, [calc.setups[a].Nv for a in range(len(atoms))]),
        }
        return Sample(
            numbers=atoms.numbers.copy(),
            positions=atoms.positions.copy(),
            cell=atoms.cell.array.copy(),
            pbc=np.ones(3, dtype=bool),
            energy=energy,
            forces=forces,
            basis=basis,
            kpoints=kpts,
            kweights=np.asarray(calc.get_k_point_weights(), dtype=np.float64).copy(),
            H=H,
            S=S,
            eigenvalues=eps,
            occupations=occ,
            n_electrons=float(calc.get_number_of_electrons()),
            fermi_level=float(calc.get_fermi_level()),
            electronic_temperature_K=self.temperature_K,
            engine=self.name,
            settings=self.settings,
            versions=gpaw_versions(),
            wall_time_s=0.0,
            extras=extras,
        )
