"""tblite GFN1-xTB / GFN2-xTB as a fastqmd reference engine, molecular or periodic (Γ point only).

In:  an ASE `Atoms` (Å; cell rows and pbc flags are passed to tblite as lattice/periodic).
Out: a `Sample`: energy (eV, tblite's total energy, which at electronic temperature T is the Mermin free
     energy E - TS: its analytic gradient matches finite differences, tests/reference/test_ref_forces.py),
     forces (eV/Å), H and S (eV / dimensionless) at Γ, orbital energies (eV), occupations, Fermi level.

H: tblite's `hamiltonian-matrix` (save-integrals) is only the zeroth-order H0; its generalized eigenvalues
are not tblite's orbital energies. The stored H is the full self-consistent-charge Hamiltonian rebuilt from
tblite's own eigenpairs, F = S C diag(ε) Cᵀ S (C square, Cᵀ S C = 1), so eigh(H, S) returns ε exactly.

Ordering: tblite's spherical functions already follow the fastqmd real harmonics (p = (y, z, x), d = (xy, yz,
z², xz, x²-y²), same signs; established by a rotation fit and checked by tests/reference/test_ref_rotation.py),
so no permutation is applied. Shells per element come from the calculator's angular-momenta / shell-map.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from ase import Atoms

from fastqmd.errors import InputError
from fastqmd.reference.base import BasisSpec, EnergyForces, Sample, SCFError, valence_by_element
from fastqmd.reference.pyscf_mol import fermi_level, fock_from_eigenpairs
from fastqmd.units import BOHR_ANG, HA_PER_BOHR_TO_EV_PER_ANG, HARTREE_EV, KB_EV

METHODS = {"GFN1-xTB", "GFN2-xTB"}
MAX_Z = 86  # both GFN parametrisations cover H-Rn


def tblite_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"tblite": version("tblite"), "numpy": np.__version__}


def mulliken_valence(calc, res) -> np.ndarray:
    """Valence electrons of each neutral atom in the model: Z_val,a = N_a + q_a, with the Mulliken population
    N_a = Σ_{μ∈a} (P S)_μμ, P = C f Cᵀ, and tblite's Mulliken partial charge q_a = Z_val,a − N_a. [N]"""
    C = np.asarray(res.get("orbital-coefficients"))
    occ = np.asarray(res.get("orbital-occupations"))
    S = np.asarray(res.get("overlap-matrix"))
    ao_atom = np.repeat(np.asarray(calc.get("shell-map")), 2 * np.asarray(calc.get("angular-momenta")) + 1)
    population = np.bincount(ao_atom, np.einsum("mi,i,ni,nm->m", C, occ, C, S))
    return population + np.asarray(res.get("charges"))


