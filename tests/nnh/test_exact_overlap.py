"""Exact PySCF overlap as a torch function: values equal the engine's stored S, gradients equal finite
differences (molecule; periodic cell at Γ and at a general k), and a force-loss-style double backward works."""

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from fastqmd.nnh.exact_overlap import PySCFOverlap
from fastqmd.testing import check_gradient

FD_STEP_A = 1e-4
FD_TOL = 1e-7  # central differences of smooth integrals: O(h²) ≈ 1e-8 relative (× max(1, max |∂L/∂R|))


def assert_overlap_gradient(op, positions, weights):
    """∂L/∂R of L = Re Σ W* ∘ S(R) by autograd against central differences (step FD_STEP_A)."""

    def loss(x):
        S = op(torch.as_tensor(x))
        return (weights.conj() * S).real.sum() if S.is_complex() else (weights * S).sum()

    x = torch.tensor(positions, requires_grad=True)
    (g,) = torch.autograd.grad(loss(x), x)
    check_gradient(lambda y: float(loss(y).detach()), positions, g, h=FD_STEP_A,
                   atol=FD_TOL * max(1.0, float(g.abs().max())), rtol=1e-7)  # rtol: assert_allclose's default
    return g


def test_molecular_overlap_matches_engine_and_finite_differences():
    from fastqmd.reference.pyscf_mol import PySCFMolEngine

    atoms = molecule("H2O")
    atoms.rattle(0.05, seed=1)
    op = PySCFOverlap(atoms.get_chemical_symbols(), "def2-SVP")
    engine = PySCFMolEngine(xc="PBE", basis="def2-SVP")
    S_ref = engine.build_mol(atoms).intor("int1e_ovlp")[np.ix_(op.perm, op.perm)]
    np.testing.assert_allclose(op(torch.tensor(atoms.positions)).numpy(), S_ref, atol=1e-13)
    rng = np.random.default_rng(0)
    W = torch.tensor(rng.normal(size=S_ref.shape))
    g = assert_overlap_gradient(op, atoms.positions.copy(), W + W.T)
    assert abs(g.sum(0)).max() < 1e-10  # translation invariance of S


@pytest.mark.parametrize("kpt", [(0.0, 0.0, 0.0), (0.25, -0.1, 0.4)])
def test_periodic_overlap_gradient_at_gamma_and_general_k(kpt):
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.rattle(0.05, seed=2)
    op = PySCFOverlap(atoms.get_chemical_symbols(), "gth-szv", cell=atoms.cell.array, kpts_frac=np.array([kpt]))
    S = op(torch.tensor(atoms.positions))
    assert S.shape == (1, 8, 8)
    assert S.is_complex() or np.allclose(kpt, 0)
    rng = np.random.default_rng(1)
    A = rng.normal(size=(1, 8, 8)) + (1j * rng.normal(size=(1, 8, 8)) if S.is_complex() else 0)
    W = torch.tensor(A + np.conj(np.swapaxes(A, 1, 2)))
    assert_overlap_gradient(op, atoms.positions.copy(), W)


def test_backward_is_differentiable_in_the_incoming_gradient():
    """Force-loss pattern: F = −∂(Σ θ·S)/∂R with create_graph, then ∂|F|²/∂θ = exact."""
    atoms = molecule("H2O")
    op = PySCFOverlap(atoms.get_chemical_symbols(), "def2-SVP")
    rng = np.random.default_rng(3)
    A = rng.normal(size=(24, 24))
    theta = torch.tensor(A + A.T, requires_grad=True)
    x = torch.tensor(atoms.positions, requires_grad=True)
    (F,) = torch.autograd.grad((theta * op(x)).sum(), x, create_graph=True)
    (dtheta,) = torch.autograd.grad((F**2).sum(), theta)
    # F is linear in θ: |F(θ)|² is quadratic, so ∂/∂θ along θ equals 2|F|²
    assert torch.allclose((dtheta * theta).sum(), 2 * (F**2).sum(), rtol=1e-10)
