"""Band structures of NNH models along a high-symmetry path against a k-path reference (engines with k-points:
`band_structure`, GPAW) or reference bands from Γ-only engines by unfolding.

In:  an `EnergyModel`, a primitive crystal (ase `Atoms`, Å, pbc all True), fractional k-points [nk, 3] (in the
     reciprocal basis of the cell; phase convention of `fastqmd.nnh.blocks.to_kspace`, H(k) = Σ_R e^{i2πk·R} H(R))
     or an ase `BandPath`; a reference engine (`fastqmd.reference`) that gives H, S at Γ.
Out: eigenvalues ε_n(k) [nk, nbands] (eV) of the model's generalized problem H(k) u = ε S(k) u (float64, no grad);
     reference points (k, ε) unfolded from the Γ point of the n×n×n supercell; their positions on the path;
     the band MAE and the figure (reference red, model dashed black).

Unfolding (Γ-only engines). Supercell orbitals are indexed (T, μ): T ∈ {0..n−1}³ the primitive translation of
the atom, μ the primitive-cell orbital (`supercell` orders atoms T-major). For a perfect crystal the supercell
Γ eigenstates are primitive Bloch states at the n³ commensurate k = m/n: c(T, μ) = e^{i2πk·T} u_μ(k) (up to
mixing inside degenerate levels). With the translation (𝒯_T c)(T', μ) = c(T' − T, μ) and

    P_k = (1/N) Σ_T e^{i2πk·T} 𝒯_T,      N = n³,      Σ_k P_k = 1,   P_k P_k' = δ_kk' P_k,

a Bloch state at k' has 𝒯_T c = e^{−i2πk'·T} c, so P_k c = δ_kk' c. The AO basis is not orthogonal: the inner
product is ⟨a|b⟩ = a† S b with the supercell overlap S, which is block-circulant (S 𝒯_T = 𝒯_T S) while 𝒯_T is a
permutation (𝒯_Tᵀ = 𝒯_{−T}); hence S P_k = P_k† S, i.e. P_k is an S-orthogonal projector and the spectral weight

    W_k(c) = c† S P_k c = ‖P_k c‖²_S ≥ 0,      Σ_k W_k(c) = c† S c = 1       (c S-normalised)

needs no Löwdin step. With d = S c and the DFT Ĉ(k) = Σ_T e^{−i2πk·T} c(T, ·) (numpy's FFT sign),
W_k = (1/N) Σ_μ conj(D̂_μ(k)) Ĉ_μ(k). Real Γ eigenvectors mix k and −k (time reversal: ε(k) = ε(−k)), and symmetry
mixes all states of a degenerate level, so a single state's weight can be 1/2 or less: levels are grouped
(gaps < `DEGENERACY_TOL_EV`) and for each group J the matrix M_k = C_J† S P_k C_J (Σ_k tr M_k = |J|) is
diagonalised; the span of its eigenvectors with eigenvalue > 1/2 (exactly 0 or 1 for a perfect crystal) is the
group's k-subspace, in which diag(ε_J) is diagonalised (Rayleigh–Ritz) for the energies; the weight of each Ritz
vector y is y† M_k y. Points with weight > 1/2 are kept.

Path: a commensurate k is placed on a path segment A→B when some image k R + G lies on it (G integer; R the
point-group operations of the lattice in fractional reciprocal coordinates when the primitive cell has one atom,
else only time reversal ±1), at the path coordinate x_A + t (x_B − x_A) (ase's axis, Cartesian |Δk| with 2π).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

from fastqmd.electronic import monkhorst_pack, solve_spectrum
from fastqmd.nnh.energy import EnergyModel, Frame

DEGENERACY_TOL_EV = 1e-3  # levels closer than this form one group in the unfolding (tblite Cu64: SCC noise
# splits symmetry-degenerate levels by ~1e-5 eV, and single states then mix k and k' with weights ≈ 0.87)
WEIGHT_MIN = 0.5  # a reference point needs W_k > this
ON_PATH_TOL = 1e-6  # fractional distance from a segment
WINDOW_ABOVE_EF_EV = 2.0  # band MAE: all reference levels with ε − μ_ref ≤ this


# ----------------------------------------------------------------------------------------------- model bands
def model_hk(model: EnergyModel, atoms: Atoms, kpts_frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H(k) [nk, nao, nao] eV, S(k)) of the model for `atoms` (complex128, or float64 at Γ only), no gradient."""
    kpts = np.asarray(kpts_frac, dtype=np.float64).reshape(-1, 3)
    frame = Frame(tuple(atoms.get_chemical_symbols()), tuple(bool(p) for p in atoms.pbc), kpts,
                  np.full(len(kpts), 1.0 / len(kpts)))
    dev = next(model.parameters()).device
    pos = torch.as_tensor(atoms.positions, dtype=torch.float64, device=dev)
    cell = torch.as_tensor(atoms.cell.array, dtype=torch.float64, device=dev)
    g = model.graph(frame.symbols, atoms.positions, atoms.cell.array, frame.pbc).to(dev)
    with torch.no_grad():
        parts = model(frame, pos, cell, g)
    H, S = parts.H.detach(), parts.S.detach()
    if H.is_complex() != S.is_complex():
        H, S = H.to(torch.complex128), S.to(torch.complex128)
    return H.cpu().numpy(), S.cpu().numpy()


