"""Exact tblite (GFN1/GFN2-xTB) overlap S(R) from radial tables, twice differentiable in positions and cell.

In:  positions [N, 3] Å and cell [3, 3] Å (torch, any float dtype; computed in float64), a `Graph` (from
     `TabulatedOverlap.graph`, or any graph whose cutoff is ≥ this module's: longer edges add exactly zero).
Out: `Blocks` of S (dimensionless, fastqmd orbital order = tblite's, docs/CONVENTIONS.md); assemble with
     `fastqmd.nnh.blocks.to_kspace` / `to_real_space`. Drop-in for `fastqmd.nnh.overlap.TwoCentreOverlap`;
     `TabulatedS` is its `OverlapProvider` (S(k) on its own long-range graph from the model's `GraphCache`).

A two-centre overlap block between shell l1 of atom a and shell l2 of atom b depends on r = r_b − r_a only:

    S_{s1 s2}(r) = Σ_L f^{ab}_{s1 s2 L}(|r|) Σ_M C^{LM}_{l1 m1, l2 m2} Y_LM(r̂),   (−1)^L = (−1)^(l1+l2),

(Wigner–Eckart, C and Y as in `fastqmd.nnh.irreps`; min(l1, l2) + 1 functions = Slater–Koster σ, π, δ).
Tables: for each element pair tblite's overlap matrix of the dimer (a at 0, b at d·ẑ) on a uniform grid
d_k = r_min … cutoff (step ≤ `step`) is projected onto the couplings, f_L(d_k) = Σ_M x_LM Y_LM(ẑ) / |Y_L(ẑ)|²
(the remaining irreps are zero to round-off, 5e-16, which checks the orbital convention), and interpolated by a
not-a-knot cubic spline (C², evaluated in torch, so ∂S/∂R and ∂²S/∂R² exist). Beyond the table the function is
switched off with w(x) = 1 − x³(10 − 15x + 6x²), x = (d − cutoff + taper)/taper ∈ [0, 1] (C²); below r_min the
first cubic is continued. On-site blocks are the isolated atom's tblite overlap (constants; 1 for Cu; for the
two s shells of H in GFN1 tblite orthogonalises 2s to 1s, leaving ⟨1s|2s⟩ = 8.5e-10).
tblite computes S before its SCF and keeps it in the result even when the SCF stops: the tables use
max-iter 1 and ignore the "SCF not converged" error (S equals the converged run's bit for bit), so every
distance works. Truncation in tblite (basis/type.f90, integral/overlap.f90): a primitive pair is skipped when
α_i α_j/(α_i + α_j)·r² > intcut = 25 (for accuracy ≤ 1), and pairs (including periodic images) beyond
sqrt(2·intcut/min α) (≤ 40 bohr) are not summed; for a pair (a, b) S is therefore exactly zero beyond a fixed
distance (Cu–Cu GFN1 ≈ 16.8 Å) and tiny before it. `tblite_table_config` puts the cutoff `taper` beyond the
last distance with |S_ab| ≥ tol, so dropped and tapered parts are < tol per pair image.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from e3nn import o3
from pydantic import PositiveFloat
from torch import Tensor

from fastqmd.config import FrozenModel
from fastqmd.nnh.blocks import BlockLayout, Blocks, symmetrize_offsite, to_kspace
from fastqmd.nnh.graph import Graph, GraphCache, build_graph, edge_vectors
from fastqmd.nnh.irreps import two_centre_channels
from fastqmd.nnh.radial import default_dtype
from fastqmd.units import BOHR_ANG

if TYPE_CHECKING:
    from fastqmd.nnh.energy import Frame

SCAN_STEP = 0.1  # Å, coarse scan for the overlap range
SCAN_MAX = 25.0  # Å (tblite's own limit is 40 bohr = 21.2 Å)
PROJECTION_TOL = 1e-9  # a dimer block must be reproduced by its vector channels to this (checks conventions)


class TableConfig(FrozenModel):
    """What fixes a `TabulatedOverlap` (JSON-able; the tables themselves are rebuilt from tblite or loaded)."""

    method: Literal["GFN1-xTB", "GFN2-xTB"]
    basis: dict[str, tuple[int, ...]]  # element → shell l's in tblite's order
    cutoff: PositiveFloat  # Å: S = 0 beyond
    taper: PositiveFloat = 0.5  # Å: C² switch-off on [cutoff − taper, cutoff]
    r_min: PositiveFloat = 0.1  # Å: first table point
    step: PositiveFloat = 0.005  # Å: largest grid spacing (spline error ≈ 2e-8 for Cu GFN1 d shells)

    def grid(self) -> np.ndarray:
        """Uniform grid r_min … cutoff [n_int + 1] Å with spacing ≤ step."""
        n = math.ceil((self.cutoff - self.r_min) / self.step - 1e-9)
        return np.linspace(self.r_min, self.cutoff, n + 1)


# ------------------------------------------------------------------ tblite


def tblite_overlap(method: str, numbers, positions_A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tblite's overlap matrix of a molecule, without SCF: (S [nao, nao], shell l's, shell → atom map).

    S is built before the SCF; with max-iter 1 the SCF stops with an error, but the result holds S."""
    from tblite.exceptions import TBLiteRuntimeError
    from tblite.interface import Calculator, Result

    calc = Calculator(method, np.asarray(numbers), np.asarray(positions_A, dtype=float) / BOHR_ANG)
    calc.set("verbosity", 0)
    calc.set("save-integrals", 1)
    calc.set("max-iter", 1)
    res = Result()
    try:
        calc.singlepoint(res)
    except TBLiteRuntimeError:
        pass  # "SCF not converged in 1 cycles": S is already in `res`
    S = np.array(res.get("overlap-matrix"), dtype=np.float64)
    if S.ndim != 2 or not np.allclose(np.diag(S), 1.0, atol=1e-8):
        raise RuntimeError(f"tblite returned no usable overlap matrix for {list(numbers)} ({method})")
    return S, np.asarray(calc.get("angular-momenta")), np.asarray(calc.get("shell-map"))


