"""Integration with fastqmd.electronic: forces and stress of E = Ω[H(k), S(k)] + E_rep through the model blocks."""

import torch

from fastqmd.electronic import free_energy, monkhorst_pack
from fastqmd.nnh import check_positive_definite, to_kspace

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
    delta = 1e-5
    for which, idx in [("p", (0, 0)), ("p", (1, 2)), ("p", (2, 1)), ("c", (1, 1)), ("c", (2, 0))]:
        xp = [pos.copy(), cell.copy()]
        xm = [pos.copy(), cell.copy()]
        k = 0 if which == "p" else 1
        xp[k][idx] += delta
        xm[k][idx] -= delta
        with torch.no_grad():
            Ep = total_energy(h_model, s_model, rep_model, g, torch.tensor(xp[0]), torch.tensor(xp[1]), kpts, kw)
            Em = total_energy(h_model, s_model, rep_model, g, torch.tensor(xm[0]), torch.tensor(xm[1]), kpts, kw)
        fd = float(Ep - Em) / (2 * delta)
        an = float((dE_dp if which == "p" else dE_dc)[idx])
        assert abs(fd - an) <= FD_RTOL * max(1.0, abs(fd)), (which, idx, fd, an)
