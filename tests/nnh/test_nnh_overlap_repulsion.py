"""The learned two-centre overlap S and the repulsive energy E_rep: symmetry, locality, smoothness, gradients."""

import numpy as np
import pytest
import torch

from fastqmd.electronic import OverlapNotPositiveDefiniteError
from fastqmd.nnh import (
    Repulsion,
    RepulsionConfig,
    RepulsionNetworkConfig,
    check_positive_definite,
    to_kspace,
    to_real_space,
)
from fastqmd.orbitals import orbital_rotation, random_rotation
from fastqmd.testing import Transform, assert_equivariant, central_differences

EQUIV_TOL = 1e-10
FD_RTOL = 1e-6


def overlap_real_space(model, symbols, pos, cell, pbc):
    g = model.graph(symbols, pos, cell, pbc)
    SR, shifts = to_real_space(model(torch.tensor(pos), torch.tensor(cell), g), g)
    return {tuple(s): S for s, S in zip(shifts.tolist(), SR.detach().numpy())}


def energy(model, symbols, pos, cell, pbc):
    g = model_graph(symbols, pos, cell, pbc, model.config.cutoff)
    with torch.no_grad():
        return model(torch.as_tensor(pos), torch.as_tensor(cell), g)


def model_graph(symbols, pos, cell, pbc, cutoff):
    from fastqmd.nnh import build_graph

    return build_graph(list(symbols), np.asarray(pos), np.asarray(cell), pbc, cutoff, ["H", "O"], {"H": 5, "O": 14})


def stacked(S: dict) -> np.ndarray:
    """[n_shifts, nao, nao] S(R) in sorted shift order."""
    return np.stack([S[s] for s in sorted(S)])


def test_overlap_rotates_with_wigner_D_molecule_and_cell(s_model, basis_spec, molecule, crystal):
    R = random_rotation(8)
    symbols, pos = molecule

    def rotated(S, T):
        D = orbital_rotation(basis_spec, symbols, T.Q)
        return D @ S @ D.T

    S0 = overlap_real_space(s_model, symbols, pos, np.zeros((3, 3)), False)[(0, 0, 0)]
    assert np.abs(S0 - np.eye(len(S0))).max() > 0.05  # off-site blocks are not trivially zero
    assert_equivariant(lambda p: overlap_real_space(s_model, symbols, p, np.zeros((3, 3)), False)[(0, 0, 0)],
                       (pos,), ("positions",), rotated, atol=EQUIV_TOL,
                       transform=Transform(R, np.full(3, 1.5), np.arange(len(pos))))
    symbols, pos, cell = crystal
    T = Transform(R, np.full(3, -0.7), np.arange(len(pos)))
    S0 = overlap_real_space(s_model, symbols, pos, cell, True)
    S1 = overlap_real_space(s_model, symbols, T.positions(pos), T.vector(cell), True)
    assert set(S0) == set(S1)
    assert_equivariant(lambda p, c: stacked(overlap_real_space(s_model, symbols, p, c, True)), (pos, cell),
                       ("positions", "vector"), rotated, atol=EQUIV_TOL, transform=T)
    assert max(np.abs(S0[s] - S0[tuple(-v for v in s)].T).max() for s in S0) == 0.0  # S(−R) = S(R)ᵀ


def test_overlap_is_two_centre(s_model, basis_spec, molecule):
    """S_ij depends only on r_ij and the species: moving a third atom leaves the (i, j) block unchanged."""
    symbols, pos = molecule
    pos2 = pos.copy()
    pos2[4] += [0.3, -0.2, 0.25]
    S0 = overlap_real_space(s_model, symbols, pos, np.zeros((3, 3)), False)[(0, 0, 0)]
    S1 = overlap_real_space(s_model, symbols, pos2, np.zeros((3, 3)), False)[(0, 0, 0)]
    o = basis_spec.offsets(symbols)
    assert np.abs(S0[o[0] : o[1], o[3] : o[4]] - S1[o[0] : o[1], o[3] : o[4]]).max() == 0.0
    assert np.abs(S0[o[0] : o[1], o[4] : o[5]] - S1[o[0] : o[1], o[4] : o[5]]).max() > 1e-4


