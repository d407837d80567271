"""The E(3)-equivariant NN Hamiltonian (DeepH-E3 style): structure → real-space H blocks in the fastqmd basis.

In:  positions [N, 3] Å and cell [3, 3] Å (torch; gradients flow to both), a `Graph` from `NNHModel.graph`.
Out: `Blocks` (eV): on-site blocks H_ii(0) per species and off-site blocks H_ij(R) per edge, Hermitian by
     construction; `fastqmd.nnh.blocks.to_real_space` / `to_kspace` assemble H(R) / H(k).

Network (O(3)-equivariant; e3nn irreps, harmonics and 3j symbols, lean layers of `fastqmd.nnh.layers`;
edge vectors r_ij = pos[j] − pos[i] + R·cell formed inside forward): the message-passing trunk of
`fastqmd.nnh.backbone` (species embedding, Bessel radial basis × envelope u(d), Y^l(r̂_ij), T gated
convolutions → node features h_i), shared with the energy MLIP (`fastqmd.mlip.equivariant`), then this head:
  on-site:  x_i = μ_Z + σ_Z ⊙ Lin_{Z_i}(h_i) (scalar biases)         → B_ii = C_{Z_i Z_i} x_i, (B + Bᵀ)/2;
  off-site: e_ij = Gate(Lin(TP_uvu(Lin_a h_i + Lin_b h_j, Y(r̂_ij); w = u·MLP(b, s_i, s_j)))),
            x_ij = x⁰_ij(r_ij) + σ_{Z_i Z_j} ⊙ u(d) Lin_{Z_i Z_j}(e_ij) → B_ij = C x_ij, (B_ij(R) + B_ji(−R)ᵀ)/2,
with x⁰ a fitted two-centre (Slater–Koster) baseline, μ, σ per output irrep training-set statistics of the
residuals (`set_output_statistics`, `fastqmd.nnh.targets.irrep_statistics`), and C the Wigner–Eckart couplings of `fastqmd.nnh.irreps` (orthogonal, into the fastqmd convention).
Loops run over species and species pairs only. float32 or float64; constants are built in float64 first so
that float64 models are equivariant to ~1e-14.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from e3nn import o3
from pydantic import field_validator, model_validator
from torch import Tensor

from fastqmd.config import FrozenModel
from fastqmd.nnh.backbone import MessagePassing, hidden_irreps
from fastqmd.nnh.blocks import BlockLayout, Blocks, symmetrize_offsite, symmetrize_onsite
from fastqmd.nnh.electrostatics import Electrostatics
from fastqmd.nnh.graph import Graph, build_graph
from fastqmd.nnh.irreps import two_centre_channels
from fastqmd.nnh.layers import Gate, IrrepsLinear, UVUTensorProduct
from fastqmd.nnh.radial import DTYPES as _DTYPES
from fastqmd.nnh.radial import bessel_basis, default_dtype, mlp, polynomial_envelope

CHARGE_UNIT_E = 0.05  # q₀: the charge a unit of the standardised charge head makes (e; metals' charge transfer)

__all__ = ["NNHConfig", "NNHModel", "bessel_basis", "default_dtype", "mlp", "polynomial_envelope",
           "two_centre_channels"]  # the primitives live in `fastqmd.nnh.radial` / `.irreps`; re-exported here


class NNHConfig(FrozenModel):
    """Hyperparameters of `NNHModel`. `basis`: element → shell angular momenta, in the dataset's order."""

    basis: dict[str, tuple[int, ...]]
    cutoff: float = 7.2  # Å, both message passing and off-site blocks
    n_radial: int = 8
    radial_hidden: int = 64
    envelope_exponent: int = 6
    lmax: int | None = None  # spherical harmonics; default max(4, 2·l_max(shells))
    n_scalars_embed: int = 32
    hidden_irreps: str = "64x0e+32x1o+32x1e+16x2e+16x2o+8x3o+8x3e+8x4e+8x4o"
    n_layers: int = 3
    avg_num_neighbors: float = 40.0  # message normalisation 1/⟨n⟩
    dtype: Literal["float32", "float64"] = "float32"
    # the long-range charge channel (`fastqmd.nnh.electrostatics`): latent neutral charges from standardised scalars and
    # the level shift ½S(u_i + u_j) of their (Ewald) potential; None: the purely local model
    electrostatics: Electrostatics | None = None

    @field_validator("cutoff")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("cutoff must be positive")
        return v

    @model_validator(mode="after")
    def _width_inside_cutoff(self) -> NNHConfig:
        """The real-space Ewald sum stops at the cutoff: the Gaussian-charge correction erfc(r/2σ) must be below
        the accuracy there (2σ√(−ln ε) < r_c)."""
        es = self.electrostatics
        if es is not None and 2 * es.gaussian_width_A * np.sqrt(-np.log(es.ewald_accuracy)) >= self.cutoff:
            raise ValueError(f"electrostatics.gaussian_width_A {es.gaussian_width_A} Å is too wide for the "
                             f"{self.cutoff} Å cutoff (need 2σ·√(−ln ε) < cutoff)")
        return self

    def sh_lmax(self) -> int:
        lmax_shell = max(max(ls) for ls in self.basis.values())
        return self.lmax if self.lmax is not None else max(4, 2 * lmax_shell)


