"""The reduced basis: a thin SVD of Hi-Fi orbital snapshots, and the file that carries it to the online solver.

In:  snapshot orbitals ψ_j (columns, normalized Σ|ψ_j|² h³ = 1; stored as unit rows U = ψ √dV, as
     `SCFResult.orbitals`), the grid, model and frame recipe they were made with.
Out: `Basis` — k orthonormal rows `vectors` [k, n_grid] in the solver's U convention (U Uᵀ = 1, φ = U/√dV), all
     singular values, the rank rule used, and the descriptions needed to refuse a mismatched use.

SVD: Ψ = W Σ Vᵀ (Ψ [n_grid, m], columns ψ_j); the basis is the first k left singular vectors (as rows, unit Euclidean
norm). Singular values are those of Ψ in the study's normalization (Σ_i σ_i² = m/h³).
Rank by the energy fraction, for s_i = σ_i ("sigma", libROM before 2025) or s_i = σ_i² ("sigma2", after):
    k = min { k : Σ_{i≤k} s_i / Σ_i s_i > 1 − ε }.
File (HDF5, written atomically): attrs format = "fastqmd-mor-basis", version, rank, energy_fraction, epsilon,
criterion, n_snapshots, grid / model / recipe (JSON), source; datasets `vectors` [k, n_grid], `singular_values` [m].
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from fastqmd.errors import InputError
from fastqmd.mor.frame import FrameRecipe

FORMAT = "fastqmd-mor-basis"
VERSION = 1
ORTHONORMAL_TOL = 1e-8  # max |U Uᵀ − 1| accepted when a basis file is read
Criterion = Literal["sigma", "sigma2"]


@dataclass(frozen=True)
class GridSpec:
    """The grid a basis lives on (Bohr), as `fastqmd.dft.grid.Grid`."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    fd_order: int
    periodic: bool

    @classmethod
    def of(cls, grid) -> GridSpec:
        return cls(tuple(int(n) for n in grid.shape), tuple(float(h) for h in grid.spacing),
                   tuple(float(o) for o in grid.origin), int(grid.fd_order), bool(grid.periodic))

    def grid(self):
        from fastqmd.dft.grid import Grid

        return Grid(self.shape, self.spacing, self.origin, self.fd_order, self.periodic)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def dV(self) -> float:
        return float(np.prod(self.spacing))


@dataclass(frozen=True)
class ModelSpec:
    """The Hi-Fi physics of the snapshots (atomic units): what `fastqmd.dft.scf.Model` holds besides positions."""

    symbols: tuple[str, ...]
    xc: str
    pseudo_family: str  # "gth-pade" (LDA table) or "gth-pbe"
    kT: float  # Ha
    r_c: float  # Bohr, width of the Gaussian ion charges
    charge: float
    filter_pseudo: bool
    n_electrons: float
    n_empty: int  # empty states of the Hi-Fi solves (not a compatibility condition)

    @classmethod
    def of(cls, model) -> ModelSpec:
        family = "gth-pbe" if model.xc.lower() == "pbe" else "gth-pade"
        return cls(tuple(model.symbols), model.xc, family, float(model.kT), float(model.r_c), float(model.charge),
                   bool(model.filter_pseudo), float(model.n_electrons), int(model.n_empty))

    def model(self, positions_bohr: np.ndarray, n_empty: int | None = None):
        """A `fastqmd.dft.scf.Model` of this physics at the given positions (Bohr)."""
        from fastqmd.dft.scf import Model

        return Model(self.symbols, np.asarray(positions_bohr, float), self.xc, self.kT,
                     self.n_empty if n_empty is None else n_empty, self.r_c, self.charge, self.filter_pseudo)

    def physics(self) -> dict:
        """The fields two models must share for a basis to be usable (everything but n_empty)."""
        d = asdict(self)
        d.pop("n_empty")
        return d


