"""Irreps bookkeeping: e3nn's real-harmonic basis ↔ the fastqmd orbital convention, and Wigner–Eckart couplings.

The network computes in e3nn's basis; outputs are rotated into the fastqmd convention (`fastqmd.orbitals`,
docs/CONVENTIONS.md) here, once. For every l the two real bases of the degree-l harmonics differ by an
orthogonal matrix Q_l (a signed permutation for l = 1, e3nn (x, y, z) → ours (y, z, x); a genuine rotation
inside the m = 0, ±2 subspace for l = 2 because e3nn's polar axis is y):

    Y_l^fastqmd(r) = Q_l Y_l^e3nn(r)      ⇒   D_l^fastqmd(R) = Q_l D_l^e3nn(R) Q_lᵀ.

Q_l is fitted by least squares on sample directions (exact to ~1e-15) and checked orthogonal.

Wigner–Eckart: a block between shells l1 and l2 transforms as D_l1 B D_l2ᵀ, i.e. as l1 ⊗ l2 = ⊕_L L with parity
(−1)^(l1+l2). With x^L ∈ irrep L (e3nn basis),

    B_{m1 m2} = Σ_L √(2L+1) Σ_M (Q_l1 ⊗ Q_l2 · W^{l1 l2 L})_{m1 m2 M} x^L_M,

W = e3nn `o3.wigner_3j` (Frobenius norm 1). The √(2L+1) makes the map x → vec(B) orthogonal, so its transpose
projects a reference block onto its irreps (used for per-irrep normalisation of targets).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from e3nn import o3

from fastqmd.orbitals import real_sph_harm


@lru_cache(maxsize=None)
def e3nn_to_fastqmd(l: int) -> np.ndarray:
    """Q_l [2l+1, 2l+1] with Y_l^fastqmd(r) = Q_l Y_l^e3nn(r) (both normalised on the unit sphere)."""
    pts = np.random.default_rng(4321 + l).normal(size=(4 * (2 * l + 1) + 8, 3))
    Ye = o3.spherical_harmonics(l, torch.tensor(pts), normalize=True, normalization="integral").numpy()
    Yf = real_sph_harm(l, pts)
    Qt, *_ = np.linalg.lstsq(Ye, Yf, rcond=None)  # Yf = Ye Qᵀ
    Q = Qt.T
    if np.abs(Ye @ Qt - Yf).max() > 1e-10 or np.abs(Q @ Q.T - np.eye(2 * l + 1)).max() > 1e-10:
        raise RuntimeError(f"e3nn and fastqmd real harmonics of l={l} are not related by an orthogonal map")
    return Q


def shell_pair_irreps(l1: int, l2: int) -> o3.Irreps:
    """Irreps of an (l1, l2) block: L = |l1−l2| … l1+l2, each once, parity (−1)^(l1+l2)."""
    p = (-1) ** (l1 + l2)
    return o3.Irreps([(1, (L, p)) for L in range(abs(l1 - l2), l1 + l2 + 1)])


@lru_cache(maxsize=None)
def shell_pair_coupling(l1: int, l2: int) -> np.ndarray:
    """C [2l1+1, 2l2+1, Σ_L(2L+1)] mapping the irreps of `shell_pair_irreps(l1, l2)` (e3nn basis, in order)
    to the block in the fastqmd basis: B = C · x. Orthogonal as a [(2l1+1)(2l2+1)]² matrix."""
    Q1, Q2 = e3nn_to_fastqmd(l1), e3nn_to_fastqmd(l2)
    parts = []
    for L in range(abs(l1 - l2), l1 + l2 + 1):
        W = o3.wigner_3j(l1, l2, L, dtype=torch.float64).numpy() * np.sqrt(2 * L + 1)
        parts.append(np.einsum("ia,jb,abc->ijc", Q1, Q2, W))
    return np.concatenate(parts, axis=-1)


def block_coupling(shells_a: tuple[int, ...], shells_b: tuple[int, ...]) -> tuple[o3.Irreps, np.ndarray]:
    """Irreps and coupling of a whole atom-pair block (all shell pairs of species a × species b).

    Returns (irreps_out, C) with C [n_a, n_b, irreps_out.dim] such that block = C · x for x ∈ irreps_out
    (e3nn basis, unsimplified: one group of irreps per shell pair, shell pairs in row-major order).
    As a [n_a·n_b, n_a·n_b] matrix C is orthogonal.
    """
    na = sum(2 * l + 1 for l in shells_a)
    nb = sum(2 * l + 1 for l in shells_b)
    irreps: list = []
    C = np.zeros((na, nb, na * nb))
    k, ra = 0, 0
    for l1 in shells_a:
        rb = 0
        for l2 in shells_b:
            c = shell_pair_coupling(l1, l2)
            C[ra : ra + 2 * l1 + 1, rb : rb + 2 * l2 + 1, k : k + c.shape[-1]] = c
            irreps += list(shell_pair_irreps(l1, l2))
            k += c.shape[-1]
            rb += 2 * l2 + 1
        ra += 2 * l1 + 1
    return o3.Irreps(irreps), C


def two_centre_channels(irreps: o3.Irreps) -> tuple[list[int], list[int], list[int]]:
    """For the (mul-1) irreps of a block: positions of the channels a single vector can build ((−1)^L = parity),
    the matching indices into the concatenated Y_0..Y_lmax (offset L²), and each one's path (channel) index.
    A two-centre (Slater–Koster) block is Σ_paths f_p(|r|) Y_L(r̂) on these channels and zero elsewhere."""
    pos, yidx, path = [], [], []
    k, n = 0, 0
    for mul, ir in irreps:
        assert mul == 1
        if ir.p == (-1) ** ir.l:
            pos += range(k, k + ir.dim)
            yidx += range(ir.l**2, ir.l**2 + ir.dim)
            path += [n] * ir.dim
            n += 1
        k += ir.dim
    return pos, yidx, path


def fastqmd_D(l: int, R: np.ndarray) -> np.ndarray:
    """D_l in the fastqmd basis computed through e3nn: Q_l D_l^e3nn(R) Q_lᵀ (cross-check of the convention)."""
    De = o3.Irrep(l, 1).D_from_matrix(torch.tensor(R, dtype=torch.float64)).numpy()
    Q = e3nn_to_fastqmd(l)
    return Q @ De @ Q.T
