import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT

from fastqmd.md.state import degrees_of_freedom, init_state, masses_of, maxwell_boltzmann
from fastqmd.potential import calculator_to_potential


@pytest.fixture
def cu32():
    """32-atom fcc Cu (2×2×2 conventional cells, a = 3.61 Å), rattled by 0.05 Å (seeded)."""
    a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    a.rattle(0.05, seed=1)
    return a


def make_state(atoms, temperature_K=300.0, seed=1, fixed=None, integrator=None, reset=False):
    n = len(atoms)
    fixed = torch.zeros(n, dtype=torch.bool) if fixed is None else fixed
    dof = degrees_of_freedom(n, int(fixed.sum()), True)
    m = masses_of(atoms)
    v = maxwell_boltzmann(m, fixed, temperature_K, dof, seed)
    pot = calculator_to_potential(EMT(), reset=reset)
    s = init_state(atoms, pot, v, m, fixed, dof)
    return (integrator.init(s) if integrator is not None else s), pot


@pytest.fixture
def md_state():
    """make_state(atoms, temperature_K=300, seed=1, fixed=None, integrator=None) -> (state, potential)."""
    return make_state
