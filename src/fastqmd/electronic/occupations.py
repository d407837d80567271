"""Fermi–Dirac occupations, the Fermi level fixed by the electron count, and the electronic entropy.

All functions take eigenvalues ε [nk, nb] and k-point weights w [nk] (Σ w = 1) as torch tensors; energies (ε, μ,
kT) share one unit (eV at fastqmd's boundaries). Occupations f include the spin factor g (g = 2 for closed
shells, 1 for spin-polarized channels), so that the electron count is N_e = Σ_k w_k Σ_n f_nk and 0 ≤ f ≤ g.

    f(ε) = g / (1 + exp((ε − μ)/kT)),      S_el = −g Σ_k w_k Σ_n [x ln x + (1 − x) ln(1 − x)],  x = f/g.

kT = 0 means integer (aufbau) filling: states are filled in order of energy, and a set of degenerate states at
the Fermi level shares the remaining electrons equally (the kT → 0⁺ limit of Fermi–Dirac).
These functions are not differentiated through: the free energy (free_energy.py) carries the exact
derivatives of μ analytically.
"""

from __future__ import annotations

import torch
from torch import Tensor

# width, in units of kT, beyond the spectrum where the bisection bracket for μ starts
_BRACKET_KT = 50.0
# states closer than this (relative to the spectral width) count as degenerate in aufbau filling
_AUFBAU_DEGENERACY_TOL = 1e-9


def fermi_dirac(eps: Tensor, mu: Tensor | float, kT: float, spin_factor: float = 2.0) -> Tensor:
    """Occupations f = g σ(−(ε − μ)/kT) (g the spin factor); kT must be > 0. Same shape as ε."""
    return spin_factor * torch.sigmoid(-(eps - mu) / kT)


def fermi_dirac_derivative(eps: Tensor, mu: Tensor | float, kT: float, spin_factor: float = 2.0) -> Tensor:
    """∂f/∂ε = −f (1 − f/g)/kT = −g / (4 kT cosh²((ε − μ)/2kT)), ≤ 0, computed without cancellation."""
    x = torch.sigmoid(-(eps - mu) / kT)
    return -spin_factor * x * (1.0 - x) / kT


def electron_count(f: Tensor, kweights: Tensor) -> Tensor:
    """N = Σ_k w_k Σ_n f_nk (f already includes the spin factor). f: [nk, nb], w: [nk]."""
    return (kweights[:, None] * f).sum()


def fermi_entropy(eps: Tensor, mu: Tensor | float, kT: float, kweights: Tensor, spin_factor: float = 2.0) -> Tensor:
    """Dimensionless electronic entropy S_el = −g Σ_k w_k Σ_n [x ln x + (1−x) ln(1−x)], x = σ(−z), z = (ε−μ)/kT.

    Written as s(z) = x·softplus(z) + (1 − x)·softplus(−z), which is exact and finite for any z
    (−ln x = softplus(z), −ln(1−x) = softplus(−z)). kT must be > 0 (S_el = 0 at kT = 0).
    """
    z = (eps - mu) / kT
    x = torch.sigmoid(-z)
    s = x * torch.nn.functional.softplus(z) + (1.0 - x) * torch.nn.functional.softplus(-z)
    return spin_factor * (kweights[:, None] * s).sum()


def fermi_level(
    eps: Tensor,
    kweights: Tensor,
    n_electrons: float,
    kT: float,
    spin_factor: float = 2.0,
    tol: float = 1e-13,
    max_iter: int = 500,
) -> Tensor:
    """μ such that Σ_k w_k Σ_n f(ε_nk; μ) = N_e, by Newton steps safeguarded by bisection.

    N(μ) is increasing, so a bracket [lo, hi] around the spectrum (± 50 kT) always holds the root; a Newton
    step is taken when it stays inside the bracket, otherwise the bracket is halved. Converged when
    |N(μ) − N_e| ≤ tol·max(1, N_e). For kT = 0 the aufbau Fermi level is returned (see `aufbau_occupations`).
    Returns a 0-d tensor of ε's dtype. Raises ValueError if N_e is outside [0, g·nb].
    """
    eps = eps.detach()
    kweights = kweights.detach().to(eps.dtype)
    _check_electron_count(eps, kweights, n_electrons, spin_factor)
    if kT <= 0.0:
        return aufbau_occupations(eps, kweights, n_electrons, spin_factor)[1]
    lo = eps.min() - _BRACKET_KT * kT - 1.0
    hi = eps.max() + _BRACKET_KT * kT + 1.0
    mu = 0.5 * (lo + hi)
    target = tol * max(1.0, abs(n_electrons))
    for _ in range(max_iter):
        residual = electron_count(fermi_dirac(eps, mu, kT, spin_factor), kweights) - n_electrons
        if abs(float(residual)) <= target:
            return mu
        if residual > 0:
            hi = mu
        else:
            lo = mu
        slope = -electron_count(fermi_dirac_derivative(eps, mu, kT, spin_factor), kweights)  # dN/dμ ≥ 0
        step_ok = float(slope) > 0.0
        if step_ok:
            newton = mu - residual / slope
            step_ok = bool(lo < newton < hi)
        mu = newton if step_ok else 0.5 * (lo + hi)
        if float(hi - lo) <= 4 * torch.finfo(eps.dtype).eps * max(1.0, float(abs(mu))):
            return mu
    raise RuntimeError(f"Fermi level not converged in {max_iter} iterations (residual {float(residual):.3e})")


