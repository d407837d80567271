"""Fourier filtering of the pseudopotential's radial functions to the grid cutoff (as MGmol does).

A function g(r) Y_lm(r̂) has the radial transform g̃(q) = ∫ g(r) j_l(qr) r² dr, and back
g(r) = (2/π) ∫ g̃(q) j_l(qr) q² dq. The filtered function keeps only what the grid can represent:
g_f(r) = (2/π) ∫ f(q) g̃(q) j_l(qr) q² dq,  f(q) = ½ erfc((q − 0.75 q_max)/(0.1 q_max)),  q_max = π/h,
so f ≈ 1 below 0.55 q_max and ≈ 0 above 0.95 q_max. Filtering the short-range local potential ΔV_loc (l = 0) and
the projectors p_i^l (stored as R = g/r^l, the solid-harmonic form used by pseudo.py) removes the components that
alias on the grid: the FD energy error and the egg-box effect shrink; as h → 0 the filter becomes the identity.
Transforms are dense quadratures on uniform radial grids (dr = 0.004 Bohr, 1200 q points); the results are cubic
splines whose analytic derivatives give the forces (exactly consistent with the sampled energy).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.special import erfc, spherical_jn

from fastqmd.dft.pseudo import GTHPseudo, projector_cutoff, projector_radial, vloc_short


def filter_function(q: np.ndarray, q_max: float) -> np.ndarray:
    return 0.5 * erfc((q - 0.75 * q_max) / (0.1 * q_max))


class RadialSpline:
    """Cubic spline R(r) on [0, r_max] (zero beyond) returning (R, (1/r) dR/dr) like the analytic functions."""

    def __init__(self, r: np.ndarray, values: np.ndarray):
        self.r_max = float(r[-1])
        self.spline = CubicSpline(r, values, bc_type=((1, 0.0), (1, 0.0)))
        self.d1, self.d2 = self.spline.derivative(1), self.spline.derivative(2)

    def __call__(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rr = np.minimum(r, self.r_max)
        inside = r < self.r_max
        val = np.where(inside, self.spline(rr), 0.0)
        small = rr < 1e-3
        d = np.where(small, self.d2(rr), self.d1(rr) / np.where(small, 1.0, rr))
        return val, np.where(inside, d, 0.0)


def _jl_over_xl(l: int, x: np.ndarray) -> np.ndarray:
    """j_l(x)/x^l, with its series 1/(2l+1)!! (1 − x²/(2(2l+3)) + x⁴/(8(2l+3)(2l+5))) for x < 0.1."""
    df = float(np.prod(np.arange(2 * l + 1, 0, -2)))
    series = (1 - x**2 / (2 * (2 * l + 3)) + x**4 / (8 * (2 * l + 3) * (2 * l + 5))) / df
    xs = np.where(x < 0.1, 1.0, x)
    return np.where(x < 0.1, series, spherical_jn(l, xs) / xs**l)


def _filtered(g: np.ndarray, r: np.ndarray, l: int, q_max: float) -> np.ndarray:
    """R_f(r) = g_f(r)/r^l for g(r) (the full radial factor, including r^l) on the uniform grid r."""
    dr = r[1] - r[0]
    q = np.linspace(0.0, 1.0 * q_max, 1200)
    dq = q[1] - q[0]
    J = spherical_jn(l, np.outer(q, r))  # [n_q, n_r]
    gq = J @ (g * r**2) * dr
    Jback = _jl_over_xl(l, np.outer(q, r)) * (q**l)[:, None]  # j_l(qr)/r^l
    return (2 / np.pi) * (Jback.T @ (filter_function(q, q_max) * gq * q**2)) * dq


class FilteredRadial:
    """Radial functions of one GTH pseudopotential filtered to q_max (same interface as AnalyticRadial)."""

    def __init__(self, pp: GTHPseudo, r_c: float, q_max: float):
        self.pp, self.r_c, self.q_max = pp, r_c, q_max
        r = np.arange(0.0, 12.0 + 1e-9, 0.004)
        self.vloc = RadialSpline(r, _filtered(vloc_short(pp, r, r_c)[0], r, 0, q_max))
        self.proj = {}
        # projectors: ringing tail cut where |g_f| < 1e-6 of its peak, at most 1.5 Bohr beyond the analytic radius,
        # with a cos² taper over the last 0.5 Bohr so that the sampled functions stay smooth in R
        self.cutoff = 0.0
        for l, r_l, h in pp.projectors:
            for i in range(1, len(h) + 1):
                R = projector_radial(l, i, r_l, r)[0]
                Rf = _filtered(R * r**l, r, l, q_max)
                gf = Rf * r**l
                big = np.nonzero(np.abs(gf) > 1e-6 * np.abs(gf).max())[0]
                rcut = min(float(r[big[-1]]) + 0.5, projector_cutoff(pp) + 1.5)
                t = np.clip((r - (rcut - 0.5)) / 0.5, 0.0, 1.0)
                Rf = Rf * np.cos(0.5 * np.pi * t) ** 2
                self.cutoff = max(self.cutoff, rcut)
                self.proj[(l, i)] = RadialSpline(r[r <= rcut], Rf[r <= rcut])

    def vloc_short(self, r):
        return self.vloc(r)

    def projector(self, l, i, r_l, r):
        return self.proj[(l, i)](r)


class AnalyticRadial:
    """The point-sampled analytic GTH radial functions."""

    def __init__(self, pp: GTHPseudo, r_c: float):
        self.pp, self.r_c = pp, r_c
        self.cutoff = projector_cutoff(pp)

    def vloc_short(self, r):
        return vloc_short(self.pp, r, self.r_c)

    def projector(self, l, i, r_l, r):
        return projector_radial(l, i, r_l, r)


@lru_cache(maxsize=32)
def radial_functions(pp: GTHPseudo, r_c: float, q_max: float | None):
    """AnalyticRadial (q_max None) or FilteredRadial to q_max (cached per element, r_c and grid cutoff)."""
    return AnalyticRadial(pp, r_c) if q_max is None else FilteredRadial(pp, r_c, q_max)
