"""Exact GPAW LCAO (PAW) overlap S(R) from radial tables, twice differentiable in positions and cell.

In:  positions [N, 3] Å and cell [3, 3] Å (torch, computed in float64), the symbols and k-points of a `Frame`.
Out: S(k) [nk, nao, nao] (real at Γ, complex otherwise), fastqmd orbital order = GPAW's (docs/GPAW.md); the
     `OverlapProvider` `GPAWTabulatedS` is what the NNH energy uses for `gpaw-lcao` datasets (`overlap: table`).

GPAW's LCAO overlap is the pseudo-orbital overlap plus the PAW correction of every atom c
(gpaw/new/lcao/builder.py, `add_atomic_overlap_corrections`):

    S_μν(k) = O_μν(k) + Σ_c Σ_ij P^c_iμ(k)* ΔS^c_ij P^c_jν(k),   P^c_iμ(k) = Σ_n e^{i2πk·n} ⟨p̃^c_i | φ_μ(· − n·cell)⟩,

O and P two-centre integrals of radial functions times real spherical harmonics, ΔS^c = `setup.dO_ii`. The
projector term is three-centre (orbitals on a and b, projector on c), so it cannot be folded into pair tables;
it is assembled here as P(k)ᴴ ΔS P(k) with P(k) [Σ_c n_proj(c), nao] from projector–orbital tables. The Bloch
sum of P follows from S(0_a, n_b) = Σ_c,m ⟨φ_a|p̃_c(m)⟩ ΔS ⟨p̃_c(m)|φ_b(n)⟩ and e^{i2πk·n} = e^{i2πk·(n−m)} e^{i2πk·m}.

Tables: for each ordered element pair GPAW's own two-centre integrals (`gpaw.lcao.tci.TCICalculator`, no grid, no
SCF) of the dimer a at 0, b at d·ẑ on a uniform grid d_k = r_min … cutoff are projected onto the Slater–Koster
couplings f_L(d) (`fastqmd.nnh.tblite_overlap.radial_projection`; the other irreps vanish to round-off, which
checks the orbital convention) and interpolated by not-a-knot cubic splines (C², so ∂S/∂R and ∂²S/∂R² exist).
GPAW drops a pair beyond rc_a + rc_b (Cu dzp: 9.49 Å orbital–orbital, 6.81 Å projector–orbital); the tables end
`taper` beyond the last distance where some |f| ≥ tol and are switched off over that taper (C²), so what is dropped
or tapered is < tol per pair image. On-site O and P blocks are the isolated atom's (constants).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import torch
from e3nn import o3
from pydantic import PositiveFloat
from torch import Tensor

from fastqmd.config import FrozenModel
from fastqmd.nnh.blocks import BlockLayout, Blocks, symmetrize_offsite, to_kspace
from fastqmd.nnh.graph import Graph, GraphCache, edge_vectors
from fastqmd.nnh.radial import default_dtype
from fastqmd.nnh.tblite_overlap import (
    PROJECTION_TOL,
    channel_indices,
    radial_projection,
    spline_coefficients,
    spline_eval,
    switch,
)
from fastqmd.units import BOHR_ANG

if TYPE_CHECKING:
    from fastqmd.nnh.energy import Frame

BOX_BOHR = 60.0  # non-periodic box of the dimers (TCI needs a cell; nothing is put on a grid)
PROJ = "#p"  # suffix of an element's projector pseudo-species in the table layout


class GPAWTableConfig(FrozenModel):
    """What fixes a `GPAWTabulatedOverlap` (JSON-able; the tables are rebuilt from GPAW's setups or loaded)."""

    xc: str = "PBE"  # PAW setups are generated per functional
    basis_name: str = "dzp"
    setups: dict[str, str] = {}  # element → GPAW setup name ("10" for Pd.10); default: the standard PAW setup
    basis: dict[str, tuple[int, ...]]  # element → orbital shell l's in GPAW's order
    projectors: dict[str, tuple[int, ...]]  # element → projector l's in GPAW's order
    cutoff: PositiveFloat  # Å: orbital–orbital O = 0 beyond
    p_cutoff: PositiveFloat  # Å: projector–orbital P = 0 beyond
    taper: PositiveFloat = 0.3  # Å
    r_min: PositiveFloat = 0.05  # Å: first table point
    step: PositiveFloat = 0.005  # Å: largest grid spacing

    def grid(self, cutoff: float) -> np.ndarray:
        """Uniform grid r_min … cutoff [n_int + 1] Å with spacing ≤ step."""
        n = math.ceil((cutoff - self.r_min) / self.step - 1e-9)
        return np.linspace(self.r_min, cutoff, n + 1)


# ------------------------------------------------------------------ GPAW


def gpaw_setups(symbols, xc: str, basis_name: str, setups: dict[str, str]):
    """GPAW `Setups` of these atoms (PAW data and basis from the installed gpaw-data; no grid, no calculator)."""
    from ase.data import atomic_numbers
    from gpaw.setup import Setups
    from gpaw.xc import XC

    return Setups([atomic_numbers[s] for s in symbols], dict(setups), basis_name, XC(xc))


def _l_values(functions) -> tuple[int, ...]:
    return tuple(int(f.get_angular_momentum_number()) for f in functions)


def dimer_integrals(a: str, b: str, distances_A: np.ndarray, xc: str, basis_name: str,
                    setups: dict[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GPAW's two-centre integrals of the dimer a at 0, b at d·ẑ for each d:
    (O_ab [n_d, n_a, n_b] = ⟨φ^a|φ^b⟩, P_ab [n_d, ni_a, n_b] = ⟨p̃^a|φ^b⟩, P_ba [n_d, ni_b, n_a] = ⟨p̃^b|φ^a⟩)."""
    from gpaw.lcao.tci import TCIExpansions

    st = gpaw_setups([a, b], xc, basis_name, setups)
    tx = TCIExpansions.new_from_setups(st)
    na, nb, ia, ib = st[0].nao, st[1].nao, st[0].ni, st[1].ni
    O = np.zeros((len(distances_A), na, nb))
    Pab = np.zeros((len(distances_A), ia, nb))
    Pba = np.zeros((len(distances_A), ib, na))
    cell, pbc, gamma = np.eye(3) * BOX_BOHR, np.zeros(3, bool), np.zeros((1, 3))
    for k, d in enumerate(distances_A):
        spos = np.array([[0.5, 0.5, 0.25], [0.5, 0.5, 0.25 + d / BOHR_ANG / BOX_BOHR]])
        tci = tx.get_tci_calculator(cell, spos, pbc, gamma, float)
        o = tci.O_T(0, 1)[0]
        if o is not None:
            O[k] = o[0]
        for out, (i, j) in ((Pab, (0, 1)), (Pba, (1, 0))):
            p = tci.P(i, j)
            if p is not None:
                out[k] = p[0]
    return O, Pab, Pba


def onsite_integrals(symbol: str, xc: str, basis_name: str, setups: dict[str, str]) -> tuple[np.ndarray, ...]:
    """(O [n, n], P [ni, n], ΔS [ni, ni]) of the isolated atom."""
    from gpaw.lcao.tci import TCIExpansions

    st = gpaw_setups([symbol], xc, basis_name, setups)
    tx = TCIExpansions.new_from_setups(st)
    tci = tx.get_tci_calculator(np.eye(3) * BOX_BOHR, np.full((1, 3), 0.5), np.zeros(3, bool), np.zeros((1, 3)),
                                float)
    return tci.O_T(0, 0)[0][0], tci.P(0, 0)[0], np.array(st[0].dO_ii, dtype=np.float64)


def _reach(f: np.ndarray, grid: np.ndarray, tol: float) -> float:
    big = np.abs(f).reshape(len(grid), -1).max(axis=1) >= tol
    return float(grid[np.nonzero(big)[0][-1]]) if big.any() else float(grid[0])


def gpaw_table_config(species, xc: str = "PBE", basis_name: str = "dzp", setups: dict[str, str] | None = None,
                      tol: float = 1e-8, **kw) -> GPAWTableConfig:
    """GPAWTableConfig with GPAW's shells and projectors, and cutoffs = (largest distance with some |O| or |P|
    ≥ tol on a 0.01 Å scan up to GPAW's rc_a + rc_b) + taper, rounded up to 0.01 Å."""
    species = sorted(set(species))
    setups = {s: v for s, v in sorted((setups or {}).items()) if s in species}
    st = gpaw_setups(species, xc, basis_name, setups)
    basis = {s: _l_values(st[k].basis_functions_J) for k, s in enumerate(species)}
    projectors = {s: _l_values(st[k].pt_j) for k, s in enumerate(species)}
    rc_phi = {s: max(f.get_cutoff() for f in st[k].basis_functions_J) * BOHR_ANG for k, s in enumerate(species)}
    rc_pt = {s: max(f.get_cutoff() for f in st[k].pt_j) * BOHR_ANG for k, s in enumerate(species)}
    taper = kw.get("taper", GPAWTableConfig.model_fields["taper"].default)
    o_reach, p_reach = 0.0, 0.0
    for i, a in enumerate(species):
        for b in species[i:]:
            d = np.arange(0.5, rc_phi[a] + rc_phi[b] + 0.01, 0.01)
            O, Pab, Pba = dimer_integrals(a, b, d, xc, basis_name, setups)
            o_reach = max(o_reach, _reach(O, d, tol))
            p_reach = max(p_reach, _reach(Pab, d, tol), _reach(Pba, d, tol))
    up = lambda r: math.ceil((r + 0.01 + taper) * 100 - 1e-6) / 100  # noqa: E731
    return GPAWTableConfig(xc=xc, basis_name=basis_name, setups=setups, basis=basis, projectors=projectors,
                           cutoff=up(o_reach), p_cutoff=up(p_reach), **kw)


# ------------------------------------------------------------------ tables


def table_layout(config: GPAWTableConfig) -> tuple[BlockLayout, list[str]]:
    """One float64 `BlockLayout` over the elements (orbital shells) and their projector pseudo-species."""
    species = sorted(config.basis)
    names = species + [s + PROJ for s in species]
    shells = {**config.basis, **{s + PROJ: config.projectors[s] for s in species}}
    with default_dtype(torch.float64):
        return BlockLayout(names, shells), names


@lru_cache(maxsize=8)
def _build_tables_cached(config_json: str) -> tuple[dict, dict, float]:
    config = GPAWTableConfig.model_validate_json(config_json)
    species = sorted(config.basis)
    ns = len(species)
    st = gpaw_setups(species, config.xc, config.basis_name, config.setups)
    for k, s in enumerate(species):
        if (_l_values(st[k].basis_functions_J), _l_values(st[k].pt_j)) != (config.basis[s], config.projectors[s]):
            raise ValueError(f"{s}: shells {config.basis[s]} / projectors {config.projectors[s]} are not GPAW's "
                             f"{config.basis_name} ({config.setups.get(s, 'paw')})")
    layout, _ = table_layout(config)
    lmax = 2 * max(max(ls) for ls in (*config.basis.values(), *config.projectors.values()))
    ez = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    go, gp = config.grid(config.cutoff), config.grid(config.p_cutoff)
    coef, worst = {}, 0.0
    for a, sa in enumerate(species):
        for b in range(a, ns):
            sb = species[b]
            O, _, _ = dimer_integrals(sa, sb, go, config.xc, config.basis_name, config.setups)
            _, Pab, Pba = dimer_integrals(sa, sb, gp, config.xc, config.basis_name, config.setups)
            fo, r1 = radial_projection(torch.from_numpy(O), layout, a, b, ez, lmax)
            fp, r2 = radial_projection(torch.from_numpy(Pab), layout, ns + a, b, ez, lmax)
            fq, r3 = radial_projection(torch.from_numpy(Pba), layout, ns + b, a, -ez, lmax)
            worst = max(worst, r1, r2, r3)
            coef[("O", a, b)] = spline_coefficients(go, fo.numpy())
            coef[("P", a, b)] = spline_coefficients(gp, fp.numpy())
            coef[("P", b, a)] = spline_coefficients(gp, fq.numpy())
            if a != b:
                fr, r4 = radial_projection(torch.from_numpy(O.transpose(0, 2, 1).copy()), layout, b, a, -ez, lmax)
                worst = max(worst, r4)
                coef[("O", b, a)] = spline_coefficients(go, fr.numpy())
    if worst > PROJECTION_TOL:
        raise RuntimeError(f"GPAW dimer integrals are not two-centre couplings (residual {worst:.1e}): "
                           "orbital convention mismatch")
    onsite = {s: onsite_integrals(s, config.xc, config.basis_name, config.setups) for s in species}
    return coef, onsite, worst


def build_tables(config: GPAWTableConfig) -> tuple[dict, dict, float]:
    """({("O"|"P", a, b): spline coefficients [n_int, 4, n_paths]}, {element: (O, P, ΔS) on-site}, residual);
    species indices in sorted order. Cached per config (~1 s per element pair)."""
    return _build_tables_cached(config.model_dump_json())


# ------------------------------------------------------------------ module


class GPAWTabulatedOverlap(torch.nn.Module):
    """GPAW's S(k) from spline tables (module docstring); tables and on-site blocks are float64 buffers.

    `build=False` leaves zero tables (to be filled by `load_state_dict`)."""

    def __init__(self, config: GPAWTableConfig, build: bool = True):
        super().__init__()
        self.config = config
        self.species = sorted(config.basis)
        ns = len(self.species)
        self.lmax = 2 * max(max(ls) for ls in (*config.basis.values(), *config.projectors.values()))
        self.irreps_sh = o3.Irreps.spherical_harmonics(self.lmax)
        self.layout, _ = table_layout(config)
        self.n_orb = {s: self.layout.n_orbitals[s] for s in self.species}
        self.n_proj = {s: self.layout.n_orbitals[s + PROJ] for s in self.species}
        go, gp = config.grid(config.cutoff), config.grid(config.p_cutoff)
        self.grids = {"O": (float(go[0]), float(go[1] - go[0]), len(go) - 1),
                      "P": (float(gp[0]), float(gp[1] - gp[0]), len(gp) - 1)}
        for kind in ("O", "P"):
            for a in range(ns):
                for b in range(ns):
                    row = a if kind == "O" else ns + a
                    pos, yidx, path = channel_indices(self.layout, row, b)
                    self.register_buffer(f"{kind}yidx_{a}_{b}", yidx)
                    self.register_buffer(f"{kind}path_{a}_{b}", path)
                    C = self.layout.coupling(row, b)[:, :, pos]
                    self.register_buffer(f"{kind}cpos_{a}_{b}", C.reshape(-1, len(pos)).T.contiguous())
                    n_int = self.grids[kind][2]
                    self.register_buffer(f"{kind}coef_{a}_{b}",
                                         torch.zeros(n_int, 4, int(path.max()) + 1, dtype=torch.float64))
        for a, s in enumerate(self.species):
            self.register_buffer(f"onsite_O_{a}", torch.zeros(self.n_orb[s], self.n_orb[s], dtype=torch.float64))
            self.register_buffer(f"onsite_P_{a}", torch.zeros(self.n_proj[s], self.n_orb[s], dtype=torch.float64))
            self.register_buffer(f"dS_{a}", torch.zeros(self.n_proj[s], self.n_proj[s], dtype=torch.float64))
        if build:
            self.fill_tables()

    @torch.no_grad()
    def fill_tables(self) -> None:
        """Build (or take from the cache) the tables for this config from GPAW and copy them in."""
        coef, onsite, _ = build_tables(self.config)
        for (kind, a, b), c in coef.items():
            getattr(self, f"{kind}coef_{a}_{b}").copy_(torch.from_numpy(c))
        for a, s in enumerate(self.species):
            for name, x in zip(("onsite_O", "onsite_P", "dS"), onsite[s]):
                getattr(self, f"{name}_{a}").copy_(torch.from_numpy(np.asarray(x, dtype=np.float64)))

    @property
    def cutoff(self) -> float:
        return float(self.config.cutoff)

    @property
    def p_cutoff(self) -> float:
        return float(self.config.p_cutoff)

    def _pair_blocks(self, kind: str, d: Tensor, Y: Tensor, graph: Graph, a: int, b: int) -> Tensor:
        """Blocks [E_ab, n_rows, n_b] of edge group (a, b): Σ_paths f_p(d) w(d) Y(r̂) through the couplings."""
        r0, h, _ = self.grids[kind]
        cut = self.cutoff if kind == "O" else self.p_cutoff
        idx = graph.edge_groups[a][b]
        f = spline_eval(getattr(self, f"{kind}coef_{a}_{b}"), r0, h, d[idx])
        f = f * switch(d[idx], cut, self.config.taper)[:, None]
        x = Y[idx][:, getattr(self, f"{kind}yidx_{a}_{b}")] * f[:, getattr(self, f"{kind}path_{a}_{b}")]
        B = x @ getattr(self, f"{kind}cpos_{a}_{b}")
        sa, sb = self.species[a], self.species[b]
        rows = self.n_orb[sa] if kind == "O" else self.n_proj[sa]
        return B.view(idx.numel(), rows, self.n_orb[sb])

    def _geometry(self, positions: Tensor, cell: Tensor, graph: Graph) -> tuple[Tensor, Tensor]:
        r = edge_vectors(positions, cell, graph)
        return torch.linalg.norm(r, dim=-1), o3.spherical_harmonics(self.irreps_sh, r, normalize=True,
                                                                    normalization="integral")

    def pseudo_overlap(self, positions: Tensor, cell: Tensor, graph: Graph, kpts: Tensor) -> Tensor:
        """O(k) [nk, nao, nao] on a graph at ≥ `cutoff`."""
        d, Y = self._geometry(positions, cell, graph)
        ns = len(self.species)
        raw = tuple(tuple(self._pair_blocks("O", d, Y, graph, a, b) for b in range(ns)) for a in range(ns))
        onsite = tuple(getattr(self, f"onsite_O_{a}").expand(graph.node_groups[a].numel(), -1, -1)
                       for a in range(ns))
        return to_kspace(Blocks(onsite=onsite, offsite=symmetrize_offsite(raw, graph)), graph, kpts)

    def projections(self, positions: Tensor, cell: Tensor, graph: Graph, kpts: Tensor) -> tuple[Tensor, Tensor]:
        """(P(k) [nk, ni_total, nao], ΔS block diagonal [ni_total, ni_total]) on a graph at ≥ `p_cutoff`."""
        d, Y = self._geometry(positions, cell, graph)
        ns = len(self.species)
        species = graph.species
        n_proj = torch.tensor([self.n_proj[s] for s in self.species], device=species.device)[species]
        poff = torch.cat([n_proj.new_zeros(1), torch.cumsum(n_proj, 0)])
        ooff = graph.orbital_offsets
        nI, nao = int(poff[-1]), graph.n_orbitals
        real = bool((kpts == 0).all())
        nk = kpts.shape[0]
        flat = positions.new_zeros(nk if not real else 1, nI * nao, dtype=torch.float64 if real else torch.complex128)
        for a, s in enumerate(self.species):
            atoms = graph.node_groups[a]
            if atoms.numel() == 0:
                continue
            ni, no = self.n_proj[s], self.n_orb[s]
            rows = (poff[atoms][:, None] + torch.arange(ni, device=atoms.device))[:, :, None]
            cols = (ooff[atoms][:, None] + torch.arange(no, device=atoms.device))[:, None, :]
            B = getattr(self, f"onsite_P_{a}").expand(atoms.numel(), -1, -1)
            flat = flat.index_add(1, (rows * nao + cols).reshape(-1), B.reshape(1, -1).to(flat.dtype).expand(
                flat.shape[0], -1))
        for a in range(ns):
            for b in range(ns):
                idx = graph.edge_groups[a][b]
                if idx.numel() == 0:
                    continue
                B = self._pair_blocks("P", d, Y, graph, a, b)  # [E, ni_a, n_b]
                ni, no = B.shape[1], B.shape[2]
                rows = (poff[graph.edge_i[idx]][:, None] + torch.arange(ni, device=idx.device))[:, :, None]
                cols = (ooff[graph.edge_j[idx]][:, None] + torch.arange(no, device=idx.device))[:, None, :]
                rc = (rows * nao + cols).reshape(-1)
                if real:
                    flat = flat.index_add(1, rc, B.reshape(1, -1))
                else:
                    theta = 2 * torch.pi * (kpts @ graph.shifts[idx].to(kpts.dtype).T)  # [nk, E]
                    phase = torch.polar(torch.ones_like(theta), theta)
                    flat = flat.index_add(1, rc, (phase[:, :, None, None] * B.to(torch.complex128)).reshape(nk, -1))
        dS = torch.block_diag(*(getattr(self, f"dS_{int(a)}") for a in species))  # atoms in order
        P = flat.view(-1, nI, nao)
        if real and nk > 1:
            P = P.expand(nk, nI, nao)
        return P, dS

    def forward(self, positions: Tensor, cell: Tensor, o_graph: Graph, p_graph: Graph, kpts: Tensor) -> Tensor:
        """S(k) = O(k) + P(k)ᴴ ΔS P(k) [nk, nao, nao] (float64, complex128 off Γ)."""
        positions, cell = positions.to(torch.float64), cell.to(torch.float64)
        kpts = torch.as_tensor(kpts, dtype=torch.float64, device=positions.device).reshape(-1, 3)
        O = self.pseudo_overlap(positions, cell, o_graph, kpts)
        P, dS = self.projections(positions, cell, p_graph, kpts)
        corr = P.mH @ (dS.to(P.dtype) @ P)
        return O + corr


class GPAWTabulatedS:
    """`OverlapProvider` of the GPAW tables: S(k) in float64 on two graphs from the model's `GraphCache` (the
    orbital–orbital one at `cutoff` + skin, Cu dzp 9.5 Å, and the projector–orbital one at `p_cutoff` + skin)."""

    cell_differentiable = True

    def __init__(self, tables: GPAWTabulatedOverlap, graphs: GraphCache, skin: float = 0.5):
        self.tables, self.graphs, self.skin = tables, graphs, float(skin)

    def __call__(self, frame: Frame, positions: Tensor, cell: Tensor, graph: Graph | None = None) -> Tensor:
        pos, box = positions.detach().cpu().numpy(), cell.detach().cpu().numpy()
        og = self.graphs.get(frame.symbols, frame.pbc, pos, box, self.tables.cutoff, self.skin, positions.device)
        pg = self.graphs.get(frame.symbols, frame.pbc, pos, box, self.tables.p_cutoff, self.skin, positions.device)
        return self.tables(positions, cell, og, pg, frame.kpoints)
