"""Training targets from a fastqmd dataset: lazily read samples, electron counts, reference energies, H normalisation.

In:  a dataset (`fastqmd.data`) — per sample positions Å, cell, pbc, numbers, E eV, F eV/Å, H(k)/S(k) eV at the
     stored k-points, n_electrons, electronic temperature.
Out: `Target`s (float64 torch tensors + a `Frame`), and the constants the energy model needs:
  - valence electrons v_Z with N_e = Σ_i v_{Z_i} for every sample: the first consistent candidate among
    the engine's recorded counts (dataset attr), "all electrons" (Z, all-electron PySCF) and "valence"
    (Z − noble-gas core, GFN-xTB; d shells count),
    else least squares over the samples when the composition matrix has full column rank;
  - reference energies e_Z: least squares  min Σ_s (E_s − Ω[H_s^DFT, S_s^DFT] − Σ_Z n_sZ e_Z)²  — the part of
    E that neither the band term nor (initially) E_rep describes; minimum-norm when compositions are collinear;
  - per-orbital-pair scales σ_c: the training-set std of H elements of class c = (onsite?, Z_a, Z_b, μ, ν)
    (μ, ν the orbital index inside atoms a, b), so that L_H = mean_c,… (|ΔH| / σ_c)² weighs all pairs alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from ase.data import chemical_symbols
from torch import Tensor

from fastqmd.electronic import free_energy
from fastqmd.errors import InputError
from fastqmd.nnh.energy import Frame
from fastqmd.units import KB_EV

_NOBLE = np.array([0, 2, 10, 18, 36, 54, 86])


@dataclass
class Target:
    """One labelled structure (float64 torch, CPU). H, S, eigenvalues and occupations are None in a
    structure-only view (`TargetSet.structures`)."""

    key: str
    frame: Frame
    positions: Tensor  # [N, 3] Å
    cell: Tensor  # [3, 3] Å
    energy: float  # eV
    forces: Tensor | None  # [N, 3] eV/Å
    H: Tensor | None  # [nk, nao, nao] eV
    S: Tensor | None  # [nk, nao, nao]
    n_electrons: float
    temperature_K: float
    eigenvalues: Tensor | None  # [nk, nmo] eV
    occupations: Tensor | None  # [nk, nmo]
    fermi_level: float


def _target(key: str, d: dict[str, Tensor]) -> Target:
    """A `Target` from one `HamiltonianDataset` item."""
    symbols = tuple(chemical_symbols[int(z)] for z in d["numbers"])
    return Target(
        key=key,
        frame=Frame(symbols, tuple(bool(x) for x in d["pbc"]), np.asarray(d["kpoints"].numpy(), float),
                    np.asarray(d["kweights"].numpy(), float)),
        positions=d["positions"].to(torch.float64), cell=d["cell"].to(torch.float64), energy=float(d["energy"]),
        forces=d["forces"].to(torch.float64) if "forces" in d else None, H=d.get("H"), S=d.get("S"),
        n_electrons=float(d["n_electrons"]), temperature_K=float(d["electronic_temperature_K"]),
        eigenvalues=d.get("eigenvalues"), occupations=d.get("occupations"), fermi_level=float(d["fermi_level"]))


class TargetSet(Sequence):
    """The (ok) samples of a dataset as a lazy sequence of `Target`s: each access reads one sample through
    `fastqmd.data.torch_dataset.HamiltonianDataset`; only the sample keys stay in memory, so a training run's
    memory does not grow with the dataset."""

    def __init__(self, path, keys: list[str] | None = None, with_matrices: bool = True):
        from fastqmd.data.torch_dataset import HamiltonianDataset

        self.path, self.with_matrices = path, with_matrices
        self.reader = HamiltonianDataset(path, keys, with_matrices=with_matrices)
        self.keys: list[str] = list(self.reader.keys)
        if keys is not None:
            missing = sorted(set(self.keys) - set(self.reader.store.keys("ok")))
            self.reader.store.close()
            if missing:
                raise InputError(f"{path} has no successful sample {', '.join(missing[:5])}"
                                 + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.subset(range(len(self))[i])
        return _target(self.keys[i], self.reader[i])

    def subset(self, indices) -> "TargetSet":
        return TargetSet(self.path, [self.keys[i] for i in indices], self.with_matrices)

    def structures(self) -> "TargetSet":
        """The same samples without H, S, eigenvalues and occupations (statistics of structures and labels)."""
        return TargetSet(self.path, self.keys, with_matrices=False)


def load_targets(path, keys: list[str] | None = None) -> TargetSet:
    """The (ok) samples of a dataset (or the given keys), read lazily (`TargetSet`)."""
    out = TargetSet(path, keys)
    if not len(out):
        raise InputError(f"{path}: no successful samples")
    return out


def structures_of(targets: Sequence[Target]) -> Sequence[Target]:
    """A view of `targets` that need not read H and S."""
    return targets.structures() if isinstance(targets, TargetSet) else targets


def composition(targets: Sequence[Target], species: list[str]) -> np.ndarray:
    """[n_samples, n_species] atom counts."""
    return np.array([[t.frame.symbols.count(s) for s in species] for t in structures_of(targets)],
                    dtype=np.float64)


def valence_electrons(targets: Sequence[Target], species: list[str],
                      recorded: dict[str, int] | None = None) -> dict[str, float]:
    """v_Z with Σ_i v_{Z_i} = N_e for every sample (module docstring); InputError if none fits.

    `recorded`: the counts the reference engine reported (dataset attr `valence_electrons`), tried first.
    """
    A = composition(targets, species)
    b = np.array([t.n_electrons for t in structures_of(targets)])
    Z = np.array([chemical_symbols.index(s) for s in species], dtype=np.float64)
    core = np.array([_NOBLE[_NOBLE < z].max() if z > 2 else 0 for z in Z], dtype=np.float64)
    candidates = [Z, Z - core]
    if recorded and all(s in recorded for s in species):
        candidates.insert(0, np.array([recorded[s] for s in species], dtype=np.float64))
    for cand in candidates:
        if np.allclose(A @ cand, b, atol=1e-6):
            return {s: float(v) for s, v in zip(species, cand)}
    if np.linalg.matrix_rank(A) == len(species):
        v, *_ = np.linalg.lstsq(A, b, rcond=None)
        if np.allclose(A @ v, b, atol=1e-6):
            return {s: float(v_) for s, v_ in zip(species, v)}
    raise InputError("cannot derive per-element electron counts from the dataset's n_electrons "
                     "(neither Z nor Z − core fits, and compositions do not determine them); charged samples?")


def temperature_K(targets: Sequence[Target]) -> float:
    """The reference's electronic temperature (must be one value for the whole dataset)."""
    T = {round(t.temperature_K, 6) for t in structures_of(targets)}
    if len(T) != 1:
        raise InputError(f"dataset mixes electronic temperatures {sorted(T)} K; train on one")
    return T.pop()


