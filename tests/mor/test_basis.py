"""The reduced basis: rank by the energy fraction on a known spectrum (both definitions), an orthonormal basis
that reproduces the snapshots to the discarded energy, and a basis file that round-trips or is refused in one line."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from fastqmd.dft.grid import Grid
from fastqmd.dft.scf import Model
from fastqmd.errors import InputError
from fastqmd.mor.basis import (basis_from_orbitals, build_basis, energy_fractions, load_basis, rank_for,
                               save_basis, snapshot_svd)
from fastqmd.mor.frame import WATER

TIGHT = 1e-12
GRID = Grid.cube(12.0, 12)
MODEL = Model(("O", "H", "H"), np.zeros((3, 3)))


def test_rank_criterion_on_a_known_spectrum():
    """σ_i = 10^{-i} (i = 0..5): Σσ fractions (1 − 10^{-k})/(1 − 10^{-6}) = 0.900001, 0.990001, 0.999001, 0.999901, …;
    Σσ² fractions (1 − 10^{-2k})/(1 − 10^{-12}) = 0.99, 0.9999, 0.999999: σ² needs about half the rank."""
    sigma = 10.0 ** -np.arange(6)
    k = np.arange(1, 7)
    assert np.allclose(energy_fractions(sigma, "sigma"), (1 - 10.0**-k) / (1 - 1e-6), rtol=0, atol=1e-15)
    assert np.allclose(energy_fractions(sigma, "sigma2"), (1 - 10.0 ** (-2 * k)) / (1 - 1e-12), rtol=0, atol=1e-15)
    assert rank_for(sigma, 1e-3, "sigma") == 3  # 0.999001 > 0.999; 0.990001 is not
    assert rank_for(sigma, 1e-3, "sigma2") == 2  # 0.9999 > 0.999; 0.99 is not
    assert rank_for(sigma, 2e-5, "sigma") == 5  # 0.999991 > 0.99998; 0.999901 is not
    assert rank_for(sigma, 2e-5, "sigma2") == 3  # 0.999999 > 0.99998; 0.9999 is not
    assert rank_for(np.ones(5), 0.5, "sigma") == 3  # 3/5 > 0.5 strictly; 2/5 is not
    assert rank_for(np.ones(5), 0.6, "sigma") == 3  # 2/5 = 0.4 is not > 0.4 (strict), 3/5 is
    with pytest.raises(InputError, match="unknown rank criterion"):
        rank_for(sigma, 1e-4, "sigma3")


def snapshots(m: int = 10, seed: int = 0) -> np.ndarray:
    """m unit rows with a decaying spectrum: random orthonormal modes mixed with weights 2^{-j}."""
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((GRID.size, m)))[0].T  # [m, n] orthonormal modes
    C = rng.standard_normal((m, m)) * 0.5 ** np.arange(m)
    U = C @ Q
    return U / np.linalg.norm(U, axis=1, keepdims=True)


def test_svd_basis_is_orthonormal_and_reproduces_the_snapshots_to_the_discarded_energy():
    U = snapshots()
    W, sigma = snapshot_svd(U, GRID.dV)
    Psi = U.T / np.sqrt(GRID.dV)  # the study's columns, Σ|ψ|²h³ = 1
    assert np.allclose(sigma, np.linalg.svd(Psi, compute_uv=False), rtol=1e-12)
    assert np.sum(sigma**2) * GRID.dV == pytest.approx(len(U), rel=1e-12)
    for eps in (1e-2, 1e-4):
        b = build_basis(U, GRID, MODEL, WATER, epsilon=eps, criterion="sigma2")
        V = b.vectors
        assert np.abs(V @ V.T - np.eye(b.rank)).max() < TIGHT
        residual = Psi - V.T @ (V @ Psi)  # projection error of the snapshot matrix
        discarded = np.sum(sigma[b.rank:] ** 2)
        assert np.sum(residual**2) == pytest.approx(discarded, rel=1e-8, abs=1e-20)
        assert 1 - b.energy_fraction == pytest.approx(discarded / np.sum(sigma**2), rel=1e-8, abs=1e-15)
        assert b.energy_fraction > 1 - eps and (b.rank == 1 or energy_fractions(sigma, "sigma2")[b.rank - 2] <= 1 - eps)


def test_basis_from_orbitals_spans_them_and_round_trips_through_the_file(tmp_path):
    U = snapshots(6, seed=1)
    b = basis_from_orbitals(U, GRID, MODEL)
    assert b.rank == 6 and np.abs(U - (U @ b.vectors.T) @ b.vectors).max() < 1e-12
    path = save_basis(tmp_path / "b.h5", b)
    back = load_basis(path)
    assert np.array_equal(back.vectors, b.vectors) and np.array_equal(back.singular_values, b.singular_values)
    assert (back.grid, back.model, back.recipe, back.rank, back.criterion) == (b.grid, b.model, b.recipe, 6, "sigma")
    assert back.grid.grid() == GRID
    back.check_compatible(GRID, MODEL, ("O", "H", "H"))
    assert [p.name for p in tmp_path.iterdir()] == ["b.h5"]  # no temporary left


@pytest.mark.parametrize("change, fragment", [
    (lambda: dict(grid=Grid.cube(12.0, 12, fd_order=8)), "fd_order 8 ≠ basis 4"),
    (lambda: dict(grid=Grid.cube(12.0, 16)), "shape (16, 16, 16) ≠ basis (12, 12, 12)"),
    (lambda: dict(model=Model(("O", "H", "H"), np.zeros((3, 3)), xc="pbe")), "pseudo_family 'gth-pbe'"),
    (lambda: dict(model=Model(("O", "H", "H"), np.zeros((3, 3)), kT=2e-3)), "kT 0.002 ≠ basis 0.001"),
    (lambda: dict(symbols=("N", "H", "H")), "molecule NHH ≠ basis OHH"),
])
def test_a_mismatched_use_is_refused_naming_the_mismatch(change, fragment):
    b = basis_from_orbitals(snapshots(4), GRID, MODEL)
    with pytest.raises(InputError, match="does not fit") as exc:
        b.check_compatible(**change())
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_corrupt_or_foreign_basis_files_are_one_line_input_errors(tmp_path):
    b = basis_from_orbitals(snapshots(4), GRID, MODEL)
    good = save_basis(tmp_path / "b.h5", b)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[:2000])
    bad = tmp_path / "bad.h5"
    bad.write_bytes(good.read_bytes())
    with h5py.File(bad, "r+") as f:
        f["vectors"][0, :] *= 2.0
    for path, fragment in [(tmp_path / "none.h5", "not found"), (tmp_path / "junk.h5", "corrupt"),
                           (tmp_path / "other.h5", "not a fastqmd MOR basis"), (cut, "corrupt"),
                           (bad, "not orthonormal")]:
        with pytest.raises(InputError, match=fragment) as exc:
            load_basis(path)
        assert "\n" not in str(exc.value)