@dataclass(frozen=True, eq=False)
class Basis:
    """A reduced basis: rows `vectors` [k, n_grid] with U Uᵀ = 1 (φ = U/√dV) and its provenance."""

    vectors: np.ndarray  # [k, n_grid] float64
    singular_values: np.ndarray  # [m] all singular values of the snapshot matrix (study normalization)
    rank: int
    energy_fraction: float  # captured fraction Σ_{i≤k} s_i / Σ s_i by `criterion`
    epsilon: float
    criterion: str
    grid: GridSpec
    model: ModelSpec
    recipe: FrameRecipe
    source: str = ""
    extras: dict = field(default_factory=dict)  # JSON-able notes (e.g. the snapshot settings)

    @property
    def n_snapshots(self) -> int:
        return int(len(self.singular_values))

    def on_grid(self) -> np.ndarray:
        """φ_i(r) [k, n_x, n_y, n_z], normalized to ∫|φ|² = 1."""
        return self.vectors.reshape((-1,) + self.grid.shape) / np.sqrt(self.grid.dV)

    def truncated(self, k: int) -> Basis:
        """The first k vectors (for rank sweeps); the rank rule fields then describe k, not ε."""
        if not 1 <= k <= self.rank:
            raise InputError(f"cannot truncate a rank-{self.rank} basis to {k} vectors")
        frac = energy_fractions(self.singular_values, self.criterion)[k - 1]
        return Basis(self.vectors[:k], self.singular_values, k, float(frac), float("nan"), self.criterion, self.grid,
                     self.model, self.recipe, self.source, dict(self.extras))

    def check_compatible(self, grid=None, model=None, symbols=None) -> None:
        """InputError (one line, every mismatch named) unless the grid / model (`Grid` / `Model` or their specs)
        and the element list are the ones this basis was made for."""
        problems = []
        if grid is not None:
            g = grid if isinstance(grid, GridSpec) else GridSpec.of(grid)
            for name in ("shape", "fd_order", "periodic"):
                if getattr(g, name) != getattr(self.grid, name):
                    problems.append(f"{name} {getattr(g, name)} ≠ basis {getattr(self.grid, name)}")
            for name in ("spacing", "origin"):
                if not np.allclose(getattr(g, name), getattr(self.grid, name), rtol=0, atol=1e-9):
                    problems.append(f"grid {name} {getattr(g, name)} ≠ basis {getattr(self.grid, name)}")
        if model is not None:
            mine, other = self.model.physics(), (model if isinstance(model, ModelSpec) else ModelSpec.of(model)).physics()
            for name, v in mine.items():
                if other[name] != v:
                    problems.append(f"{name} {other[name]!r} ≠ basis {v!r}")
        if symbols is not None and tuple(symbols) != self.recipe.symbols:
            problems.append(f"molecule {''.join(symbols)} ≠ basis {''.join(self.recipe.symbols)}")
        if problems:
            raise InputError(f"the basis {self.source or ''} does not fit: " + "; ".join(problems))


# ---------------------------------------------------------------- SVD and rank


def energy_fractions(singular_values: np.ndarray, criterion: Criterion) -> np.ndarray:
    """[m] cumulative fractions Σ_{i≤k} s_i / Σ_i s_i, s = σ ("sigma") or σ² ("sigma2")."""
    if criterion not in ("sigma", "sigma2"):
        raise InputError(f"unknown rank criterion {criterion!r} (sigma, sigma2)")
    s = np.asarray(singular_values, float)
    s = s if criterion == "sigma" else s * s
    return np.cumsum(s) / s.sum()


def rank_for(singular_values: np.ndarray, epsilon: float, criterion: Criterion) -> int:
    """k = min {k : Σ_{i≤k} s_i / Σ s_i > 1 − ε} (all of them if none qualifies)."""
    if not 0 < epsilon < 1:
        raise InputError(f"epsilon must lie in (0, 1), got {epsilon:g}")
    frac = energy_fractions(singular_values, criterion)
    above = np.nonzero(frac > 1.0 - epsilon)[0]
    return int(above[0]) + 1 if len(above) else len(frac)