def reference_energies(targets: Sequence[Target], species: list[str], valence: dict[str, float], T_K: float,
                       mode: str = "mermin", spin_factor: float = 2.0) -> dict[str, float]:
    """e_Z = argmin Σ_s (E_s − Ω[H_s, S_s] − n_s·e)² (minimum-norm least squares), eV."""
    A = composition(targets, species)
    r = []
    for t in targets:
        ne = sum(valence[s] for s in t.frame.symbols)
        om = free_energy(t.H, t.S, torch.as_tensor(t.frame.kweights), n_electrons=ne, kT=KB_EV * T_K,
                         spin_factor=spin_factor, mode=mode)
        r.append(t.energy - float(om))
    e, *_ = np.linalg.lstsq(A, np.array(r), rcond=None)
    return {s: float(x) for s, x in zip(species, e)}


def n_pair_classes(species: list[str], n_orbitals: dict[str, int]) -> int:
    """Number of orbital-pair classes (onsite, Z_a, Z_b, μ, ν): 2 · n_species² · n_orb,max²."""
    return 2 * len(species) ** 2 * max(n_orbitals.values()) ** 2


@lru_cache(maxsize=8)
def _pair_classes(symbols: tuple[str, ...], species: tuple[str, ...], n_orbitals: tuple[tuple[str, int], ...]):
    n_orb = dict(n_orbitals)
    ns, nmax = len(species), max(n_orb.values())
    index = {s: k for k, s in enumerate(species)}
    sp = np.concatenate([[index[s]] * n_orb[s] for s in symbols])  # [nao]
    local = np.concatenate([np.arange(n_orb[s]) for s in symbols])
    atom = np.concatenate([[a] * n_orb[s] for a, s in enumerate(symbols)])
    onsite = (atom[:, None] == atom[None, :]).astype(np.int64)
    c = (((onsite * ns + sp[:, None]) * ns + sp[None, :]) * nmax + local[:, None]) * nmax + local[None, :]
    return torch.from_numpy(c.astype(np.int64))


