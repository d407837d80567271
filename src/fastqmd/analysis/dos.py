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


HIGH_WINDOW_EV = 20.0  # default window ends this far above the median level


def default_window(eig: list[np.ndarray], sigma_eV: float) -> tuple[float, float]:
    """(min ε − 5σ, min(max ε, median ε + 20 eV) + 5σ): every occupied and low unoccupied level, but not the
    few levels at hundreds to thousands of eV that a nearly singular overlap produces (GFN1 Cu: up to 3 keV),
    which would stretch the grid until σ is not resolved."""
    allv = np.concatenate([np.ravel(e) for e in eig])
    return float(allv.min() - 5 * sigma_eV), float(min(allv.max(), np.median(allv) + HIGH_WINDOW_EV) + 5 * sigma_eV)


def dos(frames, sigma_eV: float = 0.1, n_points: int | None = None, window=None) -> tuple[np.ndarray, np.ndarray]:
    """(E [n] eV, D(E)) over the frames' `eigenvalues`; `window` (E_min, E_max) or `default_window`; n_points
    default: a spacing of σ/4 (at least 600, at most 20 000 points)."""
    eig = [np.asarray(f.info["eigenvalues"], dtype=float) for f in frames]
    lo, hi = window if window is not None else default_window(eig, sigma_eV)
    n = n_points or int(np.clip(np.ceil((hi - lo) / (0.25 * sigma_eV)) + 1, 600, 20000))
    e = np.linspace(lo, hi, n)
    return e, gaussian_dos(eig, e, sigma_eV)
