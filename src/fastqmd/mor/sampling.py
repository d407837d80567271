"""Parametric sampling: internal-coordinate grids of a small molecule, as configs, into canonical geometries.

In:  a `SamplingConfig` — a molecule key (`MOLECULES`: its frame recipe, reference bond L0 and angle θ0) and an
     `InternalGrid`: bond factors (s1 for frame atom 1, s2 for frame atom 2, from the same list, s2 ≤ s1 unless
     `ordered: false`) × angle offsets Δθ (degrees), each a list or {start, stop, num} (numpy.linspace);
     optionally the `training` grid that tags each geometry reproductive (on it) or predictive (all others).
Out: `Geometry` records in grid order (s1 outer, s2, Δθ inner), positions in the canonical frame (Bohr):
     pinned atom at the recipe's `pinned_at`, frame atom 1 = s1·L0 (cos θ/2, sin θ/2, 0), frame atom 2 =
     s2·L0 (cos θ/2, −sin θ/2, 0) relative to it, θ = θ0 + Δθ; other atoms (none for water) at the template's
     canonical positions. `to_atoms` gives ASE Atoms in Å.
The study's grids (seed 003): training s1, s2 ∈ {0.95, 1.00, 1.05}·1.83 Bohr, Δθ ∈ {−5, 0, +5}°: 6 pairs × 3 = 18;
test s1, s2 ∈ linspace(0.95, 1.05, 11) × Δθ ∈ linspace(−5, 5, 11): 66 × 11 = 726 (`STUDY_TRAINING`, `STUDY_TEST`).
`warm_start_order` orders geometries so that consecutive ones are close (greedy nearest neighbour in the canonical
positions, from the first), and `split_chains` cuts that order into contiguous warm-start chains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import PositiveInt, model_validator

from fastqmd.config import FrozenModel
from fastqmd.errors import InputError
from fastqmd.mor.frame import FrameRecipe
from fastqmd.units import BOHR_ANG

MATCH_TOL = 1e-9  # a coordinate equals a training value within this (factor or degree)


@dataclass(frozen=True)
class MoleculeTemplate:
    """A molecule for internal-coordinate sampling: its frame recipe, the reference bond L0 (Bohr) and angle θ0
    (degrees) of the two frame bonds, and canonical positions (Bohr) of any further atoms (rows in label order,
    NaN for the pinned and frame atoms)."""

    recipe: FrameRecipe
    bond_bohr: float
    angle_deg: float
    others_bohr: tuple[tuple[float, float, float], ...] = ()


MOLECULES: dict[str, MoleculeTemplate] = {
    # the study's pinned water: O at the origin, r_OH = 1.83 Bohr, ∠HOH = 104.5°
    "water": MoleculeTemplate(FrameRecipe(("O", "H", "H"), pinned=0, frame=(1, 2)), 1.83, 104.5),
}


class Linspace(FrozenModel):
    start: float
    stop: float
    num: PositiveInt

    def values(self) -> np.ndarray:
        return np.linspace(self.start, self.stop, self.num)


def _values(v: list[float] | Linspace) -> np.ndarray:
    return v.values() if isinstance(v, Linspace) else np.asarray(v, float)


class InternalGrid(FrozenModel):
    """Bond factors (of L0, for both frame bonds) × angle offsets (degrees from θ0)."""

    bond_factors: list[float] | Linspace
    angle_offsets_deg: list[float] | Linspace
    ordered: bool = True  # keep only s2 ≤ s1 (frame atom 1 the longer bond, as the canonical frame has it)

    @model_validator(mode="after")
    def _positive(self):
        if len(_values(self.bond_factors)) == 0 or len(_values(self.angle_offsets_deg)) == 0:
            raise ValueError("bond_factors and angle_offsets_deg need at least one value each")
        if np.any(_values(self.bond_factors) <= 0):
            raise ValueError("bond_factors must be > 0")
        return self

    def points(self) -> list[tuple[float, float, float]]:
        """(s1, s2, Δθ) in grid order: s1 outer, then s2, then Δθ."""
        s, a = _values(self.bond_factors), _values(self.angle_offsets_deg)
        return [(float(s1), float(s2), float(d)) for s1 in s for s2 in s if not (self.ordered and s2 > s1 + MATCH_TOL)
                for d in a]


class SamplingConfig(FrozenModel):
    molecule: str = "water"
    grid: InternalGrid
    training: InternalGrid | None = None  # reproductive = on this grid; None: every geometry is reproductive

    @model_validator(mode="after")
    def _known(self):
        if self.molecule not in MOLECULES:
            raise ValueError(f"unknown molecule {self.molecule!r} (known: {', '.join(sorted(MOLECULES))})")
        return self

    @property
    def template(self) -> MoleculeTemplate:
        return MOLECULES[self.molecule]


STUDY_TRAINING = InternalGrid(bond_factors=[0.95, 1.0, 1.05], angle_offsets_deg=[-5.0, 0.0, 5.0])
STUDY_TEST = InternalGrid(bond_factors=Linspace(start=0.95, stop=1.05, num=11),
                          angle_offsets_deg=Linspace(start=-5.0, stop=5.0, num=11))


@dataclass(frozen=True)
class Geometry:
    """One sampled geometry: its index in grid order, internal coordinates and canonical positions (Bohr)."""

    index: int
    s1: float
    s2: float
    angle_offset_deg: float
    angle_deg: float
    positions_bohr: np.ndarray  # [n_atoms, 3]
    reproductive: bool


def canonical_positions(t: MoleculeTemplate, s1: float, s2: float, angle_deg: float) -> np.ndarray:
    """[n, 3] Bohr: pinned at p0, frame atoms at p0 + s_i L0 (cos θ/2, ±sin θ/2, 0), others from the template."""
    r = t.recipe
    n = len(r.symbols)
    X = np.full((n, 3), np.nan)
    for i, row in enumerate(t.others_bohr):
        if i not in (r.pinned, *r.frame):
            X[i] = row
    p0, h = np.asarray(r.pinned_at, float), np.deg2rad(angle_deg) / 2
    X[r.pinned] = p0
    X[r.frame[0]] = p0 + s1 * t.bond_bohr * np.array([np.cos(h), np.sin(h), 0.0])
    X[r.frame[1]] = p0 + s2 * t.bond_bohr * np.array([np.cos(h), -np.sin(h), 0.0])
    if np.isnan(X).any():
        raise InputError(f"molecule template of {''.join(r.symbols)} lacks positions for its other atoms")
    return X


def _on(points: list[tuple[float, float, float]], p: tuple[float, float, float]) -> bool:
    return any(max(abs(a - b) for a, b in zip(p, q)) <= MATCH_TOL for q in points)


def geometries(cfg: SamplingConfig) -> list[Geometry]:
    """Every geometry of the config's grid, in grid order, tagged reproductive/predictive."""
    t = cfg.template
    train = cfg.training.points() if cfg.training is not None else None
    out = []
    for i, (s1, s2, d) in enumerate(cfg.grid.points()):
        theta = t.angle_deg + d
        if not 0 < theta < 180:
            raise InputError(f"angle {theta:g}° (θ0 {t.angle_deg:g} + {d:g}) is outside (0, 180)")
        out.append(Geometry(i, s1, s2, d, theta, canonical_positions(t, s1, s2, theta),
                            True if train is None else _on(train, (s1, s2, d))))
    return out