def test_overlap_onsite_identity_then_set_from_reference(s_model, basis_spec):
    """Isolated atoms: S is the on-site block — identity at start, the invariant part of a reference after."""
    import copy

    m = copy.deepcopy(s_model)
    pos = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    S = overlap_real_space(m, ["O", "H"], pos, np.zeros((3, 3)), False)[(0, 0, 0)]
    assert np.abs(S - np.eye(len(S))).max() < 1e-14
    ref = np.eye(14)
    ref[0, 1] = ref[1, 0] = 0.24  # two s shells overlap
    ref[3:6, 6:9] = ref[6:9, 3:6] = 0.5 * np.eye(3)  # two p shells overlap, 0.5·1 is invariant
    m.set_onsite_from_block("O", ref)
    S = overlap_real_space(m, ["O", "H"], pos, np.zeros((3, 3)), False)[(0, 0, 0)]
    assert np.abs(S[:14, :14] - ref).max() < 1e-14


def test_overlap_gradient_matches_finite_differences(s_model, crystal):
    symbols, pos, cell = crystal
    g = s_model.graph(symbols, pos, cell, True)
    k = torch.tensor([[0.1, 0.2, -0.3]], dtype=torch.float64)
    W = torch.tensor(np.random.default_rng(5).normal(size=(1, g.n_orbitals, g.n_orbitals)))

    def loss(p):
        return (to_kspace(s_model(p, torch.tensor(cell), g), g, k).imag * W).sum()

    p = torch.tensor(pos, requires_grad=True)
    (grad,) = torch.autograd.grad(loss(p), p)
    idx = [(0, 1), (2, 2)]
    with torch.no_grad():
        fd = central_differences(lambda x: loss(torch.as_tensor(x)), pos, 1e-5, idx)
    for i in idx:
        assert abs(fd[i] - float(grad[i])) <= FD_RTOL * max(1.0, abs(fd[i]))


def test_positive_definite_check_passes_and_fails_clearly():
    check_positive_definite(torch.eye(4, dtype=torch.float64)[None].repeat(2, 1, 1))
    bad = torch.eye(3, dtype=torch.complex128).repeat(2, 1, 1)
    bad[1, 0, 1] = bad[1, 1, 0] = 1.5  # eigenvalue 1 − 1.5 < 0 at k-point 1
    with pytest.raises(OverlapNotPositiveDefiniteError, match=r"not positive definite at k-point 1 of 2.*-5\.000e-01"):
        check_positive_definite(bad)


def test_repulsion_is_invariant(rep_model, molecule, crystal):
    symbols, pos = molecule
    R = random_rotation(9) * -1  # improper too
    zero = np.zeros((3, 3))
    assert abs(float(energy(rep_model, symbols, pos, zero, False))) > 1e-3
    E_mol = lambda p, s: float(energy(rep_model, s, p, zero, False))  # noqa: E731
    n = len(pos)
    assert_equivariant(E_mol, (pos, np.array(symbols)), ("positions", "per_atom"), "invariant", atol=1e-12,
                       transform=Transform(R, np.full(3, 2.0), np.arange(n)))
    assert_equivariant(E_mol, (pos, np.array(symbols)), ("positions", "per_atom"), "invariant", atol=1e-12,
                       transform=Transform(np.eye(3), np.zeros(3), np.array([3, 5, 4, 0, 2, 1])))
    symbols, pos, cell = crystal
    Ec = energy(rep_model, symbols, pos, cell, True)
    assert_equivariant(lambda p, c: float(energy(rep_model, symbols, p, c, True)), (pos, cell),
                       ("positions", "vector"), "invariant", atol=1e-12,
                       transform=Transform(R, np.zeros(3), np.arange(len(pos))))
    sc = cell * np.array([[1], [2], [1]])
    Es = energy(rep_model, symbols * 2, np.concatenate([pos, pos + cell[1]]), sc, True)
    assert abs(float(Es - 2 * Ec)) < 1e-11  # extensive: a 1×2×1 supercell has twice the energy


