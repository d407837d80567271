"""Analysis against exact answers and an independent code (ASE's RDF)."""

import json
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.geometry.rdf import get_rdf
from ase.io import write

from fastqmd.analysis.adf import adf, angles_frame
from fastqmd.analysis.bonds import bond_angles, bond_lengths, topology
from fastqmd.analysis.compare import analyze, compare
from fastqmd.analysis.dos import dos, gaussian_dos
from fastqmd.analysis.msd import msd
from fastqmd.analysis.rdf import rdf
from fastqmd.analysis.vdos import peaks_cm1, vacf, vdos

EXACT = 1e-10


def rattled_cu(n_frames=3, rep=3):
    out = []
    for k in range(n_frames):
        a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((rep, rep, rep))
        a.rattle(0.15, seed=k)
        a.wrap()
        out.append(a)
    return out


def test_rdf_equals_ase_get_rdf():
    frames = rattled_cu()
    r, g = rdf(frames, rmax=5.2, nbins=104)
    g_ase, r_ase = get_rdf(frames, 5.2, 104)
    assert np.allclose(r, r_ase, atol=EXACT, rtol=0)
    assert np.allclose(g, g_ase, atol=1e-9, rtol=0)


def test_rdf_partial_and_beyond_half_cell():
    """Partial g_CuCu of a one-element cell equals g; r_max above half the cell (ASE refuses) still gives the
    exact fcc coordination: 12 neighbours in the first shell, 6 in the second."""
    frames = rattled_cu(1, rep=2)
    _, g = rdf(frames, rmax=3.4, nbins=68)
    _, g_p = rdf(frames, rmax=3.4, nbins=68, elements=(29, 29))
    assert np.allclose(g, g_p, atol=EXACT)
    perfect = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    r, g = rdf([perfect], rmax=4.0, nbins=400)
    rho = len(perfect) / perfect.cell.volume
    edges = np.linspace(0, 4.0, 401)
    counts = g * rho * 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)  # neighbours per atom per bin
    assert counts[r < 3.0].sum() == pytest.approx(12, abs=EXACT)
    assert counts[(r > 3.0) & (r < 4.0)].sum() == pytest.approx(6, abs=EXACT)


def test_adf_of_perfect_fcc():
    """12 nearest neighbours: 66 angles per atom, 60° ×24, 90° ×12, 120° ×24, 180° ×6."""
    a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    ang = angles_frame(a, cutoff=3.0)
    assert ang.size == 66 * len(a)
    for theta, n in [(60, 24), (90, 12), (120, 24), (180, 6)]:
        assert np.sum(np.abs(ang - theta) < 1e-6) == n * len(a)
    th, p = adf([a], cutoff=3.0, nbins=25)  # 7.2° bins: no peak on a bin edge
    width = 180 / 25
    assert np.trapezoid(p, th) == pytest.approx(1.0, abs=0.05)  # trapezoid of a histogram ≈ its area
    assert (p * width).sum() == pytest.approx(1.0, abs=EXACT)
    for theta, n in [(60, 24), (90, 12), (120, 24), (180, 6)]:
        k = min(int(theta // width), 24)
        assert p[k] * width == pytest.approx(n / 66, abs=EXACT)


def test_msd_of_uniform_drift_is_exact():
    """r(t) = r(0) + v t, wrapped into the cell every frame: MSD(t) = |v|² t² exactly."""
    base = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    v = np.array([0.31, -0.17, 0.05])  # Å per frame (≪ half the 7.2 Å cell)
    frames = []
    for k in range(80):  # drifts ~25 Å, several cell lengths
        f = base.copy()
        f.positions += v * k
        f.wrap()
        frames.append(f)
    m = msd(frames)
    assert np.allclose(m, (v @ v) * np.arange(80) ** 2, atol=1e-9, rtol=0)


def harmonic_frames(nu_THz=10.0, dt_fs=1.0, n=1000):
    """Two atoms oscillating in antiphase at ν: v(t) = ±cos(2πνt) Å/fs."""
    frames = []
    for k in range(n):
        a = Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])
        c = np.cos(2 * np.pi * nu_THz * 1e-3 * k * dt_fs) * 0.01
        a.arrays["velocities"] = np.array([[c, 0, 0], [-c, 0, 0]])
        a.info["time_fs"] = k * dt_fs
        frames.append(a)
    return frames


def test_vacf_and_vdos_of_harmonic_motion():
    frames = harmonic_frames()
    c = vacf(frames)
    assert c[0] == pytest.approx(1.0, abs=EXACT)
    assert c[50] == pytest.approx(-1.0, abs=0.06)  # half a period (50 fs) later
    nu, d = vdos(frames, 1.0)
    assert abs(nu[np.argmax(d)] - 10.0) <= nu[1] - nu[0]
    assert np.trapezoid(d, nu) == pytest.approx(1.0, abs=EXACT)
    (peak,) = peaks_cm1(nu, d)  # one line, at 10 THz = 333.6 cm⁻¹ (grid spacing 1 THz)
    assert peak == pytest.approx(333.564, abs=nu[1] * 33.4)


