"""Reusable physics checks for any fastqmd Potential (or ASE Calculator), any model kind and any MD run.

- `central_differences` / `check_gradient`: an analytic gradient g = ∂f/∂x of a scalar f against central
  differences g_i ≈ [f(x + h e_i) − f(x − h e_i)] / 2h (error h²/6 |∂³f|), elementwise
  |g_i − g_i^fd| ≤ atol + rtol |g_i^fd|; numpy or torch float64 arrays of any shape.
  `points=4` uses the fourth-order stencil; `directional_difference` is the same along one direction v, for
  scalar or tensor-valued f (Hessian-vector products).
- `finite_difference_forces` / `force_error`: F = −∂E/∂R of a Potential, built on `central_differences`.
- `finite_difference_stress_xx`: σ_xx = (1/V) ∂E/∂ε_xx (ASE sign convention) by central differences.
- `assert_equivariant`: f(Q x + t, P) = ρ_out(Q, t, P) f(x) for a random rotation Q (optionally improper),
  translation t and permutation P of the atoms: invariant scalars, rotated vectors (forces), rotated rank-2
  tensors (stress, Q σ Qᵀ), or any user-supplied output transform (e.g. orbital blocks D H Dᵀ).
- `energy_drift`: maximum deviation and least-squares slope of a conserved quantity.
- `canonical_temperature_check`: mean and spread of T against the canonical ensemble, in standard errors:
  ⟨T⟩ = T₀ and std(T) = T₀ √(2/g) for g kinetic degrees of freedom (E_kin is χ²_g-distributed); standard errors
  from block averages, so correlated MD samples are judged fairly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fastqmd.potential import Potential, System, calculator_to_potential, system_from_atoms


def _as_potential(p) -> Potential:
    return p if hasattr(p, "compute") else calculator_to_potential(p)


def _numpy(x) -> np.ndarray:
    """float64 (complex128 for complex input) numpy copy of a tensor, array or scalar."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    return x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)


def central_differences(f: Callable, x, h: float = 1e-4, indices: Sequence | None = None,
                        points: int = 2) -> np.ndarray:
    """[x.shape] central differences of a scalar f; entries not in `indices` (tuples into x, default all) are
    NaN. x: numpy or torch array (f receives the same type). points=2: [f(x + h) − f(x − h)] / 2h (error
    h²/6 |f‴|); points=4: [8(f(x + h) − f(x − h)) − (f(x + 2h) − f(x − 2h))] / 12h (error h⁴/30 |f⁽⁵⁾|,
    for rough surfaces such as egg-box-limited grid energies)."""
    if points not in (2, 4):
        raise ValueError(f"points must be 2 or 4, got {points}")
    x0 = x.detach().clone() if isinstance(x, torch.Tensor) else np.array(x, dtype=np.float64)
    out = np.full(tuple(x0.shape), np.nan)
    steps = (1.0, -1.0) if points == 2 else (1.0, -1.0, 2.0, -2.0)
    for idx in indices if indices is not None else np.ndindex(*x0.shape):
        idx = tuple(int(i) for i in np.atleast_1d(idx))
        fs = []
        for sgn in steps:
            xp = x0.clone() if isinstance(x0, torch.Tensor) else x0.copy()
            xp[idx] += sgn * h
            fs.append(float(f(xp)))
        if points == 2:
            out[idx] = (fs[0] - fs[1]) / (2 * h)
        else:
            out[idx] = (8 * (fs[0] - fs[1]) - (fs[2] - fs[3])) / (12 * h)
    return out


def directional_difference(f: Callable, x, direction, h: float = 1e-5):
    """[f(x + h v) − f(x − h v)] / 2h ≈ Df(x)[v] (error h²/6 |D³f[v, v, v]|), for f returning a scalar or an
    array/tensor of any shape (e.g. a gradient: then this is a Hessian-vector product); v may be complex."""
    return (f(x + h * direction) - f(x - h * direction)) / (2 * h)


