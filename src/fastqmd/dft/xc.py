"""Exchange–correlation energy and potential (spin-unpolarized) through PySCF's libxc bridge.

E_xc = ∫ n ε_xc(n, |∇n|²) d³r;  LDA: v_xc = ∂(n ε)/∂n;
GGA: v_xc = ∂(nε)/∂n − 2 ∇·(∂(nε)/∂σ ∇n), σ = |∇n|², with ∇ the grid's central FD stencil; because the FD
divergence is the exact negative adjoint of the FD gradient, v_xc is the exact derivative of the grid-sampled E_xc.
Functionals: 'teter93' (libxc LDA_XC_TETER93, the Padé form GTH-Padé was fitted with), 'pz81' (Slater +
Perdew–Zunger 1981), 'pbe' (Perdew–Burke–Ernzerhof 1996).
"""

from __future__ import annotations

import numpy as np

from fastqmd.dft.grid import Grid
from fastqmd.dft.stencils import divergence, gradient

LIBXC_CODES = {"teter93": "LDA_XC_TETER93", "pz81": "LDA_X,LDA_C_PZ", "lda": "LDA_XC_TETER93", "pbe": "GGA_X_PBE,GGA_C_PBE"}
DENSITY_FLOOR = 1e-14


def is_gga(functional: str) -> bool:
    return functional.lower() == "pbe"


def xc_energy_potential(n: np.ndarray, grid: Grid, functional: str = "teter93") -> tuple[float, np.ndarray]:
    """(E_xc [Ha], v_xc [Ha] on the grid) for the electron density n [n_x, n_y, n_z] (Bohr⁻³)."""
    from pyscf.dft import libxc

    code = LIBXC_CODES[functional.lower()]
    rho = np.maximum(n, DENSITY_FLOOR).ravel()
    if not is_gga(functional):
        exc, vxc = libxc.eval_xc(code, rho, spin=0, deriv=1)[:2]
        return float(np.sum(exc * rho) * grid.dV), vxc[0].reshape(grid.shape)
    grad = gradient(np.maximum(n, DENSITY_FLOOR), grid)  # [3, nx, ny, nz]
    rho4 = np.concatenate([rho[None], grad.reshape(3, -1)])
    exc, vxc = libxc.eval_xc(code, rho4, spin=0, deriv=1)[:2]
    vrho, vsigma = vxc[0].reshape(grid.shape), vxc[1].reshape(grid.shape)
    v = vrho - 2 * divergence(vsigma * grad, grid)
    return float(np.sum(exc * rho) * grid.dV), v
