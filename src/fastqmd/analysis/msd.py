"""Mean-squared displacement from the first frame (the studies' MSD vs time).

MSD(t) = (1/N) Σ_i |r_i(t) − r_i(0)|² over the selected atoms, with r unwrapped across periodic boundaries by
accumulating minimum-image steps between consecutive frames (frames must be close enough in time that no
atom moves more than half a cell between them).
"""

from __future__ import annotations

import numpy as np


def unwrap(positions: np.ndarray, cell: np.ndarray | None) -> np.ndarray:
    """[n_frames, N, 3] continuous trajectories: r(t) = r(0) + Σ mic(r(k+1) − r(k))."""
    steps = np.diff(positions, axis=0)  # [n_frames-1, N, 3]
    if cell is not None:
        inv = np.linalg.inv(cell)
        frac = steps @ inv
        steps = (frac - np.round(frac)) @ cell
    return np.concatenate([positions[:1], positions[:1] + np.cumsum(steps, axis=0)], axis=0)


def msd(frames, mask: np.ndarray | None = None) -> np.ndarray:
    """[n_frames] MSD in Å² relative to frame 0; `mask` [N] selects atoms (default all)."""
    pos = np.stack([f.positions for f in frames])
    periodic = bool(np.all(frames[0].pbc))
    r = unwrap(pos, frames[0].cell.array if periodic else None)
    d2 = ((r - r[:1]) ** 2).sum(-1)  # [n_frames, N]
    if mask is not None:
        d2 = d2[:, mask]
    return d2.mean(axis=1)
