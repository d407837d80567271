"""The Mermin free energy A(H, S) with exact first and second derivatives, finite at degeneracies.

For k-point blocks H_k, S_k (Hermitian, [nk, n, n], real at Γ-only or complex) with weights w_k, solve
H_k C_k = S_k C_k ε_k (C^† S C = 1), occupy with Fermi–Dirac at temperature kT with μ fixed by the electron
count N_e = Σ_k w_k Σ_n f_nk (spin factor g inside f), and return

    A = Σ_k w_k Σ_n f_nk ε_nk − kT S_el                                         (Mermin free energy)

Because A is stationary in f at fixed N_e, no derivative of f or μ appears in its gradient:

    dA = Σ_k w_k ( Tr[ρ_k dH_k] − Tr[W_k dS_k] ),   ρ_k = C f C^†,   W_k = C (f ε) C^†.

`free_energy` is a custom autograd.Function whose backward returns exactly w_k ρ_k and −w_k W_k (torch's
complex-gradient convention: for a real loss the gradient w.r.t. a complex Hermitian H_k is ρ_k itself). The
backward is itself differentiable (the force loss needs ∂/∂θ of forces −∂A/∂R): in the orthonormal basis
H' = L⁻¹ H L⁻† (Cholesky S = L L^†) the density matrix ρ' = U f(ε) U^† is a matrix function of H', whose
derivative is the Daleckii–Krein formula with the divided differences of the Fermi function

    dρ' = U [Γ ∘ (U^† dH' U)] U^† − U diag(f') U^† dμ,   Γ_ij = (f_i − f_j)/(ε_i − ε_j)   (Γ_ii = f'_i),
    dμ = Σ_k w_k Σ_n f'_nk dε_nk / Σ_k w_k Σ_n f'_nk                               (fixed electron count),

and ρ = L⁻† ρ' L⁻¹, W = L⁻† (ρ'H' + H'ρ')/2 L⁻¹ (since W' = U fε U^† = ρ'H'). Γ is evaluated in closed form,
Γ_ij = −(g/kT)·sinhc((x_i − x_j)/2) / (4 cosh(x_i/2) cosh(x_j/2)), x = (ε − μ)/kT, which has no cancellation
and equals f'(ε_i) at exact degeneracy, so second derivatives are finite and exact for degenerate spectra
(perfect crystals, symmetric molecules, high-symmetry k). Autograd through `torch.linalg.eigh` instead divides
by ε_i − ε_j and returns inf/NaN there (tests/electronic/test_elec_free_energy.py shows it).

The study's band energy E_band = Σ_k w_k Σ_n f_nk ε_nk (mode="band") is kept for comparison. It is not
stationary, so its gradient carries the occupation response: ∂E_band/∂ε_n = w(f_n + f'_n (ε_n − ε̄)),
ε̄ = Σ w f' ε / Σ w f'; i.e. ∂E_band/∂H = Σ C f̃ C^† with f̃ = f + f'(ε − ε̄). The difference comes from states
within a few kT of μ. Measured on the 4-level toy of tests/electronic/test_elec_free_energy.py
(test_band_energy_gradient_differs_..., HOMO–LUMO gap 0.39 eV, N_e = 2, one direction P): dΩ/dP = −1.705765 vs
dE_band/dP = −1.713690 at kT = 0.05 (0.46 %), −1.38596 vs −1.95481 at kT = 0.2 (41 %), equal to 1e-16 at
kT = 0.01. (The science note's 0.0581457 vs 0.0581602 toy is not specified well enough to be rebuilt.)
Only first derivatives are implemented for mode="band"; a double backward raises a RuntimeError.

Energies (H, ε, μ, kT, A) share one unit, eV at fastqmd's public boundaries. S is dimensionless.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from fastqmd.electronic.occupations import fermi_dirac_derivative, fermi_entropy, occupations
from fastqmd.errors import CalculationFailed


class OverlapNotPositiveDefiniteError(CalculationFailed, ValueError):
    """The overlap matrix S(k) is not positive definite (e.g. a learned S that lost its metric property).

    A `CalculationFailed` (valid input, failed calculation: CLI exit 3); also a ValueError, as it always was."""


# |x_i − x_j| (in units of kT) below which Γ uses the cancellation-free sinhc form
_SINHC_SWITCH = 1.0


@dataclass(frozen=True)
class Spectrum:
    """Solution of the generalized eigenproblem with occupations (all detached). Shapes: nk, n orbitals."""

    eigenvalues: Tensor  # [nk, n] ascending
    coefficients: Tensor  # [nk, n, n] C with C^† S C = 1, columns are states
    occupations: Tensor  # [nk, n] f, spin factor included
    fermi_level: Tensor  # 0-d μ
    entropy: Tensor  # 0-d S_el (dimensionless), 0 at kT = 0
    free_energy: Tensor  # 0-d A = Σ w f ε − kT S_el
    band_energy: Tensor  # 0-d Σ w f ε
    cholesky: Tensor | None = None  # [nk, n, n] lower L, S = L L^† (None: orthonormal basis), reused by the backward


def hermitize(A: Tensor) -> Tensor:
    """(A + A^†)/2 on the last two axes: the Hermitian part that the energy actually depends on."""
    return 0.5 * (A + A.mH)


def cholesky_overlap(S: Tensor) -> Tensor:
    """Lower Cholesky factor L of S = L L^† per k-point [nk, n, n]; raises OverlapNotPositiveDefiniteError."""
    L, info = torch.linalg.cholesky_ex(S)
    if bool((info != 0).any()):
        k = int(torch.nonzero(info)[0])
        lam = float(torch.linalg.eigvalsh(S[k].detach())[0])
        raise OverlapNotPositiveDefiniteError(
            f"overlap S at k-point {k} is not positive definite (smallest eigenvalue {lam:.3e}); "
            "the generalized eigenproblem H C = S C ε is undefined"
        )
    return L


def orthonormalize(H: Tensor, L: Tensor | None) -> Tensor:
    """H' = L⁻¹ H L⁻† (Hermitian H, lower L), the Hamiltonian in the Löwdin-like Cholesky-orthonormal basis."""
    if L is None:
        return H
    X = torch.linalg.solve_triangular(L, H, upper=False)  # L⁻¹ H
    return hermitize(torch.linalg.solve_triangular(L, X.mH, upper=False))  # L⁻¹ (L⁻¹H)^† = L⁻¹ H L⁻†


