"""Bloch sums: the 1D chain dispersion, Hermiticity from H(−R) = H(R)ᵀ, band folding, block assembly."""

import math

import numpy as np
import pytest
import torch

from fastqmd.electronic import (
    assemble_shift_blocks,
    band_structure,
    bloch_sum,
    gaussian_dos,
    hermiticity_error,
    integrated_dos,
    monkhorst_pack,
)

EIG_TOL = 1e-12  # eV


def _chain(eps0=-1.0, t=-0.7, t2=0.05):
    """One s orbital per cell, hoppings t (first) and t2 (second neighbours): ε(k) = ε0 + 2t cos 2πk + 2t2 cos 4πk."""
    shifts = torch.tensor([[0, 0, 0], [1, 0, 0], [-1, 0, 0], [2, 0, 0], [-2, 0, 0]])
    HR = torch.tensor([eps0, t, t, t2, t2], dtype=torch.float64)[:, None, None]
    return HR, shifts


def test_chain_dispersion_matches_cosine_band():
    HR, shifts = _chain()
    k = torch.linspace(-0.5, 0.5, 11, dtype=torch.float64)
    kpts = torch.stack([k, torch.zeros_like(k), torch.zeros_like(k)], dim=1)
    Hk = bloch_sum(HR, shifts, kpts)
    exact = -1.0 + 2 * -0.7 * torch.cos(2 * math.pi * k) + 2 * 0.05 * torch.cos(4 * math.pi * k)
    assert Hk.is_complex()
    assert torch.allclose(Hk[:, 0, 0].real, exact, atol=EIG_TOL, rtol=0)
    assert float(Hk.imag.abs().max()) < EIG_TOL
    assert np.allclose(band_structure(HR, shifts, kpts)[:, 0], exact.numpy(), atol=EIG_TOL)


def test_gamma_only_is_real_sum_of_images():
    HR, shifts = _random_hermitian_blocks()
    Hg = bloch_sum(HR, shifts, torch.zeros(1, 3, dtype=torch.float64))
    assert not Hg.is_complex()
    assert torch.allclose(Hg[0], HR.sum(0), atol=0)
    assert torch.allclose(Hg[0], Hg[0].T, atol=1e-14)


def _random_hermitian_blocks(nao=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    half = torch.tensor([[1, 0, 0], [0, 1, 0], [1, -1, 2]])
    blocks = torch.randn(len(half), nao, nao, generator=g, dtype=torch.float64)
    onsite = torch.randn(nao, nao, generator=g, dtype=torch.float64)
    HR = torch.cat([(onsite + onsite.T)[None], blocks, blocks.mT])  # H(−R) = H(R)ᵀ
    shifts = torch.cat([torch.zeros(1, 3, dtype=torch.long), half, -half])
    return HR, shifts


def test_hermitian_at_every_k_when_blocks_obey_the_convention():
    HR, shifts = _random_hermitian_blocks()
    assert hermiticity_error(HR, shifts) == 0.0
    kpts, _ = monkhorst_pack((3, 2, 2), gamma_centered=False)
    Hk = bloch_sum(HR, shifts, kpts)
    assert float((Hk - Hk.mH).abs().max()) < 1e-14
    bad = HR.clone()
    bad[1, 0, 1] += 0.1
    assert hermiticity_error(bad, shifts) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="missing"):
        hermiticity_error(HR[:2], shifts[:2])


def test_band_folding_two_atom_supercell():
    """A 2-cell supercell at K has the primitive bands at k = K/2 and K/2 + 1/2 (exact folding)."""
    HR, shifts = _chain(t2=0.0)
    # supercell blocks: atoms 0, 1 (primitive cells 0, 1); supercell shift S couples primitive shift 2S + j − i
    sc_shifts = torch.tensor([[0, 0, 0], [1, 0, 0], [-1, 0, 0]])
    H_sc = torch.zeros(3, 2, 2, dtype=torch.float64)
    prim = {int(s[0]): float(h) for s, h in zip(shifts, HR[:, 0, 0])}
    for n, S in enumerate(sc_shifts[:, 0].tolist()):
        for i in range(2):
            for j in range(2):
                H_sc[n, i, j] = prim.get(2 * S + j - i, 0.0)
    for K in [0.0, 0.2, 0.5]:
        e_sc = band_structure(H_sc, sc_shifts, torch.tensor([[K, 0, 0]], dtype=torch.float64))[0]
        kp = torch.tensor([[K / 2, 0, 0], [K / 2 + 0.5, 0, 0]], dtype=torch.float64)
        e_prim = np.sort(band_structure(HR, shifts, kp)[:, 0])
        assert np.allclose(e_sc, e_prim, atol=EIG_TOL)


