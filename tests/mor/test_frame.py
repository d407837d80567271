"""The canonical frame: a rigid motion + label swap that is undone exactly, for positions and forces; the frame is
the same for any rotated/translated copy of a geometry; degenerate geometries get a deterministic frame."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fastqmd.errors import InputError
from fastqmd.mor.frame import WATER, FrameRecipe, canonical_frame

EXACT = 1e-12  # round trips and back-rotations: only rounding
L0, THETA = 1.83, np.deg2rad(104.5)


def water(s1: float, s2: float, theta: float = THETA) -> np.ndarray:
    """The study's canonical water: O at 0, H1 = s1 L0 (cos θ/2, sin θ/2, 0), H2 = s2 L0 (cos θ/2, −sin θ/2, 0)."""
    c, s = np.cos(theta / 2), np.sin(theta / 2)
    return np.array([[0, 0, 0], [s1 * L0 * c, s1 * L0 * s, 0], [s2 * L0 * c, -s2 * L0 * s, 0]])


def moved(X: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X under a random rotation Q and translation d: X Qᵀ + d."""
    rng = np.random.default_rng(seed)
    Q = Rotation.random(random_state=seed).as_matrix()
    d = rng.uniform(-3, 3, 3)
    return X @ Q.T + d, Q, d


def test_the_study_geometry_is_its_own_canonical_frame():
    X = water(1.05, 0.95)
    f = canonical_frame(X)
    assert np.abs(f.R - np.eye(3)).max() < EXACT and np.abs(f.t).max() < EXACT and not f.swapped
    assert np.abs(f.to_canonical(X) - X).max() < EXACT


@pytest.mark.parametrize("seed", range(5))
def test_round_trip_and_force_back_rotation(seed):
    rng = np.random.default_rng(100 + seed)
    X, _, _ = moved(water(*rng.uniform(0.9, 1.1, 2), THETA + rng.uniform(-0.2, 0.2)), seed)
    f = canonical_frame(X)
    Y = f.to_canonical(X)
    assert np.abs(f.from_canonical(Y) - X).max() < EXACT
    assert np.abs(Y[0]).max() < EXACT and np.abs(Y[:, 2]).max() < EXACT  # O at the origin, molecule in z = 0
    assert np.linalg.norm(Y[1]) >= np.linalg.norm(Y[2]) and Y[1, 1] > 0 > Y[2, 1]  # H1 the longer bond, +y side
    assert abs(np.arctan2(Y[1, 1], Y[1, 0]) + np.arctan2(Y[2, 1], Y[2, 0])) < EXACT  # bisector along +x
    assert np.abs(f.R @ f.R.T - np.eye(3)).max() < EXACT and np.linalg.det(f.R) == pytest.approx(1, abs=EXACT)
    F = rng.standard_normal((3, 3))
    Fc = f.vectors_to_canonical(F)
    assert np.abs(f.vectors_from_canonical(Fc) - F).max() < EXACT
    # forces as a physical law: F·δX is frame independent (same work for the same displacement)
    dX = rng.standard_normal((3, 3))
    assert np.sum(F * dX) == pytest.approx(np.sum(Fc * f.vectors_to_canonical(dX)), abs=EXACT)


def test_longer_bond_becomes_h1_and_the_swap_is_remembered():
    X = water(0.95, 1.05)  # H2 is longer in the input
    f = canonical_frame(X)
    assert f.swapped and f.perm.tolist() == [0, 2, 1]
    Y = f.to_canonical(X)
    assert np.abs(Y - water(1.05, 0.95)).max() < EXACT
    F = np.array([[0.0, 0.0, 0.0], [0.1, 0.2, 0.0], [0.3, -0.4, 0.0]])  # forces on input H1, H2
    Fc = f.vectors_to_canonical(F)
    assert np.allclose(Fc[1], F[2] @ f.R.T, atol=EXACT)  # canonical H1 carries the input H2's force
    assert np.abs(f.vectors_from_canonical(Fc) - F).max() < EXACT
    keep = canonical_frame(X, FrameRecipe(tie_rule="keep_order"))
    assert not keep.swapped and keep.perm.tolist() == [0, 1, 2]


@pytest.mark.parametrize("seed", range(4))
def test_rotated_and_translated_copies_have_the_same_canonical_geometry(seed):
    X = water(1.02, 0.97, THETA + 0.05)
    Y0 = canonical_frame(X).to_canonical(X)
    Xm, _, _ = moved(X, seed)
    assert np.abs(canonical_frame(Xm).to_canonical(Xm) - Y0).max() < 1e-12
    # relabelled input (H1 ↔ H2): the same canonical geometry, with the swap recorded
    Xs = Xm[[0, 2, 1]]
    fs = canonical_frame(Xs)
    assert fs.swapped and np.abs(fs.to_canonical(Xs) - Y0).max() < 1e-12


def test_equal_bonds_keep_the_input_order_deterministically():
    X = water(1.0, 1.0)
    for seed in range(3):
        Xm, _, _ = moved(X, seed)
        f = canonical_frame(Xm)
        assert not f.swapped
        assert np.abs(f.to_canonical(Xm) - X).max() < 1e-12  # input H1 stays H1 at +y
        Xs = Xm[[0, 2, 1]]
        assert not canonical_frame(Xs).swapped  # the tie is not broken by rounding either way
    # within tie_tol counts as a tie, beyond it does not
    assert not canonical_frame(water(1.0, 1.0 + 1e-12)).swapped
    assert canonical_frame(water(1.0, 1.0 + 1e-9)).swapped


@pytest.mark.parametrize("theta_deg", [180.0, 0.0])
def test_linear_and_collinear_molecules_get_a_deterministic_frame(theta_deg):
    u = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    v = -u if theta_deg == 180 else u
    X = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0] + 1.1 * L0 * u, [1.0, 2.0, 3.0] + 0.9 * L0 * v])
    f1, f2 = canonical_frame(X), canonical_frame(X.copy())
    assert np.array_equal(f1.R, f2.R) and np.array_equal(f1.t, f2.t)
    assert np.abs(f1.R @ f1.R.T - np.eye(3)).max() < EXACT and np.linalg.det(f1.R) == pytest.approx(1, abs=EXACT)
    Y = f1.to_canonical(X)
    axis = 1 if theta_deg == 180 else 0  # linear: along y (H1 at +y); collinear: along +x
    off = [i for i in range(3) if i != axis]
    assert np.abs(Y[:, off]).max() < 1e-12 and Y[1, axis] == pytest.approx(1.1 * L0, abs=EXACT)
    assert np.abs(f1.from_canonical(Y) - X).max() < EXACT
    # rotating the input leaves the canonical positions of a triatomic unchanged
    Xm, _, _ = moved(X, 7)
    assert np.abs(canonical_frame(Xm).to_canonical(Xm) - Y).max() < 1e-12


def test_a_recipe_for_another_molecule_and_impossible_frames():
    # NH3-like: pinned N (label 1), frame atoms 3 and 0; the fourth atom rides along
    rec = FrameRecipe(("H", "N", "H", "H"), pinned=1, frame=(3, 0))
    X = np.array([[1.0, 0.2, -0.3], [0.0, 0.0, 0.0], [-0.4, 0.9, -0.3], [-0.5, -0.8, -0.35]]) * 1.9
    Xm, _, _ = moved(X, 3)
    f = canonical_frame(Xm, rec)
    Y = f.to_canonical(Xm)
    assert np.abs(Y[1]).max() < EXACT and abs(Y[3, 2]) < EXACT and abs(Y[0, 2]) < EXACT
    assert np.abs(canonical_frame(X, rec).to_canonical(X) - Y).max() < 1e-12
    assert np.abs(f.from_canonical(Y) - Xm).max() < EXACT
    with pytest.raises(InputError, match="three distinct indices"):
        FrameRecipe(("O", "H", "H"), pinned=1, frame=(1, 2))
    with pytest.raises(InputError, match="frame cannot be built"):
        canonical_frame(np.array([[0.0, 0, 0], [0, 0, 0], [1.0, 0, 0]]), WATER)
    with pytest.raises(InputError, match="3 finite positions"):
        canonical_frame(np.full((3, 3), np.nan))