class TBLiteEngine:
    """GFN-xTB through `tblite.interface.Calculator`. Cheap to construct; a calculator is built per structure."""

    name = "tblite"

    def __init__(
        self,
        method: str = "GFN1-xTB",
        electronic_temperature_K: float = 300.0,
        charge: int = 0,
        accuracy: float = 0.01,
        max_iter: int = 250,
    ):
        if method not in METHODS:
            raise InputError(f"unknown tblite method {method!r}; choose one of {sorted(METHODS)}")
        self.method, self.temperature_K, self.charge = method, float(electronic_temperature_K), int(charge)
        self.accuracy, self.max_iter = float(accuracy), int(max_iter)

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "electronic_temperature_K": self.temperature_K,
            "charge": self.charge,
            "accuracy": self.accuracy,
        }

    def check(self, atoms: Atoms) -> None:
        bad = sorted({s for s, z in zip(atoms.get_chemical_symbols(), atoms.numbers) if z > MAX_Z or z < 1})
        if bad:
            raise InputError(f"element(s) {', '.join(bad)} not supported by {self.method} (H-Rn, Z ≤ {MAX_Z})")
        if any(atoms.pbc) and not all(atoms.pbc):
            raise InputError("tblite engine needs pbc all True (periodic) or all False (molecule)")

    def _calculator(self, atoms: Atoms):
        from tblite.interface import Calculator

        kw = {}
        if all(atoms.pbc):
            kw = {"lattice": atoms.cell.array / BOHR_ANG, "periodic": np.ones(3, dtype=bool)}
        calc = Calculator(self.method, atoms.numbers, atoms.positions / BOHR_ANG, charge=self.charge, **kw)
        calc.set("verbosity", 0)
        calc.set("temperature", self.temperature_K * KB_EV / HARTREE_EV)
        calc.set("accuracy", self.accuracy)
        calc.set("max-iter", self.max_iter)
        calc.set("save-integrals", 1)
        return calc

    def basis_spec(self, calc, symbols: list[str]) -> BasisSpec:
        """Per-element shell l's in tblite's order, from `angular-momenta` and `shell-map` (0-based atoms)."""
        ang = np.asarray(calc.get("angular-momenta"))
        smap = np.asarray(calc.get("shell-map"))
        shells: dict[str, tuple[int, ...]] = {}
        for ia, sym in enumerate(symbols):
            shells.setdefault(sym, tuple(int(l) for l in ang[smap == ia]))
        return BasisSpec(shells)

    def _singlepoint(self, atoms: Atoms):
        """(calculator, results) of one converged tblite calculation; SCFError otherwise."""
        from tblite.exceptions import TBLiteRuntimeError

        calc = self._calculator(atoms)
        try:
            res = calc.singlepoint()
        except TBLiteRuntimeError as exc:
            raise SCFError(f"tblite {self.method}: {str(exc).strip().splitlines()[0]}") from None
        if np.asarray(res.get("orbital-energies")).ndim != 1:
            raise SCFError("tblite returned spin-polarised orbitals; fastqmd's tblite engine is closed-shell")
        return calc, res

    def compute(self, atoms: Atoms) -> Sample:
        self.check(atoms)
        t0 = time.perf_counter()
        calc, res = self._singlepoint(atoms)
        sample = self._sample(atoms, calc, res)
        sample.wall_time_s = time.perf_counter() - t0
        return sample

    def energy_forces(self, atoms: Atoms) -> EnergyForces:
        _, res = self._singlepoint(atoms)
        eps, occ = np.asarray(res.get("orbital-energies")), np.asarray(res.get("orbital-occupations"))
        _, _, fermi = fermi_level(eps * HARTREE_EV, occ, 2.0, self.temperature_K * KB_EV)
        return EnergyForces(float(res.get("energy")) * HARTREE_EV, self._forces(res), eps[None] * HARTREE_EV, fermi)

    @staticmethod
    def _forces(res) -> np.ndarray:
        """F = −∂E/∂R in eV/Å from tblite's gradient [N, 3] (Hartree/Bohr)."""
        return -np.asarray(res.get("gradient")) * HA_PER_BOHR_TO_EV_PER_ANG

    def _sample(self, atoms: Atoms, calc, res) -> Sample:
        S = np.asarray(res.get("overlap-matrix"))  # [nao, nao]
        eps = np.asarray(res.get("orbital-energies"))  # [nmo] Hartree
        C = np.asarray(res.get("orbital-coefficients"))  # [nao, nmo]
        occ = np.asarray(res.get("orbital-occupations"))  # [nmo], 0..2
        H = fock_from_eigenpairs(S, C, eps) * HARTREE_EV
        homo, lumo, fermi = fermi_level(eps * HARTREE_EV, occ, 2.0, self.temperature_K * KB_EV)
        return Sample(
            numbers=atoms.numbers.copy(),
            positions=atoms.positions.copy(),
            cell=atoms.cell.array.copy() if all(atoms.pbc) else np.zeros((3, 3)),
            pbc=np.asarray(atoms.pbc, dtype=bool).copy(),
            energy=float(res.get("energy")) * HARTREE_EV,
            forces=self._forces(res),
            basis=self.basis_spec(calc, atoms.get_chemical_symbols()),
            kpoints=np.zeros((1, 3)),
            kweights=np.ones(1),
            H=H[None],
            S=S[None],
            eigenvalues=eps[None] * HARTREE_EV,
            occupations=occ[None].astype(np.float64),
            n_electrons=float(occ.sum()),
            fermi_level=fermi,
            electronic_temperature_K=self.temperature_K,
            engine=self.name,
            settings=self.settings,
            versions=tblite_versions(),
            wall_time_s=0.0,
            extras={"homo_eV": homo, "lumo_eV": lumo,
                    "valence_electrons": valence_by_element(atoms.get_chemical_symbols(), mulliken_valence(calc, res))},
        )
