"""The potential seam: `Potential.compute(system) -> Results` — the one thing MD asks of an energy model.

In:  a `System` of torch tensors: positions [N, 3] Å, cell [3, 3] Å (rows; zeros for molecules), pbc [3]
     bool, atomic numbers [N] int64. Float64 throughout; CPU or CUDA.
Out: `Results`: energy (0-d tensor, eV; the force-consistent energy, e.g. the Mermin free energy for smeared
     electrons), forces [N, 3] eV/Å (= −∂E/∂R); typed optional fields stress [3, 3] eV/Å³ (ASE sign
     convention σ = (1/V) ∂E/∂ε), eigenvalues [nk, nmo] eV and charges [N] e (None when not computed); and
     `extras`, a dict of anything else (e.g. "fermi_level" eV). `Results.per_frame()` is what the MD runner
     stores with each frame.
A potential declares the optional fields it can fill in `capabilities` (a class or instance attribute, e.g.
frozenset({"stress", "eigenvalues"})), so that `PotentialCalculator` can announce them to ASE before any call.

Implement `compute` on anything (a learned Hamiltonian, a real-space DFT, an MLIP) and MD, the runner and
analysis work with it unchanged. Two adapters connect the seam with ASE, the lingua franca:
- `calculator_to_potential(calc)`: any ASE Calculator (EMT, tblite, the reference engines) → Potential;
- `PotentialCalculator(potential)`: any Potential → ASE Calculator (for ASE optimizers, MD, NEB, ...).
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

DTYPE = torch.float64


@dataclass(frozen=True)
class System:
    """Atoms as tensors (float64). Cell vectors are rows; a zero cell with pbc False is a molecule."""

    positions: torch.Tensor  # [N, 3] Å
    cell: torch.Tensor  # [3, 3] Å
    pbc: torch.Tensor  # [3] bool
    numbers: torch.Tensor  # [N] int64

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    def with_positions(self, positions: torch.Tensor) -> "System":
        """The same system at new positions (cell, pbc, numbers shared)."""
        return System(positions, self.cell, self.pbc, self.numbers)

    def to_atoms(self) -> Atoms:
        """An ASE Atoms copy (numpy, CPU)."""
        return Atoms(
            numbers=self.numbers.cpu().numpy(),
            positions=self.positions.detach().cpu().numpy(),
            cell=self.cell.detach().cpu().numpy(),
            pbc=self.pbc.cpu().numpy(),
        )


def system_from_atoms(atoms: Atoms, device: str | torch.device = "cpu") -> System:
    """ASE Atoms → System on `device` (float64)."""
    return System(
        positions=torch.as_tensor(np.asarray(atoms.positions), dtype=DTYPE, device=device).clone(),
        cell=torch.as_tensor(np.asarray(atoms.cell.array), dtype=DTYPE, device=device).clone(),
        pbc=torch.as_tensor(np.asarray(atoms.pbc), dtype=torch.bool, device=device).clone(),
        numbers=torch.as_tensor(np.asarray(atoms.numbers), dtype=torch.int64, device=device).clone(),
    )


OPTIONAL_PROPERTIES = ("stress", "eigenvalues", "charges")


@dataclass(frozen=True)
class Results:
    """Energy (eV, 0-d), forces (eV/Å, [N, 3]), the optional typed properties and free-form extras."""

    energy: torch.Tensor
    forces: torch.Tensor
    _: KW_ONLY  # the rest by name: Results(E, F, eigenvalues=..., extras=...)
    stress: torch.Tensor | None = None  # [3, 3] eV/Å³, σ = (1/V) ∂E/∂ε (ASE sign; periodic cells only)
    eigenvalues: torch.Tensor | None = None  # [nk, nmo] eV
    charges: torch.Tensor | None = None  # [N] e
    extras: dict[str, Any] = field(default_factory=dict)

    def per_frame(self) -> dict[str, Any]:
        """The per-frame record the MD runner stores: `extras` plus the typed properties that are set (numpy)."""
        out = dict(self.extras)
        for name in OPTIONAL_PROPERTIES:
            v = getattr(self, name)
            if v is not None:
                out[name] = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        return out


def capabilities(potential) -> frozenset[str]:
    """The optional `Results` fields a potential declares it fills (its `capabilities` attribute)."""
    caps = frozenset(getattr(potential, "capabilities", ()))
    unknown = caps - set(OPTIONAL_PROPERTIES)
    if unknown:
        raise ValueError(f"unknown capabilities {sorted(unknown)}; known: {OPTIONAL_PROPERTIES}")
    return caps


@runtime_checkable
class Potential(Protocol):
    """Anything that gives the energy and forces of a System. Must be deterministic in the positions.
    Optionally declares `capabilities` (module docstring)."""

    def compute(self, system: System) -> Results: ...


class CalculatorPotential:
    """An ASE Calculator seen as a Potential. One Atoms object is reused so that calculators which cache
    neighbour lists or wavefunctions (EMT, tblite, PySCF engines) keep doing so between MD steps.

    Results carry `calc.results["eigenvalues"]` and `["stress"]` when the calculator reports them (stress is
    never requested: only what the calculator computed anyway), other non-standard results in `extras`
    (e.g. "fermi_level").

    `reset=True` calls `calc.reset()` before every evaluation, so that the result depends on the positions
    only (no neighbour-list order or SCF guess carried over from earlier calls): bitwise-reproducible MD
    restarts. `reset=False` keeps those caches (faster SCF engines; restarts then agree to SCF tolerance).
    """

    def __init__(self, calc: Calculator, reset: bool = True):
        self.calc = calc
        self.reset = reset
        self._atoms: Atoms | None = None

    def _sync(self, system: System) -> Atoms:
        numbers = system.numbers.cpu().numpy()
        cell = system.cell.detach().cpu().numpy()
        pbc = system.pbc.cpu().numpy()
        a = self._atoms
        if a is None or len(a) != len(numbers) or (a.numbers != numbers).any() or (a.pbc != pbc).any():
            a = Atoms(numbers=numbers, cell=cell, pbc=pbc)
            a.calc = self.calc
            self._atoms = a
        if not np.array_equal(a.cell.array, cell):
            a.set_cell(cell)
        a.positions = system.positions.detach().cpu().numpy()  # copies into Atoms
        return a

    def compute(self, system: System) -> Results:
        atoms = self._sync(system)
        if self.reset:
            self.calc.reset()
        forces = atoms.get_forces()
        energy = atoms.get_potential_energy(force_consistent=_has_free_energy(self.calc))
        dev = system.positions.device
        r = self.calc.results
        eig, stress = r.get("eigenvalues"), r.get("stress")
        if stress is not None:
            stress = voigt_to_full(np.asarray(stress, dtype=np.float64))
        extras = {k: r[k] for k in ("fermi_level",) if k in r}
        return Results(
            energy=torch.as_tensor(energy, dtype=DTYPE, device=dev),
            forces=torch.as_tensor(forces, dtype=DTYPE, device=dev),
            stress=None if stress is None else torch.as_tensor(stress, dtype=DTYPE, device=dev),
            eigenvalues=None if eig is None else torch.as_tensor(np.asarray(eig, dtype=np.float64), device=dev),
            extras=extras,
        )


def voigt_to_full(s: np.ndarray) -> np.ndarray:
    """ASE Voigt (xx, yy, zz, yz, xz, xy) → [3, 3]; a [3, 3] input is returned as is."""
    if s.shape == (3, 3):
        return s
    xx, yy, zz, yz, xz, xy = s
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def full_to_voigt(s: np.ndarray) -> np.ndarray:
    """[3, 3] → ASE Voigt (xx, yy, zz, yz, xz, xy)."""
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


def _has_free_energy(calc: Calculator) -> bool:
    return "free_energy" in getattr(calc, "implemented_properties", ())


def calculator_to_potential(calc: Calculator, reset: bool = True) -> CalculatorPotential:
    """Any ASE Calculator → Potential (energy: the force-consistent `free_energy` where implemented)."""
    return CalculatorPotential(calc, reset)


class PotentialCalculator(Calculator):
    """Any fastqmd Potential → ASE Calculator: energy, free_energy, forces, plus "stress" (Voigt, eV/Å³) when the
    potential declares it in `capabilities` (ASE then reports PropertyNotImplementedError only for systems where
    the potential returns no stress, e.g. molecules); eigenvalues, charges and extras copied into results."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, potential: Potential, device: str | torch.device = "cpu", **kwargs):
        super().__init__(**kwargs)
        self.potential = potential
        self.device = device
        extra = [p for p in ("stress", "charges") if p in capabilities(potential)]
        self.implemented_properties = [*PotentialCalculator.implemented_properties, *extra]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        res = self.potential.compute(system_from_atoms(self.atoms, self.device))
        e = float(res.energy.detach().cpu())
        self.results = {"energy": e, "free_energy": e, "forces": res.forces.detach().cpu().numpy().copy()}
        for k, v in res.per_frame().items():
            self.results[k] = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v
        if res.stress is not None:
            self.results["stress"] = full_to_voigt(self.results["stress"])


class ZeroPotential:
    """E = 0, F = 0: measures the MD engine's own per-step cost (benchmarks) and tests free flight."""

    def compute(self, system: System) -> Results:
        return Results(system.positions.new_zeros(()), torch.zeros_like(system.positions))
