"""Band structures and unfolding (fastqmd.nnh.bands): the Γ point of an n×n×n supercell, unfolded, must give the
primitive-cell bands at the n³ commensurate k exactly — checked with a random-init model, whose H(R), S(R)
define H(k), S(k) exactly for both cells; and a tblite GFN1 2×2×2 fcc Cu run unfolds into pure Bloch states."""

import numpy as np
import pytest
import torch
from ase.build import bulk

from fastqmd.nnh import NNHConfig, OverlapConfig, RepulsionConfig
from fastqmd.nnh import bands as B
from fastqmd.nnh.energy import EnergyModel, EnergyModelConfig

BAND_TOL = 1e-8  # eV: unfolded supercell levels vs primitive-cell bands (float64)
WEIGHT_TOL = 1e-8  # Σ_k W_k = 1 per state, weights of a perfect crystal's points = 1
TBLITE_WEIGHT_TOL = 1e-4  # tblite's SCC (accuracy 0.01) leaves ~1e-5 eV symmetry noise in H
IRR = "8x0e+4x1o+4x1e+2x2e+2x2o+2x3o+2x3e+2x4e"


@pytest.fixture(scope="module")
def cu_model():
    basis = {"Cu": (0, 1, 2)}
    h = NNHConfig(basis=basis, cutoff=3.0, hidden_irreps=IRR, n_layers=1, radial_hidden=8, n_scalars_embed=8,
                  n_radial=4, avg_num_neighbors=8, dtype="float64")
    s = OverlapConfig(basis=basis, cutoff=3.0, radial_hidden=8, dtype="float64")
    torch.manual_seed(0)
    return EnergyModel(EnergyModelConfig(h=h, overlap="learned", s=s, repulsion=RepulsionConfig(
        species=("Cu",), cutoff=3.0, dtype="float64"), electronic_temperature_K=1000.0,
        valence_electrons={"Cu": 11.0})).eval()


@pytest.mark.parametrize("cubic,n", [(False, 3), (True, 2)])
def test_unfolded_supercell_gamma_reproduces_model_bands(cu_model, cubic, n):
    """fcc primitive (1 atom, n = 3: k and −k not equivalent) and the 4-atom cubic cell (n = 2): multi-atom order."""
    prim = bulk("Cu", "fcc", a=3.61, cubic=cubic)
    prim.rattle(0.05, seed=1)  # a generic crystal: no accidental symmetry helps
    sc, T = B.supercell(prim, n)
    np.testing.assert_allclose(sc.positions, prim.positions[np.arange(len(sc)) % len(prim)] + T @ prim.cell.array)
    H, S = B.model_hk(cu_model, sc, np.zeros((1, 3)))
    eps, C = B.generalized_eigh(H[0], S[0])
    nao = H.shape[1] // n**3
    u = B.unfold(eps, C, S[0], n, nao)
    assert np.abs(u.state_weights.sum(0) - 1).max() < WEIGHT_TOL
    assert u.state_weights.min() > -WEIGHT_TOL
    assert np.abs(u.weight - 1).max() < WEIGHT_TOL
    ek = B.model_bands(cu_model, prim, u.kpts)  # [n³, nao]
    assert ek.shape == (n**3, nao)
    for ik in range(n**3):
        lev = u.levels(ik)
        assert len(lev) == nao
        assert np.abs(lev - ek[ik]).max() < BAND_TOL, (ik, np.abs(lev - ek[ik]).max())
    # the model's bands are not flat: the test can fail
    assert np.ptp(ek[:, 0]) > 1e-3


