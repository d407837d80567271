"""Training targets from a fastqmd dataset: in-memory samples, electron counts, reference energies, H normalisation.

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

from dataclasses import dataclass

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
    """One labelled structure (float64 torch, CPU)."""

    key: str
    frame: Frame
    positions: Tensor  # [N, 3] Å
    cell: Tensor  # [3, 3] Å
    energy: float  # eV
    forces: Tensor | None  # [N, 3] eV/Å
    H: Tensor  # [nk, nao, nao] eV
    S: Tensor  # [nk, nao, nao]
    n_electrons: float
    temperature_K: float
    eigenvalues: Tensor  # [nk, nmo] eV
    occupations: Tensor  # [nk, nmo]
    fermi_level: float
    hclass: Tensor | None = None  # [nao, nao] class index of each H element (set by `orbital_pair_classes`)


def load_targets(path, keys: list[str] | None = None) -> list[Target]:
    """Read the (ok) samples of a dataset into memory."""
    from fastqmd.data.store import Dataset

    ds = Dataset(path)
    out = []
    arrays = ("numbers", "positions", "cell", "pbc", "forces", "kpoints", "kweights", "H", "S", "eigenvalues",
              "occupations")
    for key in keys if keys is not None else ds.keys("ok"):
        d = ds.read(key, arrays)
        symbols = tuple(chemical_symbols[int(z)] for z in d["numbers"])
        t = torch.from_numpy
        out.append(Target(
            key=key,
            frame=Frame(symbols, tuple(bool(x) for x in d["pbc"]), np.asarray(d["kpoints"], float),
                        np.asarray(d["kweights"], float)),
            positions=t(np.asarray(d["positions"], np.float64)), cell=t(np.asarray(d["cell"], np.float64)),
            energy=float(d["energy"]), forces=t(np.asarray(d["forces"], np.float64)) if "forces" in d else None,
            H=t(np.asarray(d["H"])), S=t(np.asarray(d["S"])), n_electrons=float(d["n_electrons"]),
            temperature_K=float(d["electronic_temperature_K"]), eigenvalues=t(np.asarray(d["eigenvalues"])),
            occupations=t(np.asarray(d["occupations"])), fermi_level=float(d["fermi_level"])))
    ds.close()
    if not out:
        raise InputError(f"{path}: no successful samples")
    return out


def composition(targets: list[Target], species: list[str]) -> np.ndarray:
    """[n_samples, n_species] atom counts."""
    return np.array([[t.frame.symbols.count(s) for s in species] for t in targets], dtype=np.float64)


def valence_electrons(targets: list[Target], species: list[str],
                      recorded: dict[str, int] | None = None) -> dict[str, float]:
    """v_Z with Σ_i v_{Z_i} = N_e for every sample (module docstring); InputError if none fits.

    `recorded`: the counts the reference engine reported (dataset attr `valence_electrons`), tried first.
    """
    A = composition(targets, species)
    b = np.array([t.n_electrons for t in targets])
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


def temperature_K(targets: list[Target]) -> float:
    """The reference's electronic temperature (must be one value for the whole dataset)."""
    T = {round(t.temperature_K, 6) for t in targets}
    if len(T) != 1:
        raise InputError(f"dataset mixes electronic temperatures {sorted(T)} K; train on one")
    return T.pop()


