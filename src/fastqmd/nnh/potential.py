"""NNH-MD: a trained NN-Hamiltonian energy model as a fastqmd `Potential` (and, via `PotentialCalculator`, an ASE
Calculator).

In:  `System` (positions [N, 3] Å, cell [3, 3] Å, pbc, atomic numbers), float64, CPU or CUDA.
Out: `Results`: energy E = Ω[H_θ, S] + E_rep + Σ e_Z (eV, the force-consistent Mermin free energy), forces
     −∂E/∂R (eV/Å, autograd through the exact-derivative free energy, finite at degeneracies), eigenvalues
     [nk, nao] eV (so `fastqmd analyze` plots the DOS; extras "fermi_level" eV), and for periodic cells with a
     learned or tabulated S the stress [3, 3] eV/Å³ (ASE sign convention; `atoms.get_stress()` via ASE).
Any cell size works (the model is local): the graphs come from the model's one `GraphCache` (`model.graphs`) and
are rebuilt from a neighbour list at cutoff + skin only when some atom has moved more than skin/2 since the last
build (or the cell changed) — edges beyond a term's cutoff contribute exactly zero, so the energy does not depend
on when a graph was rebuilt. A structure with an element the model lacks is an `InputError`, before any work.
k-points: Γ by default (supercells, as in the NNH-MD study), or a Γ-centred mesh.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase.data import chemical_symbols

from fastqmd.electronic import monkhorst_pack
from fastqmd.nnh.checkpoint import load_energy_model
from fastqmd.nnh.energy import EnergyModel, Frame, energy_forces
from fastqmd.potential import PotentialCalculator, Results, System


def frame_of(system: System, mesh: tuple[int, int, int] = (1, 1, 1)) -> Frame:
    """The `Frame` of a System: symbols, pbc, and a Γ-centred k mesh (periodic) or Γ (molecules)."""
    symbols = tuple(chemical_symbols[int(z)] for z in system.numbers.cpu().tolist())
    pbc = tuple(bool(x) for x in system.pbc.cpu().tolist())
    if any(pbc):
        k, w = monkhorst_pack(tuple(mesh))
        k, w = k.numpy(), w.numpy()
    else:
        k, w = np.zeros((1, 3)), np.ones(1)
    return Frame(symbols, pbc, k, w)


class NNHPotential:
    """`compute(System) -> Results` for an `EnergyModel` (module docstring)."""

    capabilities = frozenset({"stress", "eigenvalues"})  # stress for periodic cells

    def __init__(self, model: EnergyModel, device: str | torch.device = "cpu",
                 kpoints_mesh: tuple[int, int, int] = (1, 1, 1), skin: float = 0.5, eigenvalues: bool = True):
        self.model = model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = torch.device(device)
        self.mesh = tuple(kpoints_mesh)
        self.skin = float(skin)
        self.eigenvalues = eigenvalues
        self._graph = None
        self.n_graph_builds = 0  # model graphs this potential has (re)built or received

    @classmethod
    def from_file(cls, path: str | Path, device: str = "cpu", dtype: str | None = None, **kw) -> "NNHPotential":
        return cls(load_energy_model(Path(path), device=device, dtype=dtype), device=device, **kw)

    def frame(self, system: System) -> Frame:
        return frame_of(system, self.mesh)

    def graph(self, frame: Frame, positions: np.ndarray, cell: np.ndarray):
        """The model graph from `model.graphs`; rebuilt when symbols/cell/pbc change or max displacement > skin/2."""
        g = self.model.graphs.get(frame.symbols, frame.pbc, positions, cell, self.model.cutoff, self.skin,
                                  self.device)
        if g is not self._graph:  # a (re)built graph
            self._graph = g
            self.n_graph_builds += 1
        return g

    def compute(self, system: System) -> Results:
        frame = self.frame(system)
        self.model.check_elements(frame.symbols)
        pos = system.positions.detach().to(self.device, torch.float64)
        cell = system.cell.detach().to(self.device, torch.float64)
        g = self.graph(frame, pos.cpu().numpy(), cell.cpu().numpy())
        stress = any(frame.pbc)
        parts, F, sigma = energy_forces(self.model, frame, pos.clone().requires_grad_(True), cell, g, stress=stress)
        spec = parts.spectrum if self.eigenvalues else None
        return Results(
            parts.energy.detach().to(torch.float64),
            F.detach().to(torch.float64),
            stress=None if sigma is None else sigma.detach().to(torch.float64),
            eigenvalues=None if spec is None else spec.eigenvalues.detach().to(torch.float64),
            extras={} if spec is None else {"fermi_level": float(spec.fermi_level)},
        )


def nnh_calculator(path: str | Path, device: str = "cpu", **kw) -> PotentialCalculator:
    """An ASE Calculator for a trained NNH model file (energy, free_energy, forces; eigenvalues in results)."""
    return PotentialCalculator(NNHPotential.from_file(path, device=device, **kw), device=device)