def test_assemble_shift_blocks_scatters_and_backpropagates():
    offsets = torch.tensor([0, 1, 4])  # atom 0: s (1 orbital), atom 1: p (3 orbitals)
    b01 = torch.randn(1, 3, dtype=torch.float64, requires_grad=True)
    b11 = torch.randn(3, 3, dtype=torch.float64)
    blocks = [b01, b01.mT, b11]
    HR, uniq = assemble_shift_blocks(
        blocks, torch.tensor([0, 1, 1]), torch.tensor([1, 0, 1]), torch.tensor([[0, 0, 1], [0, 0, -1], [0, 0, 1]]), offsets
    )
    assert uniq.tolist() == [[0, 0, -1], [0, 0, 1]]
    assert torch.equal(HR[1, 0:1, 1:4], b01.detach()) and torch.equal(HR[0, 1:4, 0:1], b01.detach().T)
    assert torch.equal(HR[1, 1:4, 1:4], b11)
    HR.sum().backward()
    assert torch.equal(b01.grad, 2 * torch.ones_like(b01))


def test_monkhorst_pack_mesh():
    k, w = monkhorst_pack((2, 3, 1))
    assert k.shape == (6, 3) and abs(float(w.sum()) - 1) < 1e-15
    assert [0.0, 0.0, 0.0] in k.tolist()
    k2, _ = monkhorst_pack((2, 2, 2), gamma_centered=False)
    assert torch.allclose(k2.abs(), torch.full_like(k2, 0.25))


def test_gaussian_dos_normalization_and_integral():
    eps = np.array([[-1.0, 0.0, 0.0, 2.0], [-0.5, 0.1, 0.3, 1.5]])
    w = np.array([0.25, 0.75])
    E = np.linspace(-4, 5, 4001)
    g = gaussian_dos(eps, E, sigma=0.1, kweights=w)
    assert abs(np.trapezoid(g, E) - 2 * 4) < 1e-6  # g_s × bands
    N = integrated_dos(eps, E, sigma=0.1, kweights=w)
    cumulative = np.concatenate([[0], np.cumsum(0.5 * (g[1:] + g[:-1]) * np.diff(E))])
    assert np.allclose(N, cumulative, atol=1e-5)
    # a single state at 0 gives the normal density at E = 0
    assert gaussian_dos(np.array([0.0]), np.array([0.0]), 0.2, spin_factor=1.0)[0] == pytest.approx(1 / (0.2 * np.sqrt(2 * np.pi)))


def test_bloch_sum_is_differentiable_in_the_blocks():
    HR, shifts = _random_hermitian_blocks(nao=2)
    kpts = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.0, 0.25]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: bloch_sum(x, shifts, kpts), (HR.requires_grad_(),))


def test_band_structure_with_overlap_solves_the_generalized_problem():
    HR, shifts = _random_hermitian_blocks(nao=3, seed=1)
    SR = torch.zeros_like(HR)
    SR[0] = torch.eye(3, dtype=torch.float64)
    assert shifts[1].tolist() == [1, 0, 0] and shifts[4].tolist() == [-1, 0, 0]
    SR[1, 0, 0] = SR[4, 0, 0] = 0.1  # s-like overlap with the (±1, 0, 0) neighbours: S(−R) = S(R)ᵀ
    kpts = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.1, 0.0]], dtype=torch.float64)
    eps = band_structure(HR, shifts, kpts, SR)
    for k, e in zip(kpts, eps):
        Hk, Sk = bloch_sum(HR, shifts, k[None])[0], bloch_sum(SR, shifts, k[None])[0]
        ref = np.sort(np.linalg.eigvals(np.linalg.solve(Sk.numpy(), Hk.numpy())).real)
        assert np.allclose(e, ref, atol=1e-10)
