"""E_rep: the learned short-range repulsive/correction energy added to the Mermin free energy of the model H.

In:  positions [N, 3] Å, cell [3, 3] Å (torch, differentiable), a `Graph` with cutoff ≥ this term's cutoff.
Out: E_rep (eV, scalar tensor). Forces/stress by autograd of the total E = Ω[H, S] + E_rep.

Why: Σ f ε is the band-structure energy; ion–ion and double-counting terms are missing (DFTB's E_rep), see
shared/science/nnh.md. Form — pair potential plus an embedded-atom (EAM-like) many-body term:

    E_rep = ½ Σ_{(i,j,R)} φ_{Z_i Z_j}(d_ij) + Σ_i [F_{Z_i}(ρ_i) − F_{Z_i}(0)] + Σ_i e⁰_{Z_i},
    ρ_i = Σ_{(j,R)} g_{Z_j}(d_ij),
    φ_ab(d) = u(d) Σ_n c_{ab,n} b_n(d),   g_b(d) = u(d) Σ_n a_{b,n} b_n(d),   F_a a small SiLU MLP,

with c symmetric in (a, b), e⁰ per-species constants (they follow the pair term when it is fitted by least squares,
`fastqmd.nnh.train.fit_repulsion`), b_n the Bessel basis √(2/r_c) sin(nπd/r_c)/d (∝ 1/d at short range) and u the
polynomial envelope (u = u' = u'' = 0 at r_c): E_rep and its forces are continuous as atoms cross the cutoff.
Invariant under rotations, translations and permutations by construction (distances and sums only).

Optional atomic-network term (`RepulsionConfig.network`): E_rep += σ Σ_i w·Lin(h_i^0e), with h_i the node features
of a small equivariant trunk of its own (`fastqmd.nnh.backbone.MessagePassing` at this term's cutoff, not shared
with the H network) — an MLIP-capacity correction for the double-counting energy E_DFT − Ω[H_DFT], which a pair +
EAM form cannot represent for a covalent molecule (water, study c). The final weights w start at zero, so E_rep
starts as the least-squares pair fit and the network learns on top. Still invariant, local and C² at the cutoff.
"""

from __future__ import annotations

from typing import Literal

import torch
from e3nn import o3
from torch import Tensor

from fastqmd.config import FrozenModel
from fastqmd.nnh.backbone import MessagePassing
from fastqmd.nnh.graph import Graph, edge_vectors
from fastqmd.nnh.layers import IrrepsLinear
from fastqmd.nnh.radial import DTYPES as _DTYPES
from fastqmd.nnh.radial import bessel_basis, default_dtype, mlp, polynomial_envelope


class RepulsionNetworkConfig(FrozenModel):
    """The atomic-network term of E_rep (module docstring): its trunk's hyperparameters (`MessagePassing`)."""

    hidden_irreps: str = "16x0e+8x1o+8x1e+4x2e"
    n_layers: int = 2
    lmax: int = 2
    radial_hidden: int = 32
    n_scalars_embed: int = 16
    readout_hidden: int = 16
    avg_num_neighbors: float = 8.0  # message normalisation 1/⟨n⟩ (the trainer sets the training set's mean)
    energy_scale_eV: float = 0.5  # σ


class AtomicEnergyNetwork(MessagePassing):
    """E_net = σ Σ_i w·Lin(h_i) over the 0e node features h_i (eV); w = 0 at construction."""

    def __init__(self, config: RepulsionNetworkConfig, n_species: int, cutoff: float, n_radial: int,
                 envelope_exponent: int):
        with default_dtype(torch.float64):
            super().__init__(n_species, cutoff=cutoff, n_radial=n_radial, radial_hidden=config.radial_hidden,
                             envelope_exponent=envelope_exponent, lmax=config.lmax,
                             n_scalars_embed=config.n_scalars_embed, hidden=config.hidden_irreps,
                             n_layers=config.n_layers, avg_num_neighbors=config.avg_num_neighbors)
            k = o3.Irreps(f"{config.readout_hidden}x0e")
            self.readout_hidden = IrrepsLinear(self.hidden, k, biases=True)
            self.readout_energy = IrrepsLinear(k, o3.Irreps("1x0e"))
            for w in self.readout_energy.weights:
                torch.nn.init.zeros_(w)
        self.energy_scale = float(config.energy_scale_eV)

    def forward(self, positions: Tensor, cell: Tensor, graph: Graph) -> Tensor:
        h, *_ = self.node_features(positions, cell, graph)
        return self.energy_scale * self.readout_energy(self.readout_hidden(h)).sum()


