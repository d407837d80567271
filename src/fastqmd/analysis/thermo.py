"""Temperature and energies vs time from trajectory frames.

T = Σ m v² / (g k_B) with v in Å/fs converted by ACC (fastqmd.md.state), g the frame's `dof` (fastqmd
trajectories) or 3N − 3 otherwise. Times from info["time_fs"], else frame index × `timestep_fs`.
"""

from __future__ import annotations

import numpy as np

from fastqmd.md.state import ACC
from fastqmd.md.trajectory import frame_velocities
from fastqmd.units import KB_EV


def times_fs(frames, timestep_fs: float | None = None) -> np.ndarray:
    """[n_frames] time of each frame in fs (stored times must be finite and increase)."""
    if all("time_fs" in f.info for f in frames):
        t = np.array([float(f.info["time_fs"]) for f in frames])
        if not np.all(np.isfinite(t)):
            raise ValueError(f"frame {int(np.argmin(np.isfinite(t)))} has a non-finite time_fs")
        if np.any(np.diff(t) <= 0):
            raise ValueError(f"time_fs does not increase at frame {int(np.argmax(np.diff(t) <= 0)) + 1}")
        return t
    if timestep_fs is None:
        raise ValueError("frames carry no time_fs; give the time between frames with --timestep-fs")
    return np.arange(len(frames)) * float(timestep_fs)


def frame_temperature(atoms) -> float:
    """T (K) = 2 E_kin / (g k_B),  E_kin = ½ Σ m v² / ACC."""
    v = frame_velocities(atoms)
    ekin = 0.5 * float((atoms.get_masses()[:, None] * v**2).sum()) / ACC
    dof = int(atoms.info.get("dof", 3 * len(atoms) - 3))
    return 2 * ekin / (dof * KB_EV)


def temperatures(frames) -> np.ndarray:
    """[n_frames] temperature in K."""
    return np.array([frame_temperature(f) for f in frames])


def potential_energies(frames) -> np.ndarray | None:
    """[n_frames] potential energy in eV, or None if frames have none."""
    try:
        return np.array([f.get_potential_energy() for f in frames])
    except Exception:  # no calculator results on the frames
        return None
