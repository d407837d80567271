"""Shared small float64 models and structures for the NN-Hamiltonian tests (built once per session)."""

import numpy as np
import pytest

from fastqmd.nnh import NNHConfig, NNHModel, OverlapConfig, Repulsion, RepulsionConfig, TwoCentreOverlap
from fastqmd.reference.base import BasisSpec

# O like def2-SVP (3s 2p 1d), H (2s 1p): blocks need 0e 1o 1e 2e 2o 3o 3e 4e
BASIS = {"O": (0, 0, 0, 1, 1, 2), "H": (0, 0, 1)}
SMALL_IRREPS = "8x0e+4x1o+4x1e+4x2e+4x2o+2x3o+2x3e+2x4e"
CUTOFF = 3.2


@pytest.fixture(scope="session")
def basis_spec():
    return BasisSpec(BASIS)


@pytest.fixture(scope="session")
def h_model():
    cfg = NNHConfig(basis=BASIS, cutoff=CUTOFF, hidden_irreps=SMALL_IRREPS, n_layers=2, radial_hidden=16,
                    n_scalars_embed=8, n_radial=6, avg_num_neighbors=4.0, dtype="float64")
    return NNHModel(cfg).eval()


@pytest.fixture(scope="session")
def s_model():
    return TwoCentreOverlap(OverlapConfig(basis=BASIS, cutoff=CUTOFF, radial_hidden=16, dtype="float64"))


@pytest.fixture(scope="session")
def rep_model():
    return Repulsion(RepulsionConfig(species=("H", "O"), cutoff=2.5, dtype="float64"))


@pytest.fixture
def molecule():
    """Two slightly distorted water molecules: (symbols, positions Å)."""
    rng = np.random.default_rng(7)
    w = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    pos = np.concatenate([w, w + [1.4, 1.7, 0.9]]) + 0.05 * rng.normal(size=(6, 3))
    return ["O", "H", "H", "O", "H", "H"], pos


@pytest.fixture
def crystal():
    """A small skewed periodic O/H cell (shorter than the cutoff, so self-image edges exist)."""
    rng = np.random.default_rng(11)
    cell = np.array([[2.9, 0.0, 0.0], [0.4, 3.1, 0.0], [0.2, -0.3, 2.7]])
    frac = np.array([[0.1, 0.2, 0.05], [0.55, 0.45, 0.35], [0.3, 0.8, 0.7]]) + 0.02 * rng.normal(size=(3, 3))
    return ["O", "H", "H"], frac @ cell, cell
