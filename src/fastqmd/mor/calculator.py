"""MOR-QMD at the user boundary: `MORCalculator` (ASE) and `MORPotential` (`compute(system) -> Results`), eV and Å.

In:  a reduced basis (`fastqmd.mor.basis.Basis`, or its file) and atoms in any orientation, position and label order
     (Å). Out: energy = free_energy = the reduced Mermin free energy (eV), forces = −∂F/∂R (eV/Å) in the input frame
     and labels; `results["mor_iterations"]`, `["domain_distance_ang"]` (when the basis knows its training
     geometries) and `["eigenvalues"]` (eV, of the reduced Hamiltonian).
Per call: positions → canonical frame of the basis' recipe (`fastqmd.mor.frame`: rotation R, translation, label
permutation) → online MVP solve (`fastqmd.mor.online`, warm-started from the previous density matrix) → forces
rotated back, F_input[perm[i]] = Rᵀ F̃_i. The frame makes the model exactly rotation- and translation-invariant.
Forces, two choices (`forces=`): "rotated" (default, the study's): Rᵀ F̃, the Hellmann–Feynman forces of the
canonical geometry turned back — what Hi-Fi would give at the canonical placement; "gradient": the exact gradient
F = −Jᵀ ∂F_MOR/∂Y of E(X) = F_MOR(Y(X)), J = ∂Y/∂X the frame's Jacobian. They differ by the grid's (egg-box) net force
and torque of F̃, which the frame, moving with the atoms, turns into internal forces: "gradient" has zero net force
and torque and conserves energy in NVE; "rotated" does not exactly (the difference vanishes with the grid spacing).
On the 32³ test grid (h = 0.375) the two differ by 1e−3 Ha/Bohr on H and by the whole O egg-box force on O (the
pinned atom's canonical position is fixed, so "gradient" gives it −Σ of the others).
MD: `potential: {kind: mor, basis: FILE}` (fastqmd.md.config.MORPotentialConfig → `MORPotential`).
Refused (InputError, one line): a missing/corrupt basis file, a molecule other than the basis', and — when the
caller states them — a grid, FD order, box, boundary or XC other than the basis'. A geometry far from the training
geometries is computed with a warning (`DomainWarning`), never refused.
Domain distance: d = min_j RMS_i |Y_i − Y_i^(j)| over the training geometries Y^(j) (canonical, Bohr) listed in
`basis.extras["training_geometries_bohr"]`; the warning threshold is the largest nearest-neighbour distance among
the training geometries themselves (×`domain_factor`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from pydantic import BaseModel, ConfigDict, Field

from fastqmd.errors import InputError
from fastqmd.units import BOHR_ANG, HARTREE_EV

Vec3 = tuple[float, float, float]


class DomainWarning(UserWarning):
    """The geometry lies farther from the training geometries than they lie from each other."""


class MORSettings(BaseModel):
    """Settings of the online solver; the optional Hi-Fi fields are checked against the basis when given."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    basis: Any  # a Basis or the path of a basis file
    tol: float = Field(1e-9, gt=0)  # Ha, on |F'(0)|
    max_iter: int = Field(60, ge=1)
    warm_start: bool = True
    domain_factor: float = Field(1.0, gt=0)
    forces: Literal["rotated", "gradient"] = "rotated"  # Rᵀ F̃ (the study) or the exact −∂E/∂X (module doc)
    hyper: Any = None  # a fastqmd.mor.hyper.HyperReduction or its file: grid-free online step (docs/MOR_hyper.md)
    # what the caller expects (e.g. the Hi-Fi settings it compares with); None: not checked
    grid_points: int | tuple[int, int, int] | None = None
    fd_order: Literal[2, 4, 6, 8] | None = None
    box_ang: float | Vec3 | None = None
    boundary: Literal["periodic", "isolated"] | None = None
    xc: Literal["teter93", "pz81", "pbe"] | None = None


def load(basis):
    """A Basis from a Basis or a path (InputError for a missing or corrupt file)."""
    from fastqmd.mor.basis import Basis, load_basis

    if isinstance(basis, Basis):
        return basis
    if isinstance(basis, (str, Path)):
        return load_basis(basis)
    raise InputError(f"basis must be a Basis or a file path, got {type(basis).__name__}")