def pair_classes(symbols, species: list[str], n_orbitals: dict[str, int]) -> Tensor:
    """[nao, nao] class index c = (((onsite·n_s + s_a)·n_s + s_b)·n_max + μ)·n_max + ν of every H element
    (cached for the last few compositions)."""
    return _pair_classes(tuple(symbols), tuple(species), tuple(sorted(n_orbitals.items())))


def orbital_pair_scales(targets: Sequence[Target], species: list[str], n_orbitals: dict[str, int],
                        floor_fraction: float = 1e-2) -> Tensor:
    """σ_c = std over the training set (all k-points, real and imaginary parts) of H elements in class c;
    classes with σ below floor_fraction × the global std are raised to it (symmetry zeros, rare pairs).
    One streaming pass: per-class sums Σv, Σv², n (the global std from their totals, unbiased)."""
    n_classes = n_pair_classes(species, n_orbitals)
    s1 = torch.zeros(n_classes, dtype=torch.float64)
    s2 = torch.zeros(n_classes, dtype=torch.float64)
    n = torch.zeros(n_classes, dtype=torch.float64)
    for t in targets:
        hclass = pair_classes(t.frame.symbols, species, n_orbitals)
        parts = [t.H.real, t.H.imag] if t.H.is_complex() else [t.H]
        for P in parts:
            c = hclass.expand_as(P).reshape(-1)
            v = P.reshape(-1).to(torch.float64)
            s1.index_add_(0, c, v)
            s2.index_add_(0, c, v * v)
            n.index_add_(0, c, torch.ones_like(v))
    mean = s1 / n.clamp(min=1)
    var = (s2 / n.clamp(min=1) - mean**2).clamp(min=0)
    N, S1, S2 = float(n.sum()), float(s1.sum()), float(s2.sum())
    global_std = max(0.0, (S2 - S1 * S1 / N) / (N - 1)) ** 0.5
    return var.sqrt().clamp(min=floor_fraction * global_std)