def test_commensurate_points_land_on_the_fcc_path():
    """n = 4 on G-X-W-K-G-L-U-W-L-K|U-X: Γ, X, L, W, Γ-X/2, Γ-L/2, 2/3 of K-Γ are commensurate; K and U are not."""
    prim = bulk("Cu", "fcc", a=3.61)
    axis = B.path_axis(prim.cell.bandpath(npoints=80))
    assert len(B.k_images(prim)) == 48  # Oh
    placed = B.place_on_path(B.commensurate_kpoints(4), axis, B.k_images(prim))
    xs = np.array([p[1] for p in placed])
    tick = dict(zip(axis.labels, axis.X))  # last occurrence of each label
    for lab in ("Γ", "X", "W", "L"):
        assert np.abs(xs - tick[lab]).min() < 1e-9, lab
    i_k = axis.labels.index("K")
    assert np.abs(xs - axis.X[i_k]).min() > 1e-3  # K = (3/8, 3/8, 3/4) is not on the 4×4×4 grid
    assert np.abs(xs - 0.5 * axis.X[1]).min() < 1e-9  # Γ-X midpoint
    for ik, x, k in placed:  # each placed k is an image of its grid point
        kg = B.commensurate_kpoints(4)[ik]
        imgs = np.einsum("i,rij->rj", kg, B.k_images(prim)) - k
        assert (np.abs(imgs - np.round(imgs)).max(1) < 1e-9).any()


@pytest.fixture(scope="module")
def tblite_cu8():
    from fastqmd.reference.config import TBLiteConfig, build_engine

    return build_engine(TBLiteConfig(method="GFN1-xTB"))


def test_tblite_2x2x2_cu_unfolds_into_bloch_states(tblite_cu8, cu_model, tmp_path):
    prim = bulk("Cu", "fcc", a=3.61)
    u, mu, sample = B.reference_unfolded(tblite_cu8, prim, 2)
    assert np.abs(u.state_weights.sum(0) - 1).max() < WEIGHT_TOL  # Σ_k W_k = 1 for every state
    assert u.state_weights.min() > -WEIGHT_TOL
    assert np.abs(u.weight - 1).max() < TBLITE_WEIGHT_TOL  # a perfect crystal: every level is a Bloch state
    assert np.bincount(u.k_index, minlength=8).tolist() == [9] * 8
    np.testing.assert_allclose(np.sort(u.energy), np.sort(sample.eigenvalues[0]), atol=1e-3)
    assert np.isfinite(mu)
    # the whole comparison + figure with a random model
    metrics, arrays = B.evaluate_bands(cu_model, prim, 2, tblite_cu8, npoints=40)
    assert metrics["n_points"] > 0 and np.isfinite(metrics["mae_eV"])
    assert metrics["unfolding_weight_sum_error"] < WEIGHT_TOL
    B.plot_bands(arrays, tmp_path / "bands.png")
    assert (tmp_path / "bands.png").stat().st_size > 1000


class ShiftedModelBands:
    """An engine with k-points (`band_structure`, as GPAW's) whose bands are the model's own, shifted by δ."""

    name = "fake-kpath"

    def __init__(self, model, delta):
        self.model, self.delta, self.calls = model, delta, []

    def band_structure(self, prim, kpts_frac, mesh):
        self.calls.append((len(kpts_frac), tuple(mesh)))
        return B.model_bands(self.model, prim, kpts_frac) + self.delta, \
            B.model_fermi_level(self.model, prim, mesh) + self.delta


def test_kpath_reference_is_compared_at_every_path_k(cu_model, tmp_path):
    """An engine with `band_structure` is asked once for the whole path (and its mesh); the band MAE is the mean
    |Δε| over the window, so a rigid shift δ shows up as δ raw and 0 Fermi-aligned; the plot draws red lines."""
    prim = bulk("Cu", "fcc", a=3.61)
    eng = ShiftedModelBands(cu_model, 0.05)
    m, arr = B.evaluate_bands(cu_model, prim, 2, eng, npoints=30)
    assert eng.calls == [(30, (2, 2, 2))]
    assert m["reference"] == "k-path" and m["n_kpoints_on_path"] == 30
    assert m["mae_eV"] == pytest.approx(0.05, abs=1e-9)
    assert m["mae_fermi_aligned_eV"] < 1e-9
    B.plot_bands(arr, tmp_path / "bands.png")
    assert (tmp_path / "bands.png").stat().st_size > 1000
