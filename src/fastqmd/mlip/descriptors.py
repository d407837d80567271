"""Behler–Parrinello atom-centred symmetry functions in torch (J. Behler, J. Chem. Phys. 134, 074106 (2011)), so
that forces and stress of a model built on them come by autograd.

In:  edge vectors r_ij [E, 3] Å of a full neighbour list (both directions, within the cutoff r_c), the centre and
     neighbour atom of each edge, and each atom's species index (0..n_s−1).
Out: [N, n_features] per-atom descriptors, resolved by neighbour element:

    f_c(r)   = ½ (cos(π r / r_c) + 1)   for r < r_c, else 0
    G2_i^{a} = Σ_{j ∈ a} exp(−η (r_ij − r_s)²) f_c(r_ij)                                       (per element a)
    G4_i^{ab} = 2^{1−ζ} Σ_{j<k; {Z_j,Z_k} = {a,b}} (1 + λ cos θ_ijk)^ζ e^{−η (r_ij² + r_ik² + r_jk²)}
                f_c(r_ij) f_c(r_ik) f_c(r_jk)                                                 (per element pair)
    G5_i^{ab} = the same without r_jk² in the exponent and without f_c(r_jk)

(j<k: every unordered neighbour pair once; η in Å⁻²). Layout, as dscribe's ACSF without its G1/G3 columns:
[element a: G2 params] for a = 0..n_s−1, then [pair (a ≥ b), index a(a+1)/2 + b: G4 params, G5 params].
`generate_parameters` gives n2p2's grids (Gastegger et al., J. Chem. Phys. 148, 241709 (2018), as n2p2's
sfparamgen): radii r_k evenly spaced in [r_min, r_c]; "shifted": r_s = r_k, η = 1/(2 Δr²); "centred": r_s = 0,
η = 1/(2 r_k²); angular functions use the centred η grid with every (ζ, λ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class SymmetryFunctions:
    """A symmetry-function set: cutoff (Å), G2 (η, r_s), G4 and G5 (η, ζ, λ) parameters, number of elements."""

    cutoff: float
    radial: tuple[tuple[float, float], ...]
    g4: tuple[tuple[float, float, float], ...]
    g5: tuple[tuple[float, float, float], ...]
    n_elements: int

    @property
    def n_pairs(self) -> int:
        return self.n_elements * (self.n_elements + 1) // 2

    @property
    def n_features(self) -> int:
        return self.n_elements * len(self.radial) + self.n_pairs * (len(self.g4) + len(self.g5))


def generate_parameters(cutoff: float, n_elements: int, r_min: float = 0.5, n_radial: int = 8,
                        radial_mode: Literal["shifted", "centred"] = "shifted", n_angular: int = 4,
                        zetas: tuple[float, ...] = (1.0, 2.0, 4.0, 16.0), lambdas: tuple[float, ...] = (-1.0, 1.0),
                        angular: Literal["G4", "G5"] = "G4") -> SymmetryFunctions:
    """n2p2-style grids (module docstring); r_min > 0 (a centred η = 1/(2 r²) needs r > 0)."""
    if not 0 < r_min < cutoff:
        raise ValueError(f"need 0 < r_min < cutoff, got r_min {r_min}, cutoff {cutoff}")
    r = np.linspace(r_min, cutoff, n_radial)
    if radial_mode == "shifted":
        dr = (cutoff - r_min) / max(1, n_radial - 1)
        radial = tuple((1.0 / (2 * dr**2), float(x)) for x in r)
    else:
        radial = tuple((1.0 / (2 * x**2), 0.0) for x in r)
    ra = np.linspace(r_min, cutoff, n_angular) if n_angular else np.zeros(0)
    ang = tuple((1.0 / (2 * x**2), float(z), float(lam)) for x in ra for z in zetas for lam in lambdas)
    return SymmetryFunctions(float(cutoff), radial, ang if angular == "G4" else (), ang if angular == "G5" else (),
                             n_elements)


def cosine_cutoff(r: Tensor, cutoff: float) -> Tensor:
    """f_c(r) = ½ (cos(π r / r_c) + 1) for r < r_c, 0 beyond."""
    return torch.where(r < cutoff, 0.5 * (torch.cos(math.pi * r / cutoff) + 1), torch.zeros_like(r))


def neighbour_pairs(edge_i: Tensor, n_atoms: int) -> tuple[Tensor, Tensor]:
    """All unordered pairs (e1, e2) of edges with the same centre atom, each once: [T], [T] edge indices."""
    E = edge_i.numel()
    order = torch.argsort(edge_i, stable=True)
    counts = torch.bincount(edge_i, minlength=n_atoms)
    start = torch.cumsum(counts, 0) - counts
    ci = edge_i[order]
    pos = torch.arange(E, device=edge_i.device) - start[ci]  # place of each sorted edge inside its centre's block
    partners = counts[ci] - 1 - pos  # edges after it in the block
    a = torch.repeat_interleave(torch.arange(E, device=edge_i.device), partners)
    first = torch.cumsum(partners, 0) - partners
    k = torch.arange(a.numel(), device=edge_i.device) - torch.repeat_interleave(first, partners)
    return order[a], order[a + 1 + k]


def radial_features(r: Tensor, params: Tensor, cutoff: float) -> Tensor:
    """exp(−η (r − r_s)²) f_c(r) [E, P] for params [P, 2] = (η, r_s)."""
    eta, rs = params[:, 0], params[:, 1]
    return torch.exp(-eta * (r[:, None] - rs) ** 2) * cosine_cutoff(r, cutoff)[:, None]


def angular_features(r1: Tensor, r2: Tensor, params: Tensor, cutoff: float, g5: bool) -> Tensor:
    """G4 (g5 False) or G5 terms [T, P] of the neighbour pairs with vectors r1 = r_ij, r2 = r_ik [T, 3];
    params [P, 3] = (η, ζ, λ). The exponentials are taken once per distinct η and the powers once per distinct
    (ζ, λ) (a grid of n_η × n_ζλ parameters costs n_η + n_ζλ transcendental columns, not their product)."""
    d1, d2 = torch.linalg.norm(r1, dim=-1), torch.linalg.norm(r2, dim=-1)
    cos = (r1 * r2).sum(-1) / (d1 * d2)
    rsq = d1**2 + d2**2
    fc = cosine_cutoff(d1, cutoff) * cosine_cutoff(d2, cutoff)
    if not g5:
        d3 = torch.linalg.norm(r2 - r1, dim=-1)
        rsq = rsq + d3**2
        fc = fc * cosine_cutoff(d3, cutoff)
    eta, eta_of = torch.unique(params[:, 0], return_inverse=True)
    zl, zl_of = torch.unique(params[:, 1:], dim=0, return_inverse=True)
    zeta, lam = zl[:, 0], zl[:, 1]
    radial = torch.exp(-eta * rsq[:, None]) * fc[:, None]  # [T, n_η]
    angle = 2.0 ** (1 - zeta) * (1 + lam * cos[:, None]) ** zeta  # [T, n_ζλ]
    return radial[:, eta_of] * angle[:, zl_of]  # [T, P]


def symmetry_functions(sf: SymmetryFunctions, rij: Tensor, edge_i: Tensor, edge_j: Tensor,
                       species: Tensor) -> Tensor:
    """[N, n_features] descriptors of all atoms (layout: module docstring), differentiable in rij [E, 3]."""
    N, ns, dt, dev = species.numel(), sf.n_elements, rij.dtype, rij.device
    keep = torch.linalg.norm(rij, dim=-1) < sf.cutoff  # the graph may be built with a skin
    rij, edge_i, edge_j = rij[keep], edge_i[keep], edge_j[keep]
    out = []
    if sf.radial:
        g2 = radial_features(torch.linalg.norm(rij, dim=-1), torch.tensor(sf.radial, dtype=dt, device=dev), sf.cutoff)
        out.append(rij.new_zeros(N * ns, len(sf.radial)).index_add(0, edge_i * ns + species[edge_j], g2)
                   .reshape(N, -1))
    if sf.g4 or sf.g5:
        e1, e2 = neighbour_pairs(edge_i, N)
        sa, sb = species[edge_j[e1]], species[edge_j[e2]]
        hi, lo = torch.maximum(sa, sb), torch.minimum(sa, sb)
        slot = edge_i[e1] * sf.n_pairs + hi * (hi + 1) // 2 + lo  # [T]
        parts = [angular_features(rij[e1], rij[e2], torch.tensor(p, dtype=dt, device=dev), sf.cutoff, g5)
                 for p, g5 in ((sf.g4, False), (sf.g5, True)) if p]
        ang = torch.cat(parts, -1)  # [T, P4 + P5]
        out.append(rij.new_zeros(N * sf.n_pairs, ang.shape[1]).index_add(0, slot, ang).reshape(N, -1))
    return torch.cat(out, -1)
