"""Reference-engine configs: one frozen pydantic model per engine, a discriminated union on `kind`, a builder.

In:  a mapping (e.g. the `engine:` block of a generate YAML), validated into an `EngineConfig`.
Out: `build_engine(cfg) -> Engine`, cheap to call: Dask workers receive the (picklable) config and rebuild
     the engine locally; nothing heavy happens before `engine.compute(atoms)`.

Units follow the public API (K for temperatures, Å/eV elsewhere); PySCF-specific knobs keep PySCF's own
units where the name says so (`ke_cutoff_Ha`, `conv_tol` in Hartree).
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, PositiveInt, TypeAdapter

from fastqmd.config import FrozenModel
from fastqmd.reference.base import Engine


class PySCFMolConfig(FrozenModel):
    """Molecular Kohn-Sham DFT (PySCF RKS; UKS if spin ≠ 0)."""

    kind: Literal["pyscf-mol"] = "pyscf-mol"
    xc: str = "PBE"
    basis: str = "def2-SVP"
    charge: int = 0
    spin: int = Field(0, ge=0, description="2S = N_alpha - N_beta")
    conv_tol: float = Field(1e-10, gt=0, description="SCF energy tolerance, Hartree")
    grid_level: int = Field(3, ge=0, le=9)
    smearing_K: float = Field(0.0, ge=0, description="Fermi-Dirac electronic temperature, K (0: aufbau)")
    max_cycle: int = Field(100, ge=1)


class PySCFPBCConfig(FrozenModel):
    """Periodic Kohn-Sham DFT (PySCF, GTH pseudopotentials; Γ point or Monkhorst-Pack mesh)."""

    kind: Literal["pyscf-pbc"] = "pyscf-pbc"
    xc: str = "PBE"
    basis: str = "gth-szv"
    pseudo: str = "gth-pbe"
    kmesh: tuple[int, int, int] = (1, 1, 1)
    smearing_K: float = Field(0.0, ge=0, description="Fermi-Dirac electronic temperature, K (0: aufbau)")
    conv_tol: float = Field(1e-9, gt=0, description="SCF energy tolerance, Hartree")
    ke_cutoff_Ha: float | None = Field(None, gt=0, description="plane-wave cutoff for the density, Hartree")
    precision: float = Field(1e-8, gt=0, description="PySCF cell.precision (lattice sums, default cutoffs)")
    max_cycle: int = Field(100, ge=1)


class TBLiteConfig(FrozenModel):
    """GFN1-xTB / GFN2-xTB with tblite, molecular or periodic (Γ point)."""

    kind: Literal["tblite"] = "tblite"
    method: Literal["GFN1-xTB", "GFN2-xTB"] = "GFN1-xTB"
    electronic_temperature_K: float = Field(300.0, ge=0)
    charge: int = 0
    accuracy: float = Field(0.01, gt=0, description="tblite SCC accuracy factor (smaller is tighter)")
    max_iter: int = Field(250, ge=1)


class GPAWLCAOConfig(FrozenModel):
    """Periodic Kohn-Sham DFT with GPAW in LCAO mode: numerical atomic orbitals, PAW setups, Γ-centred k-mesh."""

    kind: Literal["gpaw-lcao"] = "gpaw-lcao"
    xc: str = "PBE"
    basis: str = Field("dzp", description="GPAW basis-set name (dzp: double-zeta valence + p polarization)")
    setups: dict[str, str] = Field(default_factory=dict, description="per-element PAW setup, e.g. {Pd: '10'}")
    kpts: tuple[PositiveInt, PositiveInt, PositiveInt] = Field((1, 1, 1), description="Γ-centred Monkhorst-Pack")
    time_reversal: bool = Field(False, description="keep one of k, -k (half the k-points, weights doubled)")
    electronic_temperature_K: float = Field(1000.0, gt=0, description="Fermi-Dirac electronic temperature, K")
    # Cu₂, forces vs finite differences of the energy: 2e-7 eV/Å at 0.2, 4e-5 at 0.3, 40× wrong at 0.35
    grid_spacing_A: float = Field(0.2, gt=0, le=0.3, description="real-space grid spacing (density, potential), Å")
    energy_tol_eV: float = Field(5e-4, gt=0, description="SCF energy change per valence electron, eV")
    density_tol: float = Field(1e-4, gt=0, description="SCF density change per valence electron")
    maxiter: PositiveInt = 333


EngineConfig = Annotated[Union[PySCFMolConfig, PySCFPBCConfig, TBLiteConfig, GPAWLCAOConfig],
                         Field(discriminator="kind")]
_ADAPTER: TypeAdapter = TypeAdapter(EngineConfig)


def parse_engine_config(data: dict) -> PySCFMolConfig | PySCFPBCConfig | TBLiteConfig | GPAWLCAOConfig:
    """Validate a mapping into the right engine config (raises pydantic.ValidationError)."""
    return _ADAPTER.validate_python(data)


def build_engine(cfg: PySCFMolConfig | PySCFPBCConfig | TBLiteConfig | GPAWLCAOConfig) -> Engine:
    """The engine a config describes (imports the engine module lazily)."""
    args = cfg.model_dump(exclude={"kind"})
    if isinstance(cfg, PySCFMolConfig):
        from fastqmd.reference.pyscf_mol import PySCFMolEngine

        return PySCFMolEngine(**args)
    if isinstance(cfg, PySCFPBCConfig):
        from fastqmd.reference.pyscf_pbc import PySCFPBCEngine

        return PySCFPBCEngine(**args)
    if isinstance(cfg, TBLiteConfig):
        from fastqmd.reference.xtb import TBLiteEngine

        return TBLiteEngine(**args)
    if isinstance(cfg, GPAWLCAOConfig):
        from fastqmd.reference.gpaw_lcao import GPAWLCAOEngine

        return GPAWLCAOEngine(**args)
    raise TypeError(f"not an engine config: {type(cfg).__name__}")
