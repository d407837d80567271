"""Any reference `Engine` as an ASE Calculator, so reference quantum engines can drive MD directly.

In:  an `Engine` (e.g. from `build_engine(cfg)`), atoms attached as `atoms.calc = EngineCalculator(engine)`.
Out: results["energy"] and results["free_energy"] (eV): both the engine's force-consistent energy (the Mermin
     free energy when occupations are smeared, so that MD conserves it); results["forces"] (eV/Å);
     results["eigenvalues"] [nk, nmo] (eV); results["fermi_level"] (eV); the last `Sample` as `calc.sample`.
"""

from __future__ import annotations

from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from fastqmd.reference.base import Engine, Sample


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
