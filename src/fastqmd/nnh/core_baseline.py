"""An exact, cheap part of the Kohn–Sham H as the NNH baseline: the network learns only the rest.

In:  positions [N, 3] Å (torch float64, may require grad) of a molecule, its element symbols and PySCF basis.
Out: H⁰ [nao, nao] eV in the fastqmd orbital ordering (docs/CONVENTIONS.md), differentiable in the positions:

    kind "core":          H⁰_μν = ⟨μ| −½∇² + Σ_A V_A |ν⟩                      (PySCF `get_hcore`: T + V_nuc)
    kind "core+hartree":  H⁰_μν = ⟨μ| −½∇² + Σ_A V_A |ν⟩ + J[D⁰]_μν,  J[D]_μν = Σ_λσ (μν|λσ) D_λσ

with D⁰ = ⊕_A D_A the superposition of neutral spherical atomic densities (PySCF `init_guess_by_atom`,
block-diagonal, so it moves rigidly with its atoms). H_KS = H⁰ + ΔH_θ; for PBE, ΔH = V_xc[ρ] (+ J[ρ − ρ⁰]).
"core" alone leaves the unscreened −Z/r of every nucleus in H⁰ and its +Z/r screening in ΔH; "core+hartree"
puts the screening (the Hartree potential of neutral atoms) into H⁰ too, so ΔH is short-ranged and small.

Forces stay exact: the backward contracts the incoming gradient with the full derivative

    ∂H⁰_μν/∂R_A = (PySCF `hcore_generator`: basis-centre and operator derivatives of T + V_nuc)
                  − (∇μ ν|D⁰) δ_{μ∈A} − (μ ∇ν|D⁰) δ_{ν∈A} − 2 Σ_{λσ∈A} (∇λ σ|μν) D⁰_λσ     (int2e_ip1 = (∇μ ν|λσ);
                                                                                ∂/∂R = −∇ on a centred function)

The derivative tensor is natm·3·nao² floats (24 MB for 100 atoms × 100 orbitals); second derivatives in the
positions are not provided (the integral derivatives are constants), as for the exact overlap. Molecules only:
periodic PySCF data use pseudopotentials and k-points, which this baseline does not cover.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from fastqmd.nnh.exact_overlap import cached_operator
from fastqmd.units import BOHR_ANG, HARTREE_EV

BaselineKind = Literal["core", "core+hartree"]


class CoreHamiltonian:
    """H⁰(R) for a fixed list of elements, PySCF basis and kind (module docstring)."""

    def __init__(self, symbols: list[str], basis: str, kind: BaselineKind = "core"):
        from pyscf import gto, scf

        from fastqmd.nnh.exact_overlap import placeholder_molecule
        from fastqmd.reference.pyscf_mol import pyscf_to_fastqmd_perm

        if kind not in ("core", "core+hartree"):
            raise ValueError(f"unknown H baseline {kind!r} (core, core+hartree)")
        self.symbols, self.kind = list(symbols), kind
        n_e = sum(gto.charge(s) for s in self.symbols)
        self.mol = placeholder_molecule(self.symbols, basis, spin=n_e % 2)
        self.perm = pyscf_to_fastqmd_perm(self.mol)
        self.ao_atom = self.mol.aoslice_by_atom()[:, 2:4]
        self.D0 = scf.hf.init_guess_by_atom(self.mol) if kind == "core+hartree" else None  # PySCF order
        self._memo: dict[bytes, tuple] = {}  # training revisits its geometries: (H⁰, ∂H⁰/∂R or None) per geometry

    def matrices(self, positions_A: np.ndarray, derivative: bool = True, memo_bytes: float = 5e8):
        """`_matrices`, remembered per geometry (exact bytes of the positions), up to ~`memo_bytes` in all."""
        nao = len(self.perm)
        memo_size = max(1, int(memo_bytes // ((1 + 3 * self.mol.natm) * nao * nao * 8)))
        key = np.ascontiguousarray(positions_A, dtype=np.float64).tobytes()
        hit = self._memo.get(key)
        if hit is not None and (hit[1] is not None or not derivative):
            return hit
        if len(self._memo) >= memo_size:
            self._memo.clear()
        out = self._memo[key] = self._matrices(positions_A, derivative)
        return out

    def _matrices(self, positions_A: np.ndarray, derivative: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """(H⁰ [nao, nao] eV, ∂H⁰/∂R [natm, 3, nao, nao] eV/Å or None), fastqmd ordering."""
        from pyscf.grad import rhf as rhf_grad
        from pyscf.scf import jk

        mol = self.mol
        mol.set_geom_(positions_A, unit="Angstrom")
        H = mol.intor_symmetric("int1e_kin") + mol.intor_symmetric("int1e_nuc")
        if mol.has_ecp():
            H = H + mol.intor_symmetric("ECPscalar")
        if self.D0 is not None:
            H = H + jk.get_jk(mol, self.D0, "ijkl,lk->s1ij", intor="int2e")
        p = self.perm
        H = H[np.ix_(p, p)] * HARTREE_EV
        if not derivative:
            return 0.5 * (H + H.T), None
        hcore_deriv = rhf_grad.Gradients(mol.RHF()).hcore_generator(mol)
        dH = np.stack([hcore_deriv(a) for a in range(mol.natm)])  # [natm, 3, nao, nao] Ha/Bohr
        if self.D0 is not None:
            D, blocks = self.D0, []
            for i0, i1 in self.ao_atom:
                Da = np.zeros_like(D)
                Da[i0:i1, i0:i1] = D[i0:i1, i0:i1]
                blocks.append(Da)
            # one pass over (∇μ ν|λσ): the bra contraction Σ (∇μ ν|λσ) D_σλ and, per atom, Σ_λσ (∇λ σ|μν) D^A_σλ
            out = jk.get_jk(mol, [D] + blocks, ["ijkl,lk->s1ij"] + ["ijkl,ji->s1kl"] * len(blocks),
                            intor="int2e_ip1", comp=3)
            bra = out[0]  # [3, nao, nao]
            for a, (i0, i1) in enumerate(self.ao_atom):
                dH[a, :, i0:i1, :] -= bra[:, i0:i1, :]
                dH[a, :, :, i0:i1] -= bra[:, i0:i1, :].transpose(0, 2, 1)
                dH[a] -= 2.0 * out[1 + a]
        dH = dH[:, :, p][:, :, :, p] * (HARTREE_EV / BOHR_ANG)
        return 0.5 * (H + H.T), dH

    def __call__(self, positions: Tensor) -> Tensor:
        """H⁰ (eV) at `positions` (Å), [nao, nao] float64."""
        return _Baseline.apply(positions, self)


class _Baseline(torch.autograd.Function):
    @staticmethod
    def forward(ctx, positions: Tensor, op: CoreHamiltonian) -> Tensor:
        H, dH = op.matrices(positions.detach().cpu().numpy().astype(np.float64), ctx.needs_input_grad[0])
        ctx.dH = torch.as_tensor(dH, device=positions.device) if dH is not None else None
        return torch.as_tensor(H, device=positions.device)

    @staticmethod
    def backward(ctx, G: Tensor):
        """∂L/∂R_A,x = Σ_μν G_μν ∂H⁰_μν/∂R_A,x (linear in G: a force loss back-propagates through it)."""
        return torch.einsum("axij,ij->ax", ctx.dH, G.real.to(ctx.dH.dtype)), None


class CoreBaselineProvider:
    """The energy model's H⁰ seam: H⁰(frame, positions) [1, nao, nao] eV; one cached `CoreHamiltonian` per
    element list."""

    def __init__(self, pyscf_basis: str, kind: BaselineKind, max_cached: int = 8):
        self.basis, self.kind, self.max_cached = pyscf_basis, kind, max_cached
        self._cache: dict = {}

    def operator(self, symbols) -> CoreHamiltonian:
        key = tuple(symbols)
        return cached_operator(self._cache, key, lambda: CoreHamiltonian(list(key), self.basis, self.kind),
                               self.max_cached)

    def __call__(self, symbols, positions: Tensor) -> Tensor:
        return self.operator(symbols)(positions.to(torch.float64))[None]
