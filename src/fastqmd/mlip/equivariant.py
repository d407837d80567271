"""The equivariant message-passing MLIP (`model.kind: equivariant`, NequIP/SevenNet style): the NN Hamiltonian's
trunk with an energy head — one backbone, two heads, so "learn H" and "learn E" differ only in the head.

In:  an `AtomsBatch` (`fastqmd.mlip.kind`: structures concatenated atom-wise with their neighbour graph at
     `spec.cutoff`); geometry is read only through `batch.edge_vectors()` (r_ij = R_j − R_i + shift·cell, Å).
Out: E_s − Σ_{i∈s} e_{Z_i} [S] eV (the per-element offsets e_Z, forces −∂E/∂R and stress (1/V) ∂E/∂ε are
     `MLIPModel`'s and `energy_forces_stress`'s, the same for every architecture); per-atom terms [N] eV.

    h_i   = trunk of `fastqmd.nnh.backbone.MessagePassing`: species embedding, Bessel radial basis × polynomial
            envelope u(d), Y^l(r̂_ij) (l ≤ lmax), n_layers gated Clebsch–Gordan convolutions — the same layers,
            code and state_dict keys (`embed.*`, `layers.*`) as `fastqmd.nnh.model.NNHModel`;
    ê_i   = Lin_2(Lin_1(h_i)),  Lin_1: hidden → k×0e (reads the scalars of h_i), Lin_2: k×0e → 1×0e, with biases
            (SevenNet's reduce_input_to_hidden / reduce_hidden_to_energy, NequIP's conv_to_output_hidden);
    E_i   = σ ê_i,  σ = the training set's RMS force component (its value in eV/Å read as eV; NequIP's default), so
            that a unit-scale network output is a typical energy change.
Message normalisation 1/⟨n⟩ with ⟨n⟩ = `spec.avg_num_neighbors`, by default the training set's mean neighbour
count within the cutoff. E is invariant and F, σ covariant under rotations, reflections, translations and permutations
(float64 ~1e-12), and E_i depends only on atoms within n_layers × cutoff of i (`receptive_field`): the
receptive field that lets message passing see beyond one cutoff.
"""

from __future__ import annotations

from typing import Literal

import torch
from e3nn import o3
from pydantic import Field, PositiveFloat, PositiveInt, field_validator
from torch import Tensor

from fastqmd.mlip.kind import ArchitectureSpec, AtomsBatch, TrainingStatistics
from fastqmd.nnh.backbone import MessagePassing, hidden_irreps
from fastqmd.nnh.layers import IrrepsLinear
from fastqmd.nnh.radial import default_dtype


class EquivariantSpec(ArchitectureSpec):
    """`model:` of the equivariant MLIP: the trunk's hyperparameters (as in the NNH config) and the readout width."""

    kind: Literal["equivariant"] = "equivariant"
    cutoff: PositiveFloat = 5.0  # Å
    n_radial: PositiveInt = 8
    radial_hidden: PositiveInt = 32
    envelope_exponent: PositiveInt = 6
    lmax: int = Field(2, ge=1)  # edge spherical harmonics
    n_scalars_embed: PositiveInt = 32
    hidden_irreps: str = "32x0e+16x1o+16x1e+8x2e+8x2o"
    n_layers: PositiveInt = 3
    avg_num_neighbors: PositiveFloat | None = None  # 1/⟨n⟩ normalisation; None: the training set's mean
    readout_hidden: PositiveInt = 16  # k in hidden → k×0e → 1×0e

    @field_validator("hidden_irreps")
    @classmethod
    def _irreps(cls, v: str) -> str:
        try:
            irreps = hidden_irreps(v)
        except (ValueError, AssertionError) as exc:
            raise ValueError(f"not an irreps string ({exc})") from None
        kinds = {str(ir) for _, ir in irreps}
        if "0e" not in kinds or "0o" in kinds:
            raise ValueError(f"{v!r} needs 0e scalars (the energy readout) and no 0o (the gate)")
        return v


class EquivariantEnergy(MessagePassing):
    """Σ_{i∈s} σ ê_i per structure (module docstring); the offsets are `MLIPModel`'s."""

    def __init__(self, spec: EquivariantSpec, n_species: int, avg_num_neighbors: float, energy_scale: float):
        with default_dtype(torch.float64):
            super().__init__(n_species, cutoff=spec.cutoff, n_radial=spec.n_radial, radial_hidden=spec.radial_hidden,
                             envelope_exponent=spec.envelope_exponent, lmax=spec.lmax,
                             n_scalars_embed=spec.n_scalars_embed, hidden=spec.hidden_irreps,
                             n_layers=spec.n_layers, avg_num_neighbors=avg_num_neighbors)
            k = o3.Irreps(f"{spec.readout_hidden}x0e")
            self.readout_hidden = IrrepsLinear(self.hidden, k, biases=True)
            self.readout_energy = IrrepsLinear(k, o3.Irreps("1x0e"), biases=True)
        self.energy_scale = float(energy_scale)  # σ, eV

    def atomic_energies(self, batch: AtomsBatch) -> Tensor:
        """E_i = σ ê_i [N] eV (without the offsets)."""
        h, *_ = self.trunk(batch.edge_vectors(), batch.species, batch.edge_i, batch.edge_j)  # [N, hidden]
        return self.energy_scale * self.readout_energy(self.readout_hidden(h))[:, 0]

    def forward(self, batch: AtomsBatch) -> Tensor:
        return batch.sum_per_structure(self.atomic_energies(batch))  # [S]


def build_equivariant(spec: EquivariantSpec, elements: list[str], stats: TrainingStatistics) -> EquivariantEnergy:
    """The network of `spec` for `elements`; ⟨n⟩ and σ from the (saved) training statistics."""
    return EquivariantEnergy(spec, len(elements), spec.avg_num_neighbors or stats.avg_num_neighbors, stats.force_rms)
