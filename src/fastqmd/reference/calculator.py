"""Reference engines at the two seams MD and ASE speak: a fastqmd `Potential` and an ASE Calculator.

- `EnginePotential(engine)`: `compute(System) -> Results` through `Engine.energy_forces` — the engine's SCF and
  gradient only, no H/S sample is built. This is what `fastqmd md` with `potential: {kind: reference}` runs.
  energy (eV): the engine's force-consistent energy (the Mermin free energy when occupations are smeared,
  so that MD conserves it); forces (eV/Å); eigenvalues [nk, nmo] (eV); extras["fermi_level"] (eV).
- `EngineCalculator(engine)`: an ASE Calculator over the full `Engine.compute` (results as above, plus the last
  `Sample` as `calc.sample`, H and S included), for ASE users who want the sample too.
"""

from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from fastqmd.errors import InputError
from fastqmd.potential import DTYPE, Results, System
from fastqmd.reference.base import Engine, Sample


class EnginePotential:
    """A reference `Engine` as a fastqmd Potential (module docstring). `engine.check` runs once per new
    composition / periodicity, not every step; engines are stateless, so results depend on positions only."""

    capabilities = frozenset({"eigenvalues"})

    def __init__(self, engine: Engine):
        self.engine = engine
        self._checked: tuple | None = None

    def compute(self, system: System) -> Results:
        atoms = system.to_atoms()
        key = (tuple(atoms.numbers.tolist()), tuple(bool(p) for p in atoms.pbc))
        if key != self._checked:
            self.engine.check(atoms)
            self._checked = key
        r = self.engine.energy_forces(atoms)
        if r.forces is None:
            raise InputError(f"engine {self.engine.name} gives no forces for this setting: {r.forces_unavailable}")
        dev = system.positions.device
        return Results(
            energy=torch.as_tensor(r.energy, dtype=DTYPE, device=dev),
            forces=torch.as_tensor(np.asarray(r.forces), dtype=DTYPE, device=dev),
            eigenvalues=torch.as_tensor(np.asarray(r.eigenvalues), dtype=DTYPE, device=dev),
            extras={} if r.fermi_level is None else {"fermi_level": float(r.fermi_level)},
        )


class EngineCalculator(Calculator):
    """ASE adapter over `Engine.compute`; one reference calculation per new geometry."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, engine: Engine, **kwargs):
        super().__init__(**kwargs)
        self.engine = engine
        self.sample: Sample | None = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        s = self.engine.compute(self.atoms)
        self.sample = s
        if s.forces is None and "forces" in properties:
            why = s.extras.get("forces_unavailable", "engine gives no forces for this setting")
            raise PropertyNotImplementedError(why)
        self.results = {"energy": s.energy, "free_energy": s.energy, "eigenvalues": s.eigenvalues}
        if s.forces is not None:
            self.results["forces"] = s.forces
        if s.fermi_level is not None:
            self.results["fermi_level"] = s.fermi_level
