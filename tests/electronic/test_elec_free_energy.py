"""The Mermin free energy A(H, S): gradients ρ and −W, exact double backward, finite at exact degeneracies.

Physics checks: ∂A/∂H = w ρ and ∂A/∂S = −w W against finite differences; gradcheck/gradgradcheck on random
real and complex k-point batches and on spectra that are degenerate by construction; forces and force constants
of position-dependent tight-binding models (a square molecule and a dimerizable chain on a k mesh, both
degenerate at the Fermi level) against central differences; the force-loss gradient w.r.t. model parameters;
plain autograd through torch.linalg.eigh failing at the same points.
"""

import math

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from fastqmd.electronic import (
    OverlapNotPositiveDefiniteError,
    bloch_sum,
    density_matrices,
    free_energy,
    monkhorst_pack,
    solve_spectrum,
)
from fastqmd.electronic.occupations import fermi_level
from fastqmd.testing import check_gradient, directional_difference

FD_RTOL = 1e-6  # finite-difference agreement, relative to the largest component
DEGENERACY_TOL = 1e-12  # eigenvalue splitting that counts as exactly degenerate
F64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def random_hermitian(nk, n, complex_, seed=0, scale=1.0):
    dtype = torch.complex128 if complex_ else F64
    X = torch.randn(nk, n, n, generator=_gen(seed), dtype=dtype)
    return scale * 0.5 * (X + X.mH)


def random_overlap(nk, n, complex_, seed=1):
    dtype = torch.complex128 if complex_ else F64
    M = torch.eye(n, dtype=dtype) + 0.3 * torch.randn(nk, n, n, generator=_gen(seed), dtype=dtype)
    return 0.5 * (torch.eye(n, dtype=dtype) + M @ M.mH)  # positive definite by construction


def degenerate_pair(nk, complex_, seed=2):
    """H = diag(B, B), S = diag(T, T) per k: every level exactly twice degenerate (two decoupled copies)."""
    B = random_hermitian(nk, 3, complex_, seed)
    T = random_overlap(nk, 3, complex_, seed + 1)
    H = torch.stack([torch.block_diag(b, b) for b in B])
    S = torch.stack([torch.block_diag(t, t) for t in T])
    return H, S