class NNHModel(MessagePassing):
    """Structure → Hamiltonian blocks (module docstring). Construct from an `NNHConfig`. The trunk's modules
    (`embed`, `layers`) and every head module keep their pre-backbone names, so older model files load unchanged."""

    def __init__(self, config: NNHConfig):
        species = sorted(config.basis)
        ns = len(species)
        with default_dtype(torch.float64):
            layout = BlockLayout(species, config.basis)
            hidden = hidden_irreps(config.hidden_irreps)
            needed = {ir for irreps in layout.irreps.values() for _, ir in irreps}
            missing = needed - {ir for _, ir in hidden}
            if missing:
                raise ValueError(f"hidden_irreps lacks {sorted(map(str, missing))} needed by the basis blocks")
            super().__init__(ns, cutoff=config.cutoff, n_radial=config.n_radial, radial_hidden=config.radial_hidden,
                             envelope_exponent=config.envelope_exponent, lmax=config.sh_lmax(),
                             n_scalars_embed=config.n_scalars_embed, hidden=config.hidden_irreps,
                             n_layers=config.n_layers, avg_num_neighbors=config.avg_num_neighbors)
            self.config = config
            self.species = species
            self.layout = layout
            scal = [torch.arange(sl.start, sl.stop) for sl, (_, ir) in zip(hidden.slices(), hidden)
                    if ir == o3.Irrep("0e")]
            self.register_buffer("scalar_idx", torch.cat(scal))
            self.edge_src = IrrepsLinear(hidden, hidden)
            self.edge_dst = IrrepsLinear(hidden, hidden)
            self.edge_tp = UVUTensorProduct(hidden, self.irreps_sh, hidden)
            self.edge_radial = mlp([config.n_radial + 2 * len(self.scalar_idx), config.radial_hidden,
                                    config.radial_hidden, self.edge_tp.weight_numel])
            self.edge_gate = Gate(hidden)
            self.edge_lin = IrrepsLinear(self.edge_tp.irreps_out, self.edge_gate.irreps_in)
            self.onsite_out = torch.nn.ModuleList(
                IrrepsLinear(hidden, self.layout.irreps[(a, a)], biases=True) for a in range(ns))
            self.offsite_out = torch.nn.ModuleList(
                torch.nn.ModuleList(IrrepsLinear(hidden, self.layout.irreps[(a, b)]) for b in range(ns))
                for a in range(ns))
            for a in range(ns):  # output statistics (identity/zero until `set_output_statistics`)
                self.register_buffer(f"onsite_shift_{a}", torch.zeros(self.layout.irreps[(a, a)].dim))
                self.register_buffer(f"onsite_scale_{a}", torch.ones(self.layout.irreps[(a, a)].dim))
                for b in range(ns):
                    self.register_buffer(f"offsite_scale_{a}_{b}", torch.ones(self.layout.irreps[(a, b)].dim))
                    pos, yidx, path = two_centre_channels(self.layout.irreps[(a, b)])
                    self.register_buffer(f"sk_pos_{a}_{b}", torch.tensor(pos, dtype=torch.long))
                    self.register_buffer(f"sk_yidx_{a}_{b}", torch.tensor(yidx, dtype=torch.long))
                    self.register_buffer(f"sk_path_{a}_{b}", torch.tensor(path, dtype=torch.long))
                    self.register_buffer(f"sk_coef_{a}_{b}", torch.zeros(config.n_radial, max(path, default=-1) + 1))
            if config.electrostatics is not None:  # zero at the start (the local model), and drawing no random
                # numbers, so every other weight starts as in the local model of the same seed
                n0 = len(self.scalar_idx)
                self.charge_weight = torch.nn.Parameter(torch.zeros(n0))
                self.charge_bias = torch.nn.Parameter(torch.zeros(ns))
                self.register_buffer("charge_shift", torch.zeros(n0))  # input standardisation (set_charge_statistics)
                self.register_buffer("charge_scale", torch.ones(n0))
        self.to(_DTYPES[config.dtype])

    def two_centre_baseline(self, a: int, b: int, Y: Tensor, radial: Tensor) -> Tensor:
        """x⁰_ij = Σ_paths g_p(d) Y_L(r̂) on the channels a pair vector can build ((−1)^L = parity), 0 elsewhere:
        g_p(d) = Σ_n c_np b_n(d) u(d) — the Slater–Koster (two-centre) part of the block, fitted to the training
        set by linear least squares (`fastqmd.nnh.targets.two_centre_fit`). Y, radial = b·u: [E_ab, ·]."""
        pos = getattr(self, f"sk_pos_{a}_{b}")
        x = Y.new_zeros(Y.shape[0], self.layout.irreps[(a, b)].dim)
        if pos.numel() == 0:
            return x
        g = radial @ getattr(self, f"sk_coef_{a}_{b}")  # [E, paths]
        vals = Y[:, getattr(self, f"sk_yidx_{a}_{b}")] * g[:, getattr(self, f"sk_path_{a}_{b}")]
        return x.index_copy(1, pos, vals)

    @torch.no_grad()
    def set_output_statistics(self, onsite_shift: dict[int, Tensor], onsite_scale: dict[int, Tensor],
                              offsite_scale: dict[tuple[int, int], Tensor],
                              offsite_sk: dict[tuple[int, int], Tensor] | None = None) -> None:
        """Set x = μ + σ ⊙ x̂ for the output irreps (per irrep entry of `layout.irreps`; μ only on 0e on-site
        channels, σ uniform over each irrep's 2L+1 components, so equivariance is untouched). With μ, σ the
        training-set statistics (`fastqmd.nnh.targets.irrep_statistics`) the network's raw outputs x̂ are O(1):
        Adam moves a parameter by ~lr per step, so unscaled heads need thousands of steps just to reach eV
        magnitudes (measured: L_H 57 → 2.7 over 1000 steps on water)."""
        for a, v in onsite_shift.items():
            getattr(self, f"onsite_shift_{a}").copy_(v)
        for a, v in onsite_scale.items():
            getattr(self, f"onsite_scale_{a}").copy_(v)
        for (a, b), v in offsite_scale.items():
            getattr(self, f"offsite_scale_{a}_{b}").copy_(v)
        for (a, b), v in (offsite_sk or {}).items():
            getattr(self, f"sk_coef_{a}_{b}").copy_(v)

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.config.dtype]

    def graph(self, symbols: list[str], positions: np.ndarray, cell: np.ndarray, pbc) -> Graph:
        """Neighbour graph of a structure at this model's cutoff (numpy in, index tensors out)."""
        return build_graph(list(symbols), np.asarray(positions), np.asarray(cell), pbc, self.config.cutoff,
                           self.species, self.layout.n_orbitals)

    def forward(self, positions: Tensor, cell: Tensor, graph: Graph) -> Blocks:
        h, Y, rbf, env = self.node_features(positions, cell, graph)
        i, j = graph.edge_i, graph.edge_j
        ns = len(self.species)
        s = h[:, self.scalar_idx]
        w = self.edge_radial(torch.cat([rbf, s[i], s[j]], dim=-1)) * env[:, None]
        x_e = self.edge_src(h)[i] + self.edge_dst(h)[j]  # [E, hidden]
        e = self.edge_gate(self.edge_lin(self.edge_tp(x_e, Y, w)))  # [E, hidden]
        e = e * env[:, None]
        onsite = tuple(
            symmetrize_onsite(self.layout.to_block(
                getattr(self, f"onsite_shift_{a}") + getattr(self, f"onsite_scale_{a}")
                * self.onsite_out[a](h[graph.node_groups[a]]), a, a))
            for a in range(ns))
        radial = rbf * env[:, None]
        raw = tuple(
            tuple(self.layout.to_block(
                self.two_centre_baseline(a, b, Y[graph.edge_groups[a][b]], radial[graph.edge_groups[a][b]])
                + getattr(self, f"offsite_scale_{a}_{b}") * self.offsite_out[a][b](e[graph.edge_groups[a][b]]), a, b)
                for b in range(ns))
            for a in range(ns))
        return Blocks(onsite=onsite, offsite=symmetrize_offsite(raw, graph), charges=self.charges(s, graph))

    def charges(self, s: Tensor, graph: Graph) -> Tensor | None:
        """Latent atomic charges q = q̃ − mean(q̃) [N] (e) from the node scalars s [N, n0]; None without the
        charge channel:  q̃_i = q₀ w·z_i/√n0 + q₀ b_{Z_i},  z_i = (s_i − μ_s) ⊙ σ_s⁻¹,  q₀ = CHARGE_UNIT_E.
        μ_s, σ_s are the training set's per-channel mean and spread over atoms at initialization
        (`set_charge_statistics`): the trunk's scalars differ between atoms by ~1e-4 of their size at the start
        (measured on Cu32), so without standardisation Adam's ~lr steps on w would move q by ~1e-6 e per step."""
        if self.config.electrostatics is None:
            return None
        z = (s - self.charge_shift) * self.charge_scale
        qt = CHARGE_UNIT_E * (z @ self.charge_weight / len(self.scalar_idx) ** 0.5 + self.charge_bias[graph.species])
        return qt - qt.mean()

    @torch.no_grad()
    def set_charge_statistics(self, shift: Tensor, scale: Tensor) -> None:
        """μ_s and σ_s⁻¹ [n0] of the charge head's input standardisation (`charges`)."""
        self.charge_shift.copy_(shift)
        self.charge_scale.copy_(scale)
