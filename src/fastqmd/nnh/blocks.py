"""Orbital blocks: irreps → H blocks (Wigner–Eckart), Hermitian symmetrisation, vectorised assembly into H(R), H(k).

In:  per species s, on-site irreps x_i [N_s, K_ss]; per ordered species pair (a, b), edge irreps x_e [E_ab, K_ab]
     (e3nn basis, layout of `fastqmd.nnh.irreps.block_coupling`), and the `Graph`.
Out: `Blocks` — on-site blocks [N_s, n_s, n_s] and edge blocks H_ij(R) [E_ab, n_a, n_b] in eV, fastqmd orbital
     convention — and their assembly

     H(R)_{μν} = Σ_{edges (i,j,R)} B_e  (+ on-site blocks at R = 0),      H(k) = Σ_R e^{i2πk·R} H(R).

Hermiticity by construction: on-site B ← (B + Bᵀ)/2 and, for each edge e = (i, j, R) with reverse ē = (j, i, −R),
H_ij(R) ← (B_e + B_ēᵀ)/2, so H_ji(−R) = H_ij(R)ᵀ exactly and H(k) is Hermitian for every k.
Assembly is one `index_add` per species (pair) with precomputed flat indices — no Python loop over atoms/edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from e3nn import o3
from torch import Tensor

from fastqmd.nnh.graph import Graph
from fastqmd.nnh.irreps import block_coupling


@dataclass(frozen=True)
class Blocks:
    """Model output in real space. onsite[s]: [N_s, n_s, n_s]; offsite[a][b]: [E_ab, n_a, n_b] (graph order);
    charges [N] (e): the latent atomic charges of the NNH charge channel (`fastqmd.nnh.electrostatics`), or None."""

    onsite: tuple[Tensor, ...]
    offsite: tuple[tuple[Tensor, ...], ...]
    charges: Tensor | None = None


class BlockLayout(torch.nn.Module):
    """Per species (pair) output irreps and coupling tensors C [n_a, n_b, K] (buffers, follow dtype/device)."""

    def __init__(self, species: list[str], shells: dict[str, tuple[int, ...]]):
        super().__init__()
        self.species = list(species)
        self.shells = {s: tuple(shells[s]) for s in species}
        self.n_orbitals = {s: sum(2 * l + 1 for l in self.shells[s]) for s in species}
        self.irreps: dict[tuple[int, int], o3.Irreps] = {}
        for a, sa in enumerate(species):
            for b, sb in enumerate(species):
                irreps, C = block_coupling(self.shells[sa], self.shells[sb])
                self.irreps[(a, b)] = irreps
                self.register_buffer(f"C_{a}_{b}", torch.tensor(C, dtype=torch.get_default_dtype()))

    def coupling(self, a: int, b: int) -> Tensor:
        return getattr(self, f"C_{a}_{b}")

    def to_block(self, x: Tensor, a: int, b: int) -> Tensor:
        """B = C · x: [n, K] irreps of pair (a, b) → [n, n_a, n_b] blocks."""
        return torch.einsum("abk,nk->nab", self.coupling(a, b), x)

    def to_irreps(self, B: Tensor, a: int, b: int) -> Tensor:
        """Inverse of `to_block` (C is orthogonal): [n, n_a, n_b] → [n, K]."""
        return torch.einsum("abk,nab->nk", self.coupling(a, b), B)


def symmetrize_onsite(B: Tensor) -> Tensor:
    """(B + Bᵀ)/2 per atom: [N_s, n, n]."""
    return 0.5 * (B + B.transpose(-1, -2))


def symmetrize_offsite(raw: tuple[tuple[Tensor, ...], ...], graph: Graph) -> tuple[tuple[Tensor, ...], ...]:
    """H_ij(R) = (B_ij(R) + B_ji(−R)ᵀ)/2 for every edge; the reverse of a (a, b) edge lives in group (b, a)."""
    out = []
    for a, row in enumerate(raw):
        new_row = []
        for b, B in enumerate(row):
            idx = graph.edge_groups[a][b]
            rev_pos = graph.edge_group_pos[graph.reverse[idx]]  # positions inside group (b, a)
            new_row.append(0.5 * (B + raw[b][a][rev_pos].transpose(-1, -2)))
        out.append(tuple(new_row))
    return tuple(out)


def _block_rows_cols(offsets: Tensor, i: Tensor, j: Tensor, na: int, nb: int) -> tuple[Tensor, Tensor]:
    """Row and column orbital indices of blocks (i, j): ([n, n_a, 1], [n, 1, n_b])."""
    ar = torch.arange(na, device=offsets.device)
    br = torch.arange(nb, device=offsets.device)
    rows = (offsets[i][:, None] + ar)[:, :, None]
    cols = (offsets[j][:, None] + br)[:, None, :]
    return rows, cols


def _scatter_terms(blocks: Blocks, graph: Graph):
    """Yield (values [n, n_a, n_b], flat orbital index rows·nao+cols [n, n_a, n_b], shift index [n]) per group."""
    nao = graph.n_orbitals
    for s, B in enumerate(blocks.onsite):
        idx = graph.node_groups[s]
        if idx.numel() == 0:
            continue
        rows, cols = _block_rows_cols(graph.orbital_offsets, idx, idx, B.shape[1], B.shape[2])
        yield B, rows * nao + cols, torch.full_like(idx, graph.zero_shift)
    for a, row in enumerate(blocks.offsite):
        for b, B in enumerate(row):
            idx = graph.edge_groups[a][b]
            if idx.numel() == 0:
                continue
            rows, cols = _block_rows_cols(graph.orbital_offsets, graph.edge_i[idx], graph.edge_j[idx],
                                          B.shape[1], B.shape[2])
            yield B, rows * nao + cols, graph.edge_shift[idx]


def to_real_space(blocks: Blocks, graph: Graph) -> tuple[Tensor, Tensor]:
    """(HR [n_shifts, nao, nao], unique_shifts [n_shifts, 3]) with H(−R) = H(R)ᵀ (kspace convention)."""
    nao = graph.n_orbitals
    nsh = graph.unique_shifts.shape[0]
    ref = blocks.onsite[0] if blocks.onsite else blocks.offsite[0][0]
    flat = ref.new_zeros(nsh * nao * nao)
    for B, rc, sh in _scatter_terms(blocks, graph):
        flat = flat.index_add(0, (sh[:, None, None] * nao * nao + rc).reshape(-1), B.reshape(-1))
    return flat.view(nsh, nao, nao), graph.unique_shifts


def to_kspace(blocks: Blocks, graph: Graph, kpts: Tensor | np.ndarray) -> Tensor:
    """H(k) = Σ_R e^{i2πk·R} H(R) [nk, nao, nao]; real dtype when every k is Γ, complex otherwise.

    kpts [nk, 3] fractional. At Γ the blocks are scattered straight into one [nao, nao] matrix; otherwise
    H(R) is assembled once and contracted with the phases: Re H(k) = cos(2πk·R) H(R), Im H(k) = sin(2πk·R) H(R)
    (two real GEMMs, memory n_shifts·nao² + nk·nao²).
    """
    nao = graph.n_orbitals
    ref = blocks.onsite[0] if blocks.onsite else blocks.offsite[0][0]
    kpts = torch.as_tensor(kpts, dtype=ref.dtype, device=ref.device).reshape(-1, 3)
    nk = kpts.shape[0]
    if bool((kpts == 0).all()):
        flat = ref.new_zeros(nao * nao)
        for B, rc, _ in _scatter_terms(blocks, graph):
            flat = flat.index_add(0, rc.reshape(-1), B.reshape(-1))
        return flat.view(1, nao, nao).expand(nk, nao, nao).clone() if nk > 1 else flat.view(1, nao, nao)
    HR, shifts = to_real_space(blocks, graph)
    theta = 2 * torch.pi * (kpts @ shifts.to(ref.dtype).T)  # [nk, n_shifts]
    HR = HR.reshape(HR.shape[0], nao * nao)
    return torch.complex(torch.cos(theta) @ HR, torch.sin(theta) @ HR).view(nk, nao, nao)
