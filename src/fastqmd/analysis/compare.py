"""One analysis per trajectory, and agreement metrics between a reference and surrogate trajectories.

`analyze(frames, opts)` → dict of numpy arrays: time_fs, T_K, msd_A2, (periodic) rdf r/g, adf θ/P,
vacf, vdos (THz), (eigenvalues) dos E/D, (molecules) bond lengths and angles vs time. RDF, ADF and DOS are
averaged over the frames at t ≥ `opts.from_fs`, or taken at the single frame nearest `opts.at_fs` (the NNH
study compares at 500 fs).

`validate_frames` and `check_same_system` reject (InputError) non-finite frames, a trajectory whose atoms
change, and a comparison of different systems, before anything is computed.

`compare(ref, sur)` metrics (sur vs ref):
  overlap(g₁, g₂) = 1 − ∫|g₁ − g₂| / ∫(g₁ + g₂)   (= 1 − ½∫|g₁−g₂|/∫ḡ; 1 identical, 0 disjoint) for RDF, ADF;
  msd_ratio = MSD_sur / MSD_ref at the last common time; mean and std of T; mean bond lengths and angles;
  VDOS: peak wavenumbers of each (Gaussian-smoothed, σ = 0.5 THz ≈ 17 cm⁻¹) and the overlap of the smoothed
  spectra (surrogate interpolated onto the reference's frequency grid); electronic DOS: the overlap of the
  two DOS curves on the reference's energy grid (absolute energies; 0 outside the surrogate's window).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastqmd.analysis import adf as adf_mod
from fastqmd.analysis import bonds as bonds_mod
from fastqmd.analysis import dos as dos_mod
from fastqmd.analysis import msd as msd_mod
from fastqmd.analysis import rdf as rdf_mod
from fastqmd.analysis import thermo, vdos as vdos_mod
from fastqmd.errors import InputError
from fastqmd.neighbors import atoms_pairs


@dataclass(frozen=True)
class AnalysisOptions:
    rdf_rmax_A: float = 6.0
    rdf_bins: int = 120
    adf_cutoff_A: float | None = None  # default: 1.25 × shortest distance in frame 0
    adf_bins: int = 90
    at_fs: float | None = None  # RDF/ADF/DOS at this time only
    from_fs: float = 0.0  # else averaged over frames with t ≥ from_fs
    dos_sigma_eV: float = 0.1
    timestep_fs: float | None = None  # only for frames without time_fs


def validate_frames(frames, label: str) -> None:
    """One system throughout, with finite coordinates, cells and velocities: else an InputError."""
    first = frames[0]
    for i, f in enumerate(frames):
        if len(f) != len(first) or not np.array_equal(f.numbers, first.numbers):
            raise InputError(f"{label}: frame {i} has other atoms than frame 0 ({len(f)} vs {len(first)} atoms "
                             f"{first.get_chemical_formula()})")
        bad = [name for name, x in (("coordinates", f.positions), ("cell", f.cell.array),
                                    ("velocities", f.arrays.get("velocities", 0.0))) if not np.all(np.isfinite(x))]
        if bad:
            raise InputError(f"{label}: frame {i} has non-finite (NaN or infinite) {' and '.join(bad)}")


def check_same_system(ref, other, ref_label: str, label: str) -> None:
    """`compare` needs the same system in both trajectories: atom count, composition and periodicity."""
    a, b = ref[0], other[0]
    if len(a) != len(b) or sorted(a.numbers) != sorted(b.numbers) or not np.array_equal(a.pbc, b.pbc):
        raise InputError(f"{label} ({b.get_chemical_formula()}, {len(b)} atoms, pbc {b.pbc.tolist()}) is not the "
                         f"system of the reference {ref_label} ({a.get_chemical_formula()}, {len(a)} atoms, "
                         f"pbc {a.pbc.tolist()})")


def default_adf_cutoff(atoms) -> float:
    """1.25 × the shortest interatomic distance (between first and second shell for fcc and for water)."""
    _, _, d, _ = atoms_pairs(atoms, 4.0)
    if d.size == 0:
        _, _, d, _ = atoms_pairs(atoms, 10.0)
    return 1.25 * float(d.min())


def select_frames(frames, t: np.ndarray, opts: AnalysisOptions) -> list:
    if opts.at_fs is not None:
        return [frames[int(np.argmin(np.abs(t - opts.at_fs)))]]
    sel = [f for f, ti in zip(frames, t) if ti >= opts.from_fs]
    return sel or frames[-1:]


def analyze(frames, opts: AnalysisOptions = AnalysisOptions()) -> dict:
    t = thermo.times_fs(frames, opts.timestep_fs)
    out: dict = {"time_fs": t, "n_atoms": len(frames[0]), "n_frames": len(frames)}
    out["T_K"] = thermo.temperatures(frames)
    e = thermo.potential_energies(frames)
    if e is not None:
        out["E_pot_eV"] = e
    out["msd_A2"] = msd_mod.msd(frames)
    sel = select_frames(frames, t, opts)
    periodic = bool(np.all(frames[0].pbc))
    if periodic:
        out["rdf_r_A"], out["rdf_g"] = rdf_mod.rdf(sel, opts.rdf_rmax_A, opts.rdf_bins)
    cutoff = opts.adf_cutoff_A or default_adf_cutoff(frames[0])
    out["adf_cutoff_A"] = cutoff
    out["adf_theta_deg"], out["adf_p"] = adf_mod.adf(sel, cutoff, opts.adf_bins)
    if len(frames) > 2:
        dt = float(np.median(np.diff(t)))
        out["vacf"] = vdos_mod.vacf(frames)
        out["vdos_nu_THz"], out["vdos"] = vdos_mod.vdos(frames, dt)
    if dos_mod.has_eigenvalues(sel):
        out["dos_E_eV"], out["dos"] = dos_mod.dos(sel, opts.dos_sigma_eV)
    if not periodic:
        b, a = bonds_mod.topology(frames[0])
        out["bonds"], out["angles"] = b, a
        out["bond_lengths_A"] = bonds_mod.bond_lengths(frames, b)
        out["bond_angles_deg"] = bonds_mod.bond_angles(frames, a)
    return out


def overlap(x: np.ndarray, g1: np.ndarray, g2: np.ndarray) -> float:
    """1 − ∫|g₁ − g₂| dx / ∫(g₁ + g₂) dx on a common grid."""
    den = np.trapezoid(g1 + g2, x)
    return float(1 - np.trapezoid(np.abs(g1 - g2), x) / den) if den > 0 else float("nan")


def summary(a: dict) -> dict:
    """Scalar numbers of one analysis."""
    s = {"T_mean_K": float(np.mean(a["T_K"])), "T_std_K": float(np.std(a["T_K"])),
         "msd_end_A2": float(a["msd_A2"][-1]), "t_end_fs": float(a["time_fs"][-1])}
    if "bond_lengths_A" in a and a["bond_lengths_A"].size:
        s["bond_length_mean_A"] = a["bond_lengths_A"].mean(0).tolist()
    if "bond_angles_deg" in a and a["bond_angles_deg"].size:
        s["bond_angle_mean_deg"] = a["bond_angles_deg"].mean(0).tolist()
    if "vdos" in a:
        s["vdos_peaks_cm1"] = vdos_mod.peaks_cm1(a["vdos_nu_THz"], a["vdos"])
    return s


def compare(ref: dict, sur: dict) -> dict:
    """Agreement metrics of a surrogate analysis `sur` against the reference analysis `ref`."""
    m: dict = {"reference": summary(ref), "surrogate": summary(sur)}
    if "rdf_g" in ref and "rdf_g" in sur and np.array_equal(ref["rdf_r_A"], sur["rdf_r_A"]):
        m["rdf_overlap"] = overlap(ref["rdf_r_A"], ref["rdf_g"], sur["rdf_g"])
    if np.array_equal(ref["adf_theta_deg"], sur["adf_theta_deg"]):
        m["adf_overlap"] = overlap(ref["adf_theta_deg"], ref["adf_p"], sur["adf_p"])
    t_end = min(ref["time_fs"][-1], sur["time_fs"][-1])
    m_ref = np.interp(t_end, ref["time_fs"], ref["msd_A2"])
    m_sur = np.interp(t_end, sur["time_fs"], sur["msd_A2"])
    m["msd_ratio"] = float(m_sur / m_ref) if m_ref > 0 else float("nan")
    m["msd_ratio_at_fs"] = float(t_end)
    m["T_mean_diff_K"] = m["surrogate"]["T_mean_K"] - m["reference"]["T_mean_K"]
    if "vdos" in ref and "vdos" in sur:
        nu = ref["vdos_nu_THz"]
        g_sur = np.interp(nu, sur["vdos_nu_THz"], vdos_mod.smooth(sur["vdos_nu_THz"], sur["vdos"], 0.5), right=0.0)
        m["vdos_overlap"] = overlap(nu, vdos_mod.smooth(nu, ref["vdos"], 0.5), g_sur)
    if "dos" in ref and "dos" in sur:
        e = ref["dos_E_eV"]
        m["dos_overlap"] = overlap(e, ref["dos"], np.interp(e, sur["dos_E_eV"], sur["dos"], left=0.0, right=0.0))
    return m


def to_json(obj):
    """numpy → plain JSON types, recursively."""
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