@torch.no_grad()
def irrep_statistics(targets: Sequence[Target], model, floor_fraction: float = 1e-3, ridge: float = 1e-8):
    """Output statistics and two-centre baseline of the H blocks for `NNHModel.set_output_statistics`.

    Per sample the real-space blocks are read from H̄ = Re Σ_k w_k H(k) (= H(R = 0) for a full k-mesh; for
    Γ-only supercells the image sum, which is what the model's Γ blocks add up to as well) and projected on
    the output irreps, x = Cᵀ vec(B) (`BlockLayout.to_irreps`). On-site, per species a and irrep ℓ:
        μ_aℓ = mean_i x_iℓ on 0e channels (0 elsewhere),   σ_aℓ = √(mean_i |x_iℓ − μ_aℓ|² / (2L+1)).
    Off-site, per species pair (a, b), over the edges (i ≠ j, within the model's cutoff):
        x⁰_ℓ(r) = g_ℓ(d) Y_L(r̂),  g_ℓ(d) = Σ_n c_nℓ b_n(d) u(d)  on channels with (−1)^L = parity, where
        c_ℓ = argmin Σ_e |x_eℓ − x⁰_ℓ(r_e)|² (+ ridge): A c = y,  A = Σ_e (2L+1) φ_e φ_eᵀ,  y = Σ_e φ_e Y_L·x_eℓ
        (component-normalised Y: |Y_L|² = 2L+1) — the Slater–Koster two-centre part of H;
        σ_abℓ = √(mean_e |x_eℓ − x⁰_ℓ(r_e)|² / (2L+1))   (the residual the network learns).
    σ is floored at floor_fraction × the largest σ of the block (channels that vanish by symmetry).
    Streaming, two passes over `targets` (one sample in memory at a time): sums for μ and the normal equations,
    then the residual sums for σ.
    Returns (onsite_shift {a: [K]}, onsite_scale {a: [K]}, offsite_scale {(a, b): [K]}, offsite_sk {(a, b): c}).
    """
    layout, cfg = model.layout, model.config
    ns = len(model.species)
    pairs = [(a, b) for a in range(ns) for b in range(ns)]
    f64 = torch.float64
    dim_on = {a: layout.irreps[(a, a)].dim for a in range(ns)}
    buf = {(a, b): (getattr(model, f"sk_pos_{a}_{b}"), getattr(model, f"sk_yidx_{a}_{b}"),
                    getattr(model, f"sk_path_{a}_{b}")) for a, b in pairs}
    n_paths = {ab: int(p.max()) + 1 if p.numel() else 0 for ab, (_, _, p) in buf.items()}
    n_on = {a: 0 for a in range(ns)}
    sum_on = {a: torch.zeros(dim_on[a], dtype=f64) for a in range(ns)}
    n_off = {ab: 0 for ab in pairs}
    A = {ab: torch.zeros(n_paths[ab], cfg.n_radial, cfg.n_radial, dtype=f64) for ab in pairs}
    rhs = {ab: torch.zeros(n_paths[ab], cfg.n_radial, dtype=f64) for ab in pairs}
    for t in targets:  # pass 1: Σ x (on-site), A and y of the two-centre fit (off-site)
        on, off = _irrep_blocks(t, model)
        for a, x in on.items():
            n_on[a] += len(x)
            sum_on[a] += x.sum(0)
        for ab, (x, Y, phi) in off.items():
            pos, _, path = buf[ab]
            n_off[ab] += len(x)
            for p in range(n_paths[ab]):
                m = path == p
                yy = (Y[:, m] ** 2).sum(-1)  # [E] = 2L+1
                A[ab][p] += torch.einsum("e,en,em->nm", yy, phi, phi)
                rhs[ab][p] += phi.T @ (Y[:, m] * x[:, pos[m]]).sum(-1)
    mu = {}
    for a in range(ns):
        mu[a] = torch.zeros(dim_on[a], dtype=f64)
        for sl_, (_, ir) in zip(layout.irreps[(a, a)].slices(), layout.irreps[(a, a)]):
            if ir.l == 0 and ir.p == 1 and n_on[a]:
                mu[a][sl_] = sum_on[a][sl_] / n_on[a]
    coef = {}
    for ab in pairs:
        coef[ab] = torch.zeros(cfg.n_radial, n_paths[ab], dtype=f64)
        if n_off[ab]:
            for p in range(n_paths[ab]):
                Ap = A[ab][p] + ridge * torch.trace(A[ab][p]) / len(A[ab][p]) * torch.eye(cfg.n_radial, dtype=f64)
                coef[ab][:, p] = torch.linalg.solve(Ap, rhs[ab][p])
    sq_on = {a: torch.zeros(dim_on[a], dtype=f64) for a in range(ns)}
    sq_off = {ab: torch.zeros(layout.irreps[ab].dim, dtype=f64) for ab in pairs}
    for t in targets:  # pass 2: residual sums of squares
        on, off = _irrep_blocks(t, model)
        for a, x in on.items():
            sq_on[a] += ((x - mu[a]) ** 2).sum(0)
        for ab, (x, Y, phi) in off.items():
            pos, _, path = buf[ab]
            x0 = torch.zeros_like(x)
            if n_paths[ab]:
                x0[:, pos] = Y * (phi @ coef[ab])[:, path]
            sq_off[ab] += ((x - x0) ** 2).sum(0)

    def rms_per_irrep(sq: Tensor, n: int, irreps) -> Tensor:
        out = torch.ones(irreps.dim, dtype=f64)
        for sl_, (_, ir) in zip(irreps.slices(), irreps):
            out[sl_] = sq[sl_].sum().div(n).div(ir.dim).sqrt()
        return out.clamp(min=floor_fraction * float(out.max()) if len(out) else 0.0)

    shift, scale, oscale = {}, {}, {}
    for a in range(ns):
        if not n_on[a]:
            shift[a], scale[a] = torch.zeros(dim_on[a], dtype=f64), torch.ones(dim_on[a], dtype=f64)
        else:
            shift[a], scale[a] = mu[a], rms_per_irrep(sq_on[a], n_on[a], layout.irreps[(a, a)])
    for ab in pairs:
        dim = layout.irreps[ab].dim
        oscale[ab] = rms_per_irrep(sq_off[ab], n_off[ab], layout.irreps[ab]) if n_off[ab] else torch.ones(dim, dtype=f64)
    return shift, scale, oscale, coef


