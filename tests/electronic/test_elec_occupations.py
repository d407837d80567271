"""Fermi–Dirac occupations: μ conserves the electron count, the kT → 0 limit is aufbau, the entropy is exact."""

import pytest
import torch

from fastqmd.electronic.free_energy import fermi_divided_differences
from fastqmd.electronic.occupations import (
    aufbau_occupations,
    electron_count,
    fermi_dirac,
    fermi_dirac_derivative,
    fermi_entropy,
    fermi_level,
    occupations,
)
from fastqmd.testing import check_gradient

ELECTRON_COUNT_TOL = 1e-10  # electrons
KT_ZERO_TOL = 1e-12  # occupation difference FD(kT → 0) vs aufbau, gapped spectrum
DIVIDED_DIFF_RTOL = 1e-10


def _spectrum(nk=4, nb=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    eps = torch.sort(3.0 * torch.randn(nk, nb, generator=g, dtype=torch.float64), dim=-1).values
    w = torch.rand(nk, generator=g, dtype=torch.float64) + 0.1
    return eps, w / w.sum()


@pytest.mark.parametrize("kT", [1e-4, 1e-2, 0.1, 1.0, 5.0])
@pytest.mark.parametrize("n_electrons", [0.5, 3.0, 7.0, 13.3])
def test_fermi_level_conserves_electron_count(kT, n_electrons):
    eps, w = _spectrum()
    f, mu = occupations(eps, w, n_electrons, kT, spin_factor=2.0)
    assert abs(float(electron_count(f, w)) - n_electrons) < ELECTRON_COUNT_TOL
    assert float(f.min()) >= 0.0 and float(f.max()) <= 2.0


def test_spin_factor_one_counts_electrons():
    eps, w = _spectrum()
    f, _ = occupations(eps, w, 4.2, 0.05, spin_factor=1.0)
    assert abs(float(electron_count(f, w)) - 4.2) < ELECTRON_COUNT_TOL
    assert float(f.max()) <= 1.0


def test_small_kT_tends_to_aufbau_for_a_gapped_spectrum():
    eps = torch.tensor([[-3.0, -1.0, 0.5, 2.0], [-2.5, -0.8, 0.7, 2.2]], dtype=torch.float64)  # gap ≈ 1.3 eV
    w = torch.tensor([0.25, 0.75], dtype=torch.float64)
    f0, mu0 = aufbau_occupations(eps, w, 4.0)
    assert torch.equal(f0, torch.tensor([[2.0, 2.0, 0.0, 0.0]] * 2, dtype=torch.float64))
    assert abs(float(mu0) - 0.5 * (-0.8 + 0.5)) < 1e-14  # mid-gap
    f, mu = occupations(eps, w, 4.0, kT=0.01)
    assert float((f - f0).abs().max()) < KT_ZERO_TOL
    assert -0.8 < float(mu) < 0.5


def test_aufbau_shares_a_partially_filled_degenerate_level_equally():
    eps = torch.tensor([[-1.0, 0.0, 0.0, 0.0, 2.0]], dtype=torch.float64)  # triply degenerate level at 0
    f, mu = aufbau_occupations(eps, torch.ones(1, dtype=torch.float64), 3.0)
    assert torch.allclose(f, torch.tensor([[2.0, 1 / 3, 1 / 3, 1 / 3, 0.0]], dtype=torch.float64), atol=1e-14)
    assert float(mu) == 0.0
    # the kT → 0⁺ limit of Fermi–Dirac gives the same sharing
    f_small, _ = occupations(eps, torch.ones(1, dtype=torch.float64), 3.0, kT=1e-3)
    assert float((f_small - f).abs().max()) < 1e-10


def test_entropy_matches_the_direct_formula():
    eps, w = _spectrum()
    kT, g = 0.3, 2.0
    mu = fermi_level(eps, w, 6.0, kT, g)
    x = fermi_dirac(eps, mu, kT, g) / g
    direct = -g * (w[:, None] * (torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x))).sum()
    assert abs(float(fermi_entropy(eps, mu, kT, w, g) - direct)) < 1e-12
    # far from μ the stable form stays finite and → 0
    assert float(fermi_entropy(torch.tensor([[-1e4, 1e4]], dtype=torch.float64), 0.0, 0.01, torch.ones(1))) == 0.0


def test_fermi_derivative_matches_finite_difference():
    eps, _ = _spectrum()
    kT = 0.2  # f is elementwise, so ∂(Σ f)/∂ε_i = f'(ε_i)
    check_gradient(lambda e: fermi_dirac(e, 0.1, kT).sum(), eps, fermi_dirac_derivative(eps, 0.1, kT), h=1e-6,
                   atol=1e-8, rtol=1e-5)  # torch.allclose defaults, as before


def test_divided_differences_exact_and_continuous_through_degeneracy():
    kT, mu = 0.1, 0.05
    eps = torch.tensor([[-0.3, 0.0, 0.0, 1e-9, 0.02, 0.5, 80.0]], dtype=torch.float64)
    gamma = fermi_divided_differences(eps, torch.tensor(mu, dtype=torch.float64), kT)
    f = fermi_dirac(eps, mu, kT)[0]
    fp = fermi_dirac_derivative(eps, mu, kT)[0]
    assert torch.allclose(torch.diagonal(gamma[0]), fp, rtol=DIVIDED_DIFF_RTOL, atol=0)
    # well separated pairs: the plain quotient
    assert abs(float(gamma[0, 0, 5]) - float((f[0] - f[5]) / (eps[0, 0] - eps[0, 5]))) < 1e-14
    # near pair (x_i − x_j = 0.2 < 1 uses the sinhc form): agrees with the quotient to its rounding error
    assert abs(float(gamma[0, 1, 4]) - float((f[1] - f[4]) / (eps[0, 1] - eps[0, 4]))) < 1e-12
    # a 1e-9 split is the derivative to O(Δε)
    assert abs(float(gamma[0, 1, 3]) - float(fp[1])) < 1e-7
    assert bool(torch.isfinite(gamma).all())
    assert torch.allclose(gamma[0], gamma[0].T, rtol=0, atol=0)


def test_bad_inputs_are_rejected():
    eps, w = _spectrum()
    with pytest.raises(ValueError, match="outside"):
        fermi_level(eps, w, 100.0, 0.1)
    with pytest.raises(ValueError, match="sum to 1"):
        fermi_level(eps, 2 * w, 2.0, 0.1)
