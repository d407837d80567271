"""The overlap seam of the NNH energy — one protocol for the three S providers — the learned two-centre S head,
and the S > 0 check.

Seam: `OverlapProvider`, S(frame, positions, cell[, graph]) → S(k) [nk, nao, nao] (float64 at Γ-only frames, else
complex128) at the frame's k-points, differentiable in positions (and cell where `cell_differentiable`):
`LearnedS` (this module), `TabulatedS` (`fastqmd.nnh.tblite_overlap`, tblite's exact S from radial tables) and
`ExactS` (`fastqmd.nnh.exact_overlap`, PySCF integrals). `graph` is the model's shared graph when the caller has
one (the learned head evaluates on it); otherwise, and for the tables' longer reach, a provider takes its graph
from the model's `GraphCache`. `check_positive_definite` factors S once per forward and returns the factor,
which the free energy reuses.

The learned head (for engines that give S but not dS/dR):

In:  positions [N, 3] Å, cell [3, 3] Å (torch, differentiable), a `Graph` whose cutoff is ≥ this model's cutoff
     (edges beyond it contribute exactly zero).
Out: `Blocks` of S (dimensionless), fastqmd orbital convention; assemble with `to_real_space` / `to_kspace`.

A two-centre integral depends only on the pair vector r = r_ij and the two species, so the Slater–Koster form

    S_ij(r) = Σ_{shell pairs} Σ_L f^{ab}_{s1 s2 L}(|r|) Σ_M C^{LM}_{l1m1,l2m2} Y_LM(r̂),  (−1)^L = (−1)^(l1+l2),

is exact: one learned radial function f = u(d)·MLP_ab(b(d)) per (species pair, shell pair, L), C the
Wigner–Eckart coupling of `fastqmd.nnh.irreps`, u the polynomial envelope. Irreps of the wrong parity (L odd for
p–p, …) cannot be built from one vector and are zero. Symmetrised like H: S_ij(R) = (B_ij(R) + B_ji(−R)ᵀ)/2.
On-site blocks are invariant (Schur): c^a_{s1 s2}·1 for shells of equal l, 0 otherwise — learned constants,
identity at start, or set from a reference block with `set_onsite_from_block`.
`check_positive_definite` raises `OverlapNotPositiveDefiniteError` (clear message, k-point and λ_min).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import torch
from e3nn import o3
from torch import Tensor

from fastqmd.config import FrozenModel
from fastqmd.electronic.free_energy import OverlapNotPositiveDefiniteError, hermitize
from fastqmd.nnh.blocks import Blocks, BlockLayout, symmetrize_offsite, to_kspace
from fastqmd.nnh.graph import Graph, GraphCache, build_graph, edge_vectors
from fastqmd.nnh.irreps import two_centre_channels
from fastqmd.nnh.radial import DTYPES, bessel_basis, default_dtype, mlp, polynomial_envelope

if TYPE_CHECKING:
    from fastqmd.nnh.energy import Frame


class OverlapProvider(Protocol):
    """S(frame, positions, cell[, graph]) → S(k) [nk, nao, nao] float64/complex128 at frame.kpoints (module
    docstring). positions [N, 3] Å, cell [3, 3] Å: float64 torch tensors (gradients flow back); graph: the model's
    shared graph, if the caller has one."""

    cell_differentiable: bool  # S depends on the cell through autograd (stress)

    def __call__(self, frame: Frame, positions: Tensor, cell: Tensor, graph: Graph | None = None) -> Tensor: ...


class OverlapConfig(FrozenModel):
    """Hyperparameters of `TwoCentreOverlap`. `basis`: element → shell angular momenta."""

    basis: dict[str, tuple[int, ...]]
    cutoff: float = 7.2
    n_radial: int = 8
    radial_hidden: int = 32
    envelope_exponent: int = 6
    dtype: Literal["float32", "float64"] = "float32"


class TwoCentreOverlap(torch.nn.Module):
    """S(R) blocks from pair vectors only (module docstring)."""

    def __init__(self, config: OverlapConfig):
        super().__init__()
        self.config = config
        self.species = sorted(config.basis)
        ns = len(self.species)
        self.lmax = 2 * max(max(ls) for ls in config.basis.values())
        self.irreps_sh = o3.Irreps.spherical_harmonics(self.lmax)
        with default_dtype(torch.float64):
            self.layout = BlockLayout(self.species, config.basis)
            self.radial = torch.nn.ModuleList()
            for a in range(ns):
                for b in range(ns):
                    pos, yidx, path = two_centre_channels(self.layout.irreps[(a, b)])
                    self.register_buffer(f"pos_{a}_{b}", torch.tensor(pos, dtype=torch.long))
                    self.register_buffer(f"yidx_{a}_{b}", torch.tensor(yidx, dtype=torch.long))
                    self.register_buffer(f"path_{a}_{b}", torch.tensor(path, dtype=torch.long))
                    n_paths = max(path) + 1 if path else 0
                    self.radial.append(mlp([config.n_radial, config.radial_hidden, config.radial_hidden,
                                            max(n_paths, 1)]))
            self.onsite = torch.nn.ParameterList()
            for a, s in enumerate(self.species):
                x = self.layout.to_irreps(torch.eye(self.layout.n_orbitals[s])[None], a, a)[0]
                self.register_buffer(f"onsite_mask_{a}", self._onsite_mask(a))
                self.onsite.append(torch.nn.Parameter(x * self._onsite_mask(a)))
        self.to(DTYPES[config.dtype])

    def _onsite_mask(self, a: int) -> Tensor:
        """1 on the L = 0 channels of equal-l shell pairs (the only rotation-invariant on-site channels)."""
        irreps = self.layout.irreps[(a, a)]
        mask = torch.zeros(irreps.dim)
        for sl, (_, ir) in zip(irreps.slices(), irreps):
            if ir == o3.Irrep("0e"):
                mask[sl] = 1.0
        return mask

    def graph(self, symbols: list[str], positions: np.ndarray, cell: np.ndarray, pbc) -> Graph:
        return build_graph(list(symbols), np.asarray(positions), np.asarray(cell), pbc, self.config.cutoff,
                           self.species, self.layout.n_orbitals)

    @torch.no_grad()
    def set_onsite_from_block(self, symbol: str, block: np.ndarray | Tensor) -> None:
        """Set species `symbol`'s on-site constants from a reference on-site S block [n, n] (its invariant part)."""
        a = self.species.index(symbol)
        B = torch.as_tensor(np.asarray(block), dtype=self.onsite[a].dtype, device=self.onsite[a].device)
        x = self.layout.to_irreps(0.5 * (B + B.T)[None], a, a)[0]
        self.onsite[a].copy_(x * getattr(self, f"onsite_mask_{a}"))

    def forward(self, positions: Tensor, cell: Tensor, graph: Graph) -> Blocks:
        ns = len(self.species)
        r = edge_vectors(positions, cell, graph)  # [E, 3]
        d = torch.linalg.norm(r, dim=-1)
        Y = o3.spherical_harmonics(self.irreps_sh, r, normalize=True, normalization="integral")  # [E, (lmax+1)²]
        f = self.radial_inputs(d)
        raw = []
        for a in range(ns):
            row = []
            for b in range(ns):
                idx = graph.edge_groups[a][b]
                K = self.layout.irreps[(a, b)].dim
                pos = getattr(self, f"pos_{a}_{b}")
                R = self.radial[a * ns + b](f[0][idx]) * f[1][idx, None]  # [E_ab, n_paths]
                vals = Y[idx][:, getattr(self, f"yidx_{a}_{b}")] * R[:, getattr(self, f"path_{a}_{b}")]
                x = Y.new_zeros(idx.numel(), K).index_copy(1, pos, vals) if len(pos) else Y.new_zeros(idx.numel(), K)
                row.append(self.layout.to_block(x, a, b))
            raw.append(tuple(row))
        onsite = tuple(
            self.layout.to_block(self.onsite[a].expand(graph.node_groups[a].numel(), -1), a, a) for a in range(ns))
        return Blocks(onsite=onsite, offsite=symmetrize_offsite(tuple(raw), graph))

    def radial_inputs(self, d: Tensor) -> tuple[Tensor, Tensor]:
        """(Bessel basis [E, n_radial], envelope [E]) at this model's cutoff."""
        c = self.config
        return bessel_basis(d, c.cutoff, c.n_radial), polynomial_envelope(d, c.cutoff, c.envelope_exponent)


