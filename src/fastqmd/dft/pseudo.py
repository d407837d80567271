"""GTH/HGH pseudopotentials (Goedecker, Teter, Hutter PRB 54, 1703 (1996); Hartwigsen et al. PRB 58, 3641 (1998)).

Local:     V_loc(r) = −(Z/r) erf(r/(√2 r_loc)) + e^{−x²/2} [C1 + C2 x² + C3 x⁴ + C4 x⁶],  x = r/r_loc.
Nonlocal:  V_nl = Σ_{l,m,i,j} |p_i^l Y_lm⟩ h_ij^l ⟨p_j^l Y_lm|,
           p_i^l(r) = √2 r^{l+2(i−1)} e^{−r²/(2r_l²)} / (r_l^{l+(4i−1)/2} √Γ(l+(4i−1)/2)).
Parameters come from the tables PySCF ships (pyscf/pbc/gto/pseudo/gth-pade.dat for LDA, gth-pbe.dat for PBE),
read with PySCF's own loader. Real spherical harmonics are written as solid harmonics S_lm(r) = r^l Y_lm (r̂), so
p_i^l Y_lm = N_il r^{2(i−1)} e^{−r²/(2r_l²)} S_lm(r); supported l ≤ 2 (s, p, d projectors).
Electrostatics split: each ion carries a Gaussian charge Z (π r_c²)^{−3/2} e^{−r²/r_c²} whose potential is
Z erf(r/r_c)/r, so V_loc = −Z erf(r/r_c)/r + ΔV_loc with the short-range remainder
ΔV_loc(r) = V_loc(r) + Z erf(r/r_c)/r handled on the grid point-wise and the Gaussian part through Poisson.
All radial functions return values and (1/r) d/dr so that gradients are r_vec·(1/r) d/dr (finite at r = 0).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import erf, gamma

SQRT_PI = np.sqrt(np.pi)
TABLES = {"lda": "gth-pade.dat", "pade": "gth-pade.dat", "pbe": "gth-pbe.dat"}


@dataclass(frozen=True)
class GTHPseudo:
    """GTH parameters of one element (atomic units). projectors: ((l, r_l, h[n,n]), ...)."""

    symbol: str
    Z: float
    r_loc: float
    C: tuple[float, ...]
    projectors: tuple[tuple[int, float, tuple[tuple[float, ...], ...]], ...]

    @property
    def n_projectors(self) -> int:
        return sum((2 * l + 1) * len(h) for l, _, h in self.projectors)


@lru_cache(maxsize=None)
def load_gth(symbol: str, table: str = "lda") -> GTHPseudo:
    """Read the GTH parameters of `symbol` from PySCF's gth-pade.dat ('lda') or gth-pbe.dat ('pbe')."""
    import pyscf.pbc.gto.pseudo as pp_dir
    from pyscf.pbc.gto.pseudo import load

    path = os.path.join(os.path.dirname(pp_dir.__file__), TABLES[table.lower()])
    try:
        raw = load(path, symbol)
    except Exception as exc:  # PySCF raises its own BasisNotFoundError / KeyError
        raise ValueError(f"no GTH pseudopotential for {symbol!r} in {TABLES[table.lower()]}") from exc
    n_elec, r_loc, n_c, C = raw[0], raw[1], raw[2], raw[3]
    projs = []
    for l, block in enumerate(raw[5 : 5 + raw[4]]):
        r_l, n_i, h = block[0], block[1], block[2]
        if n_i == 0:
            continue
        if l > 2:
            raise ValueError(f"{symbol}: GTH projectors with l = {l} > 2 are not supported")
        projs.append((l, float(r_l), tuple(tuple(float(v) for v in row) for row in h)))
    return GTHPseudo(symbol, float(sum(n_elec)), float(r_loc), tuple(float(c) for c in C[:n_c]), tuple(projs))


def erf_over_r(r: np.ndarray, a: float) -> tuple[np.ndarray, np.ndarray]:
    """f = erf(r/a)/r and (1/r) df/dr, both finite at r = 0 (series for r < 1e-3 a)."""
    small = r < 1e-3 * a
    rs = np.where(small, 1.0, r)
    f = np.where(small, 2 / (SQRT_PI * a) * (1 - r**2 / (3 * a**2)), erf(rs / a) / rs)
    g = np.where(small, -4 / (3 * SQRT_PI * a**3) * (1 - 3 * r**2 / (5 * a**2)),
                 (2 / (SQRT_PI * a) * np.exp(-(rs**2) / a**2) * rs - erf(rs / a)) / rs**3)
    return f, g


def vloc(pp: GTHPseudo, r: np.ndarray) -> np.ndarray:
    """The full GTH local potential V_loc(r)."""
    return vloc_short(pp, r, r_c=np.inf)[0]


