"""Local learning, global assembly: per-molecule MOR bases placed on one grid, one reduced problem for a cluster.

In:  per-molecule bases (`fastqmd.mor.basis.Basis`, each learned in its molecule's canonical frame, `frame.py`), the
     lab positions of every molecule (Bohr, unwrapped molecules), and the cluster grid (`fastqmd.dft.grid.Grid`, same
     spacing, FD order and physics as the bases; any box).
Out: `Assembly` — the stacked, orthonormalized basis Φ [K, n_grid] (unit rows, φ = u/√dV) on the cluster grid —, and
     the cluster's reduced Mermin solution from the existing online solver (`fastqmd.mor.online.solve`). Atomic units.

Placement. Molecule m has the frame Y = R_m X[perm] + t_m (canonical_frame of its positions); a lab point r has the
canonical image y_m(r) = R_m d_m(r) + p0, d_m(r) = r − X_{p,m} (minimum image on a periodic cluster grid, half-open), p0 the
pinned atom's canonical position. A canonical function φ_i(y) (tabulated on the basis grid) moved with the molecule is
    φ_i^(m)(r) = φ_i(y_m(r)),
evaluated by periodic cubic B-spline interpolation on the basis grid (scipy.ndimage.map_coordinates, mode
"grid-wrap"; the spline coefficients are computed once per basis, `SplineBasis`) and set to zero where y_m(r) lies
outside the training cell centred on p0 (|y_a − p0_a| > L_a/2, faces included): one molecule's functions never wrap
onto a distant part of a bigger cluster box. (The cut is sharp: E(R) is not continuous where grid points cross a
face as a molecule moves; a cos² window over the last Bohr was tried and did not make the finite differences of E(R)
less step-size dependent — docs/MOR_assembly.md — so it is not offered.) Exact when R_m permutes the axes and X_{p,m} − p0 is a grid vector; otherwise the
interpolation error is measured (docs/MOR_assembly.md).
Assembly. Stack A = [u^(1); …; u^(M)] [Σk_m, n_grid]; S = A Aᵀ = V diag(s) Vᵀ; keep s_i > tol·max(s) (the near-null
directions that the molecules' diffuse functions share are dropped) and take Φ = diag(s_kept^{-1/2}) V_keptᵀ A
(Löwdin's canonical orthonormalization; on the kept space it spans the same functions as the symmetric S^{-1/2} A,
and the reduced Mermin problem depends on the span only). Then the online solver on the cluster's `Model`.
Enrichment (optional, `rounds`). A grid function rotated off the grid's axes is not the grid's solution for the
rotated molecule (the FD operator is not rotation invariant: on the 32³, h = 0.375 grid the occupied Hi-Fi orbitals
of water rotated by 30° lie 52 mHa above the Hi-Fi energy of the rotated molecule, ~h⁴: 21 mHa at h = 0.3, 9 at
0.25). One round adds the preconditioned residuals of the occupied Ritz vectors ψ_i of the reduced Hamiltonian h,
    w_i = P (H[n] ψ_i − ε_i ψ_i),  ε_i = ⟨ψ_i|H[n]|ψ_i⟩,  P = (T_FD + 1)⁻¹ (the Hi-Fi kinetic preconditioner),
projected out of span Φ, to the basis and solves again (warm): one full-grid H application per occupied state.
Forces. `OnlineResult.forces` are Hellmann–Feynman forces at fixed Φ. The assembled basis moves with the molecules
(Φ = Φ(R)), so the gradient of E(R) = min_X F[X; Φ(R), R] has a Pulay term tr(∂F/∂Φ · ∂Φ/∂R) the HF forces lack;
`finite_difference_forces` gives −dE/dR of the re-assembled energy (benchmarks/mor/assembly.py measures the gap).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates, spline_filter

from fastqmd.dft.grid import Grid
from fastqmd.dft.hamiltonian import KineticPreconditioner
from fastqmd.dft.operator import apply_hamiltonian
from fastqmd.dft.scf import Model
from fastqmd.dft.xc import xc_energy_potential
from fastqmd.errors import InputError
from fastqmd.mor.basis import Basis
from fastqmd.mor.frame import Frame, canonical_frame
from fastqmd.mor.online import OnlineResult, ReducedProblem, mvp_solve, reduced_basis, reduced_problem

DROP_TOL = 1e-6  # relative overlap eigenvalue below which a direction of the stacked basis is dropped
SPLINE_ORDER = 3
WRAP_TOL = 1e-9  # relative, see wrapped_displacements
CELL_TOL = 1e-9  # Bohr: points on the training cell's faces count as inside (rounding of exact rotations)
ENRICH_OCC = 1e-3  # Ritz vectors with occupation above this get a residual vector in an enrichment round


@dataclass(frozen=True, eq=False)
class SplineBasis:
    """A basis with the periodic cubic B-spline coefficients of its functions φ_i (∫φ² = 1) on its own grid."""

    basis: Basis
    coeffs: np.ndarray  # [k, n_x, n_y, n_z]

    @property
    def k(self) -> int:
        return int(self.coeffs.shape[0])


def spline_basis(basis: Basis) -> SplineBasis:
    """Prefilter every φ_i = u_i/√dV once (scipy.ndimage.spline_filter, periodic), so placing it is one
    map_coordinates call without prefilter."""
    phi = basis.on_grid()
    c = np.stack([spline_filter(f, order=SPLINE_ORDER, mode="grid-wrap") for f in phi])
    return SplineBasis(basis, c)


def wrapped_displacements(grid: Grid, X: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-axis d = x − X_a, wrapped on a periodic grid into the half-open [−L/2, L/2) (d − L floor(d/L + ½), the
    floor nudged by WRAP_TOL so a point on the face is placed the same way wherever X sits): lattice translations of X
    then shift d exactly."""
    out = []
    for x, Xa, L in zip(grid.axes, X, grid.lengths):
        d = x - Xa
        out.append(d - L * np.floor(d / L + 0.5 + WRAP_TOL) if grid.periodic else d)
    return tuple(out)


