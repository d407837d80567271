"""The canonical frame of a small molecule: one rigid motion and one label swap that make geometries comparable.

In:  positions X [n, 3] (Bohr, input labels) and a `FrameRecipe` (pinned atom p, frame atoms a, b, tie rule).
Out: a `Frame` (rotation R [3, 3], translation t [3], permutation perm [n]) with canonical positions
     Y_i = R X_{perm[i]} + t:   the pinned atom at `pinned_at` (default the coordinate origin, a grid point of the
     study's grid), the frame atoms in the z = 0 plane, the bisector of the two bonds p→a, p→b along +x,
     frame atom 1 (canonical label `recipe.frame[0]`) the longer bond and on the +y side.
The inverse maps canonical positions and forces back: X_{perm[i]} = Rᵀ (Y_i − t), F_{perm[i]} = Rᵀ F̃_i.

Axes (d_a = X_a − X_p, unit vectors d̂): e_x = (d̂_a + d̂_b)/|·|, e_y = (d̂_a − d̂_b)/|·|, e_z = e_x × e_y (right-handed;
e_x ⊥ e_y holds exactly because |d̂_a| = |d̂_b|); R has rows (e_x, e_y, e_z). For water this is the study's frame:
H1 = s1 (cos θ/2, sin θ/2, 0), H2 = s2 (cos θ/2, −sin θ/2, 0).
Degenerate cases, decided deterministically:
- |s_a − s_b| ≤ `tie_tol`: no swap (input order kept);
- linear (θ ≈ 180°, |d̂_a + d̂_b| < `axis_tol`): e_y = d̂_a, e_x = the unit vector of the lab axis least parallel to
  e_y, made perpendicular to it (Gram–Schmidt);
- collinear (θ ≈ 0°, |d̂_a − d̂_b| < `axis_tol`): e_x = d̂_a, e_y from the lab axis least parallel to e_x the same way.
  (In both cases the rotation about the molecular axis is free; the canonical positions of a triatomic are still
  unique.) A frame atom on top of the pinned atom: InputError (no frame can be built).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from fastqmd.errors import InputError


@dataclass(frozen=True)
class FrameRecipe:
    """How to build the frame of one molecule: element symbols (in canonical label order), the pinned atom, the
    two frame atoms (frame[0] = the longer bond after the tie rule), the tie rule and tolerances (Bohr)."""

    symbols: tuple[str, ...] = ("O", "H", "H")
    pinned: int = 0
    frame: tuple[int, int] = (1, 2)
    tie_rule: Literal["longer_first", "keep_order"] = "longer_first"
    tie_tol: float = 1e-10  # |s_a − s_b| ≤ tie_tol: no swap
    axis_tol: float = 1e-8  # |d̂_a ± d̂_b| below this: linear / collinear
    pinned_at: tuple[float, float, float] = (0.0, 0.0, 0.0)  # canonical position of the pinned atom (Bohr)

    def __post_init__(self) -> None:
        n = len(self.symbols)
        idx = (self.pinned, *self.frame)
        if len(set(idx)) != 3 or not all(0 <= i < n for i in idx):
            raise InputError(f"frame recipe: pinned atom {self.pinned} and frame atoms {self.frame} must be three "
                             f"distinct indices of the {n} atoms {''.join(self.symbols)}")
        if self.tie_rule not in ("longer_first", "keep_order"):
            raise InputError(f"frame recipe: unknown tie_rule {self.tie_rule!r} (longer_first, keep_order)")

    def to_dict(self) -> dict:
        return {"symbols": list(self.symbols), "pinned": self.pinned, "frame": list(self.frame),
                "tie_rule": self.tie_rule, "tie_tol": self.tie_tol, "axis_tol": self.axis_tol,
                "pinned_at": list(self.pinned_at)}

    @classmethod
    def from_dict(cls, d: dict) -> FrameRecipe:
        return cls(tuple(d["symbols"]), int(d["pinned"]), tuple(int(i) for i in d["frame"]), d["tie_rule"],
                   float(d["tie_tol"]), float(d["axis_tol"]), tuple(float(x) for x in d["pinned_at"]))


WATER = FrameRecipe()


@dataclass(frozen=True)
class Frame:
    """Y_i = R X_{perm[i]} + t (rows: Y = X[perm] Rᵀ + t). `swapped`: the two frame atoms exchanged labels."""

    R: np.ndarray  # [3, 3], rows e_x, e_y, e_z
    t: np.ndarray  # [3] Bohr
    perm: np.ndarray  # [n] int, canonical label i ← input label perm[i]
    swapped: bool

    def to_canonical(self, X: np.ndarray) -> np.ndarray:
        """Input-frame positions [n, 3] → canonical positions."""
        return np.asarray(X, float)[self.perm] @ self.R.T + self.t

    def from_canonical(self, Y: np.ndarray) -> np.ndarray:
        """Canonical positions [n, 3] → input-frame positions (input labels)."""
        X = np.empty_like(np.asarray(Y, float))
        X[self.perm] = (np.asarray(Y, float) - self.t) @ self.R
        return X

    def vectors_to_canonical(self, F: np.ndarray) -> np.ndarray:
        """Per-atom vectors (forces) [n, 3] in the input frame → canonical frame (rotated and relabelled)."""
        return np.asarray(F, float)[self.perm] @ self.R.T

    def vectors_from_canonical(self, Fc: np.ndarray) -> np.ndarray:
        """Per-atom vectors (forces) [n, 3] in the canonical frame → input frame: F_{perm[i]} = Rᵀ F̃_i."""
        F = np.empty_like(np.asarray(Fc, float))
        F[self.perm] = np.asarray(Fc, float) @ self.R
        return F


def canonical_frame(X: np.ndarray, recipe: FrameRecipe = WATER) -> Frame:
    """The frame of positions X [n, 3] (Bohr, an unwrapped molecule) by the recipe."""
    X = np.asarray(X, float)
    if X.shape != (len(recipe.symbols), 3) or not np.all(np.isfinite(X)):
        raise InputError(f"frame: expected {len(recipe.symbols)} finite positions, got an array of shape {X.shape}")
    p, a, b = recipe.pinned, *recipe.frame
    d_a, d_b = X[a] - X[p], X[b] - X[p]
    s_a, s_b = np.linalg.norm(d_a), np.linalg.norm(d_b)
    if min(s_a, s_b) < 1e-6:
        raise InputError(f"frame cannot be built: a frame atom lies on the pinned atom (bonds {s_a:.3g}, {s_b:.3g} Bohr)")
    swapped = recipe.tie_rule == "longer_first" and s_b > s_a + recipe.tie_tol
    if swapped:
        d_a, d_b, s_a, s_b = d_b, d_a, s_b, s_a
    R = frame_axes(d_a / s_a, d_b / s_b, recipe.axis_tol)
    perm = np.arange(len(X))
    if swapped:
        perm[a], perm[b] = b, a
    t = np.asarray(recipe.pinned_at, float) - R @ X[p]
    return Frame(R, t, perm, bool(swapped))


def frame_axes(u_a: np.ndarray, u_b: np.ndarray, tol: float) -> np.ndarray:
    """Rotation with rows (e_x, e_y, e_z) from the unit bond vectors: e_x ∥ u_a + u_b, e_y ∥ u_a − u_b (module doc)."""
    plus, minus = u_a + u_b, u_a - u_b
    if np.linalg.norm(plus) < tol:  # linear: the bisector is undefined
        e_y = u_a
        e_x = _perpendicular(e_y)
    elif np.linalg.norm(minus) < tol:  # collinear: both bonds along one ray
        e_x = u_a
        e_y = _perpendicular(e_x)
    else:
        e_x, e_y = plus / np.linalg.norm(plus), minus / np.linalg.norm(minus)
    e_z = np.cross(e_x, e_y)
    return np.array([e_x, e_y, e_z])


def _perpendicular(u: np.ndarray) -> np.ndarray:
    """Unit vector ⊥ u from the lab axis least parallel to u (lowest index on ties): deterministic."""
    e = np.eye(3)[int(np.argmin(np.abs(u)))]
    v = e - (e @ u) * u
    return v / np.linalg.norm(v)
