"""Central finite-difference stencils on the grid (orders 2, 4, 6, 8).

Second derivative: f''(x) ≈ Σ_k c_k f(x + k h) / h², c_{−k} = c_k (Fornberg 1988); first derivative
f'(x) ≈ Σ_k d_k f(x + k h) / h, d_{−k} = −d_k. Fields have shape [..., n_x, n_y, n_z]; the stencil is applied by
padding once (wrap for periodic grids, zeros for isolated grids) and summing shifted slices — no np.roll copies.
The Fourier symbol of the FD Laplacian, −Σ_axes (c_0 + 2 Σ_k c_k cos(k q h))/h², is what the FFT kinetic
preconditioner and the plane-wave unit test use.
"""

from __future__ import annotations

import numpy as np

from fastqmd.dft.grid import Grid

# c_0, c_1, ..., c_{p/2} for d²/dx² (times 1/h²)
SECOND_DERIVATIVE = {
    2: (-2.0, 1.0),
    4: (-5 / 2, 4 / 3, -1 / 12),
    6: (-49 / 18, 3 / 2, -3 / 20, 1 / 90),
    8: (-205 / 72, 8 / 5, -1 / 5, 8 / 315, -1 / 560),
}
# d_1, ..., d_{p/2} for d/dx (times 1/h)
FIRST_DERIVATIVE = {
    2: (1 / 2,),
    4: (2 / 3, -1 / 12),
    6: (3 / 4, -3 / 20, 1 / 60),
    8: (4 / 5, -1 / 5, 4 / 105, -1 / 280),
}


def _pad(f: np.ndarray, p: int, periodic: bool) -> np.ndarray:
    width = [(0, 0)] * (f.ndim - 3) + [(p, p)] * 3
    return np.pad(f, width, mode="wrap" if periodic else "constant")


def laplacian(f: np.ndarray, grid: Grid) -> np.ndarray:
    """∇²f by the order-p central stencil, f: [..., n_x, n_y, n_z] → same shape."""
    c = SECOND_DERIVATIVE[grid.fd_order]
    p = len(c) - 1
    g = _pad(f, p, grid.periodic)
    nx, ny, nz = grid.shape
    core = g[..., p : p + nx, p : p + ny, p : p + nz]
    out = core * (c[0] * sum(1.0 / h**2 for h in grid.spacing))
    for k in range(1, p + 1):
        cx, cy, cz = (c[k] / h**2 for h in grid.spacing)
        out += cx * (g[..., p - k : p - k + nx, p : p + ny, p : p + nz] + g[..., p + k : p + k + nx, p : p + ny, p : p + nz])
        out += cy * (g[..., p : p + nx, p - k : p - k + ny, p : p + nz] + g[..., p : p + nx, p + k : p + k + ny, p : p + nz])
        out += cz * (g[..., p : p + nx, p : p + ny, p - k : p - k + nz] + g[..., p : p + nx, p : p + ny, p + k : p + k + nz])
    return out


def derivative(f: np.ndarray, grid: Grid, axis: int) -> np.ndarray:
    """∂f/∂x_axis by the order-p central stencil, f: [n_x, n_y, n_z] → same shape (antisymmetric operator)."""
    d = FIRST_DERIVATIVE[grid.fd_order]
    p = len(d)
    g = _pad(f, p, grid.periodic)
    core = [slice(p, p + n) for n in grid.shape]
    out = np.zeros(f.shape)
    for k in range(1, p + 1):
        hi, lo = list(core), list(core)
        hi[axis] = slice(p + k, p + k + grid.shape[axis])
        lo[axis] = slice(p - k, p - k + grid.shape[axis])
        out += d[k - 1] / grid.spacing[axis] * (g[tuple(hi)] - g[tuple(lo)])
    return out


def gradient(f: np.ndarray, grid: Grid) -> np.ndarray:
    """∇f, f: [n_x, n_y, n_z] → [3, n_x, n_y, n_z]."""
    return np.array([derivative(f, grid, a) for a in range(3)])


def divergence(v: np.ndarray, grid: Grid) -> np.ndarray:
    """∇·v with the same stencil, v: [3, n_x, n_y, n_z]; equals −gradientᵀ (exact adjoint) on periodic grids."""
    return sum(derivative(v[a], grid, a) for a in range(3))


def laplacian_symbol(grid: Grid) -> np.ndarray:
    """Eigenvalues of the periodic FD Laplacian on the FFT grid, [n_x, n_y, n_z] (≤ 0; → −q² as h → 0)."""
    c = SECOND_DERIVATIVE[grid.fd_order]
    parts = []
    for q, h in zip(grid.wavevectors, grid.spacing):
        parts.append((c[0] + 2 * sum(c[k] * np.cos(k * q * h) for k in range(1, len(c)))) / h**2)
    return parts[0][:, None, None] + parts[1][None, :, None] + parts[2][None, None, :]
