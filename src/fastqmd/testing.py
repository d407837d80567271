"""Reusable physics checks for any fastqmd Potential (or ASE Calculator) and any MD run.

- `finite_difference_forces` / `force_error`: F = −∂E/∂R against central differences
  F_ia ≈ −[E(R + h e_ia) − E(R − h e_ia)] / 2h (error O(h²)).
- `energy_drift`: maximum deviation and least-squares slope of a conserved quantity.
- `canonical_temperature_check`: mean and spread of T against the canonical ensemble, in standard errors:
  ⟨T⟩ = T₀ and std(T) = T₀ √(2/g) for g kinetic degrees of freedom (E_kin is χ²_g-distributed); standard errors
  from block averages, so correlated MD samples are judged fairly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fastqmd.potential import Potential, System, calculator_to_potential, system_from_atoms


def _as_potential(p) -> Potential:
    return p if hasattr(p, "compute") else calculator_to_potential(p)


def finite_difference_forces(potential, system: System, h: float = 1e-4, atoms: list[int] | None = None) -> np.ndarray:
    """[N, 3] central-difference forces (eV/Å) with step h (Å); rows not in `atoms` are NaN."""
    pot = _as_potential(potential)
    pos = system.positions.detach().clone()
    out = np.full(tuple(pos.shape), np.nan)
    for i in atoms if atoms is not None else range(pos.shape[0]):
        for a in range(3):
            e = []
            for sgn in (1.0, -1.0):
                p = pos.clone()
                p[i, a] += sgn * h
                e.append(float(pot.compute(system.with_positions(p)).energy))
            out[i, a] = -(e[0] - e[1]) / (2 * h)
    return out


def force_error(potential, system: System, h: float = 1e-4, atoms: list[int] | None = None) -> float:
    """max |F_analytic − F_fd| (eV/Å) over the checked atoms."""
    pot = _as_potential(potential)
    f = pot.compute(system).forces.detach().cpu().numpy()
    fd = finite_difference_forces(pot, system, h, atoms)
    rows = ~np.isnan(fd[:, 0])
    return float(np.abs(f[rows] - fd[rows]).max())


@dataclass(frozen=True)
class Drift:
    max_abs_dev_eV: float  # max |H(t) − H(0)|
    slope_eV_per_fs: float  # least-squares dH/dt
    std_eV: float


def finite_difference_stress_xx(potential, atoms, h: float = 1e-5) -> float:
    """σ_xx = (1/V) ∂E/∂ε_xx (eV/Å³) by central differences of the homogeneous strain cell → cell·diag(1 ± h, 1, 1)."""
    E = []
    for s in (h, -h):
        a = atoms.copy()
        a.set_cell(atoms.cell.array @ np.diag([1 + s, 1, 1]), scale_atoms=True)
        E.append(float(_as_potential(potential).compute(system_from_atoms(a)).energy))
    return (E[0] - E[1]) / (2 * h) / atoms.get_volume()


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


def make_water_dataset(path, n: int = 8, seed: int = 0, rattle: float = 0.06, source: str = "test-water"):
    """A small dataset of n water molecules (Gaussian rattle σ = `rattle` Å) labelled with tblite GFN2-xTB at
    300 K, written with the fastqmd store (no Dask: tests and benchmarks that need data in ~0.1 s/sample)."""
    from ase import Atoms

    from fastqmd.data.store import Header, atomic_write, write_header, write_sample
    from fastqmd.reference.xtb import TBLiteEngine

    eng = TBLiteEngine(method="GFN2-xTB", electronic_temperature_K=300.0)
    rng = np.random.default_rng(seed)
    samples = [eng.compute(Atoms("OHH", positions=WATER_A + rattle * rng.normal(size=(3, 3)))) for _ in range(n)]

    def fill(f):
        write_header(f, Header(eng.name, eng.settings))
        for i, s in enumerate(samples):
            write_sample(f, i, s, source, 0.9)

    atomic_write(path, fill)
    return path
