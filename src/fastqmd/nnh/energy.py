"""The NNH energy model: E(R) = Ω[H_θ(R), S(R)] + E_rep,φ(R) + Σ_i e_{Z_i}, with forces and stress by autograd.

In:  a `Frame` (element symbols, k-points [nk, 3] fractional with weights [nk]) and torch positions [N, 3] Å,
     cell [3, 3] Å (rows; zeros for molecules) in float64, plus a `Graph` (`EnergyModel.graph`).
Out: `EnergyParts`: E (eV, float64 0-d), Ω, E_rep, H(k) [nk, nao, nao] eV and S(k) (float64/complex128).

    Ω = Σ_k w_k Σ_n f_nk ε_nk − kT S_el   (Mermin, `fastqmd.electronic.free_energy`; mode "band": Σ w f ε)

at the reference's electronic temperature T (kT = k_B T) and electron count N_e = Σ_i v_{Z_i} (valence
electrons per element, derived from the training data by `fastqmd.nnh.targets.valence_electrons`); e_Z are
per-element reference energies fitted by least squares on the training set (constants: no force). S is the
exact PySCF overlap (`PySCFOverlap`, exact dS/dR; PySCF datasets), tblite's exact overlap from radial tables
(`TabulatedOverlap`, overlap "table"; tblite datasets) or the learned two-centre head ("learned").
The H network, learned S head and E_rep share one graph built at the largest of their cutoffs (+ an optional
skin): every term is multiplied by its polynomial envelope, so edges beyond a term's own cutoff add exactly zero.
The tabulated S reaches much further (Cu GFN1: 14.5 Å) and gets its own graph (`TabulatedOverlap.cached_graph`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from fastqmd.config import FrozenModel
from fastqmd.electronic import Spectrum, free_energy
from fastqmd.electronic.tblite_overlap import TableConfig, TabulatedOverlap
from fastqmd.nnh.blocks import to_kspace
from fastqmd.nnh.graph import Graph, build_graph
from fastqmd.nnh.model import NNHConfig, NNHModel
from fastqmd.nnh.overlap import OverlapConfig, TwoCentreOverlap, check_positive_definite
from fastqmd.nnh.repulsion import Repulsion, RepulsionConfig
from fastqmd.units import KB_EV


class EnergyModelConfig(FrozenModel):
    """Everything needed to rebuild an `EnergyModel` (stored as JSON in every checkpoint)."""

    h: NNHConfig
    overlap: Literal["exact", "learned", "table"]
    s: OverlapConfig | None = None  # required when overlap == "learned"
    table: TableConfig | None = None  # required when overlap == "table"
    repulsion: RepulsionConfig
    energy_mode: Literal["mermin", "band"] = "mermin"
    electronic_temperature_K: float
    spin_factor: float = 2.0
    valence_electrons: dict[str, float]
    reference_energies: dict[str, float] = {}  # eV per atom of each element
    pyscf_basis: str | None = None  # required when overlap == "exact"


@dataclass(frozen=True)
class Frame:
    """What the energy needs besides coordinates: symbols, pbc [3] bool, k-points [nk, 3] and weights [nk]."""

    symbols: tuple[str, ...]
    pbc: tuple[bool, bool, bool]
    kpoints: np.ndarray
    kweights: np.ndarray


@dataclass(frozen=True)
class EnergyParts:
    energy: Tensor  # 0-d eV (float64), total E
    omega: Tensor  # 0-d eV, Ω (or Σ f ε in band mode)
    repulsion: Tensor  # 0-d eV
    H: Tensor  # [nk, nao, nao] eV
    S: Tensor  # [nk, nao, nao]
    spectrum: Spectrum  # the eigensolution behind Ω (detached): ε per frame without a 2nd eigh


class EnergyModel(torch.nn.Module):
    """H network + (learned S head | exact PySCF S | tabulated tblite S) + E_rep + per-element reference energies."""

    def __init__(self, config: EnergyModelConfig):
        super().__init__()
        self.config = config
        self.h = NNHModel(config.h)
        self.species = self.h.species
        if config.overlap == "learned":
            if config.s is None:
                raise ValueError("overlap 'learned' needs an OverlapConfig `s`")
            self.s = TwoCentreOverlap(config.s)
        elif config.overlap == "table":
            if config.table is None:
                raise ValueError("overlap 'table' needs a TableConfig `table`")
            self.s = TabulatedOverlap(config.table)
        elif config.pyscf_basis is None:
            raise ValueError("overlap 'exact' needs `pyscf_basis`")
        self.rep = Repulsion(config.repulsion)
        self._exact_cache: dict = {}
        # training: False stops the E/F/H losses from moving the S head (it learns from L_S only), while S
        # keeps its full position dependence (Pulay forces)
        self.s_grad_from_energy = True

    @property
    def dtype(self) -> torch.dtype:
        return self.h.dtype

    @property
    def kT(self) -> float:
        return KB_EV * self.config.electronic_temperature_K

    @property
    def cutoff(self) -> float:
        cuts = [self.config.h.cutoff, self.config.repulsion.cutoff]
        if self.config.overlap == "learned":
            cuts.append(self.config.s.cutoff)
        return max(cuts)

    def n_electrons(self, symbols) -> float:
        """N_e = Σ_i v_{Z_i}."""
        v = self.config.valence_electrons
        return float(sum(v[s] for s in symbols))

    def reference_energy(self, symbols) -> float:
        """Σ_i e_{Z_i} (eV)."""
        e = self.config.reference_energies
        return float(sum(e.get(s, 0.0) for s in symbols))

    def graph(self, symbols, positions: np.ndarray, cell: np.ndarray, pbc, skin: float = 0.0) -> Graph:
        """One graph for all terms at max(cutoffs) + skin (Å)."""
        return build_graph(list(symbols), np.asarray(positions, dtype=np.float64), np.asarray(cell, dtype=np.float64),
                           pbc, self.cutoff + skin, self.species, self.h.layout.n_orbitals)

    def exact_overlap(self, frame: Frame, cell: np.ndarray):
        """Cached `PySCFOverlap` for this frame's elements, cell and k-points."""
        from fastqmd.electronic.exact_overlap import PySCFOverlap

        periodic = any(frame.pbc)
        key = (frame.symbols, periodic, np.asarray(cell).tobytes() if periodic else b"",
               np.asarray(frame.kpoints).tobytes())
        op = self._exact_cache.get(key)
        if op is None:
            if len(self._exact_cache) > 8:
                self._exact_cache.clear()
            op = PySCFOverlap(list(frame.symbols), self.config.pyscf_basis, cell=cell if periodic else None,
                              kpts_frac=np.asarray(frame.kpoints) if periodic else None)
            self._exact_cache[key] = op
        return op

    def overlap(self, frame: Frame, p: Tensor, c: Tensor, positions: Tensor, graph: Graph, kpts: Tensor,
                cell: Tensor | None = None) -> Tensor:
        """S(k) [nk, nao, nao] (float64/complex128): learned head, tabulated tblite S (float64, on its own graph),
        or exact PySCF (gradient to positions only)."""
        if self.config.overlap == "table":
            cell = c if cell is None else cell
            sg = self.s.cached_graph(frame.symbols, positions.detach().cpu().numpy(), cell.detach().cpu().numpy(),
                                     frame.pbc, positions.device)
            k64 = torch.as_tensor(frame.kpoints, dtype=torch.float64, device=positions.device)
            S = to_kspace(self.s(positions.to(torch.float64), cell.to(torch.float64), sg), sg, k64)
        elif self.config.overlap == "learned":
            if self.s_grad_from_energy:
                blocks = self.s(p, c, graph)
            else:
                frozen = {k: v.detach() for k, v in self.s.named_parameters()}
                frozen.update(dict(self.s.named_buffers()))
                blocks = torch.func.functional_call(self.s, frozen, (p, c, graph))
            S = to_kspace(blocks, graph, kpts)
            S = S.to(torch.complex128 if S.is_complex() else torch.float64)
        else:
            S = self.exact_overlap(frame, c.detach().cpu().numpy().astype(np.float64))(positions)
            S = S if S.dim() == 3 else S[None]
        check_positive_definite(S)
        return S

    def forward(self, frame: Frame, positions: Tensor, cell: Tensor, graph: Graph) -> EnergyParts:
        """E = Ω[H(k), S(k)] + E_rep + Σ e_Z at the frame's k-points (module docstring)."""
        dt = self.dtype
        p, c = positions.to(dt), cell.to(dt)
        kpts = torch.as_tensor(frame.kpoints, dtype=torch.float64, device=positions.device)
        kw = torch.as_tensor(frame.kweights, dtype=torch.float64, device=positions.device)
        H = to_kspace(self.h(p, c, graph), graph, kpts.to(dt))
        H = H.to(torch.complex128 if H.is_complex() else torch.float64)
        S = self.overlap(frame, p, c, positions, graph, kpts.to(dt), cell)
        if S.is_complex() and not H.is_complex():
            H = H.to(torch.complex128)
        sink: dict = {}
        omega = free_energy(H, S, kw, n_electrons=self.n_electrons(frame.symbols), kT=self.kT,
                            spin_factor=self.config.spin_factor, mode=self.config.energy_mode, sink=sink)
        e_rep = self.rep(p, c, graph).to(torch.float64)
        E = omega + e_rep + self.reference_energy(frame.symbols)
        return EnergyParts(E, omega, e_rep, H, S, sink["spectrum"])