def check_expected(s: MORSettings, basis) -> None:
    """InputError naming every stated Hi-Fi setting that differs from the basis' grid and model."""
    g, problems = basis.grid, []
    if s.grid_points is not None and tuple(np.broadcast_to(s.grid_points, (3,))) != tuple(g.shape):
        problems.append(f"grid_points {s.grid_points} ≠ basis {g.shape}")
    if s.fd_order is not None and s.fd_order != g.fd_order:
        problems.append(f"fd_order {s.fd_order} ≠ basis {g.fd_order}")
    if s.box_ang is not None:
        box = np.broadcast_to(np.asarray(s.box_ang, float), (3,)) / BOHR_ANG
        if not np.allclose(box, np.array(g.shape) * np.array(g.spacing), rtol=1e-9, atol=1e-9):
            problems.append(f"box {tuple(box)} Bohr ≠ basis {tuple(np.array(g.shape) * np.array(g.spacing))}")
    if s.boundary is not None and (s.boundary == "periodic") != g.periodic:
        problems.append(f"boundary {s.boundary} ≠ basis {'periodic' if g.periodic else 'isolated'}")
    if s.xc is not None and s.xc != basis.model.xc:
        problems.append(f"xc {s.xc} ≠ basis {basis.model.xc} (pseudopotential {basis.model.pseudo_family})")
    if problems:
        raise InputError(f"the basis {basis.source} does not fit: " + "; ".join(problems))


def domain_distance(Y: np.ndarray, training: np.ndarray) -> float:
    """min_j sqrt(mean_i |Y_i − T_ji|²) (Bohr) for canonical positions Y [n, 3] and training geometries T [m, n, 3]."""
    return float(np.sqrt(((training - Y[None]) ** 2).sum(-1).mean(-1)).min())


def domain_threshold(training: np.ndarray) -> float:
    """Largest nearest-neighbour distance among the training geometries (RMS, Bohr); inf for fewer than two."""
    if len(training) < 2:
        return np.inf
    d = np.sqrt(((training[:, None] - training[None]) ** 2).sum(-1).mean(-1))
    np.fill_diagonal(d, np.inf)
    return float(d.min(axis=1).max())


def frame_jacobian(X: np.ndarray, frame, recipe, h: float = 1e-5) -> np.ndarray:
    """J = ∂Y/∂X [3n, 3n] of the canonical positions Y(X) (canonical labels) w.r.t. the input positions X (Bohr),
    by central differences (error ~h² ≈ 1e−10) with the label permutation of `frame` held fixed."""
    from dataclasses import replace

    from fastqmd.mor.frame import canonical_frame

    keep = replace(recipe, tie_rule="keep_order")

    def Y(Xp):
        Xp = Xp.reshape(-1, 3)[frame.perm]
        return canonical_frame(Xp, keep).to_canonical(Xp).ravel()

    x0 = np.asarray(X, float).ravel()
    J = np.empty((x0.size, x0.size))
    for j in range(x0.size):
        e = np.zeros_like(x0)
        e[j] = h
        J[:, j] = (Y(x0 + e) - Y(x0 - e)) / (2 * h)
    return J


def load_hyper_for(hyper, basis):
    """A HyperReduction (or its file) checked against the basis: same rank, grid and physics (InputError)."""
    from fastqmd.mor.basis import GridSpec
    from fastqmd.mor.hyper import HyperReduction, load_hyper

    hr = hyper if isinstance(hyper, HyperReduction) else load_hyper(hyper)
    r = basis.recipe
    if len(r.symbols) != 3 or r.pinned != 0 or tuple(r.frame) != (1, 2) or any(r.pinned_at):
        raise InputError("hyper-reduction needs a three-atom recipe with atom 0 pinned on the origin, frame atoms 1, 2")
    if hr.k != basis.rank or GridSpec.of(hr.grid) != basis.grid or hr.model.physics() != basis.model.physics():
        raise InputError(f"the hyper-reduction (rank {hr.k}, grid {hr.grid.shape}) was not made for the basis "
                         f"{basis.source} (rank {basis.rank}, grid {basis.grid.shape})")
    sha = hr.info.get("basis_sha256")
    if sha is not None:
        from fastqmd.mor.hyper import basis_fingerprint

        if sha != basis_fingerprint(basis.vectors):
            raise InputError(f"the hyper-reduction was made from another basis than {basis.source} (same rank and "
                             "grid, other vectors)")
    return hr


