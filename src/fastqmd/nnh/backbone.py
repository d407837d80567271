"""The equivariant message-passing trunk shared by the NN Hamiltonian and the energy MLIP: one backbone, two heads.

In:  edge vectors r_ij [E, 3] Å (differentiable; `fastqmd.nnh.graph.edge_vectors` forms them from positions and
     cell), species indices [N] and the edge index lists i, j [E] of a `Graph`.
Out: node features h [N, hidden] (e3nn layout, irreps `MessagePassing.hidden`) and the edge tensors a head may
     reuse: Y [E, (l_max+1)²], rbf [E, n_radial], env [E].

Network (O(3)-equivariant, NequIP-like; e3nn irreps, harmonics and 3j symbols, lean layers of `fastqmd.nnh.layers`):
  h_i^0 = W·onehot(Z_i)  (scalars);   b_n(d) = √(2/r_c) sin(nπd/r_c)/d,  u(d) polynomial envelope (p),
  Y^l(r̂_ij), l ≤ l_max (e3nn basis, "component" normalisation);   interaction t = 1..T (gated convolution):
      m_i = (1/⟨n⟩) Σ_j TP_uvu( Lin(h_j), Y(r̂_ij); w = u(d)·MLP(b(d)) ),
      h_i ← Gate( Lin(m_i) + Lin_{Z_i}(h_i) ) (+ h_i when shapes match).
Every message carries u(d), which vanishes with its first two derivatives at r_c, so h_i after T layers depends on
atoms within T·r_c of i only (the receptive field) and is C² in the positions.

Heads: `fastqmd.nnh.model.NNHModel` (H blocks: on-site from h_i, off-site from an edge convolution) and
`fastqmd.mlip.equivariant.EquivariantModel` (E = Σ_i E_i, E_i from the scalars of h_i). Both subclass
`MessagePassing`, so the trunk's state_dict keys (`embed.*`, `layers.*`) are the same in both models.
Build under float64 (`default_dtype`) and cast after: constants then match e3nn's to ~1e-16 in either dtype.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import Tensor

from fastqmd.nnh.graph import Graph, edge_vectors
from fastqmd.nnh.layers import Gate, IrrepsLinear, UVUTensorProduct
from fastqmd.nnh.radial import bessel_basis, default_dtype, mlp, polynomial_envelope


def hidden_irreps(spec: str) -> o3.Irreps:
    """The trunk's node irreps: `spec` sorted and simplified (0e first, as `Gate` needs)."""
    return o3.Irreps(spec).sort().irreps.simplify()


class Interaction(torch.nn.Module):
    """One gated equivariant convolution (module docstring)."""

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, irreps_sh: o3.Irreps, n_species: int,
                 n_radial: int, radial_hidden: int, avg_num_neighbors: float):
        super().__init__()
        self.lin_up = IrrepsLinear(irreps_in, irreps_in)
        self.tp = UVUTensorProduct(irreps_in, irreps_sh, irreps_out)
        self.radial = mlp([n_radial, radial_hidden, radial_hidden, self.tp.weight_numel])
        self.gate = Gate(irreps_out)
        self.lin_out = IrrepsLinear(self.tp.irreps_out, self.gate.irreps_in)
        self.self_conn = IrrepsLinear(irreps_in, self.gate.irreps_in, n_species=n_species)
        self.residual = irreps_in == irreps_out
        self.norm = 1.0 / avg_num_neighbors

    def forward(self, h: Tensor, species: Tensor, Y: Tensor, rbf: Tensor, env: Tensor, i: Tensor, j: Tensor) -> Tensor:
        w = self.radial(rbf) * env[:, None]  # [E, weight_numel]
        msg = self.tp(self.lin_up(h)[j], Y, w)  # [E, mid]
        m = msg.new_zeros(h.shape[0], msg.shape[1]).index_add(0, i, msg) * self.norm
        out = self.gate(self.lin_out(m) + self.self_conn(h, species))
        return out + h if self.residual else out


class MessagePassing(torch.nn.Module):
    """Species embedding + `n_layers` interactions (module docstring). Heads subclass it and add their outputs.

    The constructor draws the trunk's random initial weights (embedding, then layer by layer), so a head that calls
    it before building its own layers reproduces the pre-backbone NNH initialisation for a given seed."""

    def __init__(self, n_species: int, *, cutoff: float, n_radial: int, radial_hidden: int, envelope_exponent: int,
                 lmax: int, n_scalars_embed: int, hidden: str, n_layers: int, avg_num_neighbors: float):
        super().__init__()
        self.n_species = n_species
        self.cutoff = float(cutoff)
        self.n_radial = n_radial
        self.envelope_exponent = envelope_exponent
        with default_dtype(torch.float64):
            self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
            self.hidden = hidden_irreps(hidden)
            node0 = o3.Irreps(f"{n_scalars_embed}x0e")
            self.embed = torch.nn.Linear(n_species, n_scalars_embed, bias=False)
            self.layers = torch.nn.ModuleList(
                Interaction(node0 if t == 0 else self.hidden, self.hidden, self.irreps_sh, n_species, n_radial,
                            radial_hidden, avg_num_neighbors)
                for t in range(n_layers)
            )

    @property
    def receptive_field(self) -> float:
        """n_layers · cutoff (Å): atoms farther than this from i cannot change h_i."""
        return len(self.layers) * self.cutoff

    def edge_features(self, r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(Y [E, sh], rbf [E, n_radial], env [E]) of edge vectors r [E, 3] Å."""
        d = torch.linalg.norm(r, dim=-1)  # [E]
        Y = o3.spherical_harmonics(self.irreps_sh, r, normalize=True, normalization="component")
        rbf = bessel_basis(d, self.cutoff, self.n_radial)  # [E, n_radial]
        return Y, rbf, polynomial_envelope(d, self.cutoff, self.envelope_exponent)

    def trunk(self, r: Tensor, species: Tensor, i: Tensor, j: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(h [N, hidden], Y, rbf, env) from edge vectors r [E, 3] (i → j), species [N] and edge indices [E]."""
        Y, rbf, env = self.edge_features(r)
        onehot = torch.nn.functional.one_hot(species, self.n_species).to(r.dtype)
        h = self.embed(onehot)
        for layer in self.layers:
            h = layer(h, species, Y, rbf, env, i, j)
        return h, Y, rbf, env

    def node_features(self, positions: Tensor, cell: Tensor, graph: Graph) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """`trunk` of one structure: r_ij = pos[j] − pos[i] + R·cell from positions [N, 3] and cell [3, 3] Å."""
        return self.trunk(edge_vectors(positions, cell, graph), graph.species, graph.edge_i, graph.edge_j)