def canonical_images(grid: Grid, frame: Frame, pinned_lab: np.ndarray, pinned_at) -> np.ndarray:
    """[3, n_x, n_y, n_z] y(r) = R d(r) + p0 for every grid point, d = r − X_p (wrapped_displacements)."""
    dx, dy, dz = wrapped_displacements(grid, np.asarray(pinned_lab, float))
    R = frame.R
    return np.stack([R[a, 0] * dx[:, None, None] + R[a, 1] * dy[None, :, None] + R[a, 2] * dz[None, None, :]
                     + pinned_at[a] for a in range(3)])


def place(sb: SplineBasis, grid: Grid, positions: np.ndarray) -> tuple[np.ndarray, Frame]:
    """(U [k, n_grid]: the molecule's functions φ_i(y(r)) as rows u = φ √dV on `grid`, its frame) (module doc)."""
    b = sb.basis
    positions = np.asarray(positions, float)
    frame = canonical_frame(positions, b.recipe)
    p0 = np.asarray(b.recipe.pinned_at, float)
    y = canonical_images(grid, frame, positions[b.recipe.pinned], p0)
    origin, h, L = np.asarray(b.grid.origin), np.asarray(b.grid.spacing), np.asarray(b.grid.shape) * np.asarray(b.grid.spacing)
    idx = (y - origin[:, None, None, None]) / h[:, None, None, None]  # [3, ...] fractional basis-grid indices
    inside = np.all(np.abs(y - p0[:, None, None, None]) <= L[:, None, None, None] / 2 + CELL_TOL, axis=0)
    pts = idx[:, inside]  # [3, n_inside]
    U = np.zeros((sb.k, grid.size))
    flat = inside.ravel()
    for i in range(sb.k):
        U[i, flat] = map_coordinates(sb.coeffs[i], pts, order=SPLINE_ORDER, mode="grid-wrap", prefilter=False)
    return U * np.sqrt(grid.dV), frame


def orthonormalize(A: np.ndarray, tol: float = DROP_TOL) -> tuple[np.ndarray, np.ndarray, int]:
    """(Φ = diag(s_kept^{-1/2}) V_keptᵀ A [K, n_grid] with ΦΦᵀ = 1, all eigenvalues s of S = AAᵀ (ascending),
    the number dropped (s_i ≤ tol·max s))."""
    S = A @ A.T
    s, V = np.linalg.eigh(0.5 * (S + S.T))
    keep = s > tol * s.max()
    Phi = (V[:, keep] / np.sqrt(s[keep])).T @ A
    return Phi, s, int((~keep).sum())


