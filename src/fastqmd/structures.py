"""Structure samplers: configs in, lists of ASE `Atoms` out (positions in Å, cell rows in Å).

Three sources, each seeded so that structure i of a source is the same whatever the requested count
(rerunning or extending a generation reproduces the earlier structures exactly):
- `RattledBulk`: an ASE bulk crystal, n×n×n primitive (or conventional) supercell, every Cartesian
  component of every atom displaced uniformly in [−f·a, f·a] (the NNH-MD study rattles by f = 25 % for Cu,
  20 % for Pd; near-thermal sets use f ≈ 3 %).
- `Molecule`: an ASE molecule name or file, with uniform random displacements or classical/quantum thermal
  normal-mode sampling at a temperature (normal modes from a GFN-xTB Hessian at the relaxed geometry).
- `StructureFile`: any ASE-readable file of structures (extxyz, traj, cif, POSCAR, ...).
`validate_atoms` rejects what no engine should see (non-finite coordinates, atoms closer than 0.5 Å,
zero-volume periodic cells) with an `InputError`; `generate`, `md` and `rsdft single` all use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, reference_states
from pydantic import AliasChoices, Field, PositiveInt

from fastqmd.config import FrozenModel
from fastqmd.errors import InputError

MIN_DISTANCE_A = 0.5  # closer atoms are rejected as bad input


class RattledBulk(FrozenModel):
    kind: Literal["rattled_bulk"] = "rattled_bulk"
    element: str = "Cu"
    crystal: str | None = None  # ASE crystal structure; default: the element's reference state
    a: float | None = Field(default=None, gt=0)  # Å; default: ASE reference (Cu 3.61, Pd 3.89)
    supercell: PositiveInt = 4  # n -> n×n×n copies (primitive fcc: 4 -> 64 atoms)
    cubic: bool = False  # conventional (cubic) cell instead of primitive
    max_displacement_fraction: float = Field(default=0.25, ge=0, lt=0.5)
    # redraw a structure (from its own stream) while two atoms are closer than this, Å; None: keep all.
    # Measured, 64-atom fcc Cu: nearest pair median 0.79 Å at 25 % of a (GFN1: up to +90 eV/atom), 1.44 Å at
    # 15 %, 1.79 Å at 10 %; a floor trims the near-fusion tail of a moderate fraction.
    min_distance_A: float | None = Field(default=None, gt=0)
    count: PositiveInt = 1
    seed: int = 0


class Molecule(FrozenModel):
    kind: Literal["molecule"] = "molecule"
    name: str | None = None  # ASE molecule name (ase.build.molecule), e.g. "H2O"
    # or a structure file (first frame): key `path:` as in `kind: file` (`file:` is accepted too; the field
    # keeps its old name so that config hashes of existing runs do not change)
    file: Path | None = Field(default=None, validation_alias=AliasChoices("path", "file"))
    sampling: Literal["random", "thermal"] = "thermal"
    displacement_A: float = Field(default=0.05, ge=0)  # random: uniform in [−d, d] per component
    temperature_K: float = Field(default=300.0, gt=0)  # thermal: normal-mode temperature
    quantum: bool = False  # thermal: include zero-point motion (coth factor)
    hessian_method: Literal["GFN2-xTB", "GFN1-xTB"] = "GFN2-xTB"
    count: PositiveInt = 1
    seed: int = 0


class StructureFile(FrozenModel):
    kind: Literal["file"] = "file"
    path: Path = Field(validation_alias=AliasChoices("path", "file"))  # `file:` accepted as in `kind: molecule`
    index: str = ":"  # ASE index string
    format: str | None = None


StructureSource = Annotated[RattledBulk | Molecule | StructureFile, Field(discriminator="kind")]


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """Independent stream per (source seed, structure index): structure i never depends on the count."""
    return np.random.default_rng([seed, index])


def bulk_supercell(element: str, crystal: str | None, a: float | None, n: int, cubic: bool) -> Atoms:
    """The ideal n×n×n supercell of an ASE bulk crystal."""
    from ase.build import bulk

    if element not in atomic_numbers:
        raise InputError(f"unknown element '{element}'")
    ref = reference_states[atomic_numbers[element]] or {}
    crystal = crystal or ref.get("symmetry")
    a = a or ref.get("a")
    if crystal is None or a is None:
        raise InputError(f"no reference crystal for {element}: give 'crystal' and 'a'")
    try:
        prim = bulk(element, crystal, a=a, cubic=cubic)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise InputError(f"cannot build bulk {element} {crystal}: {exc}") from None
    return prim.repeat((n, n, n))


def rattle_uniform(atoms: Atoms, max_disp_A: float, rng: np.random.Generator) -> Atoms:
    """Displace every Cartesian component uniformly: x' = x + U(−d, d)."""
    out = atoms.copy()
    out.positions += rng.uniform(-max_disp_A, max_disp_A, size=out.positions.shape)
    return out


