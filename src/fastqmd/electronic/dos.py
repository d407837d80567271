"""Density of states and band structures from eigenvalues (analysis side; numpy in, numpy out).

    g(E) = g_s Σ_k w_k Σ_n  exp(−(E − ε_nk)² / 2σ²) / (σ √(2π))        [states per energy unit per cell]

with spin factor g_s (2 for closed shells), so that ∫ g(E) dE = g_s × (number of bands). Energies in eV.
"""

from __future__ import annotations

import numpy as np
import torch

from fastqmd.electronic.free_energy import cholesky_overlap, hermitize, orthonormalize
from fastqmd.electronic.kspace import bloch_sum


def gaussian_dos(
    eigenvalues: np.ndarray,
    energies: np.ndarray,
    sigma: float,
    kweights: np.ndarray | None = None,
    spin_factor: float = 2.0,
) -> np.ndarray:
    """Gaussian-broadened DOS g(E) on `energies` [n_E] from eigenvalues [nk, nb] (or [nb]) and weights [nk].

    Weights default to uniform. Evaluated in chunks of k-points so memory stays O(n_E · nb).
    """
    eps = np.atleast_2d(np.asarray(eigenvalues, dtype=float))
    E = np.asarray(energies, dtype=float)
    w = np.full(eps.shape[0], 1.0 / eps.shape[0]) if kweights is None else np.asarray(kweights, dtype=float)
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    norm = spin_factor / (sigma * np.sqrt(2 * np.pi))
    g = np.zeros_like(E)
    for wk, ek in zip(w, eps):
        g += wk * np.exp(-0.5 * ((E[:, None] - ek[None, :]) / sigma) ** 2).sum(axis=1)
    return norm * g


def integrated_dos(
    eigenvalues: np.ndarray, energies: np.ndarray, sigma: float, kweights: np.ndarray | None = None,
    spin_factor: float = 2.0,
) -> np.ndarray:
    """N(E) = ∫_{-∞}^E g(E') dE' in closed form (error functions): electrons below E at smearing σ."""
    from scipy.special import erf

    eps = np.atleast_2d(np.asarray(eigenvalues, dtype=float))
    E = np.asarray(energies, dtype=float)
    w = np.full(eps.shape[0], 1.0 / eps.shape[0]) if kweights is None else np.asarray(kweights, dtype=float)
    N = np.zeros_like(E)
    for wk, ek in zip(w, eps):
        N += wk * 0.5 * (1 + erf((E[:, None] - ek[None, :]) / (sigma * np.sqrt(2)))).sum(axis=1)
    return spin_factor * N


def band_structure(HR: torch.Tensor, shifts: torch.Tensor, kpts: torch.Tensor, SR: torch.Tensor | None = None) -> np.ndarray:
    """Eigenvalues [nk, nao] (ascending) of H(k) C = S(k) C ε along `kpts` (fractional) from real-space blocks.

    HR, SR: [n_shifts, nao, nao] on the same `shifts` [n_shifts, 3]; SR None means orthonormal orbitals.
    Pair with ASE's `atoms.cell.bandpath(...)` for the path (its `kpts` are fractional).
    """
    with torch.no_grad():
        Hk = hermitize(bloch_sum(HR, shifts, kpts))
        L = None if SR is None else cholesky_overlap(hermitize(bloch_sum(SR, shifts, kpts)).to(Hk.dtype))
        return torch.linalg.eigvalsh(orthonormalize(Hk, L)).cpu().numpy()