def test_vdos_overlap_tells_shifted_spectra_apart():
    a = analyze(harmonic_frames(10.0))
    assert compare(a, a)["vdos_overlap"] == pytest.approx(1.0, abs=EXACT)
    near, far = compare(a, analyze(harmonic_frames(10.3))), compare(a, analyze(harmonic_frames(14.0)))
    assert 0.5 < near["vdos_overlap"] < 1.0 and far["vdos_overlap"] < 0.05
    assert far["surrogate"]["vdos_peaks_cm1"] == pytest.approx([14.0 * 33.356], abs=34)


def test_gaussian_dos_counts_states():
    e = np.linspace(-20, 20, 4001)
    d = gaussian_dos([np.array([-3.0, 0.0, 1.0]), np.array([-2.0, 0.5, 2.0])], e, 0.2)
    assert np.trapezoid(d, e) == pytest.approx(3.0, abs=1e-9)


def test_default_dos_window_resolves_the_valence_despite_keV_outliers():
    """A nearly singular S gives a few levels at keV (GFN1 Cu); the default grid must still resolve σ there."""
    from ase import Atoms

    levels = np.concatenate([np.linspace(-10.0, 2.0, 40), [900.0, 3000.0]])
    frames = [Atoms("H", info={"eigenvalues": levels}) for _ in range(2)]
    e, d = dos(frames, sigma_eV=0.1)
    assert e[-1] < 2.0 + 20.0 + 1.0 and np.diff(e)[0] <= 0.025 + 1e-12
    assert np.trapezoid(d, e) == pytest.approx(40.0, abs=1e-6)  # every valence state counted once


def test_dos_overlap_tells_shifted_levels_apart():
    from ase import Atoms

    def analysis(shift):
        levels = np.array([-8.0, -5.0, -2.0, -1.0]) + shift
        frames = [Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], info={"eigenvalues": levels}) for _ in range(3)]
        e, d = dos(frames, sigma_eV=0.1)
        return {"dos_E_eV": e, "dos": d}

    from fastqmd.analysis.compare import overlap

    ref, same, far = analysis(0.0), analysis(0.0), analysis(0.3)  # 3σ: the Gaussians barely touch
    same_ov = overlap(ref["dos_E_eV"], ref["dos"], np.interp(ref["dos_E_eV"], same["dos_E_eV"], same["dos"]))
    far_ov = overlap(ref["dos_E_eV"], ref["dos"], np.interp(ref["dos_E_eV"], far["dos_E_eV"], far["dos"],
                                                           left=0.0, right=0.0))
    assert same_ov == pytest.approx(1.0, abs=1e-12) and far_ov < 0.2


def test_bonds_of_water():
    w = molecule("H2O")
    bonds, angles = topology(w)
    assert bonds == [(0, 1), (0, 2)] and angles == [(1, 0, 2)]
    assert np.allclose(bond_lengths([w], bonds)[0], [w.get_distance(0, 1), w.get_distance(0, 2)], atol=EXACT)
    assert bond_angles([w], angles)[0, 0] == pytest.approx(w.get_angle(1, 0, 2), abs=1e-8)


def cu_traj(path, seed, n=12):
    frames = []
    for k in range(n):
        a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
        a.rattle(0.05 + 0.002 * k, seed=seed + k)
        a.arrays["velocities"] = np.random.default_rng(seed + k).normal(0, 0.003, (32, 3))
        a.info.update(time_fs=10.0 * k, dof=93)
        frames.append(a)
    write(path, frames, format="extxyz")
    return frames


def test_compare_identical_is_perfect_and_cli_writes_json_png(tmp_path, monkeypatch, capsys):
    frames = cu_traj(tmp_path / "ref.extxyz", 0)
    cu_traj(tmp_path / "sur.extxyz", 100)
    a = analyze(frames)
    m = compare(a, a)
    assert m["rdf_overlap"] == pytest.approx(1.0, abs=EXACT)
    assert m["adf_overlap"] == pytest.approx(1.0, abs=EXACT)
    assert m["msd_ratio"] == pytest.approx(1.0, abs=EXACT)
    from fastqmd.cli import main

    out = tmp_path / "cmp"
    monkeypatch.setattr(sys, "argv", ["fastqmd", "compare", str(tmp_path / "ref.extxyz"),
                                      str(tmp_path / "sur.extxyz"), "-o", str(out)])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code in (0, None)
    js = json.loads((tmp_path / "cmp.json").read_text())
    mm = js["metrics"][str(tmp_path / "sur.extxyz")]
    assert 0.5 < mm["rdf_overlap"] < 1.0 and 0.5 < mm["adf_overlap"] < 1.0
    assert (tmp_path / "cmp.png").stat().st_size > 10_000
    monkeypatch.setattr(sys, "argv", ["fastqmd", "analyze", str(tmp_path / "ref.extxyz")])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code in (0, None)
    assert (tmp_path / "ref_analysis.png").exists() and (tmp_path / "ref_analysis.json").exists()