def reference_energies(targets: list[Target], species: list[str], valence: dict[str, float], T_K: float,
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


def orbital_pair_classes(targets: list[Target], species: list[str], n_orbitals: dict[str, int]) -> int:
    """Set `t.hclass` [nao, nao] for every target; class = (onsite, Z_a, Z_b, μ, ν). Returns the class count."""
    ns, nmax = len(species), max(n_orbitals.values())
    index = {s: k for k, s in enumerate(species)}
    for t in targets:
        sp = np.concatenate([[index[s]] * n_orbitals[s] for s in t.frame.symbols])  # [nao]
        local = np.concatenate([np.arange(n_orbitals[s]) for s in t.frame.symbols])
        atom = np.concatenate([[a] * n_orbitals[s] for a, s in enumerate(t.frame.symbols)])
        onsite = (atom[:, None] == atom[None, :]).astype(np.int64)
        c = (((onsite * ns + sp[:, None]) * ns + sp[None, :]) * nmax + local[:, None]) * nmax + local[None, :]
        t.hclass = torch.from_numpy(c.astype(np.int64))
    return 2 * ns * ns * nmax * nmax


def orbital_pair_scales(targets: list[Target], n_classes: int, floor_fraction: float = 1e-2) -> Tensor:
    """σ_c = std over the training set (all k-points, real and imaginary parts) of H elements in class c;
    classes with σ below floor_fraction × the global std are raised to it (symmetry zeros, rare pairs)."""
    s1 = torch.zeros(n_classes, dtype=torch.float64)
    s2 = torch.zeros(n_classes, dtype=torch.float64)
    n = torch.zeros(n_classes, dtype=torch.float64)
    for t in targets:
        parts = [t.H.real, t.H.imag] if t.H.is_complex() else [t.H]
        for P in parts:
            c = t.hclass.expand_as(P).reshape(-1)
            v = P.reshape(-1).to(torch.float64)
            s1.index_add_(0, c, v)
            s2.index_add_(0, c, v * v)
            n.index_add_(0, c, torch.ones_like(v))
    mean = s1 / n.clamp(min=1)
    var = (s2 / n.clamp(min=1) - mean**2).clamp(min=0)
    allv = torch.cat([torch.cat([t.H.real.reshape(-1), t.H.imag.reshape(-1)]) if t.H.is_complex()
                      else t.H.reshape(-1) for t in targets]).to(torch.float64)
    floor = floor_fraction * float(allv.std())
    return var.sqrt().clamp(min=floor)


@torch.no_grad()
def irrep_statistics(targets: list[Target], model, floor_fraction: float = 1e-3, ridge: float = 1e-8):
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
    Returns (onsite_shift {a: [K]}, onsite_scale {a: [K]}, offsite_scale {(a, b): [K]}, offsite_sk {(a, b): c}).
    """
    from e3nn import o3

    from fastqmd.nnh.graph import edge_vectors
    from fastqmd.nnh.model import bessel_basis, polynomial_envelope

    layout, cfg = model.layout, model.config
    ns = len(model.species)
    index = {s: k for k, s in enumerate(model.species)}
    on: dict[int, list[Tensor]] = {a: [] for a in range(ns)}
    off: dict[tuple[int, int], list[tuple[Tensor, Tensor, Tensor]]] = {(a, b): [] for a in range(ns) for b in range(ns)}
    for t in targets:
        w = torch.as_tensor(t.frame.kweights, dtype=torch.float64)
        Hbar = torch.einsum("k,kij->ij", w, t.H.real.to(torch.float64))
        off_idx = np.cumsum([0] + [layout.n_orbitals[x] for x in t.frame.symbols])
        sl = [slice(int(off_idx[i]), int(off_idx[i + 1])) for i in range(len(t.frame.symbols))]
        for i, s in enumerate(t.frame.symbols):
            on[index[s]].append(Hbar[sl[i], sl[i]])
        g = model.graph(t.frame.symbols, t.positions.numpy(), t.cell.numpy(), t.frame.pbc)
        r = edge_vectors(t.positions.to(torch.float64), t.cell.to(torch.float64), g)
        d = torch.linalg.norm(r, dim=-1)
        Y = o3.spherical_harmonics(model.irreps_sh, r, normalize=True, normalization="component")
        phi = bessel_basis(d, cfg.cutoff, cfg.n_radial) * polynomial_envelope(d, cfg.cutoff, cfg.envelope_exponent)[:, None]
        for e, (i, j) in enumerate(zip(g.edge_i.tolist(), g.edge_j.tolist())):
            if i != j:
                off[(index[t.frame.symbols[i]], index[t.frame.symbols[j]])].append((Hbar[sl[i], sl[j]], Y[e], phi[e]))

    def rms_per_irrep(x: Tensor, irreps) -> Tensor:
        out = torch.ones(irreps.dim, dtype=torch.float64)
        for sl_, (_, ir) in zip(irreps.slices(), irreps):
            out[sl_] = (x[:, sl_] ** 2).sum(-1).mean().div(ir.dim).sqrt()
        return out.clamp(min=floor_fraction * float(out.max()) if len(out) else 0.0)

    shift, scale, oscale, sk = {}, {}, {}, {}
    for a in range(ns):
        irreps = layout.irreps[(a, a)]
        K = irreps.dim
        if not on[a]:
            shift[a], scale[a] = torch.zeros(K, dtype=torch.float64), torch.ones(K, dtype=torch.float64)
            continue
        x = layout.to_irreps(torch.stack(on[a]).to(layout.coupling(a, a).dtype), a, a).to(torch.float64)
        mu = torch.zeros(K, dtype=torch.float64)
        for sl_, (_, ir) in zip(irreps.slices(), irreps):
            if ir.l == 0 and ir.p == 1:
                mu[sl_] = x[:, sl_].mean(0)
        shift[a], scale[a] = mu, rms_per_irrep(x - mu, irreps)
    for (a, b), items in off.items():
        irreps = layout.irreps[(a, b)]
        pos = getattr(model, f"sk_pos_{a}_{b}")
        yidx, path = getattr(model, f"sk_yidx_{a}_{b}"), getattr(model, f"sk_path_{a}_{b}")
        n_paths = int(path.max()) + 1 if path.numel() else 0
        coef = torch.zeros(cfg.n_radial, n_paths, dtype=torch.float64)
        if not items:
            oscale[(a, b)], sk[(a, b)] = torch.ones(irreps.dim, dtype=torch.float64), coef
            continue
        x = layout.to_irreps(torch.stack([it[0] for it in items]).to(layout.coupling(a, b).dtype), a, b)
        x = x.to(torch.float64)
        Y = torch.stack([it[1] for it in items])[:, yidx]  # [E, |pos|]
        phi = torch.stack([it[2] for it in items])  # [E, n]
        for p in range(n_paths):
            m = path == p
            yy = (Y[:, m] ** 2).sum(-1)  # [E] = 2L+1
            A = torch.einsum("e,en,em->nm", yy, phi, phi)
            rhs = phi.T @ (Y[:, m] * x[:, pos[m]]).sum(-1)
            A = A + ridge * torch.trace(A) / len(A) * torch.eye(len(A), dtype=A.dtype)
            coef[:, p] = torch.linalg.solve(A, rhs)
        x0 = torch.zeros_like(x)
        if n_paths:
            x0[:, pos] = Y * (phi @ coef)[:, path]
        oscale[(a, b)], sk[(a, b)] = rms_per_irrep(x - x0, irreps), coef
    return shift, scale, oscale, sk
