"""Bloch sums: real-space Hamiltonian/overlap blocks H(R) → H(k), and k-point meshes.

Convention (PySCF's and tblite's): H(R)_μν = ⟨μ, cell 0 | H | ν, cell R⟩ for an integer lattice shift R, and

    H(k) = Σ_R exp(i 2π k·R) H(R),        k in fractional (reduced) reciprocal coordinates,

so Hermiticity of H(k) for every k is the condition H(−R) = H(R)ᵀ (real orbitals). At Γ (k = 0) H(k) is the
real sum Σ_R H(R) — the matrix a Γ-only supercell code reports. Everything is torch and differentiable
(float64/complex128); the phases carry no gradient.

Inputs are either per-shift dense tensors HR [n_shifts, nao, nao] with shifts [n_shifts, 3], or per-pair
blocks (atom i, atom j, shift R, block [n_i, n_j]) scattered into that form by `assemble_shift_blocks`.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor


def bloch_sum(HR: Tensor, shifts: Tensor, kpts: Tensor, real_at_gamma: bool = True) -> Tensor:
    """H(k) = Σ_R e^{i2πk·R} H(R). HR [n_shifts, nao, nao], shifts [n_shifts, 3] int, kpts [nk, 3] → [nk, nao, nao].

    If every k is Γ and `real_at_gamma`, the result keeps HR's real dtype; otherwise it is complex.
    """
    kpts = torch.as_tensor(kpts, dtype=HR.real.dtype if HR.is_complex() else HR.dtype, device=HR.device)
    shifts = torch.as_tensor(shifts, device=HR.device).to(kpts.dtype)
    if real_at_gamma and not HR.is_complex() and bool((kpts == 0).all()):
        return HR.sum(0).expand(kpts.shape[0], -1, -1).clone()
    arg = 2 * torch.pi * (kpts @ shifts.T)  # [nk, n_shifts]
    phase = torch.polar(torch.ones_like(arg), arg)
    return torch.einsum("ks,sij->kij", phase, HR.to(phase.dtype))


def hermiticity_error(HR: Tensor, shifts: Tensor) -> float:
    """max |H(−R) − H(R)ᵀ| over the shifts whose negative is present (0 for a consistent set of blocks)."""
    index = {tuple(int(v) for v in s): n for n, s in enumerate(torch.as_tensor(shifts).tolist())}
    err = 0.0
    for s, n in index.items():
        m = index.get(tuple(-v for v in s))
        if m is None:
            raise ValueError(f"shift {s} present but {tuple(-v for v in s)} missing: H(k) cannot be Hermitian")
        err = max(err, float((HR[m] - HR[n].mT).abs().max()))
    return err


def assemble_shift_blocks(
    blocks: list[Tensor], i: Tensor, j: Tensor, shifts: Tensor, offsets: Tensor
) -> tuple[Tensor, Tensor]:
    """Scatter per-pair blocks into per-shift dense matrices (differentiable in the blocks).

    blocks[p] is [n_orb(i_p), n_orb(j_p)] for the pair (atom i_p in cell 0, atom j_p in cell R_p);
    i, j [n_pairs] atom indices, shifts [n_pairs, 3] integer R, offsets [n_atoms + 1] orbital starts.
    Returns (HR [n_unique_shifts, nao, nao], unique_shifts [n_unique_shifts, 3]); pairs sharing (i, j, R)
    are summed. Shifts come out in sorted order.
    """
    shifts = torch.as_tensor(shifts, dtype=torch.long)
    unique, inverse = torch.unique(shifts, dim=0, return_inverse=True)
    nao = int(offsets[-1])
    dtype = blocks[0].dtype if blocks else torch.float64
    device = blocks[0].device if blocks else None
    HR = torch.zeros(unique.shape[0], nao, nao, dtype=dtype, device=device)
    inverse = inverse.to(device)
    for p, block in enumerate(blocks):
        a0, b0 = int(offsets[i[p]]), int(offsets[j[p]])
        rows = torch.arange(a0, a0 + block.shape[0], device=device)
        cols = torch.arange(b0, b0 + block.shape[1], device=device)
        HR = HR.index_put((inverse[p].expand(len(rows), len(cols)), rows[:, None].expand(-1, len(cols)),
                           cols[None, :].expand(len(rows), -1)), block, accumulate=True)
    return HR, unique


def monkhorst_pack(mesh: tuple[int, int, int], gamma_centered: bool = True) -> tuple[Tensor, Tensor]:
    """Full (unreduced) k mesh in fractional coordinates and uniform weights: ([nk, 3], [nk]).

    Γ-centred: k_a = n_a / N_a; otherwise Monkhorst–Pack: k_a = (2 n_a − N_a + 1) / (2 N_a).
    """
    axes = []
    for N in mesh:
        n = torch.arange(N, dtype=torch.float64)
        axes.append(n / N if gamma_centered else (2 * n - N + 1) / (2 * N))
    kpts = torch.tensor(list(itertools.product(*[a.tolist() for a in axes])), dtype=torch.float64)
    return kpts, torch.full((kpts.shape[0],), 1.0 / kpts.shape[0], dtype=torch.float64)
