"""Velocity autocorrelation and vibrational density of states.

C(τ) = ⟨Σ_i m_i v_i(t)·v_i(t+τ)⟩_t / ⟨Σ_i m_i v_i(t)·v_i(t)⟩_t  (all time origins, FFT with zero padding).
VDOS(ν) ∝ Σ_i m_i |∫ v_i(t) e^{−2πiνt} dt|² (Wiener–Khinchin: the spectrum of C), normalized to unit area;
ν in THz (1/fs = 1000 THz) and wavenumbers in cm⁻¹ (1 THz = 33.35641 cm⁻¹).
"""

from __future__ import annotations

import numpy as np

from fastqmd.md.trajectory import frame_velocities
from fastqmd.units import THZ_TO_INV_CM


def mass_weighted_velocities(frames) -> np.ndarray:
    """[n_frames, N, 3] √m · v (amu^½ Å/fs)."""
    v = np.stack([frame_velocities(f) for f in frames])
    return v * np.sqrt(frames[0].get_masses())[None, :, None]


def vacf(frames) -> np.ndarray:
    """[n_frames] normalized C(τ) for τ = 0, 1, ... frame intervals."""
    w = mass_weighted_velocities(frames).reshape(len(frames), -1)  # [T, 3N]
    n = w.shape[0]
    f = np.fft.rfft(w, n=2 * n, axis=0)
    c = np.fft.irfft((f * f.conj()).real, axis=0)[:n].sum(axis=1) / (n - np.arange(n))
    return c / c[0] if c[0] != 0 else c


def vdos(frames, dt_fs: float) -> tuple[np.ndarray, np.ndarray]:
    """(ν [n_freq] THz, VDOS [n_freq] in 1/THz) from frames `dt_fs` apart."""
    w = mass_weighted_velocities(frames).reshape(len(frames), -1)
    spec = (np.abs(np.fft.rfft(w - w.mean(0), axis=0)) ** 2).sum(axis=1)
    nu = np.fft.rfftfreq(len(frames), d=dt_fs) * 1000.0
    area = np.trapezoid(spec, nu) if len(nu) > 1 else 0.0
    return nu, spec / area if area > 0 else spec


def smooth(nu: np.ndarray, g: np.ndarray, sigma_THz: float) -> np.ndarray:
    """g convolved with a unit-area Gaussian of width σ (THz) on the uniform grid ν (area preserved)."""
    if len(nu) < 2 or sigma_THz <= 0:
        return g
    dnu = nu[1] - nu[0]
    x = np.arange(-int(4 * sigma_THz / dnu) - 1, int(4 * sigma_THz / dnu) + 2) * dnu
    k = np.exp(-0.5 * (x / sigma_THz) ** 2)
    return np.convolve(g, k / k.sum(), mode="same")


def peaks_cm1(nu: np.ndarray, g: np.ndarray, sigma_THz: float = 0.5, rel_height: float = 0.1) -> list[float]:
    """Wavenumbers (cm⁻¹) of the local maxima of the smoothed VDOS that reach rel_height × its maximum,
    ascending (ν = 0 excluded)."""
    h = smooth(nu, g, sigma_THz)
    if len(h) < 3:
        return []
    i = np.where((h[1:-1] > h[:-2]) & (h[1:-1] >= h[2:]) & (h[1:-1] >= rel_height * h.max()))[0] + 1
    return [float(nu[k] * THZ_TO_INV_CM) for k in i]
