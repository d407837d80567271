"""The `fastqmd md CONFIG.yaml` configuration, and the factories that turn it into library objects.

Example (EMT copper, Nosé–Hoover at 300 K):

    structure: {kind: rattled_bulk, element: Cu, supercell: 2, cubic: true, max_displacement_fraction: 0.0}
    potential: {kind: emt}
    ensemble: {kind: nose_hoover, tau_fs: 50}
    temperature_K: 300
    timestep_fs: 2.0
    steps: 1000
    output: {dir: md_out/cu, traj_every: 10, checkpoint_every: 100}

Potentials: `emt` (ASE EMT), `reference` (a fastqmd reference engine, `engine:` an EngineConfig),
`ase` (any importable ASE Calculator factory "module:callable" with keyword arguments, e.g.
"tblite.ase:TBLite" with {method: GFN2-xTB}),
`nnh` (a trained NN-Hamiltonian model file from `fastqmd train`: NNH-MD),
`sevenn` / `chgnet` (universal MLIPs shipped in their wheels, offline, e.g. {kind: sevenn, model: 7net-0}),
`mlip` (an energy MLIP trained by `fastqmd train` with model.kind bp / equivariant: {kind: mlip, model: PATH}),
`mor` (a reduced-order model of the real-space solver: {kind: mor, basis: FILE}, fastqmd.mor.calculator).
Ensembles: `nve`, `nose_hoover` (the NNH-MD study's scheme), `langevin` (BAOAB), `berendsen`. Units: K, fs, Å, amu.
Guard: blow-up limits, and optionally the training domain of the potential (`guard: {domain: DOMAIN.pt,
domain_action: warn|stop}`, a `fastqmd domain fit` file: fastqmd.domain).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt

from fastqmd.config import FrozenModel
from fastqmd.errors import InputError
from fastqmd.reference.config import EngineConfig
from fastqmd.structures import StructureSource


class EMTPotential(FrozenModel):
    kind: Literal["emt"] = "emt"
    reset_calculator: bool = True  # see ASEPotential (False: EMT keeps its neighbour list, ~3× faster)


class ReferencePotential(FrozenModel):
    """A fastqmd reference engine (PySCF, tblite) as the potential: Born–Oppenheimer MD."""

    kind: Literal["reference"] = "reference"
    engine: EngineConfig  # e.g. {kind: tblite, method: GFN2-xTB} or {kind: pyscf-mol, xc: PBE, basis: def2-SVP}
    reset_calculator: bool = True  # see ASEPotential


class ASEPotential(FrozenModel):
    """Any ASE Calculator: `factory` "package.module:callable", called with `kwargs`."""

    kind: Literal["ase"] = "ase"
    factory: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    kwargs: dict[str, Any] = {}
    # reset before every step: forces depend on positions only, restarts are bitwise exact; false keeps
    # neighbour lists / SCF guesses between steps (faster, restarts then agree to SCF tolerance)
    reset_calculator: bool = True


class NNHPotentialConfig(FrozenModel):
    """A trained NN-Hamiltonian model (`fastqmd train` → model.pt): NNH-MD (fastqmd.nnh.potential)."""

    kind: Literal["nnh"] = "nnh"
    checkpoint: Path  # model.pt or checkpoint.pt (EMA weights)
    device: Literal["cpu", "cuda"] = "cpu"
    dtype: Literal["float32", "float64"] | None = None  # network dtype; default: as trained
    kpoints_mesh: tuple[PositiveInt, PositiveInt, PositiveInt] = (1, 1, 1)  # Γ-centred; Γ for supercells
    skin: float = Field(default=0.5, ge=0)  # Å: graph rebuilt when an atom moved more than skin/2
    eigenvalues: bool = True  # store ε per frame (DOS in `fastqmd analyze`); taken from the energy's own eigensolve


class SevenNetPotentialConfig(FrozenModel):
    """A SevenNet checkpoint from the sevenn wheel, offline (fastqmd.mlip.universal)."""

    kind: Literal["sevenn"] = "sevenn"
    model: str = "7net-0"  # 7net-0, 7net-0_22may2024, 7net-l3i5, 7net-mf-0, or a SevenNet checkpoint file
    modal: str | None = None  # fidelity of a multi-fidelity model (7net-mf-0: PBE or R2SCAN)
    device: Literal["cpu", "cuda"] = "cpu"


class CHGNetPotentialConfig(FrozenModel):
    """CHGNet weights from the chgnet wheel, offline (fastqmd.mlip.universal)."""

    kind: Literal["chgnet"] = "chgnet"
    model: str = "0.3.0"  # 0.3.0, 0.2.0, r2scan, or a CHGNet model file
    device: Literal["cpu", "cuda"] = "cpu"


class MLIPPotentialConfig(FrozenModel):
    """An energy MLIP from `fastqmd train` (model.kind bp / equivariant → model.pt): fastqmd.mlip.potential."""

    kind: Literal["mlip"] = "mlip"
    model: Path  # model.pt or checkpoint.pt (EMA weights)
    device: Literal["cpu", "cuda"] = "cpu"
    dtype: Literal["float32", "float64"] | None = None  # network dtype; default: as trained


class MORPotentialConfig(FrozenModel):
    """A reduced-order model of the real-space solver (`fastqmd mor basis` → basis file): fastqmd.mor.calculator."""

    kind: Literal["mor"] = "mor"
    basis: Path
    tol_Ha: PositiveFloat = 1e-9  # |F'(0)| of the online MVP iteration
    max_iter: PositiveInt = 60
    forces: Literal["rotated", "gradient"] = "rotated"  # Rᵀ F̃ (the study) or the exact lab-frame gradient
    hyper: Path | None = None  # `fastqmd mor hyper` file: the grid-free online step (docs/MOR_hyper.md)


UniversalPotentialConfig = SevenNetPotentialConfig | CHGNetPotentialConfig
PotentialSource = Annotated[EMTPotential | ReferencePotential | ASEPotential | NNHPotentialConfig
                            | SevenNetPotentialConfig | CHGNetPotentialConfig | MLIPPotentialConfig
                            | MORPotentialConfig, Field(discriminator="kind")]


class NVE(FrozenModel):
    kind: Literal["nve"] = "nve"


class NoseHoover(FrozenModel):
    kind: Literal["nose_hoover"] = "nose_hoover"
    tau_fs: PositiveFloat = 100.0  # thermostat time: Q = g k_B T τ²


class Langevin(FrozenModel):
    kind: Literal["langevin"] = "langevin"
    friction_per_fs: PositiveFloat = 0.01
    seed: int = 0


class BerendsenEnsemble(FrozenModel):
    kind: Literal["berendsen"] = "berendsen"
    tau_fs: PositiveFloat = 19.35  # 800 a.u., MGmol's setting in the MOR study


Ensemble = Annotated[NVE | NoseHoover | Langevin | BerendsenEnsemble, Field(discriminator="kind")]


class Output(FrozenModel):
    dir: Path
    traj_every: PositiveInt = 1
    log_every: PositiveInt = 1
    checkpoint_every: PositiveInt = 100
    progress: bool = True


class Guard(FrozenModel):
    """Blow-up guard: stop when anything is NaN, T exceeds `max_temperature_K`, or two atoms come closer
    than `min_distance_A` (checked every `distance_every` steps).

    Training-domain guard (`domain`: a `fastqmd domain fit` file, fastqmd.domain): every `domain_every` steps the
    structure's extrapolation score s (1 ≈ the edge of the training data) is computed; s > `domain_threshold`
    prints one warning line the first time ("warn") or stops the run like a blow-up ("stop", exit code 3).
    Without `domain` the other domain_* fields are left out of the config hash (old runs resume)."""

    max_temperature_K: PositiveFloat = 1.0e4
    min_distance_A: float = Field(default=0.5, ge=0)
    distance_every: PositiveInt = 10
    domain: Path | None = None
    domain_threshold: PositiveFloat = 1.0
    domain_action: Literal["warn", "stop"] = "warn"
    domain_every: PositiveInt = 10


class MDConfig(FrozenModel):
    structure: StructureSource
    potential: PotentialSource
    ensemble: Ensemble
    temperature_K: float = Field(ge=0)  # initial Maxwell–Boltzmann velocities and thermostat target
    timestep_fs: PositiveFloat
    steps: PositiveInt
    seed: int = 0  # initial velocities
    pinned: list[Annotated[int, Field(ge=0)]] = []  # indices of atoms held fixed (MOR: the oxygen)
    masses: dict[str, PositiveFloat] = {}  # per-element overrides (amu); default ASE masses
    device: Literal["cpu", "cuda"] = "cpu"
    guard: Guard = Guard()
    output: Output


def build_potential(src: EMTPotential | ReferencePotential | ASEPotential | NNHPotentialConfig
                    | UniversalPotentialConfig):
    """Config → Potential: NNH, universal MLIPs and reference engines directly (`EnginePotential`: the
    engine's energy and forces only, no H/S sample per step; engines are stateless, so `reset_calculator` does
    not apply), ASE calculators through the ASE adapter."""
    from fastqmd.potential import calculator_to_potential

    if isinstance(src, NNHPotentialConfig):
        return _nnh_potential(src)
    if isinstance(src, MORPotentialConfig):
        from fastqmd.mor.calculator import MORPotential

        return MORPotential(basis=src.basis, tol=src.tol_Ha, max_iter=src.max_iter, forces=src.forces,
                            hyper=src.hyper)
    if isinstance(src, MLIPPotentialConfig):
        from fastqmd.mlip.potential import MLIPPotential

        return MLIPPotential.from_file(src.model, device=src.device, dtype=src.dtype)
    if isinstance(src, UniversalPotentialConfig):
        from fastqmd.mlip.universal import load_universal

        return load_universal(src.kind, src.model, device=src.device, modal=getattr(src, "modal", None))
    if isinstance(src, ReferencePotential):
        from fastqmd.reference.calculator import EnginePotential
        from fastqmd.reference.config import build_engine

        return EnginePotential(build_engine(src.engine))

    return calculator_to_potential(build_calculator(src), reset=getattr(src, "reset_calculator", True))


def _nnh_potential(src: NNHPotentialConfig):
    from fastqmd.nnh.potential import NNHPotential

    if src.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError("potential device 'cuda' requested but CUDA is not available")
    return NNHPotential.from_file(src.checkpoint, device=src.device, dtype=src.dtype,
                                  kpoints_mesh=src.kpoints_mesh, skin=src.skin, eigenvalues=src.eigenvalues)


def check_elements(src, symbols) -> None:
    """Reject elements a potential has no parameters for, before it is evaluated (EMT: ASE's table; a trained
    MLIP: the elements of its training set)."""
    if isinstance(src, MLIPPotentialConfig):
        from ase.data import atomic_numbers

        from fastqmd.mlip.kind import load_mlip, species_index

        species_index(load_mlip(src.model).elements, [atomic_numbers[s] for s in symbols])
    if isinstance(src, EMTPotential):
        from ase.calculators.emt import parameters

        missing = sorted(set(symbols) - set(parameters))
        if missing:
            raise InputError(f"potential 'emt' has no parameters for {', '.join(missing)} "
                             f"(EMT knows {', '.join(sorted(parameters))})")


def build_calculator(src: EMTPotential | ReferencePotential | ASEPotential):
    """Config → ASE Calculator (NNH models are potentials of their own: `build_potential`)."""
    if isinstance(src, EMTPotential):
        from ase.calculators.emt import EMT

        return EMT()
    if isinstance(src, ReferencePotential):
        from fastqmd.reference.calculator import EngineCalculator
        from fastqmd.reference.config import build_engine

        return EngineCalculator(build_engine(src.engine))
    module, _, name = src.factory.partition(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"cannot import ASE calculator factory '{src.factory}': {exc}") from None
    try:
        return factory(**src.kwargs)
    except TypeError as exc:
        raise InputError(f"calculator factory '{src.factory}' rejected its kwargs: {exc}") from None


def build_integrator(cfg: MDConfig):
    """Config → integrator object (see fastqmd.md.integrators)."""
    from fastqmd.md import integrators as I

    e, dt, T = cfg.ensemble, cfg.timestep_fs, cfg.temperature_K
    if isinstance(e, NVE):
        return I.VelocityVerlet(dt)
    if T <= 0:
        raise InputError(f"ensemble '{e.kind}' needs temperature_K > 0")
    if isinstance(e, NoseHoover):
        return I.NoseHooverVerlet(dt, T, e.tau_fs)
    if isinstance(e, Langevin):
        return I.LangevinBAOAB(dt, T, e.friction_per_fs, e.seed)
    return I.Berendsen(dt, T, e.tau_fs)