def generalized_eigh(H: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ε [.., n], C [.., n, n] of H C = S C ε (Hermitian parts; Cholesky S = LL†, C = L^{−†} U, C† S C = 1)."""
    H = 0.5 * (H + np.swapaxes(H, -1, -2).conj())
    S = 0.5 * (S + np.swapaxes(S, -1, -2).conj())
    L = np.linalg.cholesky(S)
    Li = np.linalg.inv(L)
    eps, U = np.linalg.eigh(Li @ H @ np.swapaxes(Li, -1, -2).conj())
    return eps, np.swapaxes(Li, -1, -2).conj() @ U


def model_bands(model: EnergyModel, atoms: Atoms, kpts_frac: np.ndarray) -> np.ndarray:
    """ε_n(k) [nk, nbands] eV: eigenvalues of H(k) u = ε S(k) u of the model, ascending (float64)."""
    H, S = model_hk(model, atoms, kpts_frac)
    return generalized_eigh(H, S)[0]


def model_fermi_level(model: EnergyModel, atoms: Atoms, mesh: tuple[int, int, int]) -> float:
    """μ (eV) of the model on the Γ-centred `mesh` at its electronic temperature and electron count."""
    k, w = monkhorst_pack(tuple(mesh))
    H, S = model_hk(model, atoms, k.numpy())
    spec = solve_spectrum(torch.from_numpy(H), torch.from_numpy(S), w, model.n_electrons(atoms.get_chemical_symbols()),
                          model.kT, model.config.spin_factor)
    return float(spec.fermi_level)


@dataclass(frozen=True)
class PathAxis:
    """A band path: kpts [nk, 3] fractional, x [nk], special-point ticks X [ns] with labels, and its segments
    (k_A, k_B, x_A, x_B) (breaks ',' start a new sub-path at the same x)."""

    kpts: np.ndarray
    x: np.ndarray
    X: np.ndarray
    labels: tuple[str, ...]
    segments: tuple[tuple[np.ndarray, np.ndarray, float, float], ...]


def path_axis(bandpath) -> PathAxis:
    """The `PathAxis` of an ase `BandPath` (atoms.cell.bandpath(npoints=…)); x in Å⁻¹ (Cartesian |Δk|, with 2π)."""
    from ase.dft.kpoints import parse_path_string

    x, X, labels = bandpath.get_linear_kpoint_axis()
    sub = parse_path_string(bandpath.path)
    flat = [lab for s in sub for lab in s]
    if len(flat) != len(X):
        raise ValueError(f"path {bandpath.path!r}: {len(X)} ticks for {len(flat)} special points")
    sp = bandpath.special_points
    segs, i = [], 0
    for s in sub:
        for a, b in itertools.pairwise(s):
            segs.append((np.asarray(sp[a], float), np.asarray(sp[b], float), float(X[i]), float(X[i + 1])))
            i += 1
        i += 1
    labels = tuple("Γ" if lab == "G" else lab for lab in flat)
    return PathAxis(np.asarray(bandpath.kpts, float), np.asarray(x, float), np.asarray(X, float), labels, tuple(segs))


def model_bandpath(model: EnergyModel, atoms: Atoms, bandpath) -> tuple[PathAxis, np.ndarray]:
    """(PathAxis, ε [nk, nbands] eV) of the model along an ase BandPath."""
    axis = path_axis(bandpath)
    return axis, model_bands(model, atoms, axis.kpts)


# ------------------------------------------------------------------------------------------------- unfolding
def supercell(prim: Atoms, n: int) -> tuple[Atoms, np.ndarray]:
    """(n×n×n supercell, T [N_sc, 3] int): atom (T, s) at r_s + T·cell, ordered T-major (T_flat = (t0 n + t1) n + t2)
    then by primitive atom s, so that orbital (T, μ) has index T_flat·nao_prim + μ."""
    T = np.array(list(itertools.product(range(n), repeat=3)), dtype=np.int64)  # [N, 3]
    pos = (T @ prim.cell.array)[:, None, :] + prim.positions[None]  # [N, nat, 3]
    sc = Atoms(numbers=np.tile(prim.numbers, len(T)), positions=pos.reshape(-1, 3), cell=n * prim.cell.array,
               pbc=True)
    return sc, np.repeat(T, len(prim), axis=0)


def commensurate_kpoints(n: int) -> np.ndarray:
    """k = m/n [n³, 3] fractional, in the order of a 3-D FFT over T (m_flat = (m0 n + m1) n + m2)."""
    return np.array(list(itertools.product(range(n), repeat=3)), dtype=np.float64) / n


def _fourier(C: np.ndarray, n: int, nao: int) -> np.ndarray:
    """Ĉ(k) = Σ_T e^{−i2πk·T} C(T, μ, j) for C [N·nao, m] → [n³, nao, m] (k in `commensurate_kpoints` order)."""
    m = C.shape[1]
    return np.fft.fftn(C.reshape(n, n, n, nao, m), axes=(0, 1, 2)).reshape(n**3, nao, m)


def unfold_weights(C: np.ndarray, S: np.ndarray, n: int, nao: int) -> np.ndarray:
    """W_k(c_j) = c_j† S P_k c_j [n³, m] for S-normalised supercell vectors C [N·nao, m] (module docstring)."""
    Ch, Dh = _fourier(C, n, nao), _fourier(S @ C, n, nao)
    return np.einsum("kaj,kaj->kj", Dh.conj(), Ch).real / n**3


@dataclass(frozen=True)
class Unfolded:
    """Reference points at commensurate k: k index into `kpts` [n³, 3], energy (eV), weight; per-state weights
    [n³, nmo] of the raw eigenvectors (columns sum to 1)."""

    kpts: np.ndarray
    k_index: np.ndarray  # [npts]
    energy: np.ndarray  # [npts] eV
    weight: np.ndarray  # [npts]
    state_weights: np.ndarray  # [n³, nmo]

    def levels(self, ik: int) -> np.ndarray:
        """Sorted energies (with multiplicity) at commensurate k-point ik."""
        return np.sort(self.energy[self.k_index == ik])


def degenerate_groups(eps: np.ndarray, tol: float = DEGENERACY_TOL_EV) -> list[np.ndarray]:
    """Index groups of sorted levels whose consecutive gaps are < tol."""
    cuts = np.nonzero(np.diff(eps) >= tol)[0] + 1
    return np.split(np.arange(len(eps)), cuts)


def unfold(eps: np.ndarray, C: np.ndarray, S: np.ndarray, n: int, nao: int,
           tol: float = DEGENERACY_TOL_EV) -> Unfolded:
    """Unfold supercell Γ eigenpairs (ε ascending [m], C [N·nao, m] with C† S C = 1) onto the n³ commensurate k:
    per degenerate group J and k, eigenvalues λ of M_k = C_J† S P_k C_J (weights) and Rayleigh energies."""
    Ch, Dh = _fourier(C, n, nao), _fourier(S @ C, n, nao)
    kk, ee, ww = [], [], []
    for J in degenerate_groups(eps, tol):
        M = np.einsum("kaj,kal->kjl", Dh[:, :, J].conj(), Ch[:, :, J]) / n**3  # [n³, |J|, |J|]
        M = 0.5 * (M + np.swapaxes(M, 1, 2).conj())
        lam, X = np.linalg.eigh(M)
        for ik in np.nonzero((lam > WEIGHT_MIN).any(1))[0]:
            Xs = X[ik][:, lam[ik] > WEIGHT_MIN]  # the group's k-subspace; Rayleigh–Ritz for ε inside it
            e, V = np.linalg.eigh(Xs.conj().T @ (eps[J][:, None] * Xs))
            Y = Xs @ V
            kk.append(np.full(len(e), ik))
            ee.append(e)
            ww.append(np.einsum("ja,jl,la->a", Y.conj(), M[ik], Y).real)
    W = np.einsum("kaj,kaj->kj", Dh.conj(), Ch).real / n**3
    return Unfolded(commensurate_kpoints(n), np.concatenate(kk), np.concatenate(ee), np.concatenate(ww), W)


def reference_unfolded(engine, prim: Atoms, n: int) -> tuple[Unfolded, float, object]:
    """Run a Γ-point reference engine on the n×n×n supercell of `prim` and unfold: (Unfolded, μ_ref eV, Sample)."""
    sc, _ = supercell(prim, n)
    sample = engine.compute(sc)
    H, S = np.asarray(sample.H[0]), np.asarray(sample.S[0])
    eps, C = generalized_eigh(H, S)
    nao = H.shape[0] // n**3
    return unfold(eps, C, S, n, nao), float(sample.fermi_level), sample


# ------------------------------------------------------------------------------------------- path placement
def lattice_point_group(cell: np.ndarray) -> np.ndarray:
    """Integer matrices R [nops, 3, 3] (entries −1, 0, 1) with R G Rᵀ = G, G = cell cellᵀ: the lattice holohedry
    acting on fractional direct coordinates as rows f → f R."""
    G = cell @ cell.T
    cand = np.array(list(itertools.product((-1, 0, 1), repeat=9)), dtype=np.float64).reshape(-1, 3, 3)
    cand = cand[np.abs(np.linalg.det(cand)) > 0.5]
    ok = np.abs(np.einsum("rij,jk,rlk->ril", cand, G, cand) - G).max(axis=(1, 2)) < 1e-6 * np.abs(G).max()
    return cand[ok].astype(np.int64)


def k_images(prim: Atoms) -> np.ndarray:
    """Operations Q [nops, 3, 3] on fractional k (rows, k → k Q) that leave ε_n(k) invariant: k R^{−T} for the
    lattice point group when the primitive cell has one atom (its point group is the lattice's), else ±1."""
    if len(prim) == 1:
        R = lattice_point_group(prim.cell.array).astype(np.float64)
        return np.round(np.linalg.inv(np.swapaxes(R, 1, 2))).astype(np.int64)
    return np.array([np.eye(3), -np.eye(3)], dtype=np.int64)


def place_on_path(kpts: np.ndarray, axis: PathAxis, ops: np.ndarray,
                  reach: int = 2) -> list[tuple[int, float, np.ndarray]]:
    """(index into kpts, path x, on-path k) for every segment point k Q + G (|G_i| ≤ reach) of each k; each
    (x, k) once (equivalent k and shared segment ends are not repeated)."""
    G = np.array(list(itertools.product(range(-reach, reach + 1), repeat=3)), dtype=np.float64)
    out, seen = [], set()
    for A, B, xa, xb in axis.segments:
        d = B - A
        for ik, k in enumerate(kpts):
            img = (np.einsum("i,rij->rj", k, ops)[:, None, :] + G[None]).reshape(-1, 3) - A  # [nops·nG, 3]
            t = img @ d / (d @ d)
            close = (np.abs(img - t[:, None] * d).max(1) < ON_PATH_TOL) & (t > -ON_PATH_TOL) & (t < 1 + ON_PATH_TOL)
            for tt in np.unique(np.round(t[close], 9)):
                k_on = A + float(tt) * d
                x = xa + float(tt) * (xb - xa)
                key = (round(x, 6), *np.round(k_on, 6))
                if key not in seen:  # a symmetry-equivalent k, or a segment end already placed
                    seen.add(key)
                    out.append((ik, x, k_on))
    return out


# ----------------------------------------------------------------------------------------------- comparison
@dataclass(frozen=True)
class BandComparison:
    """Reference points on the path (x [np], ε [np] eV) and, per placed k, sorted reference and model levels."""

    x: np.ndarray
    energy: np.ndarray
    placed_x: np.ndarray  # [nplaced]
    placed_k: np.ndarray  # [nplaced, 3]
    ref_levels: list  # per placed k: sorted reference energies
    model_levels: np.ndarray  # [nplaced, nbands]


def compare_on_path(model: EnergyModel, prim: Atoms, axis: PathAxis, ref: Unfolded) -> BandComparison:
    """Place the unfolded reference on the path and evaluate the model at the same (on-path) k."""
    placed = place_on_path(ref.kpts, axis, k_images(prim))
    if not placed:
        raise ValueError("no commensurate k-point lies on the band path")
    ks = np.array([p[2] for p in placed])
    px = np.array([p[1] for p in placed])
    lev = [ref.levels(p[0]) for p in placed]
    x = np.concatenate([np.full(len(v), xx) for v, xx in zip(lev, px)])
    return BandComparison(x, np.concatenate(lev), px, ks, lev, model_bands(model, prim, ks))


def band_mae(cmp: BandComparison, mu_ref: float, mu_model: float, above_ef: float = WINDOW_ABOVE_EF_EV) -> dict:
    """Band MAE over the reference points in the window ε_ref − μ_ref ≤ above_ef (all occupied + above_ef eV),
    matching by sorted index at each k: absolute |ε_NN − ε_ref| and with each relative to its own Fermi level."""
    d_abs, d_rel = [], []
    for r, m in zip(cmp.ref_levels, cmp.model_levels):
        nb = min(len(r), len(m))
        sel = r[:nb] - mu_ref <= above_ef
        d_abs.append((m[:nb] - r[:nb])[sel])
        d_rel.append(((m[:nb] - mu_model) - (r[:nb] - mu_ref))[sel])
    a, b = np.abs(np.concatenate(d_abs)), np.abs(np.concatenate(d_rel))
    return {"mae_eV": float(a.mean()), "max_eV": float(a.max()), "mae_fermi_aligned_eV": float(b.mean()),
            "n_points": len(a), "window": f"all levels with eps_ref - E_F,ref <= {above_ef:g} eV"}


def parse_crystal(spec: str) -> tuple[Atoms, int]:
    """'fcc-Cu:4' / 'fcc-Cu@3.61:4' → (primitive cell from ase.build.bulk, supercell n). A path to a structure
    file (ase.io.read) may replace 'fcc-Cu'."""
    from pathlib import Path

    from ase.build import bulk

    from fastqmd.errors import InputError

    name, _, n = spec.rpartition(":")
    if not name or not n.isdigit() or int(n) < 1:
        raise InputError(f"--bands {spec!r}: expected CRYSTAL-ELEMENT[@a]:N, e.g. fcc-Cu:4 or fcc-Cu@3.61:4")
    if Path(name).is_file():
        from ase.io import read

        atoms = read(name)
        atoms.pbc = True
        return atoms, int(n)
    name, _, a = name.partition("@")
    crystal, _, element = name.partition("-")
    try:
        atoms = bulk(element, crystal, a=float(a) if a else None)
    except (ValueError, KeyError, RuntimeError) as exc:  # unknown element / crystal / missing a
        raise InputError(f"--bands {spec!r}: cannot build {crystal} {element} ({exc})") from None
    return atoms, int(n)


def compare_along_path(model_eps: np.ndarray, axis: PathAxis, ref_eps: np.ndarray) -> BandComparison:
    """A k-path reference (ε_ref [nk, nb] at axis.kpts) against the model's bands at the same k."""
    ref_levels = [np.sort(e) for e in ref_eps]
    x = np.concatenate([np.full(len(e), xx) for e, xx in zip(ref_levels, axis.x)])
    return BandComparison(x, np.concatenate(ref_levels), axis.x, axis.kpts, ref_levels, model_eps)


def evaluate_bands(model: EnergyModel, prim: Atoms, n: int, engine, npoints: int = 120) -> tuple[dict, dict]:
    """Model bands along the standard path of `prim` against the reference, and the band MAE. An engine with
    k-points (`band_structure`, GPAW) computes the reference at every path k from the density of the Γ-centred
    n×n×n mesh (the study's Fig. 3: a real k-path calculation); a Γ-only engine gives the levels of the n×n×n
    supercell at Γ, unfolded to the commensurate k on the path. Fermi levels: the reference's from that SCF, the
    model's on the same Γ-centred n×n×n mesh."""
    axis, eps = model_bandpath(model, prim, prim.cell.bandpath(npoints=npoints))
    mu_model = model_fermi_level(model, prim, (n, n, n))
    if hasattr(engine, "band_structure"):
        ref_eps, mu_ref = engine.band_structure(prim, axis.kpts, (n, n, n))
        cmp = compare_along_path(eps, axis, ref_eps)
        metrics = {"structure": prim.get_chemical_formula(), "mesh": n, "path": prim.cell.bandpath().path,
                   "engine": getattr(engine, "name", type(engine).__name__), "reference": "k-path",
                   "fermi_level_ref_eV": mu_ref, "fermi_level_model_eV": mu_model, "n_kpoints_on_path": len(axis.x),
                   **band_mae(cmp, mu_ref, mu_model)}
        return metrics, {"axis": axis, "model": eps, "comparison": cmp, "mu_ref": mu_ref, "mu_model": mu_model,
                         "reference_lines": ref_eps}
    ref, mu_ref, _ = reference_unfolded(engine, prim, n)
    cmp = compare_on_path(model, prim, axis, ref)
    sums = ref.state_weights.sum(0)
    metrics = {"structure": prim.get_chemical_formula(), "supercell": n, "path": prim.cell.bandpath().path,
               "engine": getattr(engine, "name", type(engine).__name__), "reference": "unfolded supercell Γ",
               "fermi_level_ref_eV": mu_ref,
               "fermi_level_model_eV": mu_model, "n_kpoints_on_path": len(cmp.placed_x),
               "unfolding_min_weight": float(ref.weight.min()),
               "unfolding_weight_sum_error": float(np.abs(sums - 1).max()),
               **band_mae(cmp, mu_ref, mu_model)}
    return metrics, {"axis": axis, "model": eps, "comparison": cmp, "mu_ref": mu_ref, "mu_model": mu_model}


def plot_bands(arrays: dict, path, title: str = "", emin: float = -12.0, emax: float = 6.0) -> None:
    """bands.png: model along the path (dashed black) and the reference (solid red lines for a k-path reference,
    red markers at the unfolded commensurate k otherwise); energies relative to μ_ref for both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax_, mu = arrays["axis"], arrays["mu_ref"]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(ax_.x, arrays["model"] - mu, "--", color="black", lw=1.0)
    c = arrays["comparison"]
    if arrays.get("reference_lines") is not None:
        ax.plot(ax_.x, np.sort(arrays["reference_lines"], axis=1) - mu, "-", color="red", lw=1.0)
        ax.plot([], [], "-", color="red", label="reference (k-path)")
    else:
        ax.plot(c.x, c.energy - mu, "o", color="red", ms=3.5, mfc="none", mew=1.0)
        ax.plot([], [], "o", color="red", mfc="none", label="reference (unfolded Γ)")
    ax.plot([], [], "--", color="black", label="NNH")
    ax.axhline(0.0, color="gray", lw=0.6)
    ax.axhline(arrays["mu_model"] - mu, color="gray", lw=0.6, ls=":", label="E_F (NNH)")
    for xx in ax_.X:
        ax.axvline(xx, color="gray", lw=0.5)
    ticks, labels = [], []
    for xx, lab in zip(ax_.X, ax_.labels):  # merge the labels of a path break, e.g. K|U
        if ticks and abs(xx - ticks[-1]) < 1e-9:
            labels[-1] = f"{labels[-1]}|{lab}"
        else:
            ticks.append(xx)
            labels.append(lab)
    ax.set_xticks(ticks, labels)
    ax.set_xlim(ax_.x[0], ax_.x[-1])
    ax.set_ylim(emin, emax)
    ax.set_ylabel("ε − E_F,ref (eV)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