def check_gradient(f: Callable, x, grad, *, h: float = 1e-4, atol: float = 1e-6, rtol: float = 0.0,
                   indices: Sequence | None = None, points: int = 2, label: str = "") -> float:
    """Assert that `grad` (same shape as x) is ∂f/∂x at x: |grad_i − fd_i| ≤ atol + rtol |fd_i| for every
    checked element (all, or `indices`), fd by `central_differences` with step h and 2 or 4 `points`. Raises
    AssertionError naming the worst element (prefixed by `label`); returns max |grad − fd| over those checked."""
    fd = central_differences(f, x, h, indices, points)
    g = _numpy(grad)
    if g.shape != fd.shape:
        raise AssertionError(f"gradient shape {g.shape} != input shape {fd.shape}")
    mask = ~np.isnan(fd)
    err = np.where(mask, np.abs(g - fd), 0.0)
    excess = np.where(mask, err - (atol + rtol * np.abs(fd)), -np.inf)
    worst = np.unravel_index(int(np.argmax(excess)), fd.shape)
    if excess[worst] > 0:
        raise AssertionError(
            f"{label + ': ' if label else ''}gradient check failed at {tuple(int(i) for i in worst)}: analytic {g[worst]:.10g}, "
            f"finite difference {fd[worst]:.10g} (h={h:g}), |diff| {err[worst]:.3g} > "
            f"atol {atol:g} + rtol {rtol:g}·|fd|; max |diff| {err.max():.3g}"
        )
    return float(err.max())


def finite_difference_forces(potential, system: System, h: float = 1e-4, atoms: list[int] | None = None) -> np.ndarray:
    """[N, 3] central-difference forces −∂E/∂R (eV/Å) with step h (Å); rows not in `atoms` are NaN."""
    pot = _as_potential(potential)
    rows = atoms if atoms is not None else range(system.n_atoms)
    fd = central_differences(lambda p: pot.compute(system.with_positions(p)).energy, system.positions,
                             h, [(i, a) for i in rows for a in range(3)])
    return -fd


def force_error(potential, system: System, h: float = 1e-4, atoms: list[int] | None = None) -> float:
    """max |F_analytic − F_fd| (eV/Å) over the checked atoms."""
    pot = _as_potential(potential)
    f = pot.compute(system).forces.detach().cpu().numpy()
    fd = finite_difference_forces(pot, system, h, atoms)
    rows = ~np.isnan(fd[:, 0])
    return float(np.abs(f[rows] - fd[rows]).max())


def finite_difference_stress_xx(potential, atoms, h: float = 1e-5) -> float:
    """σ_xx = (1/V) ∂E/∂ε_xx (eV/Å³) by central differences of the homogeneous strain cell → cell·diag(1 ± h, 1, 1)."""
    pot = _as_potential(potential)

    def energy(eps):  # E at the homogeneous strain ε_xx = eps[0]
        a = atoms.copy()
        a.set_cell(atoms.cell.array @ np.diag([1 + eps[0], 1, 1]), scale_atoms=True)
        return float(pot.compute(system_from_atoms(a)).energy)

    return float(central_differences(energy, np.zeros(1), h)[0]) / atoms.get_volume()


@dataclass(frozen=True)
class Transform:
    """A rigid motion and relabelling of a structure: r → Q r + t for every atom, atom i' = perm[i']'s old index
    (new = old[perm]). Q acts on Cartesian column vectors; rows of a [n, 3] array map as X Qᵀ."""

    Q: np.ndarray  # [3, 3]
    t: np.ndarray  # [3] Å
    perm: np.ndarray  # [N] int

    def vector(self, x):
        """Rows rotated: x Qᵀ (cell vectors, any [..., 3] vector not tied to atoms)."""
        return x @ _like(self.Q.T, x)

    def positions(self, x):
        """Atom positions: (x Qᵀ + t)[perm]."""
        return (x @ _like(self.Q.T, x) + _like(self.t, x))[_index(self.perm, x)]

    def per_atom(self, x):
        """Per-atom labels or invariants: x[perm]."""
        return x[_index(self.perm, x)]

    def forces(self, x):
        """Per-atom vectors: (x Qᵀ)[perm]."""
        return self.vector(x)[_index(self.perm, x)]

    def tensor(self, x):
        """Rank-2 Cartesian tensor (stress): Q x Qᵀ."""
        Q = _like(self.Q, x)
        return Q @ x @ Q.T


def _like(a: np.ndarray, x):
    return torch.as_tensor(a, dtype=x.dtype, device=x.device) if isinstance(x, torch.Tensor) else np.asarray(a)


def _index(perm: np.ndarray, x):
    return torch.as_tensor(perm, device=x.device) if isinstance(x, torch.Tensor) else perm