class LearnedS:
    """`OverlapProvider` of the learned head: S(k) = Σ_R e^{i2πk·R} S_θ(R) on the given graph (or one at the head's
    cutoff from `graphs`), in the head's dtype, returned in float64/complex128. grad_from_energy False: S keeps its
    full position dependence (Pulay forces) but the energy moves no parameter of the head (it then learns from the
    S loss alone)."""

    cell_differentiable = True

    def __init__(self, head: TwoCentreOverlap, graphs: GraphCache, grad_from_energy: bool = True):
        self.head, self.graphs = head, graphs
        self.grad_from_energy = grad_from_energy

    def __call__(self, frame: Frame, positions: Tensor, cell: Tensor, graph: Graph | None = None) -> Tensor:
        if graph is None:
            graph = self.graphs.get(frame.symbols, frame.pbc, positions.detach().cpu().numpy(),
                                    cell.detach().cpu().numpy(), self.head.config.cutoff, device=positions.device)
        dt = self.head.onsite[0].dtype
        p, c = positions.to(dt), cell.to(dt)
        if self.grad_from_energy:
            blocks = self.head(p, c, graph)
        else:
            frozen = {k: v.detach() for k, v in self.head.named_parameters()}
            frozen.update(dict(self.head.named_buffers()))
            blocks = torch.func.functional_call(self.head, frozen, (p, c, graph))
        kpts = torch.as_tensor(frame.kpoints, dtype=torch.float64, device=positions.device).to(dt)
        S = to_kspace(blocks, graph, kpts)
        return S.to(torch.complex128 if S.is_complex() else torch.float64)


def check_positive_definite(S: Tensor, what: str = "S(k)") -> Tensor:
    """The lower Cholesky factor L of hermitize(S) per k-point ([nk, n, n], detached; what `free_energy(...,
    cholesky=L)` takes); raises `OverlapNotPositiveDefiniteError` unless every S[k] is positive definite."""
    S = S if S.dim() == 3 else S[None]
    L, info = torch.linalg.cholesky_ex(hermitize(S.detach()))
    bad = torch.nonzero(info).reshape(-1)
    if bad.numel():
        k = int(bad[0])
        lam = float(torch.linalg.eigvalsh(S[k].detach()).min())
        raise OverlapNotPositiveDefiniteError(
            f"{what} is not positive definite at k-point {k} of {S.shape[0]} (smallest eigenvalue {lam:.3e}); "
            "a learned overlap has lost its metric property here: use the engine's exact S, retrain the S head "
            "with configurations like this one, or check for atoms closer than in the training data")
    return L
