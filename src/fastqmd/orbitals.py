"""The fastqmd orbital convention: real spherical harmonics, their rotation matrices, whole-structure rotations.

In:  unit vectors or rotation matrices (3x3, acting on Cartesian column vectors, x' = R x).
Out: real spherical harmonics Y_lm (m = -l..l), real Wigner matrices D^l(R) with Y(R r) = D^l(R) Y(r),
     and the block-diagonal orbital rotation of a whole structure.

Definition (docs/CONVENTIONS.md): z is the polar axis, (x + i y)^m = A_m + i B_m, and

    Y_l0  = sqrt((2l+1)/4π) Π_l^0(z)
    Y_lm  = sqrt((2l+1)/4π) sqrt(2) Π_l^m(z) A_m(x, y)        m > 0
    Y_l-m = sqrt((2l+1)/4π) sqrt(2) Π_l^m(z) B_m(x, y)        m > 0
    Π_l^m(z) = sqrt((l-m)!/(l+m)!) Σ_k (-1)^k 2^-l C(l,k) C(2l-2k,l) (l-2k)!/(l-2k-m)! r^2k z^(l-2k-m)

i.e. the real harmonics *without* the Condon-Shortley phase: every function has a positive leading coefficient,
l=1 is (y, z, x) and l=2 is (xy, yz, 3z²-r², xz, x²-y²), all with + sign, each normalised on the unit sphere.
"""

from __future__ import annotations

from functools import lru_cache
from math import comb, factorial, pi, sqrt

import numpy as np


def _pi_lm(l: int, m: int, z: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Π_l^m(z) of the module docstring (polynomial in z and r² = x²+y²+z²). [n]"""
    out = np.zeros_like(z)
    for k in range((l - m) // 2 + 1):
        c = (-1) ** k * 2.0**-l * comb(l, k) * comb(2 * l - 2 * k, l)
        c *= factorial(l - 2 * k) / factorial(l - 2 * k - m)
        out = out + c * r2**k * z ** (l - 2 * k - m)
    return sqrt(factorial(l - m) / factorial(l + m)) * out


def real_sph_harm(l: int, xyz: np.ndarray) -> np.ndarray:
    """Real spherical harmonics Y_lm(r̂), m = -l..l (module docstring), of directions `xyz` [n, 3] -> [n, 2l+1].

    The input is normalised to unit length, so only directions matter.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    u = xyz / np.linalg.norm(xyz, axis=-1, keepdims=True)
    x, y, z = u[:, 0], u[:, 1], u[:, 2]
    r2 = np.ones_like(z)
    w = x + 1j * y
    out = np.empty((len(u), 2 * l + 1))
    norm = sqrt((2 * l + 1) / (4 * pi))
    out[:, l] = norm * _pi_lm(l, 0, z, r2)
    for m in range(1, l + 1):
        p = sqrt(2.0) * norm * _pi_lm(l, m, z, r2)
        wm = w**m
        out[:, l + m] = p * wm.real  # A_m
        out[:, l - m] = p * wm.imag  # B_m
    return out


@lru_cache(maxsize=None)
def _fit_points(l: int) -> np.ndarray:
    """Fixed, well-spread sample directions for least-squares fits of degree-l harmonics. [n, 3]"""
    rng = np.random.default_rng(1234 + l)
    return rng.normal(size=(4 * (2 * l + 1) + 8, 3))


def real_wigner_D(l: int, R: np.ndarray) -> np.ndarray:
    """Real Wigner matrix D^l(R) [2l+1, 2l+1] defined by Y_l(R r) = D^l(R) Y_l(r) for all r.

    Built by least squares on sample directions: with Y [n, 2l+1] at r_i and Y_R at R r_i, Y_R = Y D^T.
    The fit is exact (residual ~1e-15) because the degree-l harmonics span a rotation-invariant space.
    D is orthogonal for proper and improper R (Y_l(-r) = (-1)^l Y_l(r)).
    """
    R = np.asarray(R, dtype=np.float64)
    pts = _fit_points(l)
    Y = real_sph_harm(l, pts)
    YR = real_sph_harm(l, pts @ R.T)
    Dt, *_ = np.linalg.lstsq(Y, YR, rcond=None)
    return Dt.T


def orbital_rotation(basis, symbols: list[str], R: np.ndarray) -> np.ndarray:
    """Block-diagonal D(R) [nao, nao] of a whole structure in the fastqmd ordering.

    `basis` is a `fastqmd.reference.base.BasisSpec`; atom blocks follow `symbols`, shells follow basis order.
    If the structure is rotated, positions x -> R x, then H' = D H Dᵀ and S' = D S Dᵀ.
    """
    Dl = {}
    blocks = []
    for s in symbols:
        for l in basis.shells[s]:
            if l not in Dl:
                Dl[l] = real_wigner_D(l, R)
            blocks.append(Dl[l])
    n = sum(b.shape[0] for b in blocks)
    D = np.zeros((n, n))
    i = 0
    for b in blocks:
        k = b.shape[0]
        D[i : i + k, i : i + k] = b
        i += k
    return D


def e3nn_change_of_basis(l: int) -> np.ndarray:
    """Orthogonal T [2l+1, 2l+1] with Y^e3nn_l(r) = T Y_l(r) (e3nn `spherical_harmonics`, integral normalization).

    e3nn (≥ 0.5) uses y as the polar axis of its real harmonics and orders l=1 as (x, y, z), so T is a cyclic
    permutation for l=1 and not even a signed permutation for l ≥ 2. Consequences: D^e3nn(R) = T D(R) Tᵀ,
    and an H block in fastqmd order maps to e3nn order as T_l1 H_l1l2 T_l2ᵀ. Fitted exactly on sample
    directions; needs e3nn + torch (imported here).
    """
    import torch
    from e3nn import o3

    pts = _fit_points(l)
    x = torch.as_tensor(pts, dtype=torch.float64)
    Ye = o3.spherical_harmonics(l, x, normalize=True, normalization="integral")
    Tt, *_ = np.linalg.lstsq(real_sph_harm(l, pts), Ye.numpy(), rcond=None)
    return Tt.T


def random_rotation(seed: int) -> np.ndarray:
    """A uniformly random proper rotation matrix (det +1), from the QR decomposition of a Gaussian matrix."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q
