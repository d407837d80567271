"""Physics checks of the NN Hamiltonian: equivariance, permutation, Hermiticity, Bloch consistency, gradients."""

import copy

import numpy as np
import pytest
import torch

from fastqmd.electronic import bloch_sum, hermiticity_error
from fastqmd.nnh import to_kspace, to_real_space
from fastqmd.nnh.irreps import block_coupling, e3nn_to_fastqmd, fastqmd_D
from fastqmd.nnh.model import default_dtype
from fastqmd.orbitals import orbital_rotation, random_rotation, real_wigner_D

EQUIV_TOL = 1e-10  # float64 equivariance, absolute, eV (blocks are O(1))
FD_RTOL = 1e-6  # autograd vs central finite differences, relative


def real_space(model, symbols, pos, cell, pbc):
    """{shift tuple: H(R) numpy} and the graph."""
    g = model.graph(symbols, pos, cell, pbc)
    HR, shifts = to_real_space(model(torch.tensor(pos), torch.tensor(cell), g), g)
    return {tuple(s): H for s, H in zip(shifts.tolist(), HR.detach().numpy())}, g


def test_e3nn_basis_change_is_orthogonal_and_reproduces_fastqmd_wigner_D():
    R = random_rotation(5)
    assert np.array_equal(np.abs(e3nn_to_fastqmd(1)).round(12), np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]]))
    with default_dtype(torch.float64):
        for l in range(7):
            Q = e3nn_to_fastqmd(l)
            assert np.abs(Q @ Q.T - np.eye(2 * l + 1)).max() < 1e-12
            assert np.abs(fastqmd_D(l, R) - real_wigner_D(l, R)).max() < 1e-12


def test_wigner_eckart_coupling_is_orthogonal_and_equivariant():
    R = random_rotation(6)
    with default_dtype(torch.float64):
        for la, lb in [((0, 1, 2), (0, 1)), ((2, 3), (1, 3))]:
            irreps, C = block_coupling(la, lb)
            M = C.reshape(-1, C.shape[-1])
            assert np.abs(M.T @ M - np.eye(M.shape[0])).max() < 1e-12
            Dx = irreps.D_from_matrix(torch.tensor(R)).numpy()
            Da = np.zeros((C.shape[0], C.shape[0]))
            Db = np.zeros((C.shape[1], C.shape[1]))
            for D, ls in ((Da, la), (Db, lb)):
                o = 0
                for l in ls:
                    D[o : o + 2 * l + 1, o : o + 2 * l + 1] = real_wigner_D(l, R)
                    o += 2 * l + 1
            x = np.random.default_rng(0).normal(size=C.shape[-1])
            assert np.abs(C @ (Dx @ x) - Da @ (C @ x) @ Db.T).max() < 1e-12


@pytest.mark.parametrize("improper", [False, True])
def test_molecule_blocks_rotate_with_wigner_D(h_model, basis_spec, molecule, improper):
    symbols, pos = molecule
    R = random_rotation(1) * (-1 if improper else 1)
    H0, _ = real_space(h_model, symbols, pos, np.zeros((3, 3)), False)
    H1, _ = real_space(h_model, symbols, pos @ R.T + [0.7, -2.0, 3.1], np.zeros((3, 3)), False)
    D = orbital_rotation(basis_spec, symbols, R)
    assert np.abs(H0[(0, 0, 0)]).max() > 0.1  # not trivially zero
    assert np.abs(H0[(0, 0, 0)] - H0[(0, 0, 0)].T).max() == 0.0
    assert np.abs(D @ H0[(0, 0, 0)] @ D.T - H1[(0, 0, 0)]).max() < EQUIV_TOL


def test_periodic_blocks_rotate_with_wigner_D(h_model, basis_spec, crystal):
    symbols, pos, cell = crystal
    R = random_rotation(2)
    H0, g = real_space(h_model, symbols, pos, cell, True)
    H1, _ = real_space(h_model, symbols, pos @ R.T + [0.3, 0.1, -0.4], cell @ R.T, True)
    assert len(H0) > 10 and set(H0) == set(H1)
    assert bool((g.edge_i == g.edge_j).any())  # self-image edges in this small cell
    D = orbital_rotation(basis_spec, symbols, R)
    err = max(np.abs(D @ H0[s] @ D.T - H1[s]).max() for s in H0)
    assert err < EQUIV_TOL


