"""A trained energy MLIP (any architecture of `fastqmd.mlip.kind`: bp, equivariant) as a fastqmd `Potential`.

In:  model.pt or checkpoint.pt (EMA weights) of `fastqmd train` with `model.kind: bp | equivariant`, and a
     `fastqmd.potential.System` (Å, float64).
Out: `Results(energy eV, forces eV/Å, stress eV/Å³ for periodic cells)` — F = −∂E/∂R and σ = (1/V) ∂E/∂ε by
     autograd (`fastqmd.mlip.kind.energy_forces_stress`); `capabilities` = {"stress"}. The neighbour graph is
     rebuilt with vesin every call. An element the model has no network for is an InputError.
MD config: `potential: {kind: mlip, model: run/model.pt}` (`fastqmd.md.config.MLIPPotentialConfig`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fastqmd.mlip.kind import MLIPModel, Structure, collate, energy_forces_stress, load_mlip, species_index
from fastqmd.potential import DTYPE, Results, System


class MLIPPotential:
    """compute(system) → Results of an `MLIPModel` (float64 in and out; the network runs in its own dtype)."""

    capabilities = frozenset({"stress"})

    def __init__(self, model: MLIPModel, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.elements = list(model.elements)

    @classmethod
    def from_file(cls, path: str | Path, device: str = "cpu", dtype: str | None = None) -> "MLIPPotential":
        return cls(load_mlip(path, device, dtype), device)

    def check_elements(self, numbers) -> None:
        """InputError naming elements the model does not cover."""
        species_index(self.elements, np.asarray(numbers, dtype=np.int64))

    def compute(self, system: System) -> Results:
        pbc = system.pbc.cpu().numpy()
        s = Structure("", system.numbers.cpu().numpy(), system.positions.detach().cpu().numpy().astype(np.float64),
                      system.cell.detach().cpu().numpy().astype(np.float64), pbc, 0.0)
        batch = collate([s], self.elements, self.model.cutoff, self.model.dtype, self.device)
        periodic = bool(pbc.any()) and abs(float(np.linalg.det(s.cell))) > 0
        E, F, sigma = energy_forces_stress(self.model, batch, forces=True, stress=periodic)
        dev = system.positions.device
        return Results(E[0].detach().to(dev, DTYPE), F.detach().to(dev, DTYPE),
                       stress=sigma[0].detach().to(dev, DTYPE) if periodic else None)
