"""Fermi–Dirac occupations and the Mermin entropy term (spin-degenerate states, o_n = 2 f_n).

f_n = 1/(1 + e^{(ε_n − μ)/kT}), μ by bisection so that Σ o_n = N_e;
−TS = 2 kT Σ_n [f_n ln f_n + (1 − f_n) ln(1 − f_n)] (≤ 0); the Mermin free energy is F = E − TS.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit


def fermi_dirac(eps: np.ndarray, n_electrons: float, kT: float) -> tuple[np.ndarray, float, float]:
    """(occupations o_n ∈ [0, 2], μ, −TS) for eigenvalues eps (Ha) and temperature kT (Ha, > 0)."""
    if 2 * len(eps) < n_electrons:
        raise ValueError(f"{len(eps)} states cannot hold {n_electrons} electrons")
    lo, hi = eps.min() - 50 * kT - 1.0, eps.max() + 50 * kT + 1.0
    for _ in range(200):
        mu = 0.5 * (lo + hi)
        if 2 * expit(-(eps - mu) / kT).sum() > n_electrons:
            hi = mu
        else:
            lo = mu
        if hi - lo < 1e-15:
            break
    f = expit(-(eps - mu) / kT)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where((f > 0) & (f < 1), f * np.log(f) + (1 - f) * np.log1p(-f), 0.0)
    return 2 * f, float(mu), float(2 * kT * s.sum())
