"""Symmetry functions against an independent implementation (dscribe's ACSF, C++) to 1e-8, their gradients
against central differences, and the neighbour-pair enumeration behind the angular terms."""

import numpy as np
import pytest
import torch
from ase import Atoms

from fastqmd.mlip.descriptors import SymmetryFunctions, generate_parameters, neighbour_pairs, symmetry_functions
from fastqmd.mlip.kind import Structure, collate
from fastqmd.testing import check_gradient

ACSF_ATOL = 1e-8  # the bar: same formulas, float64 both sides
GRAD_ATOL = 1e-7  # central differences, h = 1e-5 Å: error ~h²/6 |G'''| ≈ 1e-10 plus rounding ~1e-11/h
ELEMENTS = ["H", "O"]  # species order = ascending Z, as dscribe's
RC = 4.0
G2 = ((0.5, 0.0), (2.0, 1.0), (1.0, 2.5), (4.0, 3.2))
G4 = ((0.05, 1.0, 1.0), (0.1, 2.0, -1.0), (0.02, 4.0, 1.0), (0.3, 16.0, -1.0))
G5 = ((0.04, 1.0, -1.0), (0.2, 2.0, 1.0), (0.01, 4.0, -1.0))


def water_cluster(seed=0):
    rng = np.random.default_rng(seed)
    mol = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    pos = np.concatenate([mol + [0, 0, 0], mol + [2.6, 0.3, 0.2], mol + [0.4, 2.5, 1.1]]) + 0.05 * rng.normal(size=(9, 3))
    return Atoms("OHHOHHOHH", positions=pos)


def water_box(seed=1):
    """A periodic, skewed box, small enough that atoms see their own images within the cutoff."""
    a = water_cluster(seed)[:6]
    a.set_cell([[4.2, 0.0, 0.0], [0.5, 4.0, 0.0], [0.3, -0.4, 3.9]])
    a.pbc = True
    a.wrap()
    return a


def ours(atoms, sf, positions=None):
    s = Structure("", atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, 0.0)
    b = collate([s], ELEMENTS, sf.cutoff)
    pos = b.positions if positions is None else positions
    rij = pos[b.edge_j] - pos[b.edge_i] + b.shifts @ b.cell[0]
    return symmetry_functions(sf, rij, b.edge_i, b.edge_j, b.species)


def dscribe_acsf(atoms, sf):
    """dscribe's ACSF with its G1 column (Σ f_c, first of each element block) removed: our layout."""
    from dscribe.descriptors import ACSF

    acsf = ACSF(r_cut=sf.cutoff, g2_params=[list(p) for p in sf.radial] or None,
                g4_params=[list(p) for p in sf.g4] or None, g5_params=[list(p) for p in sf.g5] or None,
                species=ELEMENTS, periodic=bool(atoms.pbc.any()))
    X = acsf.create(atoms)
    n2 = len(sf.radial)
    radial_cols = [e * (1 + n2) + 1 + k for e in range(len(ELEMENTS)) for k in range(n2)]
    return np.concatenate([X[:, radial_cols], X[:, len(ELEMENTS) * (1 + n2):]], axis=1)


@pytest.mark.parametrize("system", ["cluster", "periodic"])
@pytest.mark.parametrize("angular", ["G4", "G5", "both"])
def test_symmetry_functions_equal_dscribe(system, angular):
    atoms = water_cluster() if system == "cluster" else water_box()
    sf = SymmetryFunctions(RC, G2, G4 if angular != "G5" else (), G5 if angular != "G4" else (), len(ELEMENTS))
    got = ours(atoms, sf).numpy()
    ref = dscribe_acsf(atoms, sf)
    assert got.shape == ref.shape == (len(atoms), sf.n_features)
    assert np.abs(ref).max() > 0.1  # the comparison is not between zeros
    np.testing.assert_allclose(got, ref, rtol=0, atol=ACSF_ATOL)


def test_generated_grids_follow_n2p2_rules_and_equal_dscribe():
    sf = generate_parameters(RC, 2, r_min=0.8, n_radial=5, radial_mode="shifted", n_angular=3)
    dr = (RC - 0.8) / 4
    assert [p[1] for p in sf.radial] == pytest.approx(np.linspace(0.8, RC, 5))
    assert all(p[0] == pytest.approx(1 / (2 * dr**2)) for p in sf.radial)
    centred = generate_parameters(RC, 2, r_min=0.8, n_radial=5, radial_mode="centred", n_angular=0)
    assert [p[0] for p in centred.radial] == pytest.approx(1 / (2 * np.linspace(0.8, RC, 5) ** 2))
    assert all(p[1] == 0 for p in centred.radial) and not centred.g4
    assert len(sf.g4) == 3 * 4 * 2 and not sf.g5  # η grid × ζ × λ
    np.testing.assert_allclose(ours(water_box(), sf).numpy(), dscribe_acsf(water_box(), sf), rtol=0, atol=ACSF_ATOL)


@pytest.mark.parametrize("system", ["cluster", "periodic"])
def test_descriptor_gradients_match_finite_differences(system):
    atoms = water_cluster(3) if system == "cluster" else water_box(4)
    sf = SymmetryFunctions(RC, G2[:2], G4[:3], G5[:2], len(ELEMENTS))
    w = torch.as_tensor(np.random.default_rng(0).normal(size=(len(atoms), sf.n_features)))  # a random readout
    pos = torch.as_tensor(atoms.positions).clone().requires_grad_(True)
    f = lambda p: float((ours(atoms, sf, p) * w).sum())  # noqa: E731  (the graph is fixed: no edge crosses r_c)
    (grad,) = torch.autograd.grad((ours(atoms, sf, pos) * w).sum(), pos)
    check_gradient(f, pos.detach(), grad, h=1e-5, atol=GRAD_ATOL, label=f"Σ w·G ({system})")


def test_neighbour_pairs_are_every_unordered_pair_of_a_centre_once():
    edge_i = torch.tensor([2, 0, 2, 1, 0, 2, 2, 0])
    e1, e2 = neighbour_pairs(edge_i, 4)
    got = sorted(tuple(sorted((int(a), int(b)))) for a, b in zip(e1, e2))
    want = sorted((a, b) for a in range(8) for b in range(a + 1, 8) if edge_i[a] == edge_i[b])
    assert got == want
