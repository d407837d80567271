"""Eigensolvers for the lowest n_states eigenpairs of H; each SCF iteration calls `solver.step(H, state)`.

Both return Ritz pairs of the current subspace (eigenvalues ε [k], Ritz vectors U [k, n_grid]) plus an opaque
state handed back on the next call, so the SCF loop does not care which solver runs.

LOBPCG (Knyazev 2001, scipy.sparse.linalg.lobpcg): a few iterations per SCF step, warm-started, kinetic FFT
preconditioner — the independent cross-check.
ABPG (Fattebert, J. Comput. Phys. 229, 441 (2010)), as in MGmol: one preconditioned block-gradient step per SCF
iteration with the potential updated every iteration:
    R = H U − H_s U (H_s = U H Uᵀ, rotation invariant),  G = K R,
    Anderson (once Σε changes < 1e−2 N_states per step): θ = ⟨ΔG, G⟩/⟨ΔG, ΔG⟩, Ū = U − θΔU, Ḡ = G − θΔG,
    U ← orth(Ū − β Ḡ) (Löwdin, so that consecutive iterates stay comparable), β = 0.75 by default.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.sparse.linalg import LinearOperator, lobpcg

from fastqmd.dft.hamiltonian import Hamiltonian, KineticPreconditioner


def orthonormalize(U: np.ndarray) -> np.ndarray:
    """Löwdin orthonormalization S^{−1/2} U (S = U Uᵀ), rows of U."""
    S = U @ U.T
    w, V = np.linalg.eigh(S)
    return (V @ np.diag(w**-0.5) @ V.T) @ U


def rayleigh_ritz(HU: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ε, Q, H_s) with H_s = U HUᵀ = Q diag(ε) Qᵀ for orthonormal rows U."""
    Hs = U @ HU.T
    Hs = 0.5 * (Hs + Hs.T)
    eps, Q = np.linalg.eigh(Hs)
    return eps, Q, Hs


class LOBPCG:
    """scipy LOBPCG, `maxiter` iterations per SCF step (warm start), kinetic FFT preconditioner."""

    def __init__(self, maxiter: int = 4, tol: float = 1e-10, shift: float = 1.0):
        self.maxiter, self.tol, self.shift = maxiter, tol, shift
        self._precond = None

    def step(self, H: Hamiltonian, U: np.ndarray, maxiter: int | None = None):
        if self._precond is None or self._precond.grid != H.grid:
            self._precond = KineticPreconditioner(H.grid, self.shift)
        N = U.shape[1]
        A = LinearOperator((N, N), matvec=lambda x: H.apply(x.reshape(1, -1)).reshape(x.shape), matmat=lambda X: H.apply(X.T).T, dtype=float)
        M = LinearOperator((N, N), matvec=lambda x: self._precond(x.reshape(1, -1)).reshape(x.shape), matmat=lambda X: self._precond(X.T).T, dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            eps, X = lobpcg(A, np.ascontiguousarray(U.T), M=M, tol=self.tol, maxiter=maxiter or self.maxiter, largest=False)
        Ur = orthonormalize(np.ascontiguousarray(X.T))
        HU = H.apply(Ur)
        eps, Q, _ = rayleigh_ritz(HU, Ur)
        Ur = Q.T @ Ur
        return eps, Ur, Ur, float(np.sqrt(np.max(np.sum((Q.T @ HU - eps[:, None] * Ur) ** 2, axis=1))))


class ABPG:
    """Anderson-accelerated block preconditioned gradient (one step per SCF iteration)."""

    def __init__(self, beta: float = 0.75, shift: float = 1.0, anderson_threshold: float = 1e-2, theta_max: float = 0.5):
        self.beta, self.shift, self.threshold, self.theta_max = beta, shift, anderson_threshold, theta_max
        self._precond = None
        self.reset()

    def reset(self) -> None:
        self._prev = None
        self._eps_sum = None
        self.anderson_on = False

    def step(self, H: Hamiltonian, U: np.ndarray, maxiter: int | None = None):
        if self._precond is None or self._precond.grid != H.grid:
            self._precond = KineticPreconditioner(H.grid, self.shift)
        HU = H.apply(U)
        eps, Q, Hs = rayleigh_ritz(HU, U)
        R = HU - Hs @ U  # [k, N]
        res = float(np.sqrt(np.max(np.sum((Q.T @ R) ** 2, axis=1))))
        G = self._precond(R)
        if self._eps_sum is not None and abs(eps.sum() - self._eps_sum) < self.threshold * len(eps):
            self.anderson_on = True
        self._eps_sum = eps.sum()
        Ubar, Gbar = U, G
        if self.anderson_on and self._prev is not None:
            dU, dG = U - self._prev[0], G - self._prev[1]
            denom = np.sum(dG * dG)
            if denom > 0:
                theta = float(np.clip(np.sum(dG * G) / denom, -self.theta_max, self.theta_max))
                Ubar, Gbar = U - theta * dU, G - theta * dG
        self._prev = (U, G)
        U_next = orthonormalize(Ubar - self.beta * Gbar)
        return eps, Q.T @ U, U_next, res


def make_eigensolver(name: str):
    name = name.lower()
    if name == "lobpcg":
        return LOBPCG()
    if name == "abpg":
        return ABPG()
    raise ValueError(f"unknown eigensolver {name!r} (lobpcg, abpg)")