@dataclass(frozen=True, eq=False)
class Assembly:
    """The cluster basis: Φ [K, n_grid] orthonormal rows on `grid`, and how it was made."""

    Phi: np.ndarray
    grid: Grid
    frames: tuple[Frame, ...]
    raw_norms: np.ndarray  # [Σk_m] ‖u_i^(m)‖² of the placed functions before orthonormalization (1 if exact)
    overlap_eigenvalues: np.ndarray  # [Σk_m] eigenvalues of S = AAᵀ, ascending
    n_dropped: int
    sizes: tuple[int, ...]  # k_m per molecule

    @property
    def k(self) -> int:
        return int(self.Phi.shape[0])


def check_cluster(bases: list[SplineBasis], grid: Grid) -> None:
    """InputError (one line) unless every basis was learned with the cluster grid's spacing and FD order and all
    bases share one physics (XC, pseudopotentials, kT, r_c, filtering)."""
    problems = []
    for j, sb in enumerate(bases):
        g = sb.basis.grid
        if g.fd_order != grid.fd_order or not np.allclose(g.spacing, grid.spacing, rtol=0, atol=1e-9):
            problems.append(f"basis {j}: spacing {g.spacing} FD{g.fd_order} ≠ cluster {grid.spacing} FD{grid.fd_order}")
    keys = ("xc", "pseudo_family", "kT", "r_c", "filter_pseudo")
    ref = {k: getattr(bases[0].basis.model, k) for k in keys}
    for j, sb in enumerate(bases[1:], 1):
        other = {k: getattr(sb.basis.model, k) for k in keys}
        if other != ref:
            problems.append(f"basis {j}: physics {other} ≠ basis 0 {ref}")
    if problems:
        raise InputError("cannot assemble these bases on this grid: " + "; ".join(problems))


def assemble(bases: list[SplineBasis], positions: list[np.ndarray], grid: Grid, tol: float = DROP_TOL) -> Assembly:
    """Place molecule m's basis at its positions [n_m, 3] (Bohr, input labels of its recipe), stack, orthonormalize."""
    if len(bases) != len(positions) or not bases:
        raise InputError(f"assembly needs one basis per molecule, got {len(bases)} bases for {len(positions)} molecules")
    check_cluster(bases, grid)
    placed = [place(sb, grid, X) for sb, X in zip(bases, positions)]
    A = np.concatenate([U for U, _ in placed])  # [Σk_m, n_grid]
    Phi, s, dropped = orthonormalize(A, tol)
    return Assembly(Phi, grid, tuple(f for _, f in placed), np.einsum("ij,ij->i", A, A), s, dropped,
                    tuple(sb.k for sb in bases))


def cluster_model(bases: list[SplineBasis], positions: list[np.ndarray], n_empty: int | None = None) -> Model:
    """The cluster's `Model`: every molecule's symbols and positions (in that order), the bases' physics; n_empty
    (default: the sum of the bases' snapshot n_empty) only matters for a Hi-Fi comparison."""
    spec = bases[0].basis.model
    symbols = tuple(s for sb in bases for s in sb.basis.recipe.symbols)
    X = np.concatenate([np.asarray(p, float) for p in positions])
    ne = sum(sb.basis.model.n_empty for sb in bases) if n_empty is None else n_empty
    return Model(symbols, X, spec.xc, spec.kT, ne, spec.r_c, 0.0, spec.filter_pseudo)


def transfer_density_matrix(X: np.ndarray, Phi_old: np.ndarray, Phi_new: np.ndarray) -> np.ndarray:
    """Warm start across a basis change: X' = C X Cᵀ, C = Φ_new Φ_oldᵀ (the old density operator projected)."""
    C = Phi_new @ Phi_old.T
    return C @ X @ C.T