def aufbau_occupations(
    eps: Tensor, kweights: Tensor, n_electrons: float, spin_factor: float = 2.0
) -> tuple[Tensor, Tensor]:
    """kT = 0 filling: occupations f [nk, nb] and the Fermi level μ.

    States are filled with g electrons (times the k weight) in order of increasing energy. The degenerate set
    (within 1e-9 of the spectral width) containing the last electron shares it equally; this is the kT → 0⁺
    limit of Fermi–Dirac. μ is the midpoint of the gap when the last filled set is complete, otherwise the
    energy of the partially filled set.
    """
    eps = eps.detach()
    kweights = kweights.detach().to(eps.dtype)
    _check_electron_count(eps, kweights, n_electrons, spin_factor)
    flat = eps.reshape(-1)
    cap = (spin_factor * kweights[:, None].expand_as(eps)).reshape(-1)  # electrons each state can hold
    order = torch.argsort(flat)
    e_sorted, cap_sorted = flat[order], cap[order]
    width = float(e_sorted[-1] - e_sorted[0]) if e_sorted.numel() > 1 else 1.0
    tol = _AUFBAU_DEGENERACY_TOL * max(width, 1.0)
    # group degenerate states, fill group by group
    f_sorted = torch.zeros_like(e_sorted)
    left = float(n_electrons)
    start, n = 0, e_sorted.numel()
    mu = e_sorted[-1]
    while start < n:
        stop = start + 1
        while stop < n and float(e_sorted[stop] - e_sorted[start]) <= tol:
            stop += 1
        group_cap = float(cap_sorted[start:stop].sum())
        if left >= group_cap * (1.0 - 1e-12):
            f_sorted[start:stop] = spin_factor
            left -= group_cap
            if left <= 1e-12 * max(1.0, n_electrons):
                mu = 0.5 * (e_sorted[stop - 1] + e_sorted[stop]) if stop < n else e_sorted[-1]
                break
        else:
            f_sorted[start:stop] = spin_factor * left / group_cap
            mu = e_sorted[start:stop].mean()
            break
        start = stop
    if n_electrons == 0:
        mu = e_sorted[0]
    f = torch.empty_like(flat)
    f[order] = f_sorted
    return f.reshape(eps.shape), mu


def occupations(
    eps: Tensor, kweights: Tensor, n_electrons: float, kT: float, spin_factor: float = 2.0
) -> tuple[Tensor, Tensor]:
    """Occupations f [nk, nb] (spin factor included) and μ for N_e electrons: Fermi–Dirac if kT > 0, else aufbau."""
    if kT <= 0.0:
        return aufbau_occupations(eps, kweights, n_electrons, spin_factor)
    mu = fermi_level(eps, kweights, n_electrons, kT, spin_factor)
    return fermi_dirac(eps.detach(), mu, kT, spin_factor), mu


def _check_electron_count(eps: Tensor, kweights: Tensor, n_electrons: float, spin_factor: float) -> None:
    if abs(float(kweights.sum()) - 1.0) > 1e-10:
        raise ValueError(f"k-point weights must sum to 1, got {float(kweights.sum())}")
    n_max = spin_factor * eps.shape[-1]
    if not 0.0 <= n_electrons <= n_max * (1 + 1e-12):
        raise ValueError(f"n_electrons = {n_electrons} outside [0, {n_max}] for {eps.shape[-1]} bands × spin {spin_factor}")