def tblite_shells(method: str, symbol: str) -> tuple[int, ...]:
    """Shell angular momenta of an element in tblite's order (Cu: d, s, p; H GFN1: s, s)."""
    from ase.data import atomic_numbers

    _, ang, _ = tblite_overlap(method, [atomic_numbers[symbol]], np.zeros((1, 3)))
    return tuple(int(l) for l in ang)


def dimer_overlaps(method: str, a: str, b: str, distances_A: np.ndarray) -> np.ndarray:
    """S of the dimer a at 0, b at d·ẑ for each d: [n_d, n_a + n_b, n_a + n_b]."""
    from ase.data import atomic_numbers

    Z = [atomic_numbers[a], atomic_numbers[b]]
    return np.stack([tblite_overlap(method, Z, np.array([[0.0, 0.0, 0.0], [0.0, 0.0, d]]))[0]
                     for d in distances_A])


def overlap_range(method: str, a: str, b: str, tol: float) -> float:
    """Largest distance (Å, coarse scan) at which some |S_ab| of the dimer is ≥ tol."""
    na = sum(2 * l + 1 for l in tblite_shells(method, a))
    d = np.arange(1.0, SCAN_MAX + 1e-9, SCAN_STEP)
    big = np.abs(dimer_overlaps(method, a, b, d)[:, :na, na:]).max(axis=(1, 2)) >= tol
    if big[-1]:
        raise RuntimeError(f"{a}–{b} overlap still ≥ {tol} at {SCAN_MAX} Å")
    return float(d[np.nonzero(big)[0][-1]]) if big.any() else 1.0


def tblite_table_config(method: str, species, tol: float = 1e-8, **kw) -> TableConfig:
    """TableConfig with tblite's shells and cutoff = (largest distance with |S| ≥ tol) + taper, rounded up to
    0.1 Å. Extra keywords (taper, r_min, step) go to TableConfig."""
    species = sorted(set(species))
    basis = {s: tblite_shells(method, s) for s in species}
    taper = kw.get("taper", TableConfig.model_fields["taper"].default)
    reach = max(overlap_range(method, a, b, tol) for i, a in enumerate(species) for b in species[i:])
    cutoff = math.ceil((reach + SCAN_STEP + taper) * 10 - 1e-6) / 10
    return TableConfig(method=method, basis=basis, cutoff=cutoff, **kw)


# ------------------------------------------------------------------ tables


def channel_indices(layout: BlockLayout, a: int, b: int) -> tuple[Tensor, Tensor, Tensor]:
    """(pos, yidx, path) int64 tensors of the Y(r̂)-buildable channels of block (a, b) (see TwoCentreOverlap)."""
    pos, yidx, path = two_centre_channels(layout.irreps[(a, b)])
    return tuple(torch.tensor(v, dtype=torch.long) for v in (pos, yidx, path))


def radial_projection(B: Tensor, layout: BlockLayout, a: int, b: int, u: Tensor, lmax: int) -> tuple[Tensor, float]:
    """Blocks B [n, n_a, n_b] along the unit vector u → (f [n, n_paths], max reconstruction residual).

    x = Cᵀ B (irreps);  f_p = Σ_{k∈p} x_k Y_k(u) / Σ_{k∈p} Y_k(u)²;  residual = max |x − Y(u) f| over all channels.
    """
    pos, yidx, path = channel_indices(layout, a, b)
    x = layout.to_irreps(B, a, b)  # [n, K]
    Y = o3.spherical_harmonics(o3.Irreps.spherical_harmonics(lmax), u[None], normalize=True,
                               normalization="integral")[0][yidx]  # [len(pos)]
    n_paths = int(path.max()) + 1
    num = x.new_zeros(x.shape[0], n_paths).index_add(1, path, x[:, pos] * Y)
    f = num / x.new_zeros(n_paths).index_add(0, path, Y * Y)
    xr = torch.zeros_like(x)
    xr[:, pos] = f[:, path] * Y
    return f, float((xr - x).abs().max()) if x.numel() else 0.0


