"""Density mixers for the SCF fixed point n = F[n] (residual R = F[n] − n).

Linear: n ← n + α R.  Pulay/Anderson (DIIS, Pulay 1980): with the last m pairs (n_i, R_i), minimize |Σ c_i R_i|²
subject to Σ c_i = 1 and set n ← Σ c_i (n_i + α R_i).
"""

from __future__ import annotations

import numpy as np


class LinearMixer:
    def __init__(self, alpha: float = 0.3):
        self.alpha = alpha

    def reset(self) -> None:
        pass

    def __call__(self, n_in: np.ndarray, n_out: np.ndarray) -> np.ndarray:
        return n_in + self.alpha * (n_out - n_in)


class PulayMixer:
    def __init__(self, alpha: float = 0.5, history: int = 8):
        self.alpha, self.history = alpha, history
        self.reset()

    def reset(self) -> None:
        self.n: list[np.ndarray] = []
        self.R: list[np.ndarray] = []

    def __call__(self, n_in: np.ndarray, n_out: np.ndarray) -> np.ndarray:
        self.n.append(n_in.copy())
        self.R.append(n_out - n_in)
        self.n, self.R = self.n[-self.history :], self.R[-self.history :]
        m = len(self.R)
        A = np.ones((m + 1, m + 1))
        A[m, m] = 0.0
        Rf = np.array([r.ravel() for r in self.R])
        A[:m, :m] = Rf @ Rf.T
        rhs = np.zeros(m + 1)
        rhs[m] = 1.0
        try:
            c = np.linalg.solve(A, rhs)[:m]
        except np.linalg.LinAlgError:
            c = np.linalg.lstsq(A, rhs, rcond=None)[0][:m]
        return sum(ci * (ni + self.alpha * ri) for ci, ni, ri in zip(c, self.n, self.R))
