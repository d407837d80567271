"""Shared primitives of the NNH terms (H network, learned S head, E_rep): radial basis, cutoff envelope, MLPs and
dtype helpers. Pure torch functions of distances d [E] Å; no state.

    b_n(d) = √(2/r_c) sin(nπ d/r_c)/d,  n = 1..N                         (Bessel basis, DimeNet)
    u(x)   = 1 − (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) − p(p+1)/2 x^(p+2),  x = d/r_c < 1; 0 beyond

u(1) = u'(1) = u''(1) = 0, so every term multiplied by u is C² at its cutoff and edges beyond a term's cutoff add
exactly zero (which is why one graph at the largest cutoff serves all terms).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor

DTYPES = {"float32": torch.float32, "float64": torch.float64}  # config dtype name → torch dtype


@contextmanager
def default_dtype(dtype: torch.dtype):
    """Temporarily set torch's default dtype (e3nn builds its Wigner constants in it)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def bessel_basis(d: Tensor, cutoff: float, n: int) -> Tensor:
    """b_n(d) = √(2/r_c) sin(nπ d/r_c)/d, n = 1..N  [E, N] (DimeNet)."""
    k = torch.arange(1, n + 1, dtype=d.dtype, device=d.device) * torch.pi / cutoff
    return (2.0 / cutoff) ** 0.5 * torch.sin(k * d[:, None]) / d[:, None]


def polynomial_envelope(d: Tensor, cutoff: float, p: int = 6) -> Tensor:
    """u(x) = 1 − (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) − p(p+1)/2 x^(p+2), x = d/r_c < 1; 0 beyond  [E].

    u(1) = u'(1) = u''(1) = 0, so anything multiplied by u is twice continuously differentiable at the cutoff.
    """
    x = d / cutoff
    u = 1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
    return torch.where(x < 1, u, torch.zeros_like(u))


def mlp(sizes: list[int]) -> torch.nn.Sequential:
    """Plain SiLU MLP with the given layer sizes."""
    layers: list[torch.nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            layers.append(torch.nn.SiLU())
    return torch.nn.Sequential(*layers)