def back_transform(A: Tensor, L: Tensor | None) -> Tensor:
    """L⁻† A L⁻¹: a matrix from the orthonormal basis back to the atomic-orbital (contravariant) basis."""
    if L is None:
        return A
    X = torch.linalg.solve_triangular(L.mH, A, upper=True)  # L⁻† A
    return hermitize(torch.linalg.solve_triangular(L.mH, X.mH, upper=True))  # L⁻† (L⁻† A)^† = L⁻† A L⁻¹


def fermi_divided_differences(eps: Tensor, mu: Tensor, kT: float, spin_factor: float = 2.0) -> Tensor:
    """Γ_ij = (f(ε_i) − f(ε_j))/(ε_i − ε_j), Γ_ii = f'(ε_i); [nk, n, n], real, symmetric, ≤ 0.

    For |x_i − x_j| < 1 (x = (ε − μ)/kT) the exact identity σ(u) − σ(v) = sinh((u−v)/2)/(2 cosh(u/2) cosh(v/2))
    gives Γ_ij = −(g/kT) sinhc((x_i − x_j)/2) / (4 cosh(x_i/2) cosh(x_j/2)) without cancellation; farther apart
    the plain quotient is accurate. At kT = 0 (step occupations) Γ_ij = (f_i − f_j)/(ε_i − ε_j) where the
    occupations differ and 0 where they are equal (exact for gapped spectra; undefined at a partially
    filled degenerate Fermi level).
    """
    if kT <= 0.0:
        raise ValueError("use step_divided_differences for kT = 0")
    x = (eps - mu) / kT  # [nk, n]
    xi, xj = x[..., :, None], x[..., None, :]
    d = xi - xj  # [nk, n, n]
    near = d.abs() < _SINHC_SWITCH
    f = spin_factor * torch.sigmoid(-x)
    quotient = (f[..., :, None] - f[..., None, :]) / (kT * torch.where(near, torch.ones_like(d), d))
    z = 0.5 * d
    z_safe = torch.where(z.abs() < 1e-4, torch.ones_like(z), z)
    sinhc = torch.where(z.abs() < 1e-4, 1.0 + z * z / 6.0, torch.sinh(z_safe) / z_safe)
    close = -(spin_factor / kT) * sinhc / (4.0 * torch.cosh(0.5 * xi) * torch.cosh(0.5 * xj))
    return torch.where(near, close, quotient)