def vloc_short(pp: GTHPseudo, r: np.ndarray, r_c: float) -> tuple[np.ndarray, np.ndarray]:
    """ΔV_loc(r) = V_loc(r) + Z erf(r/r_c)/r and its (1/r) d/dr (r_c = inf gives V_loc itself)."""
    f1, g1 = erf_over_r(r, np.sqrt(2) * pp.r_loc)
    V, dV = -pp.Z * f1, -pp.Z * g1
    if np.isfinite(r_c):
        f2, g2 = erf_over_r(r, r_c)
        V, dV = V + pp.Z * f2, dV + pp.Z * g2
    x2 = (r / pp.r_loc) ** 2
    e = np.exp(-x2 / 2)
    poly = sum(c * x2**k for k, c in enumerate(pp.C))
    dpoly = sum(2 * k * c * x2 ** (k - 1) for k, c in enumerate(pp.C) if k > 0) / pp.r_loc**2 if len(pp.C) > 1 else 0.0
    # (1/r) d/dr [e^{−x²/2} P(x²)] = e^{−x²/2} [−P/r_loc² + (1/r) dP/dr], (1/r) dP/dr = Σ 2k c_k x^{2k−2}/r_loc²
    return V + e * poly, dV + e * (dpoly - poly / pp.r_loc**2)


def solid_harmonics(l: int, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real solid harmonics S_lm = r^l Y_lm and their gradients; d: [3, ...] → S [2l+1, ...], ∇S [2l+1, 3, ...].

    Order: l=1: (x, y, z); l=2: (xy, yz, 3z²−r², xz, x²−y²) with the standard real-Y_lm prefactors.
    """
    x, y, z = d
    one, zero = np.ones_like(x), np.zeros_like(x)
    if l == 0:
        return (np.array([one]) / np.sqrt(4 * np.pi), np.zeros((1, 3) + x.shape))
    if l == 1:
        c = np.sqrt(3 / (4 * np.pi))
        S = c * np.array([x, y, z])
        dS = c * np.array([[one, zero, zero], [zero, one, zero], [zero, zero, one]])
        return S, dS
    if l == 2:
        a, b, c2 = np.sqrt(15 / (4 * np.pi)), np.sqrt(5 / (16 * np.pi)), np.sqrt(15 / (16 * np.pi))
        S = np.array([a * x * y, a * y * z, b * (2 * z * z - x * x - y * y), a * x * z, c2 * (x * x - y * y)])
        dS = np.array([
            [a * y, a * x, zero], [zero, a * z, a * y], [-2 * b * x, -2 * b * y, 4 * b * z],
            [a * z, zero, a * x], [2 * c2 * x, -2 * c2 * y, zero],
        ])
        return S, dS
    raise ValueError(f"l = {l} not supported")


def projector_radial(l: int, i: int, r_l: float, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R(r) = N_il r^{2(i−1)} e^{−r²/(2r_l²)} (so that p_i^l Y_lm = R·S_lm) and (1/r) dR/dr; i = 1, 2, 3."""
    k = i - 1
    N = np.sqrt(2) / (r_l ** (l + (4 * i - 1) / 2) * np.sqrt(gamma(l + (4 * i - 1) / 2)))
    e = np.exp(-(r**2) / (2 * r_l**2))
    R = N * r ** (2 * k) * e
    dR = N * e * ((2 * k * r ** (2 * k - 2) if k > 0 else 0.0) - r ** (2 * k) / r_l**2)
    return R, dR


def projector_cutoff(pp: GTHPseudo, tol: float = 1e-10) -> float:
    """Radius beyond which every projector is below tol·max (Gaussian tail e^{−r²/(2r_l²)} = 1e−10·r^−k)."""
    return max((r_l * np.sqrt(2 * (-np.log(tol) + 2 * 2 * len(h))) for _, r_l, h in pp.projectors), default=0.0)


def projector_values(pp: GTHPseudo, d: np.ndarray, with_grad: bool = False, radial=None):
    """All projectors p_{lmi}(r) at displacements d [3, npts] → P [n_proj, npts], optionally ∇P [n_proj, 3, npts],
    and the block-diagonal coupling matrix Hnl [n_proj, n_proj] (h_ij^l repeated for each m).
    `radial` (optional) supplies R(r) and (1/r) dR/dr, e.g. Fourier-filtered splines (filtering.py)."""
    radial_fn = projector_radial if radial is None else radial.projector
    r = np.sqrt((d**2).sum(0))
    rows, grads, blocks = [], [], []
    for l, r_l, h in pp.projectors:
        S, dS = solid_harmonics(l, d)
        n = len(h)
        radials = [radial_fn(l, i + 1, r_l, r) for i in range(n)]
        for m in range(2 * l + 1):
            for R, dR in radials:
                rows.append(R * S[m])
                if with_grad:
                    grads.append(dR * d * S[m] + R * dS[m])
        hmat = np.array(h)
        # ordering: for each m, the n radial indices → coupling kron(I_{2l+1}, h)
        blocks.append(np.kron(np.eye(2 * l + 1), hmat))
    n_proj = len(rows)
    Hnl = np.zeros((n_proj, n_proj))
    o = 0
    for b in blocks:
        Hnl[o : o + len(b), o : o + len(b)] = b
        o += len(b)
    P = np.array(rows) if rows else np.zeros((0, d.shape[1]))
    if with_grad:
        return P, (np.array(grads) if grads else np.zeros((0, 3, d.shape[1]))), Hnl
    return P, Hnl
