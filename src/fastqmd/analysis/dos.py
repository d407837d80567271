"""Electronic density of states from per-frame eigenvalues, Gaussian-broadened.

D(E) = (1/n_frames) Σ_frames Σ_n (2πσ²)^{−½} exp(−(E − ε_n)²/2σ²)  (states per eV, no spin factor).
"""

from __future__ import annotations

import numpy as np


def has_eigenvalues(frames) -> bool:
    return all("eigenvalues" in f.info for f in frames)


def gaussian_dos(eigenvalues: list[np.ndarray], energies: np.ndarray, sigma_eV: float = 0.1) -> np.ndarray:
    """[n_E] D(E) averaged over the list of eigenvalue arrays (eV)."""
    out = np.zeros_like(energies, dtype=float)
    for eps in eigenvalues:
        x = (energies[:, None] - np.ravel(eps)[None, :]) / sigma_eV
        out += np.exp(-0.5 * x**2).sum(axis=1) / (sigma_eV * np.sqrt(2 * np.pi))
    return out / max(len(eigenvalues), 1)


def dos(frames, sigma_eV: float = 0.1, n_points: int = 600, window=None) -> tuple[np.ndarray, np.ndarray]:
    """(E [n_points] eV, D(E)) over the frames' `eigenvalues`; `window` (E_min, E_max) or ±5σ of the data."""
    eig = [np.asarray(f.info["eigenvalues"], dtype=float) for f in frames]
    lo, hi = window if window is not None else (min(e.min() for e in eig) - 5 * sigma_eV,
                                                 max(e.max() for e in eig) + 5 * sigma_eV)
    e = np.linspace(lo, hi, n_points)
    return e, gaussian_dos(eig, e, sigma_eV)
