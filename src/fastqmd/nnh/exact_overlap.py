"""Exact Gaussian-basis overlap S(R) and its position derivative from PySCF integrals, as a torch function.

In:  positions [N, 3] Å (torch, float64, may require grad); for periodic systems the cell [3, 3] Å (fixed) and
     fractional k-points [nk, 3].
Out: S [nao, nao] (molecules) or S(k) [nk, nao, nao] (cells) in the fastqmd orbital ordering
     (docs/CONVENTIONS.md), differentiable in the positions:

    S_μν(k) = Σ_T e^{i2πk·T} ⟨μ_A(r − R_A) | ν_B(r − R_B − T)⟩,
    ∂S_μν/∂R_A = −⟨∇μ|ν⟩ δ_{A∋μ} − ⟨μ|∇ν⟩ δ_{A∋ν}         (PySCF `int1e_ipovlp` = ⟨∇μ|ν⟩, per Bohr),

so the NN-Hamiltonian energy Ω[H_θ(R), S(R)] gets the exact Pulay term −Tr[W dS] in its forces.
The backward is linear in the incoming gradient and built from torch ops, so a force loss (which
differentiates the forces w.r.t. the network weights) back-propagates through it; second derivatives with
respect to the positions themselves (Hessians) are not provided (the integral derivatives are constants).
`ExactS` is its `OverlapProvider` (`fastqmd.nnh.overlap`): one cached `PySCFOverlap` per elements, cell, k-points.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from fastqmd.units import BOHR_ANG

if TYPE_CHECKING:
    from fastqmd.nnh.energy import Frame
    from fastqmd.nnh.graph import Graph


def placeholder_molecule(symbols: list[str], basis: str, **kw):
    """A PySCF `Mole` of `symbols` in `basis` at placeholder positions (callers set the geometry per call)."""
    from pyscf import gto

    atom = [(s, (0.0, 0.0, 1.5 * k)) for k, s in enumerate(symbols)]
    return gto.M(atom=atom, basis=basis, unit="Angstrom", cart=False, verbose=0, **kw)


def cached_operator(cache: dict, key, make, max_cached: int):
    """cache[key], built by make() on a miss; the cache is emptied when it holds more than max_cached operators
    (PySCF builds per element list / cell: the S, H⁰ and E_KS providers)."""
    op = cache.get(key)
    if op is None:
        if len(cache) > max_cached:
            cache.clear()
        op = cache[key] = make()
    return op


class PySCFOverlap:
    """S(R) for a fixed list of elements and a PySCF basis name (molecule, or cell when `cell` is given)."""

    def __init__(self, symbols: list[str], basis: str, cell: np.ndarray | None = None,
                 kpts_frac: np.ndarray | None = None, precision: float = 1e-10):
        from pyscf.pbc import gto as pgto

        from fastqmd.reference.pyscf_mol import pyscf_to_fastqmd_perm

        self.symbols = list(symbols)
        atom = [(s, (0.0, 0.0, 1.5 * k)) for k, s in enumerate(self.symbols)]
        if cell is None:
            self.mol = placeholder_molecule(self.symbols, basis)
            self.kpts_frac = np.zeros((1, 3))
        else:
            c = pgto.Cell()
            c.atom, c.a, c.basis, c.unit, c.verbose, c.precision = atom, np.asarray(cell), basis, "Angstrom", 0, precision
            c.pseudo = None
            c.build()
            self.mol = c
            self.kpts_frac = np.zeros((1, 3)) if kpts_frac is None else np.asarray(kpts_frac, dtype=float)
        self.perm = pyscf_to_fastqmd_perm(self.mol)
        self.ao_atom = self.mol.aoslice_by_atom()[:, 2:4]
        self.periodic = cell is not None

    def _integrals(self, positions_A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(S [nk, nao, nao], ⟨∇μ|ν⟩ [nk, 3, nao, nao] per Å), fastqmd ordering."""
        self.mol.set_geom_(positions_A, unit="Angstrom")
        p = self.perm
        if self.periodic:
            kabs = self.mol.get_abs_kpts(self.kpts_frac)
            S = np.asarray(self.mol.pbc_intor("int1e_ovlp", hermi=1, kpts=kabs))
            ip = np.asarray(self.mol.pbc_intor("int1e_ipovlp", kpts=kabs))
            S, ip = S.reshape(len(kabs), *S.shape[-2:]), ip.reshape(len(kabs), 3, *S.shape[-2:])
        else:
            S = self.mol.intor("int1e_ovlp")[None]
            ip = self.mol.intor("int1e_ipovlp")[None]
        S = S[:, p][:, :, p]
        ip = ip[:, :, p][:, :, :, p] / BOHR_ANG
        return S, ip

    def __call__(self, positions: Tensor) -> Tensor:
        """S at `positions` (Å): [nao, nao] for molecules, [nk, nao, nao] for cells."""
        S = _Overlap.apply(positions, self)
        return S if self.periodic else S[0]

    def atom_of_orbital(self) -> np.ndarray:
        """[nao] atom index of each orbital (fastqmd ordering keeps atoms contiguous)."""
        owner = np.empty(self.mol.nao_nr(), dtype=np.int64)
        for a, (i0, i1) in enumerate(self.ao_atom):
            owner[i0:i1] = a
        return owner[self.perm]