class MOREngine:
    """The shared core: positions (Å, input frame) → (F eV, forces eV/Å, info), warm start kept between calls."""

    def __init__(self, settings: MORSettings):
        from fastqmd.mor.online import reduced_basis

        self.settings = settings
        self.basis = load(settings.basis)
        check_expected(settings, self.basis)
        self.grid = self.basis.grid.grid()
        self.reduced = reduced_basis(self.basis.vectors, self.grid)
        tr = self.basis.extras.get("training_geometries_bohr")
        self.training = None if tr is None else np.asarray(tr, float)
        self.threshold = np.inf if tr is None else domain_threshold(self.training) * settings.domain_factor
        self.hyper = None if settings.hyper is None else load_hyper_for(settings.hyper, self.basis)
        self.X = None
        self.last = None  # the last OnlineResult (atomic units, canonical frame)

    def __call__(self, symbols, positions_ang: np.ndarray):
        from fastqmd.mor.frame import canonical_frame
        from fastqmd.mor.online import solve

        s, b = self.settings, self.basis
        b.check_compatible(symbols=tuple(symbols))
        frame = canonical_frame(np.asarray(positions_ang, float) / BOHR_ANG, b.recipe)
        Y = frame.to_canonical(np.asarray(positions_ang, float) / BOHR_ANG)
        info: dict[str, Any] = {}
        if self.training is not None:
            d = domain_distance(Y, self.training)
            info["domain_distance_ang"] = d * BOHR_ANG
            if d > self.threshold:
                warnings.warn(f"MOR: geometry {d:.3f} Bohr (RMS) from the nearest training geometry, beyond the "
                              f"sampled domain ({self.threshold:.3f}); the reduced model is extrapolating",
                              DomainWarning, stacklevel=3)
        X0 = self.X if s.warm_start else None
        info["mor_hyper"] = self.hyper is not None and self.hyper.covers(Y)
        if info["mor_hyper"]:
            from fastqmd.mor.hyper import hyper_solve

            res = hyper_solve(self.hyper, Y, X0=X0, tol=s.tol, max_iter=s.max_iter)
        else:
            if self.hyper is not None:
                warnings.warn("MOR: geometry outside the hyper-reduction tables; this step uses the full grid",
                              DomainWarning, stacklevel=3)
            res = solve(self.reduced, b.model.model(Y), X0=X0, tol=s.tol, max_iter=s.max_iter)
        self.X, self.last = res.X, res
        if s.forces == "rotated":
            F = frame.vectors_from_canonical(res.forces)
        else:
            J = frame_jacobian(np.asarray(positions_ang, float) / BOHR_ANG, frame, b.recipe)
            F = (J.T @ res.forces.ravel()).reshape(-1, 3)
        info.update(mor_iterations=res.iterations, eigenvalues=res.eigenvalues * HARTREE_EV)
        return res.free_energy * HARTREE_EV, F * HARTREE_EV / BOHR_ANG, info


class MORCalculator(Calculator):
    """The reduced-order real-space model as an ASE Calculator (eV, eV/Å); `MORCalculator(basis=FILE, **settings)`."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, **settings):
        super().__init__()
        self.engine = MOREngine(MORSettings(**settings))

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        E, F, info = self.engine(self.atoms.get_chemical_symbols(), self.atoms.positions)
        self.results = {"energy": E, "free_energy": E, "forces": F, **info}


class MORPotential:
    """The same model on fastqmd's potential seam: `compute(system) -> Results` (eV, eV/Å, float64)."""

    capabilities = frozenset({"eigenvalues"})

    def __init__(self, **settings):
        self.engine = MOREngine(MORSettings(**settings))

    def compute(self, system):
        import torch
        from ase.data import chemical_symbols

        from fastqmd.potential import DTYPE, Results

        symbols = [chemical_symbols[int(z)] for z in system.numbers.cpu().numpy()]
        E, F, info = self.engine(symbols, system.positions.detach().cpu().numpy())
        dev = system.positions.device
        extras = {k: v for k, v in info.items() if k != "eigenvalues"}
        return Results(torch.as_tensor(E, dtype=DTYPE, device=dev), torch.as_tensor(F, dtype=DTYPE, device=dev),
                       eigenvalues=torch.as_tensor(info["eigenvalues"][None], dtype=DTYPE, device=dev), extras=extras)