def spline_coefficients(grid: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Not-a-knot cubic spline through f [n + 1, P] on the uniform grid: c [n, 4, P] with
    f(d) = ((c0 t + c1) t + c2) t + c3, t = d − d_k on interval k (C² at every knot)."""
    from scipy.interpolate import CubicSpline

    c = CubicSpline(grid, f, axis=0, bc_type="not-a-knot").c  # [4, n, P], highest power first
    return np.ascontiguousarray(np.moveaxis(c, 0, 1))


@lru_cache(maxsize=8)
def _build_tables_cached(config_json: str) -> tuple[dict, dict, float]:
    config = TableConfig.model_validate_json(config_json)
    from ase.data import atomic_numbers

    species = sorted(config.basis)
    for s in species:
        if tblite_shells(config.method, s) != tuple(config.basis[s]):
            raise ValueError(f"{s}: basis {config.basis[s]} is not tblite {config.method}'s "
                             f"{tblite_shells(config.method, s)}")
    lmax = 2 * max(max(ls) for ls in config.basis.values())
    grid = config.grid()
    with default_dtype(torch.float64):
        layout = BlockLayout(species, config.basis)
    onsite = {s: tblite_overlap(config.method, [atomic_numbers[s]], np.zeros((1, 3)))[0] for s in species}
    coef, worst = {}, 0.0
    ez = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    for a, sa in enumerate(species):
        for b in range(a, len(species)):
            na = layout.n_orbitals[sa]
            S = torch.from_numpy(dimer_overlaps(config.method, sa, species[b], grid))
            f_ab, res_ab = radial_projection(S[:, :na, na:], layout, a, b, ez, lmax)
            f_ba, res_ba = radial_projection(S[:, na:, :na], layout, b, a, -ez, lmax)
            worst = max(worst, res_ab, res_ba)
            coef[(a, b)] = spline_coefficients(grid, f_ab.numpy())
            coef[(b, a)] = spline_coefficients(grid, f_ba.numpy())
    if worst > PROJECTION_TOL:
        raise RuntimeError(f"tblite dimer blocks are not two-centre couplings (residual {worst:.1e}): "
                           "orbital convention mismatch")
    return coef, onsite, worst


def build_tables(config: TableConfig) -> tuple[dict, dict, float]:
    """({(a, b): spline coefficients [n_int, 4, n_paths]}, {element: on-site S [n, n]}, projection residual),
    species indices in sorted order. Cached per config (a few seconds per element pair)."""
    return _build_tables_cached(config.model_dump_json())


# ------------------------------------------------------------------ module


def switch(d: Tensor, cutoff: float, taper: float) -> Tensor:
    """w = 1 − x³(10 − 15x + 6x²), x = clamp((d − cutoff + taper)/taper, 0, 1): C², 1 inside, 0 beyond cutoff."""
    x = ((d - (cutoff - taper)) / taper).clamp(0.0, 1.0)
    return 1.0 - x ** 3 * (10.0 - 15.0 * x + 6.0 * x * x)


def spline_eval(coef: Tensor, r0: float, h: float, d: Tensor) -> Tensor:
    """Piecewise cubic at distances d [E] → [E, P]: interval k = ⌊(d − r0)/h⌋ clamped to the table, t = d − d_k."""
    k = torch.floor((d.detach() - r0) / h).clamp(0, coef.shape[0] - 1).long()
    t = (d - (r0 + k.to(d.dtype) * h))[:, None]
    c = coef[k]  # [E, 4, P]
    return ((c[:, 0] * t + c[:, 1]) * t + c[:, 2]) * t + c[:, 3]


class TabulatedOverlap(torch.nn.Module):
    """tblite's S(R) from spline tables (module docstring); tables and on-site blocks are float64 buffers.

    `build=False` leaves zero tables (to be filled by `load_state_dict`)."""

    def __init__(self, config: TableConfig, build: bool = True):
        super().__init__()
        self.config = config
        self.species = sorted(config.basis)
        self.lmax = 2 * max(max(ls) for ls in config.basis.values())
        self.irreps_sh = o3.Irreps.spherical_harmonics(self.lmax)
        grid = config.grid()
        self.r0, self.h, n_int = float(grid[0]), float(grid[1] - grid[0]), len(grid) - 1
        with default_dtype(torch.float64):
            self.layout = BlockLayout(self.species, config.basis)
        ns = len(self.species)
        for a in range(ns):
            for b in range(ns):
                pos, yidx, path = channel_indices(self.layout, a, b)
                self.register_buffer(f"pos_{a}_{b}", pos)
                self.register_buffer(f"yidx_{a}_{b}", yidx)
                self.register_buffer(f"path_{a}_{b}", path)
                C = self.layout.coupling(a, b)[:, :, pos]  # [n_a, n_b, n_pos]: the couplings Y(r̂) can reach
                self.register_buffer(f"cpos_{a}_{b}", C.reshape(-1, len(pos)).T.contiguous())  # [n_pos, n_a·n_b]
                self.register_buffer(f"coef_{a}_{b}", torch.zeros(n_int, 4, int(path.max()) + 1, dtype=torch.float64))
        for a, s in enumerate(self.species):
            n = self.layout.n_orbitals[s]
            self.register_buffer(f"onsite_{a}", torch.zeros(n, n, dtype=torch.float64))
        if build:
            self.fill_tables()

    @torch.no_grad()
    def fill_tables(self) -> None:
        """Build (or take from the cache) the tables for this config from tblite and copy them in."""
        coef, onsite, _ = build_tables(self.config)
        for (a, b), c in coef.items():
            getattr(self, f"coef_{a}_{b}").copy_(torch.from_numpy(c))
        for a, s in enumerate(self.species):
            getattr(self, f"onsite_{a}").copy_(torch.from_numpy(onsite[s]))

    @property
    def cutoff(self) -> float:
        return float(self.config.cutoff)

    def graph(self, symbols, positions: np.ndarray, cell: np.ndarray, pbc) -> Graph:
        """The graph of all pairs within this module's cutoff (vesin; rebuild when atoms move)."""
        return build_graph(list(symbols), np.asarray(positions, dtype=np.float64), np.asarray(cell, dtype=np.float64),
                           pbc, self.cutoff, self.species, self.layout.n_orbitals)

    def radial(self, a: int, b: int, d: Tensor) -> Tensor:
        """f^{ab}(d)·w(d) [E, n_paths] (zero beyond the cutoff)."""
        f = spline_eval(getattr(self, f"coef_{a}_{b}"), self.r0, self.h, d)
        return f * switch(d, self.config.cutoff, self.config.taper)[:, None]

    def forward(self, positions: Tensor, cell: Tensor, graph: Graph) -> Blocks:
        ns = len(self.species)
        dt = self.onsite_0.dtype
        r = edge_vectors(positions.to(dt), cell.to(dt), graph)  # [E, 3] Å
        d = torch.linalg.norm(r, dim=-1)  # [E]
        Y = o3.spherical_harmonics(self.irreps_sh, r, normalize=True, normalization="integral")  # [E, (lmax+1)²]
        raw = []
        for a, sa in enumerate(self.species):
            row = []
            for b, sb in enumerate(self.species):
                idx = graph.edge_groups[a][b]
                R = self.radial(a, b, d[idx])  # [E_ab, n_paths]
                x = Y[idx][:, getattr(self, f"yidx_{a}_{b}")] * R[:, getattr(self, f"path_{a}_{b}")]  # [E_ab, n_pos]
                B = x @ getattr(self, f"cpos_{a}_{b}")  # = C · x over the reachable channels (others are zero)
                row.append(B.view(idx.numel(), self.layout.n_orbitals[sa], self.layout.n_orbitals[sb]))
            raw.append(tuple(row))
        onsite = tuple(getattr(self, f"onsite_{a}").expand(graph.node_groups[a].numel(), -1, -1) for a in range(ns))
        return Blocks(onsite=onsite, offsite=symmetrize_offsite(tuple(raw), graph))


class TabulatedS:
    """`OverlapProvider` of the tables: S(k) in float64 on a graph at the tables' cutoff + skin from the model's
    `GraphCache` (Cu GFN1: 14.5 Å, far beyond the H network's; reused while no atom moved more than skin/2)."""

    cell_differentiable = True

    def __init__(self, tables: TabulatedOverlap, graphs: GraphCache, skin: float = 0.5):
        self.tables, self.graphs, self.skin = tables, graphs, float(skin)

    def __call__(self, frame: Frame, positions: Tensor, cell: Tensor, graph: Graph | None = None) -> Tensor:
        sg = self.graphs.get(frame.symbols, frame.pbc, positions.detach().cpu().numpy(), cell.detach().cpu().numpy(),
                             self.tables.cutoff, self.skin, positions.device)
        k64 = torch.as_tensor(frame.kpoints, dtype=torch.float64, device=positions.device)
        return to_kspace(self.tables(positions.to(torch.float64), cell.to(torch.float64), sg), sg, k64)