def enrichment_vectors(problem: ReducedProblem, res: OnlineResult, occ_min: float = ENRICH_OCC) -> np.ndarray:
    """[m, n_grid] w_i = P(H[n]ψ_i − ε_i ψ_i) for the Ritz vectors ψ_i of res.h with occupation ⟨ψ_i|X|ψ_i⟩ > occ_min,
    made orthogonal to span Φ and normalized (module doc; a residual's norm says nothing about its use, and the
    relative drop tolerance of `orthonormalize` must see unit vectors). H[n] = the Hi-Fi Hamiltonian of the reduced
    density."""
    Phi, g = problem.basis.Phi, problem.basis.grid
    V = problem.disc.v_short + res.v_hartree + xc_energy_potential(res.density, g, problem.model.xc)[1]
    _, Q = np.linalg.eigh(res.h)  # Ritz vectors of h: at convergence X = 2 f_FD(h) shares them, and unlike the
    occ = np.einsum("ji,jk,ki->i", Q, res.X, Q)  # natural orbitals of X (all ≈ 2, degenerate) they are smooth in R
    U = (Q[:, occ > occ_min]).T @ Phi
    HU = apply_hamiltonian(problem.disc, V, U)
    W = KineticPreconditioner(g, 1.0)(HU - np.einsum("ij,ij->i", U, HU)[:, None] * U)
    W -= (W @ Phi.T) @ Phi
    return W / np.linalg.norm(W, axis=1, keepdims=True)  # unit rows: only true near-dependence is dropped later


def solve_cluster(bases: list[SplineBasis], positions: list[np.ndarray], grid: Grid, X0: np.ndarray | None = None,
                  Phi_old: np.ndarray | None = None, rounds: int = 0, tol: float = 1e-9, max_iter: int = 300,
                  drop_tol: float = DROP_TOL, forces: bool = True) -> tuple[OnlineResult, Assembly, np.ndarray, list[float]]:
    """Assemble the cluster basis, solve its reduced Mermin problem (`online.mvp_solve`), then `rounds` enrichment
    rounds (module doc), each warm from the previous X. X0 in the basis Phi_old (e.g. a previous solve's final
    basis) is carried over by `transfer_density_matrix`. Returns (result, assembly, final basis Φ [K', n_grid],
    free energy after each stage). Forces: Hellmann–Feynman at the final basis (module doc)."""
    asm = assemble(bases, positions, grid, drop_tol)
    model = cluster_model(bases, positions)
    Phi = asm.Phi
    if X0 is not None and Phi_old is not None:
        X0 = transfer_density_matrix(X0, Phi_old, Phi)
    elif X0 is not None and X0.shape != (asm.k, asm.k):
        X0 = None
    history = []
    for r in range(rounds + 1):
        problem = reduced_problem(reduced_basis(Phi, grid), model)
        res = mvp_solve(problem, X0, tol=tol, max_iter=max_iter, forces=forces and r == rounds)
        history.append(res.free_energy)
        if r < rounds:
            W = enrichment_vectors(problem, res)
            Phi_new = orthonormalize(np.concatenate([Phi, W]), drop_tol)[0]
            X0, Phi = transfer_density_matrix(res.X, Phi, Phi_new), Phi_new
    return res, asm, Phi, history


def finite_difference_forces(bases: list[SplineBasis], positions: list[np.ndarray], grid: Grid,
                             atoms: list[tuple[int, int, int]], h: float = 1e-3, rounds: int = 0, tol: float = 1e-10,
                             points: int = 2) -> dict[tuple[int, int, int], float]:
    """{(molecule, atom, axis): −dE/dR} of the re-assembled (and re-enriched) reduced free energy — the basis moves
    with the molecules, Pulay term included — by central differences (step h Bohr; points 2 or 4), each solve warm
    from the reference solution."""
    ref, _, Phi0, _ = solve_cluster(bases, positions, grid, rounds=rounds, tol=tol, forces=False)
    steps = (1.0, -1.0) if points == 2 else (1.0, -1.0, 2.0, -2.0)
    out = {}
    for m, a, ax in atoms:
        F = []
        for sgn in steps:
            moved = [np.array(p, float) for p in positions]
            moved[m][a, ax] += sgn * h
            F.append(solve_cluster(bases, moved, grid, ref.X, Phi0, rounds=rounds, tol=tol, forces=False)[0].free_energy)
        d = (F[0] - F[1]) / (2 * h) if points == 2 else (8 * (F[0] - F[1]) - (F[2] - F[3])) / (12 * h)
        out[(m, a, ax)] = -d
    return out