def snapshot_svd(U: np.ndarray, dV: float) -> tuple[np.ndarray, np.ndarray]:
    """Thin SVD of the snapshot matrix with columns ψ_j = U_j/√dV (Σ|ψ_j|² dV = 1 for unit rows U_j).

    Returns (W [m, n_grid]: left singular vectors of Ψ as unit rows, σ [m] of Ψ, descending). Ψ = Uᵀ/√dV, so
    with numpy's U = Q diag(S) Vt the left vectors of Ψ are the rows of Vt and σ = S/√dV
    (LAPACK thin SVD, cost n_grid m²)."""
    U = np.asarray(U, float)
    norms = np.linalg.norm(U, axis=1)
    if np.any(np.abs(norms - 1) > 1e-6):
        raise InputError(f"snapshot columns must be normalized (Σ|ψ|²h³ = 1); norms range {norms.min():.3g}–{norms.max():.3g}")
    _, s, Vt = np.linalg.svd(U, full_matrices=False)
    return Vt, s / np.sqrt(dV)


def build_basis(U: np.ndarray, grid, model, recipe: FrameRecipe, epsilon: float = 1e-4,
                criterion: Criterion = "sigma", rank: int | None = None, source: str = "",
                extras: dict | None = None) -> Basis:
    """Basis of the snapshots U [m, n_grid] (unit rows): rank by `rank_for` unless `rank` is given."""
    g = grid if isinstance(grid, GridSpec) else GridSpec.of(grid)
    spec = model if isinstance(model, ModelSpec) else ModelSpec.of(model)
    if U.shape[1] != g.size:
        raise InputError(f"snapshots have {U.shape[1]} grid values, the grid {g.shape} has {g.size}")
    W, sigma = snapshot_svd(U, g.dV)
    k = rank_for(sigma, epsilon, criterion) if rank is None else int(rank)
    frac = float(energy_fractions(sigma, criterion)[k - 1])
    return Basis(np.ascontiguousarray(W[:k]), sigma, k, frac, float(epsilon) if rank is None else float("nan"),
                 criterion, g, spec, recipe, source, dict(extras or {}))


def basis_from_snapshots(path: str | Path, epsilon: float = 1e-4, criterion: Criterion = "sigma",
                         states: Literal["occupied", "all"] = "occupied") -> Basis:
    """Basis of a snapshot file (`fastqmd.mor.snapshots`): its occupied (or all stored) orbitals of every geometry.
    `extras` records the states used, the snapshot run's config and the canonical training geometries
    (`training_geometries_bohr` [n_geometries, n_atoms, 3], for the online domain check)."""
    from fastqmd.mor.snapshots import Snapshots

    snap = Snapshots(path)
    U = snap.orbital_matrix(states)
    extras = {"states": states, "snapshots_run": snap.run,
              "training_geometries_bohr": [np.asarray(r["positions"], float).tolist() for r in snap.records]}
    return build_basis(U, snap.grid, snap.model, snap.recipe, epsilon=epsilon, criterion=criterion,
                       source=str(path), extras=extras)


def basis_from_orbitals(U: np.ndarray, grid, model, recipe: FrameRecipe | None = None, source: str = "orbitals") -> Basis:
    """A basis spanning exactly the rows of U (any full-rank set; orthonormalized by SVD), all of them kept —
    e.g. the Hi-Fi orbitals of one geometry, for tests of the online solver."""
    spec = model if isinstance(model, ModelSpec) else ModelSpec.of(model)
    rec = recipe or FrameRecipe(spec.symbols)
    Un = np.asarray(U, float) / np.linalg.norm(U, axis=1, keepdims=True)
    return build_basis(Un, grid, spec, rec, rank=len(Un), source=source)


STUDY_RANK = 34  # the study's rank at 1 − ε = 0.9999 (4 occupied + 30 empty states)


def rank_summary(singular_values: np.ndarray, epsilon: float) -> dict:
    """Both ranks at 1 − ε (Σσ and Σσ²) beside the study's, with the captured fractions (for the JSON summary)."""
    out = {"epsilon": float(epsilon), "n_snapshots": int(len(singular_values)), "study_rank": STUDY_RANK}
    for c in ("sigma", "sigma2"):
        k = rank_for(singular_values, epsilon, c)
        out[f"rank_{c}"] = k
        out[f"energy_fraction_{c}"] = float(energy_fractions(singular_values, c)[k - 1])
    return out