MAX_REDRAWS = 1000


def rattled_bulk(src: RattledBulk) -> list[Atoms]:
    ideal = bulk_supercell(src.element, src.crystal, src.a, src.supercell, src.cubic)
    a = src.a or reference_states[atomic_numbers[src.element]]["a"]
    d = src.max_displacement_fraction * a
    out = []
    for i in range(src.count):
        rng = sample_rng(src.seed, i)
        for _ in range(MAX_REDRAWS):
            atoms = rattle_uniform(ideal, d, rng)
            if src.min_distance_A is None or min_distance(atoms) >= src.min_distance_A:
                break
        else:
            raise InputError(f"rattled_bulk: no structure with all distances ≥ {src.min_distance_A} Å in "
                             f"{MAX_REDRAWS} draws; lower min_distance_A or max_displacement_fraction")
        out.append(atoms)
    return out


def _molecule_base(src: Molecule) -> Atoms:
    if (src.name is None) == (src.file is None):
        raise InputError("molecule: give exactly one of 'name' or 'path' (a structure file)")
    if src.file is not None:
        return read_structures(src.file, "0")[0]
    from ase.build import molecule
    from ase.collections import g2

    if src.name not in g2.names:
        raise InputError(f"unknown ASE molecule name '{src.name}'")
    return molecule(src.name)


def normal_modes(atoms: Atoms, method: str) -> tuple[Atoms, np.ndarray, np.ndarray]:
    """Relax with GFN-xTB, then the mass-weighted Hessian's eigenpairs.

    Returns (relaxed atoms, ω² in eV/(Å² amu), mass-weighted eigenvectors [3N, 3N] as columns).
    """
    import tempfile

    from ase.optimize import BFGS
    from ase.vibrations import Vibrations
    from tblite.ase import TBLite

    mol = atoms.copy()
    mol.calc = TBLite(method=method, verbosity=0)
    BFGS(mol, logfile=None).run(fmax=1e-3, steps=500)
    with tempfile.TemporaryDirectory() as tmp:
        vib = Vibrations(mol, name=str(Path(tmp) / "vib"), delta=0.005, nfree=2)
        vib.run()
        hess = vib.get_vibrations().get_hessian_2d()  # eV/Å², [3N, 3N]
    m = np.repeat(mol.get_masses(), 3)
    hmw = 0.5 * (hess + hess.T) / np.sqrt(np.outer(m, m))
    P = rigid_body_projector(mol)
    w2, vecs = np.linalg.eigh(P @ hmw @ P)
    mol.calc = None
    return mol, w2, vecs


def rigid_body_projector(atoms: Atoms) -> np.ndarray:
    """P = 1 − V Vᵀ removing translations and rotations in mass-weighted coordinates (Eckart).

    V spans √m_a e_x (translations) and √m_a (e × (r_a − r_cm)) (rotations), orthonormalized; the
    finite-difference Hessian is not exactly invariant, so projecting makes the rigid modes exact zeros.
    """
    m = atoms.get_masses()
    r = atoms.positions - atoms.get_center_of_mass()
    sq = np.sqrt(m)[:, None]
    vecs = []
    for e in np.eye(3):
        vecs.append((sq * e).ravel())
        vecs.append((sq * np.cross(e, r)).ravel())
    u, sv, _ = np.linalg.svd(np.array(vecs).T, full_matrices=False)
    V = u[:, sv > 1e-8 * sv.max()]  # 5 columns for linear molecules
    return np.eye(3 * len(atoms)) - V @ V.T