def step_divided_differences(eps: Tensor, f: Tensor) -> Tensor:
    """kT = 0 divided differences (f_i − f_j)/(ε_i − ε_j) where f_i ≠ f_j, else 0. [nk, n, n]."""
    df = f[..., :, None] - f[..., None, :]
    de = eps[..., :, None] - eps[..., None, :]
    differ = df.abs() > 0
    return torch.where(differ, df / torch.where(differ, de, torch.ones_like(de)), torch.zeros_like(de))


def solve_spectrum(
    H: Tensor, S: Tensor | None, kweights: Tensor, n_electrons: float, kT: float, spin_factor: float = 2.0,
    cholesky: Tensor | None = None,
) -> Spectrum:
    """Eigenvalues, coefficients, occupations, μ, S_el, A and Σ f ε of (H, S) without gradients.

    H, S: [nk, n, n] (Hermitian parts are used), S None for an orthonormal basis; kweights [nk] summing to 1.
    cholesky: L of S = L L^† (`cholesky_overlap(hermitize(S))`) when the caller has factored S already: S is
    then not factored again (the factor travels on in `Spectrum.cholesky`).
    """
    with torch.no_grad():
        if not bool(torch.isfinite(H).all()) or (S is not None and not bool(torch.isfinite(S).all())):
            raise ValueError("H or S contains NaN or inf")
        H, S = _promote(hermitize(H.detach()), None if S is None else hermitize(S.detach()))
        if S is None:
            L = None
        else:
            L = cholesky_overlap(S) if cholesky is None else cholesky.detach().to(S.dtype)
        eps, U = torch.linalg.eigh(orthonormalize(H, L))
        C = U if L is None else torch.linalg.solve_triangular(L.mH, U, upper=True)  # C = L⁻† U
        w = kweights.detach().to(eps.dtype)
        f, mu = occupations(eps, w, n_electrons, kT, spin_factor)
        entropy = fermi_entropy(eps, mu, kT, w, spin_factor) if kT > 0 else eps.new_zeros(())
        band = (w[:, None] * f * eps).sum()
        return Spectrum(eps, C, f, mu, entropy, band - kT * entropy, band, L)


class _FactoredCholesky(torch.autograd.Function):
    """L = chol(S) from a factor computed beforehand (no second factorization), differentiable in S with
    torch's Cholesky VJP (Murray 2016, arXiv:1602.07527):

        Ḡ_S = L^{−†} Φ(L^† Ḡ_L) L^{−1},   Φ(X) = ½ (tril X + (tril₋₁ X)^†).

    Once differentiable (L is a constant inside the backward)."""

    @staticmethod
    def forward(ctx, S, L):  # noqa: D102
        ctx.save_for_backward(L)
        return L.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, gL):  # noqa: D102
        (L,) = ctx.saved_tensors
        P = (L.mH @ gL).tril()
        P = 0.5 * (P + P.tril(-1).mH)
        gS = torch.linalg.solve_triangular(L.mH, P, upper=True, left=True)
        return torch.linalg.solve_triangular(L, gS, upper=False, left=False), None


def _overlap_factor(S: Tensor, L: Tensor | None) -> Tensor:
    """L of S = L L^† (S Hermitian, [nk, n, n]): the given factor (differentiable in S if S needs it), or a new one."""
    if L is None:
        return cholesky_overlap(S)
    L = L.to(S.dtype)
    return _FactoredCholesky.apply(S, L) if S.requires_grad else L


