"""Hyper-reduction of the MOR-QMD online step: the reduced Mermin problem without the full grid in the loop.

In:  a `ReducedBasis` Φ [k, n_grid] (online.py), the basis' `ModelSpec` and the training geometries (canonical frame,
     Bohr; the pinned atom on the origin, the two frame atoms in z = 0) — `build_hyper`. Online: canonical positions
     R [3, 3] (Bohr) → `hyper_solve` → `OnlineResult` (X, energies, forces Ha/Bohr). Atomic units throughout.
The exact online free energy (online.py) is rewritten term by term (terms.py) so that every piece is either constant
per basis or a small function of the atoms (b = Σ_a b_a the ionic Gaussians, V_H Poisson, ρ_p = φ_iφ_j/dV, p = (i ≤ j),
x_p = X_ii or 2X_ij so that n = Σ_p x_p ρ_p):
    ∫ n ΔV_loc + ½∫(n + b)V_H[n + b] = ½ xᵀ G x  +  tr X Σ_a M_a(R_a)  +  E_bb(R),
    G_pq = ∫ ρ_p V_H[ρ_q]  (the pair Hartree tensor, p² entries, once per basis),
    M_a(R) = Φ diag(v_loc,a(· − R)) Φᵀ + V_nl,a(R),  v_loc,a = ΔV_loc,a + V_H[b_a]  (the atom's whole local
    potential, so the n–b cross term ∫ n V_H[b] = Σ_a ∫ n V_H[b_a] goes into it; Poisson is linear and symmetric),
    E_bb = ½∫ b V_H[b]  (Gaussian–Gaussian, analytic: the reciprocal sum (2π/Ω) Σ_{G≠0} |Σ_a Z_a e^{−iG·R_a}|²
    e^{−G²r_c²/2}/G² on the grid's G set, periodic; Σ_a Z_a²/(√(2π) r_c) + Σ_{a<b} Z_aZ_b erf(R_ab/(√2 r_c))/R_ab,
    isolated), plus E_ion (ions.py, unchanged).
Per geometry: the pinned atom sits on the origin, so M_0 is constant (with its gradient ∂M_0/∂R at the origin, a
first-order Taylor term for the forces); each frame atom moves in z = 0, so M_a(x, y) is tabulated on a rectangle of
positions around its training positions and interpolated by a tensor-product cubic spline (value and exact derivative),
with ∂M_a/∂z(x, y) tabulated the same way (first order in z; the frame keeps z = 0; it gives the out-of-plane force).
XC by its second-order expansion at a reference density n̄ = ρ[X̄] (X̄ the mean of the exact online solutions at
the training geometries), a quadratic form in X like the Hartree term, so F and h stay consistent by construction:
    E_xc ≈ E_xc[n̄] + tr V0 (X − X̄) + ½ δxᵀ K δx,   h_xc = V0 + unpack(K δx),   δx = pack(X − X̄),
    V0 = Φ diag(v_xc[n̄]) Φᵀ,   K_pq = Σ_r f_xc[max(n̄, XC_F_FLOOR)](r) ρ_p(r) ρ_q(r) dV   (f_xc = dv_xc/dn, LDA only);
its error is third order in n − n̄ (measured in docs/MOR_hyper.md). Per MVP pass: two p² products (G x, K δx) and a
few k×k eigen-decompositions — no grid array. Forces at a stationary X: F_a = −tr(X ∂h_geo/∂R_a) − ∂(E_bb + E_ion)/∂R_a,
the exact gradient of the hyper-reduced free energy. Energy keys: kinetic, local_ionic (tr X Σ_a M_a, all atoms, the
nonlocal part included), hartree_ee (½xᵀGx), xc, ion (E_bb + E_ion), minus_TS, free_energy, energy; their sum is
the exact model's kinetic + nonlocal + local_short + hartree_total + xc + ion_short − TS.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.interpolate import NdBSpline, make_interp_spline
from scipy.special import erf

from fastqmd.dft.filtering import radial_functions
from fastqmd.dft.grid import Grid
from fastqmd.dft.ions import ion_energy_forces
from fastqmd.dft.occupations import fermi_dirac
from fastqmd.dft.operator import discretize, projector_overlaps
from fastqmd.dft.poisson import hartree_potential
from fastqmd.dft.xc import DENSITY_FLOOR, LIBXC_CODES, is_gga
from fastqmd.errors import InputError
from fastqmd.mor.online import OCC_FLOOR, OnlineNotConverged, OnlineResult, ReducedBasis, minus_TS, mvp_iterate

FORMAT = "fastqmd-mor-hyper"
VERSION = 1
G_CUT_EXP = 40.0  # reciprocal sum of E_bb: keep G with G² r_c²/2 < 40 (e^{−40} ≈ 4e−18)
PINNED_TOL = 1e-9  # Bohr: the training geometries' pinned atom must sit on the origin
XC_F_FLOOR = 1e-5  # Bohr⁻³: f_xc of the expansion is evaluated at max(n̄, this) (module doc)
TAYLOR_TOL = 0.01  # Bohr: largest online offset of the pinned atom and |z| of a frame atom (first-order terms)


class OutsideTable(InputError):
    """Canonical positions outside the tabulated domain of the hyper-reduction (use the exact grid path)."""


# ---------------------------------------------------------------- pairs


def pair_index(k: int) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) with i ≤ j, p = k(k+1)/2 pairs (numpy's triu order)."""
    return np.triu_indices(k)


