"""The NNH energy model: E(R) = Ω[H_θ(R) (+ H⁰(R)), S(R)] + E_rep,φ(R) + Σ_i e_{Z_i}, with forces and stress by autograd.

In:  a `Frame` (element symbols, k-points [nk, 3] fractional with weights [nk]) and torch positions [N, 3] Å,
     cell [3, 3] Å (rows; zeros for molecules) in float64, plus a `Graph` (`EnergyModel.graph`, or none: then
     the model's `GraphCache` supplies it).
Out: `EnergyParts`: E (eV, float64 0-d), Ω, E_rep, H(k) [nk, nao, nao] eV and S(k) (float64/complex128).

    Ω = Σ_k w_k Σ_n f_nk ε_nk − kT S_el   (Mermin, `fastqmd.electronic.free_energy`; mode "band": Σ w f ε)

at the reference's electronic temperature T (kT = k_B T) and electron count N_e = Σ_i v_{Z_i} (valence
electrons per element, derived from the training data by `fastqmd.nnh.targets.valence_electrons`); e_Z are
per-element reference energies fitted by least squares on the training set (constants: no force).
S comes through one seam, `fastqmd.nnh.overlap.OverlapProvider` (config `overlap`, a union on `kind`): the exact
PySCF overlap ("exact", `ExactS`, exact dS/dR; PySCF datasets), tblite's exact overlap from radial tables
("table", `TabulatedS`; tblite datasets), GPAW's exact PAW overlap from radial tables ("gpaw-table",
`GPAWTabulatedS`; gpaw-lcao datasets) or the learned two-centre head ("learned", `LearnedS`). S is
Cholesky-factored once per forward (the positive-definiteness check) and the factor goes on to the free energy.
An optional exact baseline H⁰(R) (config `h_baseline`, `fastqmd.nnh.core_baseline`: T + V_nuc [+ J of neutral
atoms], PySCF molecules) is added to the network's H, so the network learns only the rest. With the charge
channel (`model.electrostatics`, `fastqmd.nnh.electrostatics`) H(k) also gets ½(U S + S U), the level shift of
the latent charges' long-range (Ewald) potential.
The H network, learned S head and E_rep share one graph built at the largest of their cutoffs (+ an optional
skin): every term is multiplied by its polynomial envelope, so edges beyond a term's own cutoff add exactly zero.
The tabulated S reaches much further (Cu GFN1: 14.5 Å) and takes its own graph from the same `GraphCache`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor

from fastqmd.config import FrozenModel
from fastqmd.electronic import Spectrum, free_energy
from fastqmd.electronic.free_energy import density_matrices, solve_spectrum
from fastqmd.errors import InputError
from fastqmd.nnh.blocks import to_kspace
from fastqmd.nnh.core_baseline import CoreBaselineProvider
from fastqmd.nnh.electrostatics import COULOMB_EV_A, level_shift, potential
from fastqmd.nnh.exact_overlap import ExactS
from fastqmd.nnh.gpaw_overlap import GPAWTableConfig, GPAWTabulatedOverlap, GPAWTabulatedS
from fastqmd.nnh.graph import Graph, GraphCache, build_graph
from fastqmd.nnh.ks_functional import KSFunctional, PySCFKSProvider
from fastqmd.nnh.model import NNHConfig, NNHModel
from fastqmd.nnh.overlap import LearnedS, OverlapConfig, OverlapProvider, TwoCentreOverlap, check_positive_definite
from fastqmd.nnh.repulsion import Repulsion, RepulsionConfig
from fastqmd.nnh.tblite_overlap import TableConfig, TabulatedOverlap, TabulatedS
from fastqmd.units import KB_EV


class ExactOverlap(FrozenModel):
    """S from PySCF integrals in `pyscf_basis` (PySCF datasets)."""

    kind: Literal["exact"] = "exact"
    pyscf_basis: str


class TableOverlap(FrozenModel):
    """tblite's S from radial spline tables (tblite datasets)."""

    kind: Literal["table"] = "table"
    table: TableConfig