def to_atoms(cfg: SamplingConfig, geom: Geometry, box_bohr=None):
    """ASE Atoms of a geometry, positions in Å (canonical frame); with `box_bohr` (one edge or three) a periodic
    orthorhombic cell of that size (positions unchanged: the solver's grid origin says where the box starts)."""
    from ase import Atoms

    a = Atoms(cfg.template.recipe.symbols, positions=geom.positions_bohr * BOHR_ANG)
    if box_bohr is not None:
        a.cell = np.broadcast_to(np.asarray(box_bohr, float), (3,)) * BOHR_ANG
        a.pbc = True
    a.info.update(mor_index=geom.index, s1=geom.s1, s2=geom.s2, angle_deg=geom.angle_deg,
                  reproductive=geom.reproductive)
    return a


def warm_start_order(geoms: list[Geometry]) -> list[int]:
    """Geometry indices ordered greedily: start at the first, always go to the nearest unvisited one
    (Frobenius distance of canonical positions; ties → lowest index). Consecutive solves then start from close
    orbitals."""
    if not geoms:
        return []
    X = np.array([g.positions_bohr.ravel() for g in geoms])
    left = list(range(1, len(geoms)))
    order = [0]
    while left:
        d = np.linalg.norm(X[left] - X[order[-1]], axis=1)
        order.append(left.pop(int(np.argmin(d))))
    return [geoms[i].index for i in order]


def split_chains(order: list[int], n_chains: int) -> list[list[int]]:
    """Contiguous chains of nearly equal length (numpy.array_split), the empty ones dropped."""
    return [c.tolist() for c in np.array_split(np.asarray(order, int), max(1, min(n_chains, len(order)))) if len(c)]