def rel_err(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


# ---------------------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("complex_", [False, True])
def test_gradient_is_rho_and_minus_W_against_finite_differences(complex_):
    nk, n, Ne, kT = 3, 5, 4.6, 0.2
    H, S = random_hermitian(nk, n, complex_), random_overlap(nk, n, complex_)
    w = torch.tensor([0.2, 0.5, 0.3], dtype=F64)
    H.requires_grad_(), S.requires_grad_()
    gH, gS = torch.autograd.grad(free_energy(H, S, w, Ne, kT), (H, S))
    rho, W = density_matrices(H.detach(), S.detach(), w, Ne, kT)
    assert torch.allclose(gH, w[:, None, None] * rho, atol=1e-13)
    assert torch.allclose(gS, -w[:, None, None] * W, atol=1e-13)
    # Σ_k w_k Tr[ρ_k S_k] = N_e and Tr[W] relations
    assert abs(float(torch.einsum("k,kij,kji->", w.to(rho.dtype), rho, S.detach()).real) - Ne) < 1e-12
    # directional derivatives: dA = Σ_k Re Tr[grad_k^† dH_k] for Hermitian directions
    PH, PS = random_hermitian(nk, n, complex_, seed=7), random_hermitian(nk, n, complex_, seed=8, scale=0.1)
    A_H = lambda x: free_energy(x, S.detach(), w, Ne, kT)
    A_S = lambda x: free_energy(H.detach(), x, w, Ne, kT)
    assert rel_err((gH.conj() * PH).sum().real, directional_difference(A_H, H.detach(), PH)) < FD_RTOL
    assert rel_err((gS.conj() * PS).sum().real, directional_difference(A_S, S.detach(), PS)) < FD_RTOL


@pytest.mark.parametrize("complex_", [False, True])
def test_gradcheck_and_gradgradcheck_random_k_batch(complex_):
    H, S = random_hermitian(2, 4, complex_), random_overlap(2, 4, complex_)
    w = torch.tensor([0.4, 0.6], dtype=F64)
    fn = lambda H, S: free_energy(H, S, w, 3.0, 0.3)
    args = (H.requires_grad_(), S.requires_grad_())
    assert gradcheck(fn, args)
    assert gradgradcheck(fn, args)


@pytest.mark.parametrize("complex_", [False, True])
def test_gradgradcheck_at_exact_degeneracy_with_fermi_level_inside_the_degenerate_pair(complex_):
    H, S = degenerate_pair(2, complex_)
    w = torch.tensor([0.5, 0.5], dtype=F64)
    kT, Ne = 0.05, 2.0  # 2 electrons in the lowest doubly degenerate level of (4 states): half filled
    spec = solve_spectrum(H, S, w, Ne, kT)
    eps = spec.eigenvalues
    assert float((eps[:, 1] - eps[:, 0]).abs().max()) < DEGENERACY_TOL
    fn = lambda H, S: free_energy(H, S, w, Ne, kT)
    args = (H.requires_grad_(), S.requires_grad_())
    assert gradcheck(fn, args)
    assert gradgradcheck(fn, args)


def _hvp(fn, x, direction):
    x = x.detach().requires_grad_()
    (g,) = torch.autograd.grad(fn(x), x, create_graph=True)
    (hv,) = torch.autograd.grad((g.conj() * direction).sum().real, x)
    return g.detach(), hv


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("kT", [0.02, 0.5])
def test_second_derivative_at_degeneracy_matches_finite_differences(complex_, kT):
    H, S = degenerate_pair(2, complex_, seed=11)
    w = torch.tensor([0.3, 0.7], dtype=F64)
    Ne = 2.0
    P = random_hermitian(2, 6, complex_, seed=12)
    for wrt in ("H", "S"):
        fn = (lambda x: free_energy(x, S, w, Ne, kT)) if wrt == "H" else (lambda x: free_energy(H, x, w, Ne, kT))
        x = H if wrt == "H" else S
        d = P if wrt == "H" else 0.05 * P
        g, hv = _hvp(fn, x, d)
        assert bool(torch.isfinite(hv).all())

        def grad_at(y):
            y = y.detach().requires_grad_()
            return torch.autograd.grad(fn(y), y)[0]

        fd = directional_difference(grad_at, x, d, h=1e-5)
        assert rel_err(hv, fd) < FD_RTOL, wrt


def _naive_free_energy(H, S, w, Ne, kT, g=2.0):
    """Mermin free energy by plain autograd through torch.linalg.eigh, in the grand-potential form.

    μ carries its exact first derivative through one Newton step at the converged μ0:
    μ = μ0 − (N(ε, μ0) − N_e)/∂_μN, so dμ = Σ f' dε / Σ f' (independent of free_energy.py's implementation).
    """
    L = torch.linalg.cholesky(S)
    Hp = torch.linalg.solve_triangular(L, torch.linalg.solve_triangular(L, H, upper=False).mH, upper=False)
    eps, _ = torch.linalg.eigh(Hp)
    mu0 = fermi_level(eps.detach(), w, Ne, kT, g)
    x = torch.sigmoid(-(eps - mu0) / kT)
    count = g * (w[:, None] * x).sum()
    dN_dmu = (g * w[:, None] * x * (1 - x) / kT).sum().detach()
    mu = mu0 - (count - Ne) / dN_dmu
    omega = -kT * g * (w[:, None] * torch.nn.functional.softplus(-(eps - mu) / kT)).sum()
    return omega + mu * Ne  # stationary in μ, equals A at the converged μ


def test_plain_eigh_autograd_fails_at_degeneracy_where_the_custom_function_does_not():
    H, S = degenerate_pair(1, complex_=False, seed=3)
    w = torch.ones(1, dtype=F64)
    Ne, kT = 2.0, 0.05
    P = random_hermitian(1, 6, False, seed=4)
    assert abs(float(_naive_free_energy(H, S, w, Ne, kT) - free_energy(H, S, w, Ne, kT))) < 1e-12
    g_naive, hv_naive = _hvp(lambda x: _naive_free_energy(x, S, w, Ne, kT), H, P)
    g, hv = _hvp(lambda x: free_energy(x, S, w, Ne, kT), H, P)
    assert torch.allclose(g_naive, g, atol=1e-12)  # first derivatives of eigenvalues are fine
    assert not bool(torch.isfinite(hv_naive).all())  # second derivatives through eigenvectors are not
    assert bool(torch.isfinite(hv).all())
    # away from degeneracy both agree (the custom double backward is the same derivative)
    Hs = H + 0.3 * torch.diag(torch.arange(6, dtype=F64))
    _, hv_naive = _hvp(lambda x: _naive_free_energy(x, S, w, Ne, kT), Hs, P)
    _, hv = _hvp(lambda x: free_energy(x, S, w, Ne, kT), Hs, P)
    assert rel_err(hv_naive, hv) < 1e-8


# ---------------------------------------------------------------------------------------------- limits


def test_free_energy_identities():
    H, S = random_hermitian(2, 5, True), random_overlap(2, 5, True)
    w = torch.tensor([0.5, 0.5], dtype=F64)
    Ne, kT = 3.3, 0.4
    spec = solve_spectrum(H, S, w, Ne, kT)
    A = free_energy(H, S, w, Ne, kT)
    assert abs(float(A - spec.free_energy)) < 1e-14
    assert abs(float(A - _naive_free_energy(H, S, w, Ne, kT))) < 1e-12  # A = μN_e − kT g Σ w ln(1 + e^{−x})
    assert abs(float(spec.band_energy - kT * spec.entropy - A)) < 1e-13
    # orthonormal basis: S = None equals S = 1
    A0 = free_energy(H, None, w, Ne, kT)
    A1 = free_energy(H, torch.eye(5, dtype=H.dtype).expand(2, 5, 5), w, Ne, kT)
    assert abs(float(A0 - A1)) < 1e-13
    # the sink hands out the forward's own eigensolution (no second eigensolve for per-frame ε)
    for mode in ("mermin", "band"):
        sink = {}
        free_energy(H, S, w, Ne, kT, mode=mode, sink=sink)
        assert torch.allclose(sink["spectrum"].eigenvalues, spec.eigenvalues, rtol=0, atol=1e-13)
        assert abs(float(sink["spectrum"].fermi_level - spec.fermi_level)) < 1e-13


def test_zero_temperature_limit_gapped():
    split = torch.diag(torch.tensor([-3.0, -3.0, -3.0, 3.0, 3.0, 3.0], dtype=F64))
    H, S = split + 0.3 * random_hermitian(2, 6, False, seed=5), random_overlap(2, 6, False)
    w = torch.tensor([0.5, 0.5], dtype=F64)
    Ne = 6.0  # 3 of 6 levels filled, gap of several eV
    A0 = free_energy(H, S, w, Ne, 0.0)
    for kT, tol in [(5e-2, 1e-10), (1e-2, 1e-12)]:
        assert abs(float(free_energy(H, S, w, Ne, kT) - A0)) < tol
    spec = solve_spectrum(H, S, w, Ne, 0.0)
    assert abs(float(A0 - spec.band_energy)) < 1e-14 and float(spec.entropy) == 0.0
    # at kT = 0 the gradient and the (gapped) second derivative are still exact
    P = random_hermitian(2, 6, False, seed=6)
    g, hv = _hvp(lambda x: free_energy(x, S, w, Ne, 0.0), H, P)
    fd1 = directional_difference(lambda x: free_energy(x, S, w, Ne, 0.0), H, P)
    assert rel_err((g * P).sum(), fd1) < FD_RTOL

    def grad_at(y):
        y = y.detach().requires_grad_()
        return torch.autograd.grad(free_energy(y, S, w, Ne, 0.0), y)[0]

    assert rel_err(hv, directional_difference(grad_at, H, P)) < FD_RTOL


def test_band_energy_gradient_differs_from_mermin_and_matches_its_own_finite_differences():
    """The study's E_band = Σ f ε: its gradient includes the occupation response, unlike Ω's."""
    H, S = random_hermitian(1, 4, False, seed=9), random_overlap(1, 4, False, seed=10)
    w = torch.ones(1, dtype=F64)
    Ne, kT = 2.0, 0.05
    P = random_hermitian(1, 4, False, seed=13)
    Hg = H.clone().requires_grad_()
    (g_band,) = torch.autograd.grad(free_energy(Hg, S, w, Ne, kT, mode="band"), Hg)
    (g_merm,) = torch.autograd.grad(free_energy(Hg, S, w, Ne, kT), Hg)
    fd_band = directional_difference(lambda x: free_energy(x, S, w, Ne, kT, mode="band"), H, P)
    fd_merm = directional_difference(lambda x: free_energy(x, S, w, Ne, kT), H, P)
    assert rel_err((g_band * P).sum(), fd_band) < FD_RTOL
    assert rel_err((g_merm * P).sum(), fd_merm) < FD_RTOL
    assert abs(float(fd_band - fd_merm)) > 1e3 * 1e-9  # the two derivatives really differ
    # the band mode provides first derivatives only, and says so
    Hg = H.clone().requires_grad_()
    (g,) = torch.autograd.grad(free_energy(Hg, S, w, Ne, kT, mode="band"), Hg, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(g.sum(), Hg)


def test_non_positive_definite_overlap_is_a_clear_error():
    H = random_hermitian(2, 3, False)
    S = torch.eye(3, dtype=F64).repeat(2, 1, 1)
    S[1, 0, 1] = S[1, 1, 0] = 1.2  # eigenvalue −0.2
    with pytest.raises(OverlapNotPositiveDefiniteError, match="k-point 1 is not positive definite"):
        free_energy(H, S, torch.tensor([0.5, 0.5], dtype=F64), 2.0, 0.1)


# ---------------------------------------------------------------------------------------------- forces


def tb_blocks(R, cell, shifts, theta):
    """s-orbital tight binding: H_ij(n) = −t fc(r) e^{−(r−r0)/λ}, S_ij(n) = 0.2 fc(r) e^{−(r−r0)/λ_s}, on-site ε0, 1.

    fc is a smooth cosine cutoff at 9 Å, inside the shift range, so that the perfect chain keeps its symmetry.

    R [N, 3] Å, cell [3, 3] rows, shifts [n_s, 3] integer, theta = (t, λ). Returns HR, SR [n_s, N, N].
    """
    t, lam = theta
    d = R[None, None, :, :] + (shifts.to(R.dtype) @ cell)[:, None, None, :] - R[None, :, None, :]  # [n_s, N, N, 3]
    self_ = torch.zeros(d.shape[:-1], dtype=torch.bool)
    zero = int(((shifts == 0).all(dim=1)).nonzero()[0])
    self_[zero] = torch.eye(R.shape[0], dtype=torch.bool)
    r = torch.sqrt(torch.where(self_, torch.ones_like(d[..., 0]), (d * d).sum(-1)))  # no sqrt(0) in the graph
    fc = torch.where(r < 9.0, 0.5 * (torch.cos(torch.pi * r / 9.0) + 1), torch.zeros_like(r))  # smooth cutoff 9 Å
    HR = torch.where(self_, torch.full_like(r, -0.5), -t * fc * torch.exp(-(r - 2.5) / lam))
    SR = torch.where(self_, torch.ones_like(r), 0.2 * fc * torch.exp(-(r - 2.5) / 0.8))
    return HR, SR


def tb_energy(R, cell, shifts, kpts, w, theta, Ne, kT):
    HR, SR = tb_blocks(R, cell, shifts, theta)
    return free_energy(bloch_sum(HR, shifts, kpts), bloch_sum(SR, shifts, kpts), w, Ne, kT)


def _square():
    a = 2.6
    R = torch.tensor([[0, 0, 0], [a, 0, 0], [a, a, 0], [0, a, 0]], dtype=F64)
    return R, torch.zeros(3, 3, dtype=F64), torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=F64), torch.ones(1, dtype=F64)


def _zigzag_chain():
    """Zigzag chain, two equivalent atoms per cell related by a glide: the bands stick together (exact
    degeneracy) at the zone boundary K = 1/2, which at half filling is partially occupied. The zigzag
    amplitude is off equilibrium, so the forces are not zero by symmetry."""
    a = 5.0
    R = torch.tensor([[0.0, 0.0, 0.0], [a / 2, 1.2, 0.0]], dtype=F64)
    cell = torch.diag(torch.tensor([a, 12.0, 12.0], dtype=F64))
    shifts = torch.tensor([[n, 0, 0] for n in range(-2, 3)])
    kpts, w = monkhorst_pack((4, 1, 1))  # includes Γ and K = 1/2
    return R, cell, shifts, kpts, w


SYSTEMS = {"square": (_square, 4.0), "zigzag_chain": (_zigzag_chain, 2.0)}  # N_e: half-filled degenerate level at μ


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_forces_and_force_constants_at_symmetric_degenerate_geometry(name):
    build, Ne = SYSTEMS[name]
    R, cell, shifts, kpts, w = build()
    theta, kT = (torch.tensor(1.0, dtype=F64), torch.tensor(0.9, dtype=F64)), 0.05
    HR, SR = tb_blocks(R, cell, shifts, theta)
    spec = solve_spectrum(bloch_sum(HR, shifts, kpts), bloch_sum(SR, shifts, kpts), w, Ne, kT)
    gaps = (spec.eigenvalues[:, None, :] - spec.eigenvalues[:, :, None]).abs() + torch.eye(spec.eigenvalues.shape[1])
    assert float(gaps.min()) < DEGENERACY_TOL  # exactly degenerate ...
    degenerate = (gaps < DEGENERACY_TOL).any(dim=-1)  # [nk, n] states with a degenerate partner
    partial = (spec.occupations > 0.2) & (spec.occupations < 1.8)
    assert bool((degenerate & partial).any())  # ... and partially occupied (at the Fermi level)
    E = lambda x: tb_energy(x, cell, shifts, kpts, w, theta, Ne, kT)
    Rg = R.clone().requires_grad_()
    (g,) = torch.autograd.grad(E(Rg), Rg, create_graph=True)
    F = -g
    assert float(F.detach().abs().max()) > 1e-3  # a breathing force: the test is not trivially zero
    D = torch.randn(R.shape, generator=_gen(20), dtype=F64)
    fd_force = directional_difference(E, R, D)
    assert rel_err((g * D).sum(), fd_force) < FD_RTOL
    assert float(F.detach().sum(0).abs().max()) < 1e-12  # Newton's third law
    (hess_D,) = torch.autograd.grad((g * D).sum(), Rg)  # force constants along D, via the double backward

    def grad_at(x):
        x = x.detach().requires_grad_()
        return torch.autograd.grad(E(x), x)[0]

    assert bool(torch.isfinite(hess_D).all())
    assert rel_err(hess_D, directional_difference(grad_at, R, D)) < FD_RTOL


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_force_loss_gradient_is_finite_and_exact_at_degeneracy(name):
    """L(θ) = Σ |F(R; θ) − F_ref|²: ∂L/∂θ needs ∂²A/∂R∂θ (the force loss's double backward)."""
    build, Ne = SYSTEMS[name]
    R, cell, shifts, kpts, w = build()
    kT = 0.05
    F_ref = torch.randn(R.shape, generator=_gen(21), dtype=F64)

    def loss(t, lam, create_graph):
        Rg = R.clone().requires_grad_()
        (g,) = torch.autograd.grad(tb_energy(Rg, cell, shifts, kpts, w, (t, lam), Ne, kT), Rg, create_graph=create_graph)
        return ((-g - F_ref) ** 2).sum()

    t, lam = torch.tensor(1.0, dtype=F64, requires_grad=True), torch.tensor(0.9, dtype=F64, requires_grad=True)
    dL = torch.autograd.grad(loss(t, lam, True), (t, lam))
    assert all(math.isfinite(float(x)) for x in dL)
    check_gradient(lambda p: loss(p[0], p[1], False), torch.stack([t, lam]).detach(), torch.stack(dL), h=1e-5,
                   atol=0.0, rtol=FD_RTOL)


def test_orthonormal_basis_zero_temperature_and_mixed_dtypes_gradgradcheck():
    w = torch.tensor([0.5, 0.5], dtype=F64)
    H = random_hermitian(2, 4, True, seed=30).requires_grad_()
    assert gradgradcheck(lambda h: free_energy(h, None, w, 3.0, 0.1), (H,))  # S = None
    assert gradgradcheck(lambda h: free_energy(h, None, w, 3.0, 0.0), (H,))  # kT = 0, non-degenerate
    Hr = random_hermitian(1, 3, False, seed=31).requires_grad_()  # real H with a complex S
    Sc = torch.eye(3, dtype=torch.complex128)[None].clone()
    Sc[0, 0, 1], Sc[0, 1, 0] = 0.1j, -0.1j
    one = torch.ones(1, dtype=F64)
    assert gradgradcheck(lambda h, s: free_energy(h, s, one, 2.0, 0.1), (Hr, Sc.requires_grad_()))


def test_non_finite_input_is_rejected():
    H = random_hermitian(1, 3, False)
    H[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        free_energy(H, None, torch.ones(1, dtype=F64), 2.0, 0.1)