class _Overlap(torch.autograd.Function):
    @staticmethod
    def forward(ctx, positions: Tensor, op: PySCFOverlap) -> Tensor:
        S, ip = op._integrals(positions.detach().cpu().numpy().astype(np.float64))
        dtype = torch.float64 if np.isrealobj(S) else torch.complex128
        ctx.ip = torch.as_tensor(ip, device=positions.device, dtype=dtype)
        ctx.owner = torch.as_tensor(op.atom_of_orbital(), device=positions.device)
        ctx.n_atoms = positions.shape[0]
        return torch.as_tensor(S, device=positions.device, dtype=dtype)

    @staticmethod
    def backward(ctx, G: Tensor):
        """∂L/∂R_A,x = −Re Σ_{μ∈A,ν} G*_μν ⟨∂_x μ|ν⟩ − Re Σ_{μ,ν∈A} G*_μν ⟨μ|∂_x ν⟩,
        with ⟨μ|∂_x ν⟩(k) = conj(⟨∂_x ν|μ⟩(k)) (real basis functions; torch's conjugate-gradient convention)."""
        ip = ctx.ip  # [nk, 3, nao, nao]
        G = G.to(ip.dtype)
        left = (G.conj()[:, None] * ip).sum(-1)  # [nk, 3, nao]: Σ_ν G*_μν ⟨∂μ|ν⟩ per orbital μ
        right = (G.conj()[:, None] * ip.conj().transpose(-1, -2)).sum(-2)  # Σ_μ G*_μν ⟨μ|∂ν⟩ per orbital ν
        per_orbital = -(left + right).real.sum(0)  # [3, nao]
        grad = torch.zeros(ctx.n_atoms, 3, dtype=per_orbital.dtype, device=per_orbital.device)
        grad.index_add_(0, ctx.owner, per_orbital.T)
        return grad, None


class ExactS:
    """`OverlapProvider` of the exact PySCF S (gradient to positions only: the cell is fixed). PySCF builds are
    cached per (elements, periodic, cell, k-points); the graph is not used."""

    cell_differentiable = False

    def __init__(self, pyscf_basis: str, max_cached: int = 8):
        self.basis, self.max_cached = pyscf_basis, max_cached
        self._cache: dict = {}

    def operator(self, frame: Frame, cell: np.ndarray) -> PySCFOverlap:
        """The cached `PySCFOverlap` for this frame's elements, cell (Å) and k-points."""
        periodic = any(frame.pbc)
        key = (frame.symbols, periodic, np.asarray(cell).tobytes() if periodic else b"",
               np.asarray(frame.kpoints).tobytes())
        return cached_operator(self._cache, key, lambda: PySCFOverlap(
            list(frame.symbols), self.basis, cell=cell if periodic else None,
            kpts_frac=np.asarray(frame.kpoints) if periodic else None), self.max_cached)

    def __call__(self, frame: Frame, positions: Tensor, cell: Tensor, graph: Graph | None = None) -> Tensor:
        S = self.operator(frame, cell.detach().cpu().numpy().astype(np.float64))(positions)
        return S if S.dim() == 3 else S[None]