def plot_singular_values(singular_values: np.ndarray, path: str | Path, epsilon: float, title: str = "") -> Path:
    """σ_i/σ_1 (log) against i, with the ranks of both criteria at 1 − ε marked (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastqmd.atomic import replace_durably
    from fastqmd.atomic import temp_name as _temp_name

    s = np.asarray(singular_values, float)
    path = Path(path)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    i = np.arange(1, len(s) + 1)
    ax.semilogy(i, s / s[0], "o-", ms=3, lw=1, label="σ_i / σ_1")
    for c, style in (("sigma", "--"), ("sigma2", ":")):
        k = rank_for(s, epsilon, c)
        ax.axvline(k, ls=style, color="k", lw=1, label=f"rank {k} (Σ{'σ' if c == 'sigma' else 'σ²'} > 1 − {epsilon:g})")
    ax.axvline(STUDY_RANK, color="tab:red", lw=1, alpha=0.6, label=f"study: {STUDY_RANK}")
    ax.set_xlabel("index i")
    ax.set_ylabel("normalized singular value")
    ax.set_title(title or "snapshot singular values")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = _temp_name(path)
    try:
        fig.savefig(tmp, dpi=120, format="png")
        replace_durably(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------- file


def save_basis(path: str | Path, basis: Basis) -> Path:
    """Write the basis to `path` atomically (a temporary sibling, fsync, rename)."""
    from fastqmd.data.store import atomic_write as _atomic_h5

    path = Path(path)

    def fill(f) -> None:
        f.attrs["format"], f.attrs["version"] = FORMAT, VERSION
        f.attrs["rank"], f.attrs["energy_fraction"] = basis.rank, basis.energy_fraction
        f.attrs["epsilon"], f.attrs["criterion"] = basis.epsilon, basis.criterion
        f.attrs["n_snapshots"], f.attrs["source"] = basis.n_snapshots, basis.source
        f.attrs["grid"] = json.dumps(asdict(basis.grid))
        f.attrs["model"] = json.dumps(asdict(basis.model))
        f.attrs["recipe"] = json.dumps(basis.recipe.to_dict())
        f.attrs["extras"] = json.dumps(basis.extras)
        f.create_dataset("vectors", data=np.asarray(basis.vectors, np.float64))
        f.create_dataset("singular_values", data=np.asarray(basis.singular_values, np.float64))

    _atomic_h5(path, fill)
    return path


def load_basis(path: str | Path) -> Basis:
    """Read a basis file; a missing, corrupt or foreign file is an InputError with one line."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(f"basis file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise InputError(f"{path} is not a fastqmd MOR basis file")
            if int(f.attrs["version"]) > VERSION:
                raise InputError(f"{path}: basis format version {int(f.attrs['version'])} is newer than this fastqmd")
            g = json.loads(f.attrs["grid"])
            grid = GridSpec(tuple(g["shape"]), tuple(g["spacing"]), tuple(g["origin"]), g["fd_order"], g["periodic"])
            m = json.loads(f.attrs["model"])
            model = ModelSpec(**{**m, "symbols": tuple(m["symbols"])})
            recipe = FrameRecipe.from_dict(json.loads(f.attrs["recipe"]))
            V = np.asarray(f["vectors"][()], np.float64)
            sigma = np.asarray(f["singular_values"][()], np.float64)
            basis = Basis(V, sigma, int(f.attrs["rank"]), float(f.attrs["energy_fraction"]), float(f.attrs["epsilon"]),
                          str(f.attrs["criterion"]), grid, model, recipe, str(path), json.loads(f.attrs["extras"]))
    except InputError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot read the basis file {path} (corrupt or not a basis: {reason})") from None
    if V.ndim != 2 or V.shape != (basis.rank, grid.size):
        raise InputError(f"{path}: vectors have shape {V.shape}, expected ({basis.rank}, {grid.size}) for grid {grid.shape}")
    err = np.abs(V @ V.T - np.eye(len(V))).max() if len(V) else 0.0
    if not np.isfinite(err) or err > ORTHONORMAL_TOL:
        raise InputError(f"{path}: basis vectors are not orthonormal (max |UUᵀ − 1| = {err:.1e}); the file is damaged")
    return basis
