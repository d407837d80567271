"""Integration with fastqmd.electronic: forces and stress of E = Ω[H(k), S(k)] + E_rep through the model blocks."""

import numpy as np
import torch

from fastqmd.electronic import free_energy, monkhorst_pack
from fastqmd.nnh import check_positive_definite, to_kspace
from fastqmd.testing import central_differences

FD_RTOL = 1e-6  # relative agreement of autograd with central differences (float64)


def total_energy(h_model, s_model, rep_model, graph, pos, cell, kpts, kw):
    """E = Ω + E_rep (eV) at kT = 0.1 eV, N_e = 8 (graph fixed: small displacements cross no cutoff)."""
    Hk = to_kspace(h_model(pos, cell, graph), graph, kpts)
    Sk = to_kspace(s_model(pos, cell, graph), graph, kpts)
    check_positive_definite(Sk)
    return free_energy(Hk, Sk, kw, n_electrons=8.0, kT=0.1) + rep_model(pos, cell, graph)


def test_forces_and_cell_gradient_of_free_energy_plus_repulsion_match_fd(h_model, s_model, rep_model, crystal):
    symbols, pos, cell = crystal
    cell = cell * 1.15  # a little more room so that the untrained S stays positive definite
    pos = pos * 1.15
    g = h_model.graph(symbols, pos, cell, True)
    kpts, kw = monkhorst_pack((2, 2, 1))  # complex H(k) away from Γ
    p = torch.tensor(pos, requires_grad=True)
    c = torch.tensor(cell, requires_grad=True)
    E = total_energy(h_model, s_model, rep_model, g, p, c, kpts, kw)
    dE_dp, dE_dc = torch.autograd.grad(E, (p, c))
    assert torch.isfinite(dE_dp).all() and float(dE_dp.abs().max()) > 1e-3

    def E(p, c):
        return total_energy(h_model, s_model, rep_model, g, torch.as_tensor(p), torch.as_tensor(c), kpts, kw)

    with torch.no_grad():
        fd_p = central_differences(lambda x: E(x, cell), pos, 1e-5, [(0, 0), (1, 2), (2, 1)])
        fd_c = central_differences(lambda x: E(pos, x), cell, 1e-5, [(1, 1), (2, 0)])
    for which, fd, grad in (("p", fd_p, dE_dp), ("c", fd_c, dE_dc)):
        for idx in zip(*np.nonzero(~np.isnan(fd))):
            an = float(grad[idx])
            assert abs(fd[idx] - an) <= FD_RTOL * max(1.0, abs(fd[idx])), (which, idx, fd[idx], an)