def energy_forces(model: EnergyModel, frame: Frame, positions: Tensor, cell: Tensor, graph: Graph,
                  create_graph: bool = False, stress: bool = False):
    """(EnergyParts, F = −∂E/∂R [N, 3] eV/Å, stress [3, 3] eV/Å³ or None) — the one place forces come from.

    Stress σ = (1/V) ∂E/∂ε at ε = 0 for the homogeneous strain R → R(1+ε), cell → cell(1+ε):
    σ = (Rᵀ ∂E/∂R + cellᵀ ∂E/∂cell)/V (symmetrised). Needs a cell-differentiable S (learned head or table).
    """
    positions = positions if positions.requires_grad else positions.detach().requires_grad_(True)
    want_cell = stress and model.config.overlap in ("learned", "table")
    if want_cell:
        cell = cell.detach().requires_grad_(True)
    parts = model(frame, positions, cell, graph)
    inputs = (positions, cell) if want_cell else (positions,)
    grads = torch.autograd.grad(parts.energy, inputs, create_graph=create_graph)
    F = -grads[0]
    sigma = None
    if want_cell:
        V = torch.abs(torch.linalg.det(cell.detach()))
        vir = positions.detach().T @ grads[0] + cell.detach().T @ grads[1]
        sigma = 0.5 * (vir + vir.T) / V
    return parts, F, sigma