def test_permuting_atoms_permutes_blocks(h_model, basis_spec, crystal):
    symbols, pos, cell = crystal
    perm = [2, 0, 1]
    H0, _ = real_space(h_model, symbols, pos, cell, True)
    H1, _ = real_space(h_model, [symbols[p] for p in perm], pos[perm], cell, True)
    offs = basis_spec.offsets(symbols)
    orb = np.concatenate([np.arange(offs[p], offs[p + 1]) for p in perm])
    assert max(np.abs(H0[s][np.ix_(orb, orb)] - H1[s]).max() for s in H0) < EQUIV_TOL


def test_hk_hermitian_and_equal_to_bloch_sum_of_hr(h_model, crystal):
    symbols, pos, cell = crystal
    g = h_model.graph(symbols, pos, cell, True)
    blocks = h_model(torch.tensor(pos), torch.tensor(cell), g)
    HR, shifts = to_real_space(blocks, g)
    assert hermiticity_error(HR.detach(), shifts) == 0.0
    kpts = torch.tensor(np.random.default_rng(3).uniform(-0.5, 0.5, size=(4, 3)))
    Hk = to_kspace(blocks, g, kpts)
    assert (Hk - Hk.mH).abs().max() < 1e-13
    assert (Hk - bloch_sum(HR, shifts, kpts)).abs().max() < 1e-12
    assert (to_kspace(blocks, g, torch.zeros(1, 3)) - HR.sum(0)).abs().max() < 1e-12


def test_lattice_translation_of_an_atom_is_a_bloch_phase(h_model, basis_spec, crystal):
    """Moving atom a by lattice vector n·cell: H'(k) = Φ* H(k) Φ, Φ = e^{−i2πk·n} on a's orbitals."""
    symbols, pos, cell = crystal
    n, a = np.array([1, -2, 1]), 1
    pos2 = pos.copy()
    pos2[a] += n @ cell
    k = torch.tensor([[0.13, -0.27, 0.41]], dtype=torch.float64)
    graphs = [h_model.graph(symbols, p, cell, True) for p in (pos, pos2)]
    Hk = [to_kspace(h_model(torch.tensor(p), torch.tensor(cell), g), g, k)[0] for p, g in zip((pos, pos2), graphs)]
    offs = basis_spec.offsets(symbols)
    phi = torch.ones(int(offs[-1]), dtype=torch.complex128)
    phi[offs[a] : offs[a + 1]] = np.exp(-2j * np.pi * float(k[0] @ torch.tensor(n, dtype=torch.float64)))
    expected = phi.conj()[:, None] * Hk[0] * phi[None, :]
    assert (Hk[0] - Hk[1]).abs().max() > 1e-3  # the phase is not trivial
    assert (expected - Hk[1]).abs().max() < 1e-10


def test_supercell_gamma_spectrum_is_the_primitive_spectrum_at_folded_k(h_model, crystal):
    """H of a 2×1×1 supercell at Γ has the eigenvalues of the primitive H(k) at k = 0 and k = (½, 0, 0)."""
    symbols, pos, cell = crystal
    sc = cell * np.array([[2], [1], [1]])
    pos_sc = np.concatenate([pos, pos + cell[0]])
    g = h_model.graph(symbols * 2, pos_sc, sc, True)
    e_sc = torch.linalg.eigvalsh(to_kspace(h_model(torch.tensor(pos_sc), torch.tensor(sc), g), g, torch.zeros(1, 3))[0])
    g1 = h_model.graph(symbols, pos, cell, True)
    Hk = to_kspace(h_model(torch.tensor(pos), torch.tensor(cell), g1), g1, torch.tensor([[0.0, 0, 0], [0.5, 0, 0]]))
    e_prim = torch.sort(torch.cat([torch.linalg.eigvalsh(H) for H in Hk])).values
    assert (e_sc - e_prim).abs().max() < 1e-10