class _OrthonormalDensity(torch.autograd.Function):
    """ρ'_k = U_k f(ε_k; μ) U_k^† as a function of the orthonormal-basis H'_k, with the Daleckii–Krein VJP.

    The eigen-decomposition (U, ε), the divided differences Γ and f' come precomputed (they belong to H');
    only H' is differentiable. The backward is once differentiable (third derivatives are not provided).
    """

    @staticmethod
    def forward(ctx, Hp, U, f, gamma, fprime, kweights):  # noqa: D102
        ctx.save_for_backward(U, gamma, fprime, kweights)
        return (U * f[..., None, :].to(U.dtype)) @ U.mH

    @staticmethod
    @once_differentiable
    def backward(ctx, G):  # noqa: D102
        U, gamma, fprime, w = ctx.saved_tensors
        Y = hermitize(U.mH @ G @ U)  # [nk, n, n] incoming gradient in the eigenbasis
        M = gamma.to(Y.dtype) * Y
        D = (w[:, None] * fprime).sum()  # dN/dε summed, ≤ 0
        if float(D) < 0.0:  # μ moves to keep N_e; D = 0 at kT = 0 or with no state near μ: μ stays
            c = -(fprime * torch.diagonal(Y, dim1=-2, dim2=-1).real).sum()
            M = M + torch.diag_embed((c / D) * w[:, None] * fprime).to(M.dtype)
        return U @ M @ U.mH, None, None, None, None, None


def density_matrices(
    H: Tensor,
    S: Tensor | None,
    kweights: Tensor,
    n_electrons: float,
    kT: float,
    spin_factor: float = 2.0,
    spectrum: Spectrum | None = None,
) -> tuple[Tensor, Tensor]:
    """Differentiable density matrix ρ_k = C f C^† and energy-weighted W_k = C (f ε) C^† (per k, unweighted).

    Differentiable once more: their derivatives w.r.t. H and S (Cholesky factor, Γ and dμ), i.e. the second
    derivatives of A, are exact and finite at degeneracies. `spectrum` (from `solve_spectrum` of the same H, S) avoids a second eigensolve.
    Shapes [nk, n, n]; Σ_k w_k Tr[ρ_k S_k] = N_e.
    """
    if spectrum is None:
        spectrum = solve_spectrum(H, S, kweights, n_electrons, kT, spin_factor)
    H, S = _promote(hermitize(H), None if S is None else hermitize(S))
    L = None if S is None else _overlap_factor(S, spectrum.cholesky)
    Hp = orthonormalize(H, L)
    eps, f, mu = spectrum.eigenvalues, spectrum.occupations, spectrum.fermi_level
    U = spectrum.coefficients if L is None else L.detach().mH @ spectrum.coefficients  # U = L^† C
    w = kweights.detach().to(eps.dtype)
    if kT > 0:
        gamma, fprime = fermi_divided_differences(eps, mu, kT, spin_factor), fermi_dirac_derivative(eps, mu, kT, spin_factor)
    else:
        gamma, fprime = step_divided_differences(eps, f), torch.zeros_like(eps)
    rho_p = _OrthonormalDensity.apply(Hp, U, f, gamma, fprime, w)
    W_p = 0.5 * (rho_p @ Hp + Hp @ rho_p)  # W' = U fε U^† = ρ'H' = H'ρ'
    return back_transform(rho_p, L), back_transform(W_p, L)


class _MerminFreeEnergy(torch.autograd.Function):
    """A(H, S) with backward (w_k ρ_k, −w_k W_k); the backward is differentiable through `density_matrices`."""

    @staticmethod
    def forward(ctx, H, S, kweights, n_electrons, kT, spin_factor, sink, cholesky):  # noqa: D102
        spectrum = solve_spectrum(H, S, kweights, n_electrons, kT, spin_factor, cholesky)
        if sink is not None:
            sink["spectrum"] = spectrum
        ctx.save_for_backward(H, S, kweights)
        ctx.spectrum, ctx.args = spectrum, (n_electrons, kT, spin_factor)
        return spectrum.free_energy.clone()

    @staticmethod
    def backward(ctx, gA):  # noqa: D102
        H, S, w = ctx.saved_tensors
        spec = ctx.spectrum
        if torch.is_grad_enabled():  # create_graph: build a differentiable ρ(H, S), W(H, S)
            rho, W = density_matrices(H, S, w, *ctx.args, spectrum=spec)
        else:
            C, f, eps = spec.coefficients, spec.occupations, spec.eigenvalues
            rho = (C * f[..., None, :].to(C.dtype)) @ C.mH
            W = (C * (f * eps)[..., None, :].to(C.dtype)) @ C.mH
        wk = (gA * w.to(gA.dtype))[:, None, None]
        grad_H = _like(wk * rho, H) if ctx.needs_input_grad[0] else None
        grad_S = _like(-wk * W, S) if S is not None and ctx.needs_input_grad[1] else None
        return grad_H, grad_S, None, None, None, None, None, None


