"""Uniform orthorhombic real-space grid.

Grid points r_ijk = origin + (i h_x, j h_y, k h_z), i = 0..n_x−1 (atomic units, Bohr). Periodic grids repeat with
period L = n h; isolated grids assume fields vanish outside the box (zero Dirichlet padding in the stencils,
free-space Poisson). The study's default is 64³ points on [−6, 6)³ Bohr (h = 0.1875, O on a grid point).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Grid:
    """Uniform grid: `shape` points with spacing `spacing` (Bohr) starting at `origin`; FD order 2/4/6/8."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    fd_order: int = 4
    periodic: bool = True

    def __post_init__(self) -> None:
        if self.fd_order not in (2, 4, 6, 8):
            raise ValueError(f"fd_order must be 2, 4, 6 or 8, got {self.fd_order}")
        if len(self.shape) != 3 or min(self.shape) < self.fd_order:
            raise ValueError(f"grid shape {self.shape} too small for FD order {self.fd_order}")

    @classmethod
    def cube(cls, length: float = 12.0, n: int = 64, fd_order: int = 4, periodic: bool = True) -> Grid:
        """Cube [−L/2, L/2)³ with n points per side, h = L/n (the study: L = 12, n = 64)."""
        h = length / n
        return cls((n, n, n), (h, h, h), (-length / 2,) * 3, fd_order, periodic)

    @classmethod
    def box(cls, lengths, h: float, fd_order: int = 4, periodic: bool = True) -> Grid:
        """Box [−L/2, L/2) per axis with spacing closest to h (n = round(L/h))."""
        n = tuple(max(int(round(L / h)), fd_order) for L in lengths)
        sp = tuple(L / m for L, m in zip(lengths, n))
        return cls(n, sp, tuple(-L / 2 for L in lengths), fd_order, periodic)

    @property
    def lengths(self) -> np.ndarray:
        return np.array(self.shape) * np.array(self.spacing)

    @property
    def dV(self) -> float:
        return float(np.prod(self.spacing))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @cached_property
    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """1-D coordinates along x, y, z (Bohr)."""
        return tuple(o + h * np.arange(n) for o, h, n in zip(self.origin, self.spacing, self.shape))

    @cached_property
    def wavevectors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """1-D angular wavevectors 2π·fftfreq(n, h) per axis (Bohr⁻¹)."""
        return tuple(2 * np.pi * np.fft.fftfreq(n, h) for n, h in zip(self.shape, self.spacing))

    def displacements(self, R: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-axis 1-D displacements r − R (minimum image if periodic); broadcast to the grid with [:,None,None]."""
        out = []
        for a, (x, L) in enumerate(zip(self.axes, self.lengths)):
            d = x - R[a]
            if self.periodic:
                d = d - L * np.round(d / L)
            out.append(d)
        return tuple(out)

    def integrate(self, f: np.ndarray) -> float:
        """∫ f d³r ≈ Σ f dV over the last three axes (trapezoid rule, exact for periodic band-limited f)."""
        return float(f.sum() * self.dV)