def test_repulsion_is_smooth_at_cutoff_and_forces_match_fd(rep_model, crystal):
    rc = rep_model.config.cutoff
    d = np.array([rc - 1e-3, rc - 1e-4])
    for x in d:
        pos = torch.tensor([[0.0, 0.0, 0.0], [x, 0.0, 0.0]], requires_grad=True)
        g = model_graph(["O", "H"], pos.detach().numpy(), np.zeros((3, 3)), False, rc)
        E = rep_model(pos, torch.zeros(3, 3, dtype=torch.float64), g)
        (F,) = torch.autograd.grad(-E, pos)
        # E, F vanish with the envelope as (1 − d/r_c)³, (1 − d/r_c)²
        assert abs(float(E.detach())) < 1e-6 and float(F.abs().max()) < 1e-4
    symbols, pos, cell = crystal
    g = model_graph(symbols, pos, cell, True, rc)
    p = torch.tensor(pos, requires_grad=True)
    (grad,) = torch.autograd.grad(rep_model(p, torch.tensor(cell), g), p)
    idx = [(0, 0), (1, 1), (2, 2)]
    with torch.no_grad():
        fd = central_differences(lambda x: rep_model(torch.as_tensor(x), torch.tensor(cell), g), pos, 1e-5, idx)
    for i in idx:
        assert abs(fd[i] - float(grad[i])) <= FD_RTOL * max(1.0, abs(fd[i]))


def test_repulsion_network_term_starts_at_zero_is_invariant_and_its_forces_match_fd(molecule, crystal):
    cfg = RepulsionConfig(species=("H", "O"), cutoff=2.5, dtype="float64",
                          network=RepulsionNetworkConfig(hidden_irreps="8x0e+4x1o+4x1e+2x2e", avg_num_neighbors=4.0))
    plain = Repulsion(RepulsionConfig(species=("H", "O"), cutoff=2.5, dtype="float64"))
    rep = Repulsion(cfg)
    rep.load_state_dict({**rep.state_dict(), **plain.state_dict()})
    symbols, pos = molecule
    zero = np.zeros((3, 3))
    E0 = float(energy(plain, symbols, pos, zero, False))
    assert float(energy(rep, symbols, pos, zero, False)) == pytest.approx(E0, abs=1e-14)  # w = 0: the pair fit
    with torch.no_grad():
        for w in rep.network.readout_energy.weights:
            w.normal_(generator=torch.Generator().manual_seed(3))
    E_net = float(energy(rep, symbols, pos, zero, False)) - E0
    assert abs(E_net) > 1e-3
    R = random_rotation(11) * -1
    assert_equivariant(lambda p, s: float(energy(rep, s, p, zero, False)), (pos, np.array(symbols)),
                       ("positions", "per_atom"), "invariant", atol=1e-11,
                       transform=Transform(R, np.full(3, 1.0), np.array([3, 5, 4, 0, 2, 1])))
    symbols, pos, cell = crystal
    g = model_graph(symbols, pos, cell, True, cfg.cutoff)
    p = torch.tensor(pos, requires_grad=True)
    (grad,) = torch.autograd.grad(rep(p, torch.tensor(cell), g), p)
    idx = [(0, 0), (1, 1), (2, 2), (1, 0)]
    with torch.no_grad():
        fd = central_differences(lambda x: rep(torch.as_tensor(x), torch.tensor(cell), g), pos, 1e-5, idx)
    for i in idx:
        assert abs(fd[i] - float(grad[i])) <= FD_RTOL * max(1.0, abs(fd[i]))
    theta = torch.zeros(3 * cfg.n_radial + 2, dtype=torch.float64)
    rep.set_linear_parameters(theta)  # E_rep = Φ·θ exactly: the network's output is zeroed too
    assert float(energy(rep, symbols, pos, cell, True)) == pytest.approx(0.0, abs=1e-14)