def random_transform(n_atoms: int, seed: int = 0, *, improper: bool = False, translation: bool = False,
                     permutation: bool = False) -> Transform:
    """A uniformly random rotation (times −1 if `improper`), optional random translation (±5 Å) and
    permutation of n_atoms atoms."""
    from fastqmd.orbitals import random_rotation

    rng = np.random.default_rng(seed + 1)
    Q = random_rotation(seed) * (-1.0 if improper else 1.0)
    t = rng.uniform(-5.0, 5.0, 3) if translation else np.zeros(3)
    perm = rng.permutation(n_atoms) if permutation else np.arange(n_atoms)
    return Transform(Q, t, perm)


_KINDS = {"invariant": lambda T, x: x, "positions": Transform.positions, "vector": Transform.vector,
          "per_atom": Transform.per_atom, "forces": Transform.forces, "tensor": Transform.tensor}


def _apply(kind, T: Transform, x):
    if callable(kind):
        return kind(x, T)
    if kind not in _KINDS:
        raise ValueError(f"unknown kind {kind!r}; one of {sorted(_KINDS)} or a callable (x, transform) -> x'")
    return _KINDS[kind](T, x)


def assert_equivariant(f: Callable, inputs: Sequence, in_kinds: Sequence, out_kinds, *, seed: int = 0,
                       improper: bool = False, translation: bool = False, permutation: bool = False,
                       transform: Transform | None = None, atol: float | Sequence[float] = 1e-9,
                       rtol: float = 0.0) -> float:
    """Assert f(ρ_in(g) x) = ρ_out(g) f(x) for one random g = (rotation Q, translation t, permutation P).

    `inputs`: f's positional arguments (numpy or torch); `in_kinds` / `out_kinds` (one per input / output; a
    single kind when f returns one array) say how each transforms:
      "invariant"  unchanged (energies, charges of a fixed labelling, atomic numbers without permutation)
      "positions"  [N, 3] atom positions: (x Qᵀ + t)[P]     "forces"   [N, 3] per-atom vectors: (x Qᵀ)[P]
      "vector"     [..., 3] rows, e.g. cell vectors: x Qᵀ    "per_atom" [N, ...] labels/invariants: x[P]
      "tensor"     [3, 3] rank-2 tensor, e.g. stress: Q x Qᵀ
      callable     (x, transform) -> transformed x, e.g. lambda H, T: D(T.Q) @ H @ D(T.Q).T for orbital blocks.
    `transform` overrides the random one; `atol` may be one tolerance per output. Raises AssertionError naming
    the first failing output; returns max |error|.
    """
    T = transform or random_transform(_n_atoms(inputs, in_kinds), seed, improper=improper,
                                      translation=translation, permutation=permutation)
    moved = [_apply(k, T, x) for k, x in zip(in_kinds, inputs, strict=True)]
    single = isinstance(out_kinds, str) or callable(out_kinds)
    kinds = [out_kinds] if single else list(out_kinds)
    y, y_moved = f(*inputs), f(*moved)
    y, y_moved = ([y], [y_moved]) if single else (list(y), list(y_moved))
    atols = [atol] * len(kinds) if np.ndim(atol) == 0 else list(atol)
    worst = 0.0
    for i, (k, a, b, tol) in enumerate(zip(kinds, y, y_moved, atols, strict=True)):
        expected, got = _numpy(_apply(k, T, a)), _numpy(b)
        err = np.abs(got - expected)
        bad = err > tol + rtol * np.abs(expected)
        if bad.any():
            j = np.unravel_index(int(np.argmax(np.where(bad, err, -1.0))), err.shape) if err.ndim else ()
            raise AssertionError(f"output {i} ({k if isinstance(k, str) else 'custom'}) not equivariant: "
                                 f"max |f(g·x) − g·f(x)| = {err.max():.3g} at {tuple(int(v) for v in j)} "
                                 f"> atol {tol:g} + rtol {rtol:g}")
        worst = max(worst, float(err.max()) if err.size else 0.0)
    return worst


def _n_atoms(inputs, kinds) -> int:
    for x, k in zip(inputs, kinds, strict=True):
        if k in ("positions", "per_atom", "forces"):
            return int(x.shape[0])
    return 0


def potential_equivariance(potential, system: System, *, seed: int = 0, stress: bool = False, **kw) -> float:
    """`assert_equivariant` for a Potential: E invariant and F, (σ) covariant under a random rotation (and
    translation / permutation: keyword arguments of `assert_equivariant`) of positions and cell together."""
    pot = _as_potential(potential)

    def f(pos, cell, numbers):
        r = pot.compute(System(pos, cell, system.pbc, numbers))
        return (r.energy, r.forces, r.stress) if stress else (r.energy, r.forces)

    out = ("invariant", "forces", "tensor") if stress else ("invariant", "forces")
    return assert_equivariant(f, (system.positions, system.cell, system.numbers), ("positions", "vector", "per_atom"),
                              out, seed=seed, **kw)


