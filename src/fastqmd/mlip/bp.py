"""The Behler–Parrinello potential (J. Behler, M. Parrinello, PRL 98, 146401 (2007)) as an MLIP architecture
(`model.kind: bp`, `fastqmd.mlip.kind`).

    E = Σ_i e_{Z_i} + Σ_i s · NN_{Z_i}( (G_i − μ_{Z_i}) / σ_{Z_i} )

G_i the symmetry functions of atom i (`fastqmd.mlip.descriptors`, n2p2 grids from `BPSpec`), μ/σ their
per-element mean and standard deviation over the training atoms (buffers, saved with the model; σ < 1e-8·max σ
→ 1), one MLP per element, s the training-set RMS force component (eV/Å, an energy scale per Å of feature change),
e_Z the least-squares offsets `MLIPModel` adds. Forces and stress: autograd through G (`energy_forces_stress`).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveFloat, PositiveInt

from fastqmd.mlip.descriptors import SymmetryFunctions, generate_parameters, symmetry_functions
from fastqmd.mlip.kind import ArchitectureSpec, AtomsBatch, TrainingStatistics, collate

ACTIVATIONS = {"tanh": torch.nn.Tanh, "silu": torch.nn.SiLU, "softplus": torch.nn.Softplus}


class BPSpec(ArchitectureSpec):
    """`model:` of a BP potential: symmetry-function grids (descriptors.generate_parameters) and the MLPs."""

    kind: Literal["bp"] = "bp"
    cutoff: PositiveFloat = 6.0  # Å
    r_min: PositiveFloat = 0.8  # Å: the first grid radius
    n_radial: PositiveInt = 8
    radial_mode: Literal["shifted", "centred"] = "shifted"
    n_angular: int = Field(4, ge=0)  # centred η grid of the angular functions
    zetas: tuple[PositiveFloat, ...] = (1.0, 2.0, 4.0, 16.0)
    lambdas: tuple[Literal[-1.0, 1.0], ...] = (-1.0, 1.0)
    angular: Literal["G4", "G5"] = "G4"
    hidden: tuple[PositiveInt, ...] = (32, 32)
    activation: Literal["tanh", "silu", "softplus"] = "tanh"

    def symmetry_functions(self, n_elements: int) -> SymmetryFunctions:
        return generate_parameters(self.cutoff, n_elements, self.r_min, self.n_radial, self.radial_mode,
                                   self.n_angular, self.zetas, self.lambdas, self.angular)


class BPNet(torch.nn.Module):
    """Σ_i s · NN_{Z_i}(standardized G_i) per structure (the offsets are `MLIPModel`'s)."""

    def __init__(self, spec: BPSpec, elements: list[str], scale: float):
        super().__init__()
        if any(z < 1 for z in spec.zetas):
            raise ValueError(f"zetas must be ≥ 1 (got {spec.zetas}): (1 + λ cos θ)^ζ needs it to be differentiable")
        self.sf = spec.symmetry_functions(len(elements))
        F = self.sf.n_features
        act = ACTIVATIONS[spec.activation]
        self.nets = torch.nn.ModuleList()
        for _ in elements:
            layers, n = [], F
            for h in spec.hidden:
                layers += [torch.nn.Linear(n, h, dtype=torch.float64), act()]
                n = h
            self.nets.append(torch.nn.Sequential(*layers, torch.nn.Linear(n, 1, dtype=torch.float64)))
        self.register_buffer("feature_mean", torch.zeros(len(elements), F, dtype=torch.float64))
        self.register_buffer("feature_std", torch.ones(len(elements), F, dtype=torch.float64))
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.float64))

    def descriptors(self, batch: AtomsBatch) -> torch.Tensor:
        """G [N, n_features] of the batch's atoms."""
        return symmetry_functions(self.sf, batch.edge_vectors(), batch.edge_i, batch.edge_j, batch.species)

    def atomic_energies(self, batch: AtomsBatch) -> torch.Tensor:
        """s · NN_{Z_i}(x_i) [N] eV."""
        x = (self.descriptors(batch) - self.feature_mean[batch.species]) / self.feature_std[batch.species]
        e = x.new_zeros(x.shape[0])
        for a, net in enumerate(self.nets):
            idx = torch.nonzero(batch.species == a).flatten()
            if idx.numel():
                e = e.index_add(0, idx, net(x[idx])[:, 0])
        return self.scale * e

    def forward(self, batch: AtomsBatch) -> torch.Tensor:
        return batch.sum_per_structure(self.atomic_energies(batch))  # [S]

    @torch.no_grad()
    def set_feature_statistics(self, structures, elements: list[str], chunk: int = 32) -> None:
        """μ, σ per element from the training atoms (float64)."""
        ns, F = len(elements), self.sf.n_features
        s1, s2 = torch.zeros(ns, F, dtype=torch.float64), torch.zeros(ns, F, dtype=torch.float64)
        n = torch.zeros(ns, dtype=torch.float64)
        for k in range(0, len(structures), chunk):
            b = collate(structures[k:k + chunk], elements, self.sf.cutoff)
            G = symmetry_functions(self.sf, b.edge_vectors(), b.edge_i, b.edge_j, b.species)
            s1.index_add_(0, b.species, G)
            s2.index_add_(0, b.species, G**2)
            n.index_add_(0, b.species, torch.ones_like(b.species, dtype=torch.float64))
        mean = s1 / n.clamp(min=1)[:, None]
        std = (s2 / n.clamp(min=1)[:, None] - mean**2).clamp(min=0).sqrt()
        floor = 1e-8 * std.max(dim=1, keepdim=True).values.clamp(min=1e-300)
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(torch.where(std > floor, std, torch.ones_like(std)))


def build_bp(spec: BPSpec, elements: list[str], stats: TrainingStatistics) -> BPNet:
    """The BP network; feature statistics from `stats.samples` (none when a saved model is rebuilt)."""
    net = BPNet(spec, elements, stats.force_rms)
    if stats.samples is not None:
        net.set_feature_statistics(list(stats.samples), elements)
    return net