class RepulsionConfig(FrozenModel):
    """Hyperparameters of `Repulsion`. `species`: element symbols (sorted internally, as in the H model)."""

    species: tuple[str, ...]
    cutoff: float = 5.0
    n_radial: int = 8
    embedding_hidden: int = 16
    many_body: bool = True
    envelope_exponent: int = 6
    init_scale: float = 0.1  # std of the initial pair/density coefficients
    network: RepulsionNetworkConfig | None = None  # the optional atomic-network term (module docstring)
    dtype: Literal["float32", "float64"] = "float32"


class Repulsion(torch.nn.Module):
    """E_rep (module docstring)."""

    def __init__(self, config: RepulsionConfig):
        super().__init__()
        self.config = config
        self.species = sorted(config.species)
        ns, nr = len(self.species), config.n_radial
        g = torch.Generator().manual_seed(0)
        self.pair = torch.nn.Parameter(config.init_scale * torch.randn(ns, ns, nr, generator=g, dtype=torch.float64))
        if config.many_body:
            self.density = torch.nn.Parameter(config.init_scale * torch.randn(ns, nr, generator=g, dtype=torch.float64))
            self.embedding = mlp([1, config.embedding_hidden, ns]).to(torch.float64)
        self.e0 = torch.nn.Parameter(torch.zeros(ns, dtype=torch.float64))
        if config.network is not None:
            self.network = AtomicEnergyNetwork(config.network, ns, config.cutoff, nr, config.envelope_exponent)
        self.to(_DTYPES[config.dtype])

    def pair_features(self, positions: Tensor, cell: Tensor, graph: Graph) -> Tensor:
        """Φ [n_pairs·n_radial + ns] with E_pair + Σ e⁰ = Φ · θ, θ = (c_ab,n for a ≤ b, e⁰): the part of E_rep that
        is linear in its parameters; Φ_{ab,n} = ½ Σ_{edges of species {a, b}} u b_n(d), Φ_{e⁰_a} = N_a."""
        c = self.config
        ns, nr = len(self.species), c.n_radial
        r = edge_vectors(positions, cell, graph)
        d = torch.linalg.norm(r, dim=-1)
        ub = polynomial_envelope(d, c.cutoff, c.envelope_exponent)[:, None] * bessel_basis(d, c.cutoff, nr)
        zi, zj = graph.species[graph.edge_i], graph.species[graph.edge_j]
        lo, hi = torch.minimum(zi, zj), torch.maximum(zi, zj)
        pair_index = lo * ns - lo * (lo - 1) // 2 + (hi - lo)  # row-major index of (lo, hi) among a ≤ b
        n_pairs = ns * (ns + 1) // 2
        feat = ub.new_zeros(n_pairs, nr).index_add(0, pair_index, 0.5 * ub).reshape(-1)
        counts = torch.bincount(graph.species, minlength=ns).to(ub.dtype)
        return torch.cat([feat, counts])

    @torch.no_grad()
    def set_linear_parameters(self, theta: Tensor) -> None:
        """Inverse of `pair_features`' ordering: set c_ab = c_ba and e⁰ from θ; zero the many-body density so that
        E_rep = Φ · θ exactly (the embedding term and an atomic network then start from zero and learn on top)."""
        ns, nr = len(self.species), self.config.n_radial
        k = 0
        for a in range(ns):
            for b in range(a, ns):
                self.pair[a, b] = theta[k * nr:(k + 1) * nr]
                self.pair[b, a] = theta[k * nr:(k + 1) * nr]
                k += 1
        self.e0.copy_(theta[k * nr:])
        if self.config.many_body:
            self.density.zero_()
        if self.config.network is not None:
            for w in self.network.readout_energy.weights:
                w.zero_()

    def pair_coefficients(self) -> Tensor:
        """c_ab,n symmetrised over species: [ns, ns, n_radial]."""
        return 0.5 * (self.pair + self.pair.transpose(0, 1))

    def forward(self, positions: Tensor, cell: Tensor, graph: Graph) -> Tensor:
        c = self.config
        r = edge_vectors(positions, cell, graph)  # [E, 3]
        d = torch.linalg.norm(r, dim=-1)
        ub = polynomial_envelope(d, c.cutoff, c.envelope_exponent)[:, None] * bessel_basis(d, c.cutoff, c.n_radial)
        zi, zj = graph.species[graph.edge_i], graph.species[graph.edge_j]
        phi = (self.pair_coefficients()[zi, zj] * ub).sum(-1)  # [E]
        E = 0.5 * phi.sum()
        if c.many_body:
            rho_e = (self.density[zj] * ub).sum(-1)  # [E]
            rho = rho_e.new_zeros(graph.n_atoms).index_add(0, graph.edge_i, rho_e)  # [N]
            F = self.embedding(rho[:, None]) - self.embedding(rho.new_zeros(1, 1))  # [N, ns]
            E = E + F.gather(1, graph.species[:, None]).sum()
        if c.network is not None:
            E = E + self.network(positions, cell, graph)
        return E + self.e0[graph.species].sum()