class GPAWTableOverlap(FrozenModel):
    """GPAW's LCAO overlap (pseudo-orbital + PAW projector terms) from radial spline tables (gpaw-lcao datasets)."""

    kind: Literal["gpaw-table"] = "gpaw-table"
    table: GPAWTableConfig


class LearnedOverlap(FrozenModel):
    """The learned two-centre S head."""

    kind: Literal["learned"] = "learned"
    s: OverlapConfig


class CoreBaseline(FrozenModel):
    """H⁰(R) added to the network's H (`fastqmd.nnh.core_baseline`): T + V_nuc ("core"), + the Hartree matrix of
    neutral atoms ("core+hartree"), from PySCF integrals in `pyscf_basis` (molecular PySCF datasets)."""

    kind: Literal["core", "core+hartree"]
    pyscf_basis: str


OverlapSpec = Annotated[ExactOverlap | TableOverlap | GPAWTableOverlap | LearnedOverlap, Field(discriminator="kind")]
_FLAT_OVERLAP_KEYS = {"exact": "pyscf_basis", "table": "table", "learned": "s"}  # model files before the union


class EnergyModelConfig(FrozenModel):
    """Everything needed to rebuild an `EnergyModel` (stored as JSON in every checkpoint).

    Model files written before `overlap` was a union (`overlap: "exact"|"table"|"learned"` with the sibling keys
    `pyscf_basis`, `table`, `s`) are read as the union."""

    h: NNHConfig
    overlap: OverlapSpec
    repulsion: RepulsionConfig
    # "ks": E = E_KS[P(H, S)] of the reference functional (`fastqmd.nnh.ks_functional`, PySCF molecules, kT = 0),
    # no E_rep and no fitted constants
    energy_mode: Literal["mermin", "band", "ks"] = "mermin"
    ks_functional: KSFunctional | None = None
    electronic_temperature_K: float
    spin_factor: float = 2.0
    valence_electrons: dict[str, float]
    reference_energies: dict[str, float] = {}  # eV per atom of each element
    s_grad_from_energy: bool = True  # False: E/F/H losses do not move a learned S head (it learns from L_S only)
    h_baseline: CoreBaseline | None = None  # H = H_θ + H⁰(R): the network learns only the rest

    @model_validator(mode="before")
    @classmethod
    def _flat_overlap(cls, data: Any) -> Any:
        """Old flat form → union: {overlap: kind, <its key>: value, other keys None} → {overlap: {kind, key}}."""
        if not isinstance(data, dict) or not isinstance(data.get("overlap"), str):
            return data
        data = dict(data)
        kind = data["overlap"]
        values = {key: data.pop(key, None) for key in _FLAT_OVERLAP_KEYS.values()}
        spec: dict[str, Any] = {"kind": kind}
        for key, value in values.items():
            if key == _FLAT_OVERLAP_KEYS.get(kind):
                if value is not None:
                    spec[key] = value
            elif value is not None:
                raise ValueError(f"overlap {kind!r} takes no {key!r}")
        data["overlap"] = spec
        return data

    @model_validator(mode="after")
    def _same_basis(self) -> EnergyModelConfig:
        inner = {"learned": "s", "table": "table", "gpaw-table": "table"}.get(self.overlap.kind)  # the exact S takes the dataset's basis
        basis = getattr(self.overlap, inner).basis if inner else self.h.basis
        if {k: tuple(v) for k, v in basis.items()} != self.h.basis:
            raise ValueError(f"overlap basis {basis} differs from the H model's {self.h.basis}")
        if (self.energy_mode == "ks") != (self.ks_functional is not None):
            raise ValueError("energy_mode 'ks' and ks_functional go together")
        if self.energy_mode == "ks" and (self.electronic_temperature_K > 0 or self.overlap.kind != "exact"):
            raise ValueError("energy_mode 'ks' needs unsmeared data (kT = 0) and the exact PySCF overlap")
        return self


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
    """H network + S provider (learned head | exact PySCF | tabulated tblite | tabulated GPAW) + E_rep + per-element reference
    energies, and the one `GraphCache` (`graphs`) its terms and `NNHPotential` share."""

    def __init__(self, config: EnergyModelConfig):
        super().__init__()
        self.config = config
        self.h = NNHModel(config.h)
        self.species = self.h.species
        self.graphs = GraphCache(self.species, self.h.layout.n_orbitals)
        ov = config.overlap
        self.overlap: OverlapProvider  # S(frame, positions, cell[, graph]) -> S(k)
        if isinstance(ov, LearnedOverlap):
            self.s = TwoCentreOverlap(ov.s)
            self.overlap = LearnedS(self.s, self.graphs, grad_from_energy=config.s_grad_from_energy)
        elif isinstance(ov, TableOverlap):
            self.s = TabulatedOverlap(ov.table)
            self.overlap = TabulatedS(self.s, self.graphs)
        elif isinstance(ov, GPAWTableOverlap):
            self.s = GPAWTabulatedOverlap(ov.table)
            self.overlap = GPAWTabulatedS(self.s, self.graphs)
        else:
            self.overlap = ExactS(ov.pyscf_basis)
        self.rep = Repulsion(config.repulsion)
        b = config.h_baseline
        self.baseline = CoreBaselineProvider(b.pyscf_basis, b.kind) if b is not None else None
        self.ks = PySCFKSProvider(config.ks_functional) if config.ks_functional is not None else None

    @property
    def s_grad_from_energy(self) -> bool:
        """Whether the energy's gradient reaches a learned S head's parameters (`config.s_grad_from_energy`)."""
        return self.config.s_grad_from_energy

    @property
    def dtype(self) -> torch.dtype:
        return self.h.dtype

    @property
    def kT(self) -> float:
        return KB_EV * self.config.electronic_temperature_K

    @property
    def cutoff(self) -> float:
        """The shared graph's cutoff (Å): the largest of the H network's, E_rep's and a learned S head's."""
        cuts = [self.config.h.cutoff, self.config.repulsion.cutoff]
        if isinstance(self.config.overlap, LearnedOverlap):
            cuts.append(self.config.overlap.s.cutoff)
        return max(cuts)

    def check_elements(self, symbols) -> None:
        """InputError (one line) if the structure has elements this model was not built for."""
        missing = sorted(set(symbols) - set(self.species))
        if missing:
            raise InputError(f"the NNH model has no element {', '.join(missing)} (its elements: "
                             f"{', '.join(self.species)})")

    def n_electrons(self, symbols) -> float:
        """N_e = Σ_i v_{Z_i}."""
        v = self.config.valence_electrons
        return float(sum(v[s] for s in symbols))

    def reference_energy(self, symbols) -> float:
        """Σ_i e_{Z_i} (eV)."""
        e = self.config.reference_energies
        return float(sum(e.get(s, 0.0) for s in symbols))

    def graph(self, symbols, positions: np.ndarray, cell: np.ndarray, pbc, skin: float = 0.0) -> Graph:
        """A fresh graph for all local terms at max(cutoffs) + skin (Å) (`graphs` keeps reusable ones)."""
        return build_graph(list(symbols), np.asarray(positions, dtype=np.float64), np.asarray(cell, dtype=np.float64),
                           pbc, self.cutoff + skin, self.species, self.h.layout.n_orbitals)

    def hamiltonian(self, frame: Frame, positions: Tensor, cell: Tensor, graph: Graph,
                    S: Tensor | None = None) -> Tensor:
        """H(k) = H_θ(k) + H⁰(R) [+ ½(U S(k) + S(k) U)] [nk, nao, nao] eV, float64/complex128 (H⁰ = 0 without
        `h_baseline`; the last term is the charge channel's level shift, `fastqmd.nnh.electrostatics`, which
        needs S(k): computed here when not given)."""
        dt = self.dtype
        kpts = torch.as_tensor(frame.kpoints, dtype=dt, device=positions.device)
        blocks = self.h(positions.to(dt), cell.to(dt), graph)
        H = to_kspace(blocks, graph, kpts)
        H = H.to(torch.complex128 if H.is_complex() else torch.float64)
        if self.baseline is not None:
            H = H + self.baseline(frame.symbols, positions).to(H.dtype)
        if blocks.charges is not None:
            if S is None:
                S = self.overlap(frame, positions, cell, graph)
            if S.is_complex() and not H.is_complex():
                H = H.to(torch.complex128)
            H = level_shift(H, S, self.orbital_level_shift(frame, positions, cell, graph, blocks.charges))
        return H

    def orbital_level_shift(self, frame: Frame, positions: Tensor, cell: Tensor, graph: Graph,
                            charges: Tensor) -> Tensor:
        """u [nao] eV: −k_e φ_i of the charges' potential (`fastqmd.nnh.electrostatics.potential`) on every
        orbital of atom i."""
        es = self.config.h.electrostatics
        q = charges.to(torch.float64)
        phi = potential(q, positions.to(torch.float64), cell.to(torch.float64), frame.pbc, graph.edge_i,
                        graph.edge_j, graph.shifts, es, self.config.h.cutoff)
        sizes = graph.orbital_offsets[1:] - graph.orbital_offsets[:-1]
        return torch.repeat_interleave(-COULOMB_EV_A * phi, sizes)

    def forward(self, frame: Frame, positions: Tensor, cell: Tensor, graph: Graph | None = None) -> EnergyParts:
        """E = Ω[H(k), S(k)] + E_rep + Σ e_Z at the frame's k-points (module docstring)."""
        if graph is None:
            graph = self.graphs.get(frame.symbols, frame.pbc, positions.detach().cpu().numpy(),
                                    cell.detach().cpu().numpy(), self.cutoff, device=positions.device)
        dt = self.dtype
        p, c = positions.to(dt), cell.to(dt)
        kw = torch.as_tensor(frame.kweights, dtype=torch.float64, device=positions.device)
        S = self.overlap(frame, positions, cell, graph)  # [nk, nao, nao] float64/complex128
        H = self.hamiltonian(frame, positions, cell, graph, S)
        if S.is_complex() and not H.is_complex():
            H = H.to(torch.complex128)
        L = check_positive_definite(S)  # the one factorization of S in this forward (and its backward)
        n_e, g = self.n_electrons(frame.symbols), self.config.spin_factor
        if self.ks is not None:  # E_KS at the density matrix of H: variational, no E_rep
            if any(frame.pbc):
                raise InputError("this NNH model's energy_mode 'ks' (a molecular PySCF functional) treats molecules "
                                 "only; the structure is periodic")
            spectrum = solve_spectrum(H, S, kw, n_e, self.kT, g, L)
            P = density_matrices(H, S, kw, n_e, self.kT, g, spectrum=spectrum)[0][0]
            E = self.ks(frame.symbols, P, positions)
            return EnergyParts(E, E, torch.zeros_like(E), H, S, spectrum)
        sink: dict = {}
        omega = free_energy(H, S, kw, n_electrons=n_e, kT=self.kT, spin_factor=g, mode=self.config.energy_mode,
                            sink=sink, cholesky=L)
        e_rep = self.rep(p, c, graph).to(torch.float64)
        E = omega + e_rep + self.reference_energy(frame.symbols)
        return EnergyParts(E, omega, e_rep, H, S, sink["spectrum"])


def energy_forces(model: EnergyModel, frame: Frame, positions: Tensor, cell: Tensor, graph: Graph | None = None,
                  create_graph: bool = False, stress: bool = False):
    """(EnergyParts, F = −∂E/∂R [N, 3] eV/Å, stress [3, 3] eV/Å³ or None) — the one place forces come from.

    Stress σ = (1/V) ∂E/∂ε at ε = 0 for the homogeneous strain R → R(1+ε), cell → cell(1+ε):
    σ = (Rᵀ ∂E/∂R + cellᵀ ∂E/∂cell)/V (symmetrised). Needs a cell-differentiable S (learned head or table).
    """
    positions = positions if positions.requires_grad else positions.detach().requires_grad_(True)
    want_cell = stress and model.overlap.cell_differentiable
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