class _BandEnergy(torch.autograd.Function):
    """The study's E_band = Σ w f ε with its (non-stationary) gradient; first derivatives only."""

    @staticmethod
    def forward(ctx, H, S, kweights, n_electrons, kT, spin_factor, sink, cholesky):  # noqa: D102
        spec = solve_spectrum(H, S, kweights, n_electrons, kT, spin_factor, cholesky)
        if sink is not None:
            sink["spectrum"] = spec
        eps, f, w = spec.eigenvalues, spec.occupations, kweights.detach().to(spec.eigenvalues.dtype)
        f_eff = f
        if kT > 0:
            fp = fermi_dirac_derivative(eps, spec.fermi_level, kT, spin_factor)
            D = (w[:, None] * fp).sum()
            eps_bar = (w[:, None] * fp * eps).sum() / D if float(D) < 0 else eps.new_zeros(())
            f_eff = f + fp * (eps - eps_bar)
        ctx.save_for_backward(H, S, kweights)
        ctx.spectrum, ctx.f_eff = spec, f_eff
        return spec.band_energy.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, gA):  # noqa: D102
        H, S, w = ctx.saved_tensors
        C, eps, f_eff = ctx.spectrum.coefficients, ctx.spectrum.eigenvalues, ctx.f_eff
        wk = (gA * w.to(gA.dtype))[:, None, None]
        grad_H = wk * ((C * f_eff[..., None, :].to(C.dtype)) @ C.mH)
        grad_S = -wk * ((C * (f_eff * eps)[..., None, :].to(C.dtype)) @ C.mH)
        return _like(grad_H, H), (None if S is None else _like(grad_S, S)), None, None, None, None, None, None


def free_energy(
    H: Tensor,
    S: Tensor | None,
    kweights: Tensor,
    n_electrons: float,
    kT: float,
    spin_factor: float = 2.0,
    mode: str = "mermin",
    sink: dict | None = None,
    cholesky: Tensor | None = None,
) -> Tensor:
    """Mermin free energy A = Σ_k w_k Σ_n f ε − kT S_el (mode="mermin") or band energy Σ w f ε (mode="band").

    H, S: [nk, n, n] (or [n, n] for a single Γ point), real or complex, only their Hermitian parts matter;
    S None means an orthonormal basis. kweights [nk] sum to 1 (ignored shape-wise for [n, n] input: pass
    torch.ones(1)). n_electrons counts electrons described by H; kT ≥ 0 in H's energy unit; spin_factor g.
    Returns a 0-d tensor. Gradients: ∂A/∂H_k = w_k ρ_k, ∂A/∂S_k = −w_k W_k, twice differentiable (mermin).
    sink: a dict that receives the forward's `Spectrum` under "spectrum" (ε, f, μ without a second eigensolve).
    cholesky: the lower Cholesky factor of hermitize(S) (`cholesky_overlap`) if the caller has factored S already
    (e.g. to check it is positive definite): S is then factored nowhere else, forward or backward.
    """
    if H.dim() == 2:
        H = H[None]
        S = None if S is None else S[None]
        cholesky = None if cholesky is None else cholesky[None]
    if kweights.shape != (H.shape[0],):
        raise ValueError(f"kweights shape {tuple(kweights.shape)} does not match {H.shape[0]} k-points")
    if S is not None and S.shape != H.shape:
        raise ValueError(f"S shape {tuple(S.shape)} differs from H shape {tuple(H.shape)}")
    if mode == "mermin":
        return _MerminFreeEnergy.apply(H, S, kweights, float(n_electrons), float(kT), float(spin_factor), sink,
                                       cholesky)
    if mode == "band":
        return _BandEnergy.apply(H, S, kweights, float(n_electrons), float(kT), float(spin_factor), sink, cholesky)
    raise ValueError(f"mode must be 'mermin' or 'band', got {mode!r}")


def _promote(H: Tensor, S: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Bring H and S to one dtype (complex if either is)."""
    if S is None or S.dtype == H.dtype:
        return H, S
    dtype = torch.promote_types(H.dtype, S.dtype)
    return H.to(dtype), S.to(dtype)


def _like(grad: Tensor, x: Tensor) -> Tensor:
    """Gradient in x's dtype: the real part for a real input used together with a complex one."""
    return grad if x.is_complex() or not grad.is_complex() else grad.real