def pack(X: np.ndarray, iu) -> np.ndarray:
    """x_p = X_ii (i = j) or 2X_ij (i < j): n = Σ_p x_p ρ_p for symmetric X."""
    i, j = iu
    return np.where(i == j, 1.0, 2.0) * X[i, j]


def unpack(g: np.ndarray, iu, k: int) -> np.ndarray:
    """The symmetric [k, k] matrix with entries g_p at (i, j) and (j, i)."""
    M = np.zeros((k, k))
    M[iu] = g
    M.T[iu] = g
    return M


def pair_products(Phi: np.ndarray, iu, grid: Grid, rows: slice) -> np.ndarray:
    """ρ_p = φ_i φ_j / dV for the pairs p in `rows`, [n_rows, n_grid]."""
    i, j = iu[0][rows], iu[1][rows]
    return Phi[i] * Phi[j] / grid.dV


def hartree_tensor(Phi: np.ndarray, grid: Grid, chunk: int = 48) -> np.ndarray:
    """G_pq = Σ_r ρ_p(r) V_H[ρ_q](r) dV [p, p] (symmetrized), one Poisson solve per pair (grid boundary conditions)."""
    k = len(Phi)
    iu = pair_index(k)
    n_p = len(iu[0])
    R = pair_products(Phi, iu, grid, slice(None))  # [p, n_grid]
    G = np.empty((n_p, n_p))
    for s in range(0, n_p, chunk):
        V = np.stack([hartree_potential(r.reshape(grid.shape), grid).ravel() for r in R[s:s + chunk]])
        G[s:s + chunk] = V @ R.T * grid.dV
    return 0.5 * (G + G.T)


# ---------------------------------------------------------------- ions


def gaussian_energy_forces(Z: np.ndarray, R: np.ndarray, grid: Grid, r_c: float) -> tuple[float, np.ndarray]:
    """(E_bb = ½∫ b V_H[b], −∂E_bb/∂R [n, 3]) of the ionic Gaussians b = −Σ_a Z_a g(r − R_a) (module doc)."""
    if not grid.periodic:
        E = float(np.sum(Z**2)) / (np.sqrt(2 * np.pi) * r_c)
        F = np.zeros_like(R)
        s = np.sqrt(2) * r_c
        for a in range(len(Z)):
            for b in range(a + 1, len(Z)):
                d = R[a] - R[b]
                r = np.linalg.norm(d)
                E += Z[a] * Z[b] * erf(r / s) / r
                dE = (2 / (np.sqrt(np.pi) * s) * np.exp(-(r / s) ** 2) - erf(r / s) / r) / r  # d/dr [erf(r/s)/r]
                F[a] -= Z[a] * Z[b] * dE * d / r
                F[b] += Z[a] * Z[b] * dE * d / r
        return float(E), F
    Gv, W = _reciprocal(grid, r_c)
    phase = np.exp(-1j * Gv @ R.T)  # [n_G, n_atoms]
    S = phase @ Z  # [n_G]
    E = float(np.sum(W * np.abs(S) ** 2))
    # ∂|S|²/∂R_a = 2 Re(S* (−iG) Z_a e^{−iG·R_a})
    dE = 2 * np.real(np.conj(S)[:, None] * (-1j) * phase * Z[None, :])  # [n_G, n_atoms]
    F = -np.einsum("g,ga,gc->ac", W, dE, Gv)
    return E, F


