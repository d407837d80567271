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
from fastqmd.testing import Transform, assert_equivariant, central_differences

EQUIV_TOL = 1e-10  # float64 equivariance, absolute, eV (blocks are O(1))
FD_RTOL = 1e-6  # autograd vs central finite differences, relative


def real_space(model, symbols, pos, cell, pbc):
    """{shift tuple: H(R) numpy} and the graph."""
    g = model.graph(list(symbols), pos, cell, pbc)
    HR, shifts = to_real_space(model(torch.tensor(pos), torch.tensor(cell), g), g)
    return {tuple(s): H for s, H in zip(shifts.tolist(), HR.detach().numpy())}, g


def stacked(H: dict) -> np.ndarray:
    """[n_shifts, nao, nao] H(R) in sorted shift order."""
    return np.stack([H[s] for s in sorted(H)])


def rigid(R, t, n: int) -> Transform:
    """r → R r + t for n atoms, no relabelling."""
    return Transform(np.asarray(R), np.asarray(t, dtype=float), np.arange(n))


def rotated_blocks(basis_spec, symbols):
    """The output transform of orbital blocks: H → D(Q) H D(Q)ᵀ (every shift)."""
    return lambda H, T: (lambda D: D @ H @ D.T)(orbital_rotation(basis_spec, symbols, T.Q))


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
    assert np.abs(H0[(0, 0, 0)]).max() > 0.1  # not trivially zero
    assert np.abs(H0[(0, 0, 0)] - H0[(0, 0, 0)].T).max() == 0.0
    assert_equivariant(lambda p: real_space(h_model, symbols, p, np.zeros((3, 3)), False)[0][(0, 0, 0)], (pos,),
                       ("positions",), rotated_blocks(basis_spec, symbols), atol=EQUIV_TOL,
                       transform=rigid(R, [0.7, -2.0, 3.1], len(pos)))


def test_periodic_blocks_rotate_with_wigner_D(h_model, basis_spec, crystal):
    symbols, pos, cell = crystal
    R = random_rotation(2)
    T = rigid(R, [0.3, 0.1, -0.4], len(pos))
    H0, g = real_space(h_model, symbols, pos, cell, True)
    H1, _ = real_space(h_model, symbols, T.positions(pos), T.vector(cell), True)
    assert len(H0) > 10 and set(H0) == set(H1)
    assert bool((g.edge_i == g.edge_j).any())  # self-image edges in this small cell
    assert_equivariant(lambda p, c: stacked(real_space(h_model, symbols, p, c, True)[0]), (pos, cell),
                       ("positions", "vector"), rotated_blocks(basis_spec, symbols), atol=EQUIV_TOL, transform=T)


def test_permuting_atoms_permutes_blocks(h_model, basis_spec, crystal):
    symbols, pos, cell = crystal
    perm = [2, 0, 1]
    offs = basis_spec.offsets(symbols)
    orb = np.concatenate([np.arange(offs[p], offs[p + 1]) for p in perm])
    assert_equivariant(lambda p, s: stacked(real_space(h_model, s, p, cell, True)[0]), (pos, np.array(symbols)),
                       ("positions", "per_atom"), lambda H, T: H[:, orb][:, :, orb], atol=EQUIV_TOL,
                       transform=Transform(np.eye(3), np.zeros(3), np.array(perm)))


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
    idx = [(0, 0), (1, 2), (2, 1)]
    with torch.no_grad():
        fd_p = central_differences(lambda x: loss(torch.as_tensor(x), torch.tensor(cell)), pos, 1e-5, idx)
        fd_c = central_differences(lambda x: loss(torch.tensor(pos), torch.as_tensor(x)), cell, 1e-5, idx)
    for fd, grad in ((fd_p, gp), (fd_c, gc)):
        for i in idx:
            assert abs(fd[i] - float(grad[i])) <= FD_RTOL * max(1.0, abs(fd[i]))


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
    assert_equivariant(lambda p: real_space(h_model, ["O"], p, np.zeros((3, 3)), False)[0][(0, 0, 0)],
                       (np.zeros((1, 3)),), ("positions",), rotated_blocks(basis_spec, ["O"]), atol=EQUIV_TOL,
                       transform=rigid(random_rotation(12), np.zeros(3), 1))
