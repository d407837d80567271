"""The reference-engine seam: `Engine.compute(atoms) -> Sample`.

In:  an ASE `Atoms` (positions in Å, cell rows in Å, pbc flags).
Out: a `Sample` in ASE units: energy in eV (the force-consistent energy: the Mermin free energy when the
     engine smears occupations), forces in eV/Å, Kohn-Sham (or tight-binding) Hamiltonian H and overlap S
     in eV / dimensionless, per k-point, in the fastqmd real-spherical-harmonics orbital ordering
     (docs/CONVENTIONS.md), with eigenvalues (eV), occupations (electrons per orbital, spin included) and
     the basis description needed to find each atom's block.

`Engine.energy_forces(atoms) -> EnergyForces` is the MD path: the same SCF and gradient, without rebuilding H
and S in the fastqmd ordering, the basis description or the valence analysis (`reference.calculator.EnginePotential`).

Engines that fail to converge raise `SCFError` (a `fastqmd.errors.CalculationFailed`, so the CLI exits 3);
generation records the sample as failed with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from ase import Atoms

from fastqmd.errors import CalculationFailed


class SCFError(CalculationFailed):
    """The reference calculation did not converge (or otherwise failed physically)."""


@dataclass(frozen=True)
class EnergyForces:
    """What MD needs of one reference calculation (the same numbers `compute` puts in its Sample)."""

    energy: float  # eV, force-consistent (Mermin free energy when smeared)
    forces: np.ndarray | None  # [N, 3] eV/Å, None where the engine gives none
    eigenvalues: np.ndarray  # [nk, nmo] eV
    fermi_level: float | None  # eV
    forces_unavailable: str | None = None  # why forces is None


@dataclass(frozen=True)
class BasisSpec:
    """Atomic-orbital basis: for every element symbol, the angular momenta of its shells in stored order.

    A shell of angular momentum l contributes 2l+1 real-spherical-harmonic functions ordered m = -l..l.
    Atom a's orbitals are contiguous; atoms follow the order of `Atoms`.
    """

    shells: dict[str, tuple[int, ...]]

    def n_orbitals(self, symbol: str) -> int:
        """Number of basis functions on one atom of `symbol`: Σ_shells (2l+1)."""
        return sum(2 * l + 1 for l in self.shells[symbol])

    def offsets(self, symbols: list[str]) -> np.ndarray:
        """Start index of every atom's orbital block, plus the total as last entry. [n_atoms + 1]"""
        sizes = [self.n_orbitals(s) for s in symbols]
        return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def to_json(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in sorted(self.shells.items())}

    @classmethod
    def from_json(cls, d: dict[str, list[int]]) -> "BasisSpec":
        return cls({k: tuple(int(x) for x in v) for k, v in d.items()})


@dataclass
class Sample:
    """One labelled structure. Arrays are numpy; shapes in comments (nk k-points, nao orbitals)."""

    numbers: np.ndarray  # [N] atomic numbers
    positions: np.ndarray  # [N, 3] Å
    cell: np.ndarray  # [3, 3] Å, lattice vectors as rows (zeros for molecules)
    pbc: np.ndarray  # [3] bool
    energy: float  # eV, force-consistent (Mermin free energy when smeared)
    forces: np.ndarray | None  # [N, 3] eV/Å, None where the engine gives none
    basis: BasisSpec
    kpoints: np.ndarray  # [nk, 3] fractional (reduced) coordinates; [[0, 0, 0]] for molecules/Γ
    kweights: np.ndarray  # [nk] summing to 1
    H: np.ndarray  # [nk, nao, nao] eV; real for Γ-only, complex otherwise
    S: np.ndarray  # [nk, nao, nao]
    eigenvalues: np.ndarray  # [nk, nmo] eV, ascending
    occupations: np.ndarray  # [nk, nmo] electrons per orbital (spin factor included)
    n_electrons: float  # valence electrons described by H (after pseudopotential / core removal)
    fermi_level: float | None  # eV (midgap (HOMO+LUMO)/2 for gapped molecules)
    electronic_temperature_K: float  # 0 for integer (aufbau) occupations
    engine: str  # e.g. "pyscf-mol", "pyscf-pbc", "tblite"
    settings: dict[str, Any]  # engine settings that define the level of theory
    versions: dict[str, str]  # package versions used
    wall_time_s: float
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. homo/lumo (eV), energy_zero_kT (eV)

    @property
    def n_atoms(self) -> int:
        return int(len(self.numbers))

    def atoms(self) -> Atoms:
        """The structure as an ASE `Atoms` (positions in Å)."""
        return Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)


def valence_by_element(symbols: list[str], per_atom) -> dict[str, int]:
    """{element: valence electrons of its neutral atom} from per-atom counts (rounded; must agree per element).

    Stored in `Sample.extras["valence_electrons"]` so that models know N_e = Σ_atoms Z_val of any structure.
    """
    out: dict[str, int] = {}
    for s, z in zip(symbols, np.asarray(per_atom, dtype=float)):
        zi = int(round(z))
        if abs(z - zi) > 1e-3 or out.setdefault(s, zi) != zi:
            raise ValueError(f"inconsistent valence electron count for {s}: {z}")
    return out


@runtime_checkable
class Engine(Protocol):
    """A reference quantum engine. `name` and `settings` identify the level of theory (stored in datasets)."""

    name: str

    @property
    def settings(self) -> dict[str, Any]: ...

    def check(self, atoms: Atoms) -> None:
        """Raise `fastqmd.errors.InputError` if this engine cannot treat `atoms` (e.g. unsupported element)."""
        ...

    def compute(self, atoms: Atoms) -> Sample: ...

    def energy_forces(self, atoms: Atoms) -> EnergyForces:
        """Energy, forces and eigenvalues only (no `check`: callers check a structure once)."""
        ...