@dataclass(frozen=True)
class Drift:
    max_abs_dev_eV: float  # max |H(t) − H(0)|
    slope_eV_per_fs: float  # least-squares dH/dt
    std_eV: float


def energy_drift(conserved: np.ndarray, time_fs: np.ndarray) -> Drift:
    """Deviation and linear drift of a conserved quantity H(t)."""
    c = np.asarray(conserved, dtype=float)
    t = np.asarray(time_fs, dtype=float)
    slope = float(np.polyfit(t, c, 1)[0]) if len(c) > 1 else 0.0
    return Drift(float(np.abs(c - c[0]).max()), slope, float(c.std()))


@dataclass(frozen=True)
class CanonicalCheck:
    mean_K: float
    se_mean_K: float
    std_K: float
    se_std_K: float
    expected_std_K: float
    z_mean: float  # (⟨T⟩ − T₀) / se
    z_std: float  # (std T − T₀√(2/g)) / se


def block_standard_error(x: np.ndarray, n_blocks: int = 20, stat=np.mean) -> float:
    """Standard error of `stat(x)` from `n_blocks` contiguous blocks (blocks ≫ correlation time)."""
    vals = np.array([stat(b) for b in np.array_split(np.asarray(x, dtype=float), n_blocks)])
    return float(vals.std(ddof=1) / np.sqrt(n_blocks))


def canonical_temperature_check(T: np.ndarray, target_K: float, dof: int, n_blocks: int = 20) -> CanonicalCheck:
    """⟨T⟩ and std(T) of an (equilibrated) series against T₀ and T₀√(2/g), with block standard errors."""
    T = np.asarray(T, dtype=float)
    mean, std = float(T.mean()), float(T.std())
    se_m = block_standard_error(T, n_blocks, np.mean)
    se_s = block_standard_error(T, n_blocks, np.std)
    expected = target_K * float(np.sqrt(2.0 / dof))
    return CanonicalCheck(mean, se_m, std, se_s, expected, (mean - target_K) / se_m, (std - expected) / se_s)


def zero_momentum(velocities: torch.Tensor, masses: torch.Tensor) -> float:
    """|Σ m v| (amu·Å/fs)."""
    return float(torch.linalg.norm((masses[:, None] * velocities).sum(0)))


WATER_A = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])  # O, H, H in Å


def make_water_dataset(path, n: int = 8, seed: int = 0, rattle: float = 0.06, source: str = "test-water",
                       engine=None):
    """A small dataset of n water molecules (Gaussian rattle σ = `rattle` Å) labelled with `engine` (default
    tblite GFN2-xTB at 300 K), written with the fastqmd store (no Dask: tests and benchmarks that need data in
    ~0.1 s/sample)."""
    from ase import Atoms

    from fastqmd.data.store import Header, atomic_write, write_header, write_sample
    from fastqmd.reference.xtb import TBLiteEngine

    eng = engine or TBLiteEngine(method="GFN2-xTB", electronic_temperature_K=300.0)
    rng = np.random.default_rng(seed)
    samples = [eng.compute(Atoms("OHH", positions=WATER_A + rattle * rng.normal(size=(3, 3)))) for _ in range(n)]

    def fill(f):
        write_header(f, Header(eng.name, eng.settings))
        for i, s in enumerate(samples):
            write_sample(f, i, s, source, 0.9)

    atomic_write(path, fill)
    return path


def tree_snapshot(root) -> dict[str, bytes | None]:
    """Every path under `root` → its bytes (None for folders, the target for symlinks): compare two snapshots to
    prove a rejected command changed nothing."""
    import os
    from pathlib import Path

    out: dict[str, bytes | None] = {}
    for p in sorted(Path(root).rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = os.readlink(p).encode() if p.is_symlink() else None if p.is_dir() else p.read_bytes()
    return out


def cli_error_line(argv: list[str], code: int, monkeypatch, capsys) -> str:
    """Run `fastqmd ARGV` in-process (pytest's monkeypatch and capsys) and assert the error promise: exit `code`,
    exactly one stderr line starting `error: `, no traceback and no usage box. Returns that line."""
    import sys

    from fastqmd.cli import main

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["fastqmd", *argv])
    try:
        main()
        exit_code = 0
    except SystemExit as exc:
        exit_code = exc.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exit_code == code, err
    assert "Traceback" not in err and "Usage:" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]