def _reciprocal(grid: Grid, r_c: float) -> tuple[np.ndarray, np.ndarray]:
    """G vectors of the grid's FFT set with G²r_c²/2 < G_CUT_EXP, G ≠ 0, and W = (2π/Ω) e^{−G²r_c²/2}/G²."""
    q = [2 * np.pi * np.fft.fftfreq(n, h) for n, h in zip(grid.shape, grid.spacing)]
    g_max = np.sqrt(2 * G_CUT_EXP) / r_c
    q = [qi[np.abs(qi) <= g_max] for qi in q]
    Gv = np.stack(np.meshgrid(*q, indexing="ij"), -1).reshape(-1, 3)
    G2 = np.sum(Gv**2, 1)
    keep = (G2 > 0) & (G2 * r_c**2 / 2 < G_CUT_EXP)
    Gv, G2 = Gv[keep], G2[keep]
    return Gv, 2 * np.pi / float(np.prod(grid.lengths)) * np.exp(-G2 * r_c**2 / 2) / G2


# ---------------------------------------------------------------- one atom's local-ionic matrix


def atom_matrix(Phi: np.ndarray, grid: Grid, model, symbol: str, R: np.ndarray,
                axes: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(M_a = Φ diag(ΔV_loc,a + V_H[b_a]) Φᵀ + V_nl,a [k, k], ∂M_a/∂R_c [len(axes), k, k]) of one atom at R.

    ∂/∂R_c: ΔV_loc(|r − R|) → −(dΔV/dr / r) (r − R)_c; b_a = −Z g → −Z (2 (r − R)_c / r_c²) g (its V_H by Poisson);
    V_nl = C h Cᵀ, C = Φ Bᵀ → −(dC_c h Cᵀ + C h dC_cᵀ), dC = Φ ∇Bᵀ (the forms of local.py and nonlocal_pp.py)."""
    from fastqmd.dft.scf import Model

    m1 = Model((symbol,), np.asarray(R, float)[None], model.xc, model.kT, 0, model.r_c, 0.0, model.filter_pseudo)
    disc = discretize(m1, grid)
    pp = m1.pseudos[0]
    V = disc.v_short + hartree_potential(disc.b, grid)
    rows = [V.ravel()]
    if axes:
        d = grid.displacements(np.asarray(R, float))
        d = (d[0][:, None, None], d[1][None, :, None], d[2][None, None, :])
        r = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
        dv = radial_functions(pp, model.r_c, disc.q_max).vloc_short(r)[1]  # (1/r) dΔV/dr
        g = (np.pi * model.r_c**2) ** -1.5 * np.exp(-(r**2) / model.r_c**2)
        for c in axes:
            db = -pp.Z * (2 * d[c] / model.r_c**2) * g  # ∂b_a/∂R_c
            rows.append((-dv * d[c] + hartree_potential(db, grid)).ravel())
    k = len(Phi)
    mats = (np.concatenate([Phi * v[None] for v in rows]) @ Phi.T).reshape(len(rows), k, k)  # Φ diag(v) Φᵀ each
    for o in projector_overlaps(disc, Phi, with_grad=bool(axes)):
        mats[0] += o.C @ o.h @ o.C.T
        for n, c in enumerate(axes):
            A = o.dC[:, :, c] @ o.h @ o.C.T
            mats[1 + n] -= A + A.T
    mats = 0.5 * (mats + np.swapaxes(mats, 1, 2))
    return mats[0], mats[1:]


# ---------------------------------------------------------------- tables of the frame atoms


@dataclass(frozen=True, eq=False)
class AtomTable:
    """M_a(x, y) and ∂M_a/∂z(x, y) (packed pairs) of one frame atom on the rectangle xs × ys, as cubic splines."""

    xs: np.ndarray
    ys: np.ndarray
    values: np.ndarray  # [n_x, n_y, 2, p]: M and ∂M/∂z at the table points
    spline: NdBSpline = field(repr=False)

    @classmethod
    def from_values(cls, xs, ys, values) -> AtomTable:
        bx = make_interp_spline(xs, values, k=3, axis=0)
        by = make_interp_spline(ys, bx.c, k=3, axis=1)  # BSpline keeps its interpolation axis first
        c = np.moveaxis(by.c, 0, 1)  # [n_x, n_y, 2, p]
        return cls(np.asarray(xs), np.asarray(ys), np.asarray(values), NdBSpline((bx.t, by.t), c, 3))

    def covers(self, x: float, y: float) -> bool:
        return bool(self.xs[0] <= x <= self.xs[-1] and self.ys[0] <= y <= self.ys[-1])

    def __call__(self, x: float, y: float) -> np.ndarray:
        """[3, 2, p]: (value, ∂/∂x, ∂/∂y) of (M, ∂M/∂z) at (x, y)."""
        xi = np.array([[x, y]])
        return np.stack([self.spline(xi, nu=nu)[0] for nu in ((0, 0), (1, 0), (0, 1))])


def table_axes(positions: np.ndarray, margin: float, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Rectangle around the (x, y) of `positions` [m, 3] widened by `margin`, points `spacing` apart (≥ 4 per axis)."""
    lo, hi = positions[:, :2].min(0) - margin, positions[:, :2].max(0) + margin
    n = np.maximum(4, np.ceil((hi - lo) / spacing).astype(int) + 1)
    return np.linspace(lo[0], hi[0], n[0]), np.linspace(lo[1], hi[1], n[1])


def atom_table(Phi, grid, model, symbol, xs, ys, iu) -> AtomTable:
    """The table of M_a and ∂M_a/∂z of one `symbol` atom at (x, y, 0) for x in xs, y in ys (one `atom_matrix` each)."""
    vals = np.empty((len(xs), len(ys), 2, len(iu[0])))
    for a, x in enumerate(xs):
        for b, y in enumerate(ys):
            M, dM = atom_matrix(Phi, grid, model, symbol, np.array([x, y, 0.0]), axes=(2,))
            vals[a, b, 0], vals[a, b, 1] = M[iu], dM[0][iu]
    return AtomTable.from_values(xs, ys, vals)


# ---------------------------------------------------------------- XC: second-order expansion


def natural_occupied(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(λ [m], Q [k, m]) of X = Q diag(λ) Qᵀ with λ > OCC_FLOOR."""
    lam, Q = np.linalg.eigh(0.5 * (X + X.T))
    keep = lam > OCC_FLOOR
    return lam[keep], Q[:, keep]


@dataclass(frozen=True, eq=False)
class XCExpansion:
    """E_xc[ρ[X]] ≈ E0 + tr V0 (X − X̄) + ½ δxᵀ K δx, δx = pack(X − X̄): the grid functional's Taylor polynomial
    at the reference density n̄ = ρ[X̄] (V0 = Φ diag(v_xc[n̄]) Φᵀ, K_pq = Σ_r f_xc[n̄] ρ_p ρ_q dV, f_xc = dv_xc/dn)."""

    X_ref: np.ndarray  # [k, k]
    E0: float
    V0: np.ndarray  # [k, k]
    K: np.ndarray  # [p, p]


def xc_expansion(Phi: np.ndarray, grid: Grid, functional: str, X_ref: np.ndarray) -> XCExpansion:
    """The second-order expansion of the (LDA) XC energy at ρ[X_ref] (libxc's v_xc, f_xc; n floored as in xc.py, and
    at XC_F_FLOOR for f_xc: LDA's f_xc ∝ −n^{−2/3} makes the quadratic form strongly indefinite in the far tails, where
    it buys no accuracy — the floor moves the lowest eigenvalue of G + K from −13 to −1.6 at 32³, E_xc by < 1e−8 Ha)."""
    from pyscf.dft import libxc

    from fastqmd.mor.online import low_rank_density

    if is_gga(functional):
        raise InputError(f"hyper-reduction supports LDA functionals only, not {functional}")
    code = LIBXC_CODES[functional.lower()]
    rho = np.maximum(low_rank_density(Phi, X_ref, grid).ravel(), DENSITY_FLOOR)
    exc, vxc = libxc.eval_xc(code, rho, spin=0, deriv=1)[:2]
    fxc = libxc.eval_xc(code, np.maximum(rho, XC_F_FLOOR), spin=0, deriv=2)[2]
    iu = pair_index(len(Phi))
    K = np.empty((len(iu[0]),) * 2)
    for s in range(0, len(K), 48):
        rows = pair_products(Phi, iu, grid, slice(s, s + 48))
        K[s:s + 48] = (rows * fxc[0]) @ pair_products(Phi, iu, grid, slice(None)).T * grid.dV
    V0 = (Phi * vxc[0]) @ Phi.T
    return XCExpansion(np.asarray(X_ref, float), float(np.sum(exc * rho) * grid.dV), 0.5 * (V0 + V0.T),
                       0.5 * (K + K.T))


def xc_energy_matrix(xc: XCExpansion, X: np.ndarray, iu) -> tuple[float, np.ndarray]:
    """(E_xc, h_xc = ∂E_xc/∂X) of the expansion: h_xc = V0 + unpack(K δx) — the exact gradient of the E_xc used."""
    D = X - xc.X_ref
    dx = pack(D, iu)
    Kdx = xc.K @ dx
    return xc.E0 + float(np.sum(xc.V0 * D)) + 0.5 * float(dx @ Kdx), xc.V0 + unpack(Kdx, iu, len(X))


# ---------------------------------------------------------------- the hyper-reduced problem


@dataclass(frozen=True, eq=False)
class HyperReduction:
    """Everything the grid-free online step needs (atomic units, canonical frame; module doc)."""

    T: np.ndarray  # [k, k] kinetic matrix
    M0: np.ndarray  # [k, k] the pinned atom's M at the origin (local-ionic + nonlocal)
    dM0: np.ndarray  # [3, k, k] its gradient at the origin
    G: np.ndarray  # [p, p] pair Hartree tensor
    xc: XCExpansion
    tables: tuple[AtomTable, ...]  # one per frame atom, in canonical label order 1, 2
    symbols: tuple[str, ...]
    model: object  # fastqmd.mor.basis.ModelSpec
    grid: Grid
    info: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        return int(self.T.shape[0])

    @property
    def iu(self):
        return pair_index(self.k)

    @property
    def Z(self) -> np.ndarray:
        from fastqmd.dft.pseudo import load_gth

        table = "pbe" if self.model.xc.lower() == "pbe" else "lda"
        return np.array([load_gth(s, table).Z for s in self.symbols], float)

    def covers(self, R: np.ndarray) -> bool:
        R = np.asarray(R, float)
        return bool(np.abs(R[0]).max() <= TAYLOR_TOL and np.abs(R[1:, 2]).max() <= TAYLOR_TOL
                    and all(t.covers(R[1 + a, 0], R[1 + a, 1]) for a, t in enumerate(self.tables)))


def build_hyper(basis: ReducedBasis, model, training_bohr: np.ndarray, solutions: list[np.ndarray],
                table_spacing: float | None = None, table_margin: float = 0.3, verbose: bool = False) -> HyperReduction:
    """The hyper-reduction of `basis` for the water-like recipe (pinned atom 0 on the origin, frame atoms 1, 2 in
    z = 0): pair Hartree tensor, pinned-atom matrices, one table per frame atom over its training positions ± margin
    (spacing default h/2), XC expanded at the mean X̄ of the exact online `solutions` (e.g. at the training geometries).
    `model` is a `ModelSpec` (basis.model)."""
    g, Phi = basis.grid, basis.Phi
    training_bohr = np.asarray(training_bohr, float)
    if training_bohr.shape[1] != 3 or np.abs(training_bohr[:, 0]).max() > PINNED_TOL:
        raise InputError("hyper-reduction needs three-atom geometries with the pinned atom on the origin")
    spacing = float(max(g.spacing)) / 2 if table_spacing is None else float(table_spacing)
    tm = {}
    t0 = time.perf_counter()
    G = hartree_tensor(Phi, g)
    tm["hartree_tensor_s"] = time.perf_counter() - t0
    symbols = tuple(model.symbols)
    m = model.model(np.zeros((len(symbols), 3)))
    t0 = time.perf_counter()
    M0, dM0 = atom_matrix(Phi, g, m, symbols[0], np.zeros(3), axes=(0, 1, 2))
    iu = pair_index(basis.k)
    tables = []
    for a in (1, 2):
        xs, ys = table_axes(training_bohr[:, a], table_margin, spacing)
        tables.append(atom_table(Phi, g, m, symbols[a], xs, ys, iu))
        if verbose:
            print(f"table of atom {a}: {len(xs)} × {len(ys)} points", flush=True)
    tm["tables_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    xc = xc_expansion(Phi, g, model.xc, np.mean(solutions, axis=0))
    tm["xc_expansion_s"] = time.perf_counter() - t0
    info = {"timings": tm, "table_spacing_bohr": spacing, "table_margin_bohr": table_margin,
            "n_xc_references": len(solutions), "table_shapes": [list(t.values.shape[:2]) for t in tables]}
    return HyperReduction(basis.T, M0, dM0, G, xc, tuple(tables), symbols, model, g, info)


# ---------------------------------------------------------------- online


@dataclass(frozen=True, eq=False)
class GeometryTerms:
    """h_geo = T + M0 (+ Taylor) + Σ_a M_a(R_a) [k, k], its gradient ∂h_geo/∂R [n_atoms, 3, k, k], the ion energy
    E_bb + E_ion and its forces [n_atoms, 3]."""

    h: np.ndarray
    dh: np.ndarray
    E_ion: float
    F_ion: np.ndarray


def geometry_terms(hr: HyperReduction, R: np.ndarray) -> GeometryTerms:
    """The per-geometry part from the tables (no grid): R [3, 3] canonical positions (Bohr)."""
    R = np.asarray(R, float)
    if not hr.covers(R):
        raise OutsideTable(f"canonical positions {np.round(R, 4).tolist()} lie outside the hyper-reduction tables")
    k, iu = hr.k, hr.iu
    h = hr.T + hr.M0 + np.einsum("c,cij->ij", R[0], hr.dM0)
    dh = np.zeros((len(R), 3, k, k))
    dh[0] = hr.dM0
    for a, t in enumerate(hr.tables, start=1):
        v = t(R[a, 0], R[a, 1])  # [3 (val, ∂x, ∂y), 2 (M, ∂zM), p]
        z = R[a, 2]
        h += unpack(v[0, 0] + z * v[0, 1], iu, k)
        dh[a, 0] = unpack(v[1, 0] + z * v[1, 1], iu, k)
        dh[a, 1] = unpack(v[2, 0] + z * v[2, 1], iu, k)
        dh[a, 2] = unpack(v[0, 1], iu, k)
    grid, Z, r_c = hr.grid, hr.Z, hr.model.r_c
    E_bb, F_bb = gaussian_energy_forces(Z, R, grid, r_c)
    E_i, F_i = ion_energy_forces(Z, R, grid, r_c)
    return GeometryTerms(h, dh, E_bb + E_i, F_bb + F_i)


@dataclass(frozen=True, eq=False)
class HyperEvaluation:
    X: np.ndarray
    energies: dict[str, float]
    h: np.ndarray

    @property
    def free_energy(self) -> float:
        return self.energies["free_energy"]


def hyper_evaluate(hr: HyperReduction, geo: GeometryTerms, X: np.ndarray,
                   timings: dict | None = None) -> HyperEvaluation:
    """F[X] and h[X] = ∂F/∂X of the hyper-reduced model (module doc)."""
    tm = timings if timings is not None else {}
    t0 = time.perf_counter()
    iu = hr.iu
    x = pack(X, iu)
    t1 = time.perf_counter()
    Gx = hr.G @ x
    t2 = time.perf_counter()
    E_xc, h_xc = xc_energy_matrix(hr.xc, X, iu)
    t3 = time.perf_counter()
    h = geo.h + unpack(Gx, iu, hr.k) + h_xc
    t4 = time.perf_counter()
    E = {"kinetic": float(np.sum(X * hr.T)), "local_ionic": float(np.sum(X * (geo.h - hr.T))),
         "hartree_ee": 0.5 * float(x @ Gx), "xc": E_xc, "ion": geo.E_ion}
    E["minus_TS"] = minus_TS(X, hr.model.kT)
    E["free_energy"] = sum(E.values())
    E["energy"] = E["free_energy"] - E["minus_TS"]
    for key, dt in (("density", t1 - t0), ("hartree", t2 - t1), ("xc", t3 - t2), ("matrices", t4 - t3)):
        tm[key] = tm.get(key, 0.0) + dt
    return HyperEvaluation(X, E, 0.5 * (h + h.T))


def hyper_forces(geo: GeometryTerms, X: np.ndarray) -> np.ndarray:
    """F_a = −tr(X ∂h_geo/∂R_a) + F_ion [n_atoms, 3] (Ha/Bohr): the exact gradient at a stationary X."""
    return -np.einsum("acij,ij->ac", geo.dh, X) + geo.F_ion


def hyper_solve(hr: HyperReduction, R: np.ndarray, X0: np.ndarray | None = None, tol: float = 1e-9,
                max_iter: int = 60, forces: bool = True, raise_unconverged: bool = True) -> OnlineResult:
    """The MVP iteration of online.mvp_solve on the hyper-reduced F (same steps, same stopping rule); X0 warm start
    (default: the XC expansion point X̄, the mean training solution — the quadratic model is accurate only near it)."""
    t_start = time.perf_counter()
    tm: dict[str, float] = {}
    geo = geometry_terms(hr, R)
    tm["geometry"] = time.perf_counter() - t_start
    N_e, kT = hr.model.n_electrons, hr.model.kT
    X = hr.xc.X_ref.copy() if X0 is None else 0.5 * (X0 + X0.T)
    ev, log, converged, dF0 = mvp_iterate(
        hyper_evaluate(hr, geo, X, tm), lambda X_T: hyper_evaluate(hr, geo, X_T, tm),
        lambda ev, ev1, beta, D: ev1 if beta == 1.0 else hyper_evaluate(hr, geo, ev.X + beta * D, tm),
        N_e, kT, tol, max_iter)
    eps = np.linalg.eigvalsh(ev.h)
    mu = fermi_dirac(eps, N_e, kT)[1]
    t0 = time.perf_counter()
    F = hyper_forces(geo, ev.X) if forces else None
    tm["forces"] = time.perf_counter() - t0
    tm["total"] = time.perf_counter() - t_start
    result = OnlineResult(ev.X, ev.energies, eps, ev.h, mu, None, None, F, converged, len(log), dF0, tuple(log), tm)
    if not converged and raise_unconverged:
        raise OnlineNotConverged(f"hyper-reduced MOR solver not converged in {max_iter} iterations "
                                 f"(|F'(0)| = {abs(dF0):.1e} Ha, tolerance {tol:g})", result)
    return result


# ---------------------------------------------------------------- file


def hyper_for_basis(basis, table_spacing: float | None = None, table_margin: float = 0.3, tol: float = 1e-9,
                    verbose: bool = False) -> HyperReduction:
    """`build_hyper` for a `fastqmd.mor.basis.Basis` that lists its training geometries: the exact online solutions
    along them (one warm chain) give X̄; tables over their frame-atom positions ± `table_margin` (Bohr)."""
    from fastqmd.mor.online import reduced_basis, solve

    tr = basis.extras.get("training_geometries_bohr")
    if tr is None:
        raise InputError(f"the basis {basis.source} lists no training geometries (make it with `fastqmd mor basis`)")
    training = np.asarray(tr, float)
    rb = reduced_basis(basis.vectors, basis.grid.grid())
    sols, X = [], None
    for R in training:
        X = solve(rb, basis.model.model(R), X0=X, tol=tol, forces=False).X
        sols.append(X)
    hr = build_hyper(rb, basis.model, training, sols, table_spacing=table_spacing, table_margin=table_margin,
                     verbose=verbose)
    hr.info["basis_sha256"] = basis_fingerprint(basis.vectors)
    return hr


def basis_fingerprint(vectors: np.ndarray) -> str:
    """SHA-256 of the basis vectors (float64, C order): ties a hyper-reduction to the exact basis it was made from."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(vectors, np.float64).tobytes()).hexdigest()


def save_hyper(path: str | Path, hr: HyperReduction, basis_source: str = "") -> Path:
    """HDF5 (atomically): the arrays, the two tables' axes and values, grid/model JSON, info JSON."""
    import json
    from dataclasses import asdict

    from fastqmd.data.store import atomic_write
    from fastqmd.mor.basis import GridSpec

    def fill(f) -> None:
        f.attrs.update(format=FORMAT, version=VERSION, symbols=json.dumps(hr.symbols), basis=basis_source,
                       grid=json.dumps(asdict(GridSpec.of(hr.grid))), model=json.dumps(asdict(hr.model)),
                       info=json.dumps(hr.info))
        for name in ("T", "M0", "dM0", "G"):
            f[name] = getattr(hr, name)
        f.attrs["xc_E0"] = hr.xc.E0
        f["xc_X_ref"], f["xc_V0"], f["xc_K"] = hr.xc.X_ref, hr.xc.V0, hr.xc.K
        for a, t in enumerate(hr.tables, start=1):
            f[f"table{a}/xs"], f[f"table{a}/ys"], f[f"table{a}/values"] = t.xs, t.ys, t.values

    atomic_write(Path(path), fill)
    return Path(path)


def load_hyper(path: str | Path) -> HyperReduction:
    """A HyperReduction from its file (InputError when missing or not one)."""
    import json

    import h5py

    from fastqmd.mor.basis import GridSpec, ModelSpec

    path = Path(path)
    if not path.is_file():
        raise InputError(f"hyper-reduction file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise InputError(f"{path} is not a MOR hyper-reduction file")
            arr = {n: f[n][()] for n in ("T", "M0", "dM0", "G")}
            xc = XCExpansion(f["xc_X_ref"][()], float(f.attrs["xc_E0"]), f["xc_V0"][()], f["xc_K"][()])
            tables = tuple(AtomTable.from_values(*(f[f"table{a}/{n}"][()] for n in ("xs", "ys", "values")))
                           for a in (1, 2))
            gs = json.loads(f.attrs["grid"])
            grid = GridSpec(tuple(gs["shape"]), tuple(gs["spacing"]), tuple(gs["origin"]), gs["fd_order"],
                            gs["periodic"]).grid()
            md = json.loads(f.attrs["model"])
            md["symbols"] = tuple(md["symbols"])
            model = ModelSpec(**md)
            symbols = tuple(json.loads(f.attrs["symbols"]))
            info = json.loads(f.attrs["info"])
    except (OSError, KeyError) as exc:
        raise InputError(f"cannot read the hyper-reduction file {path}: {exc}") from exc
    return HyperReduction(arr["T"], arr["M0"], arr["dM0"], arr["G"], xc, tables, symbols, model, grid, info)