def thermal_displacements(
    w2: np.ndarray, vecs: np.ndarray, masses: np.ndarray, kT: float, quantum: bool, rng: np.random.Generator
) -> np.ndarray:
    """Sample Cartesian displacements from the harmonic canonical distribution of each normal mode.

    Mode amplitude Q_k ~ N(0, σ_k²), classical σ_k² = kT/ω_k², quantum σ_k² = ħ/(2ω_k) coth(ħω_k/2kT);
    Δx = M^{-1/2} Σ_k Q_k e_k. The six (five) rigid-body modes (ω² below a threshold) are not excited.
    """
    from fastqmd.units import HBAR_EV_ASE_TIME as hbar  # ω from ω² in eV/(Å² amu): ASE time units

    vib = w2 > 1e-3 * max(w2.max(), 1e-12)
    w = np.sqrt(w2[vib])
    if quantum:
        var = hbar / (2 * w) / np.tanh(hbar * w / (2 * kT))
    else:
        var = kT / w2[vib]
    q = rng.normal(size=w.shape) * np.sqrt(var)
    dx_mw = vecs[:, vib] @ q
    return (dx_mw / np.sqrt(np.repeat(masses, 3))).reshape(-1, 3)


def molecules(src: Molecule) -> list[Atoms]:
    base = _molecule_base(src)
    if src.sampling == "random":
        return [rattle_uniform(base, src.displacement_A, sample_rng(src.seed, i)) for i in range(src.count)]
    from fastqmd.units import KB_EV

    mol, w2, vecs = normal_modes(base, src.hessian_method)
    out = []
    for i in range(src.count):
        new = mol.copy()
        new.positions += thermal_displacements(
            w2, vecs, mol.get_masses(), KB_EV * src.temperature_K, src.quantum, sample_rng(src.seed, i)
        )
        out.append(new)
    return out


def read_structures(path: Path | str, index: str = ":", format: str | None = None) -> list[Atoms]:
    """Read structures with ASE; a missing or unreadable file is an InputError."""
    from ase.io import read

    p = Path(path)
    if not p.is_file():
        raise InputError(f"structure file not found: {p}")
    try:
        frames = read(p, index=index, format=format)
    except Exception as exc:  # ASE raises many types for bad files
        raise InputError(f"cannot read structure file {p}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        raise InputError(f"no structures in {p} (index '{index}')")
    for f in frames:
        f.calc = None
    return frames


def build_structures(src: RattledBulk | Molecule | StructureFile) -> list[Atoms]:
    """All structures of one source, in a reproducible order."""
    if isinstance(src, RattledBulk):
        return rattled_bulk(src)
    if isinstance(src, Molecule):
        return molecules(src)
    return read_structures(src.path, src.index, src.format)


def min_distance(atoms: Atoms) -> float:
    """Smallest interatomic distance in Å (all periodic images under pbc); inf for one atom.

    Searched with vesin neighbour lists of growing radius, so large cells never build an N×N matrix.
    """
    from fastqmd.neighbors import pairs

    if len(atoms) < 2 and not atoms.pbc.any():
        return float("inf")
    extent = np.ptp(atoms.positions, axis=0).max() if not atoms.pbc.any() else atoms.cell.lengths().max()
    cutoff = 2.0
    while True:
        _, _, d, _ = pairs(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
        if d.size or cutoff > 2 * extent + 1.0:
            return float(d.min()) if d.size else float("inf")
        cutoff *= 2


def validate_atoms(atoms: Atoms, label: str = "structure") -> None:
    """Reject what no engine should see — the one structure check of `generate`, `md` and `rsdft single`:
    no atoms, non-finite coordinates or cell, a zero-volume periodic cell, mixed periodic/non-periodic axes,
    atoms closer than 0.5 Å (all periodic images; a bounded vesin search, O(N))."""
    from fastqmd.neighbors import min_distance as closest_below

    if len(atoms) == 0:
        raise InputError(f"{label}: no atoms")
    if not np.all(np.isfinite(atoms.positions)):
        raise InputError(f"{label}: non-finite (NaN or infinite) coordinates")
    if atoms.pbc.any():
        if not atoms.pbc.all():
            raise InputError(f"{label}: mixed periodic/non-periodic axes (pbc {atoms.pbc.tolist()}) are not supported")
        if not np.all(np.isfinite(atoms.cell.array)):
            raise InputError(f"{label}: non-finite cell")
        if abs(atoms.cell.volume) < 1e-6:
            raise InputError(f"{label}: periodic cell has zero volume")
    d = closest_below(atoms.positions, atoms.cell.array, atoms.pbc, MIN_DISTANCE_A)
    if d < MIN_DISTANCE_A:
        raise InputError(f"{label}: two atoms are {d:.3f} Å apart (minimum {MIN_DISTANCE_A} Å)")