def _irrep_blocks(t: Target, model) -> tuple[dict, dict]:
    """One sample's blocks of H̄ = Re Σ_k w_k H(k) projected on the output irreps (`irrep_statistics`):
    ({species a: x [n_atoms_a, K]}, {(a, b): (x [E_ab, K], Y_L [E_ab, |pos|], φ [E_ab, n_radial])})."""
    from e3nn import o3

    from fastqmd.nnh.graph import edge_vectors
    from fastqmd.nnh.model import bessel_basis, polynomial_envelope

    layout, cfg = model.layout, model.config
    index = {s: k for k, s in enumerate(model.species)}
    w = torch.as_tensor(t.frame.kweights, dtype=torch.float64)
    Hbar = torch.einsum("k,kij->ij", w, t.H.real.to(torch.float64))
    off_idx = np.cumsum([0] + [layout.n_orbitals[x] for x in t.frame.symbols])
    sl = [slice(int(off_idx[i]), int(off_idx[i + 1])) for i in range(len(t.frame.symbols))]
    on_blocks: dict[int, list[Tensor]] = {}
    for i, s in enumerate(t.frame.symbols):
        on_blocks.setdefault(index[s], []).append(Hbar[sl[i], sl[i]])
    g = model.graph(t.frame.symbols, t.positions.numpy(), t.cell.numpy(), t.frame.pbc)
    r = edge_vectors(t.positions.to(torch.float64), t.cell.to(torch.float64), g)
    d = torch.linalg.norm(r, dim=-1)
    Y = o3.spherical_harmonics(model.irreps_sh, r, normalize=True, normalization="component")
    phi = bessel_basis(d, cfg.cutoff, cfg.n_radial) * polynomial_envelope(d, cfg.cutoff, cfg.envelope_exponent)[:, None]
    edges: dict[tuple[int, int], list[int]] = {}
    for e, (i, j) in enumerate(zip(g.edge_i.tolist(), g.edge_j.tolist())):
        if i != j:
            edges.setdefault((index[t.frame.symbols[i]], index[t.frame.symbols[j]]), []).append(e)
    on = {a: layout.to_irreps(torch.stack(b).to(layout.coupling(a, a).dtype), a, a).to(torch.float64)
          for a, b in on_blocks.items()}
    off = {}
    ei, ej = g.edge_i.tolist(), g.edge_j.tolist()
    for (a, b), es in edges.items():
        blocks = torch.stack([Hbar[sl[ei[e]], sl[ej[e]]] for e in es])
        x = layout.to_irreps(blocks.to(layout.coupling(a, b).dtype), a, b).to(torch.float64)
        yidx = getattr(model, f"sk_yidx_{a}_{b}")
        off[(a, b)] = (x, Y[es][:, yidx], phi[es])
    return on, off


# ------------------------------------------------------------------ the H error the spectrum sees

def spectral_frame(H: Tensor, S: Tensor | None, mu: float, window_eV: float) -> tuple[Tensor, Tensor]:
    """Reference eigenvectors C [nk, n, n] (H C = S C ε, C^† S C = 1) and pair weights w [nk, n, n]

        w_mn = 1 / (1 + (max(|ε_m − μ|, |ε_n − μ|) / E_w)²),   E_w = window_eV,

    the frame of `spectral_h_loss`. S None: an orthonormal basis. μ NaN (no Fermi level): every w_mn = 1."""
    Hh = 0.5 * (H + H.mH)
    if S is None:
        eps, C = torch.linalg.eigh(Hh)
    else:
        L = torch.linalg.cholesky(0.5 * (S + S.mH).to(Hh.dtype))
        Hp = torch.linalg.solve_triangular(L, torch.linalg.solve_triangular(L, Hh, upper=False).mH, upper=False)
        eps, U = torch.linalg.eigh(0.5 * (Hp + Hp.mH))
        C = torch.linalg.solve_triangular(L.mH, U, upper=True)  # C = L^{-†} U
    if not np.isfinite(mu):
        return C, torch.ones_like(eps[..., :, None] * eps[..., None, :])
    d = (eps - mu).abs()
    dmax = torch.maximum(d[..., :, None], d[..., None, :])
    return C, 1.0 / (1.0 + (dmax / window_eV) ** 2)


def spectral_h_loss(dH: Tensor, C: Tensor, w: Tensor) -> Tensor:
    """L_ε = Σ_k,mn w_mn |(C^† ΔH C)_mn|² / Σ w_mn  (eV²): the H error ΔH = H_θ − H_ref in the reference's own
    S-orthonormal eigenbasis (`spectral_frame`), weighted towards pairs near μ.

    To first order its diagonal is the eigenvalue error, δε_n = (C^† ΔH C)_nn, and the off-diagonal couples
    levels (a rigid shift ΔH = c·S gives C^† ΔH C = c·1). Unlike the orbital-basis L_H it sees the amplification
    by S's near-null directions: C ~ λ_min(S)^{−1/2}, so an orbital-basis error δ along them becomes ~δ/λ_min here
    (Cu dzp: λ_min 2e-5)."""
    D = C.mH @ dH.to(C.dtype) @ C
    return (w * D.abs() ** 2).sum() / w.sum()