def test_gradients_reach_positions_and_cell(h_model, crystal):
    """∂/∂(positions, cell) of L = Σ Re(W ∘ H(k)) by autograd vs central finite differences."""
    symbols, pos, cell = crystal
    g = h_model.graph(symbols, pos, cell, True)  # fixed graph: no edge crosses the cutoff for δ = 1e-5
    k = torch.tensor([[0.0, 0.0, 0.0], [0.2, -0.1, 0.35]], dtype=torch.float64)
    W = torch.tensor(np.random.default_rng(4).normal(size=(2, g.n_orbitals, g.n_orbitals)))

    def loss(p, c):
        return (to_kspace(h_model(p, c, g), g, k).real * W).sum()

    p = torch.tensor(pos, requires_grad=True)
    c = torch.tensor(cell, requires_grad=True)
    gp, gc = torch.autograd.grad(loss(p, c), (p, c))
    delta = 1e-5
    for x0, grad, other in ((pos, gp, "p"), (cell, gc, "c")):
        for idx in [(0, 0), (1, 2), (2, 1)]:
            xp, xm = x0.copy(), x0.copy()
            xp[idx] += delta
            xm[idx] -= delta
            with torch.no_grad():
                fd = fd_loss(loss, other, pos, cell, xp, xm, delta)
            assert abs(float(fd) - float(grad[idx])) <= FD_RTOL * max(1.0, abs(float(fd)))


def fd_loss(loss, which, pos, cell, xp, xm, delta):
    """Central difference of loss along the displaced positions (which = "p") or cell ("c")."""
    if which == "p":
        return (loss(torch.tensor(xp), torch.tensor(cell)) - loss(torch.tensor(xm), torch.tensor(cell))) / (2 * delta)
    return (loss(torch.tensor(pos), torch.tensor(xp)) - loss(torch.tensor(pos), torch.tensor(xm))) / (2 * delta)


def test_offsite_blocks_vanish_smoothly_at_the_cutoff(h_model):
    rc = h_model.config.cutoff
    blocks = []
    for d in (rc - 1e-3, rc - 2e-3):
        pos = np.array([[0.0, 0.0, 0.0], [0.3, 0.6, 0.8]])
        pos[1] *= d / np.linalg.norm(pos[1])
        g = h_model.graph(["O", "H"], pos, np.zeros((3, 3)), False)
        b = h_model(torch.tensor(pos), torch.zeros(3, 3, dtype=torch.float64), g)
        blocks.append(float(b.offsite[1][0].detach().abs().max()))  # species sorted: H=0, O=1 → (O, H)
    # u(x) ~ (1 − x)^3 near x = 1: 1e-3/3.2 relative distance gives ≲ 1e-7 of the block scale
    assert blocks[0] < 1e-6 and blocks[0] < blocks[1]


def test_float32_model_agrees_with_float64(h_model, crystal):
    symbols, pos, cell = crystal
    m32 = copy.deepcopy(h_model).to(torch.float32)
    g = h_model.graph(symbols, pos, cell, True)
    H64, _ = to_real_space(h_model(torch.tensor(pos), torch.tensor(cell), g), g)
    H32, _ = to_real_space(m32(torch.tensor(pos, dtype=torch.float32), torch.tensor(cell, dtype=torch.float32), g), g)
    assert H32.dtype == torch.float32
    assert (H32.double() - H64).abs().max() < 1e-4 * H64.abs().max()


def test_isolated_atom_onsite_block_is_rotation_invariant(h_model, basis_spec):
    """No edges: H is the on-site block of a free atom, which must commute with every D(R) (Schur: c·1 per l)."""
    H, g = real_space(h_model, ["O"], np.zeros((1, 3)), np.zeros((3, 3)), False)
    assert g.edge_i.numel() == 0 and list(H) == [(0, 0, 0)]
    D = orbital_rotation(basis_spec, ["O"], random_rotation(12))
    assert np.abs(D @ H[(0, 0, 0)] @ D.T - H[(0, 0, 0)]).max() < EQUIV_TOL
