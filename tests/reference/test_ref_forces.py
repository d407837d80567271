"""Forces are -dE/dR of the stored (force-consistent) energy: central finite differences, one case per engine.

F_ia ≈ -[E(R + h e_ia) - E(R - h e_ia)] / 2h, truncation error ≈ h²/6 |∂³E| (≲1e-5 eV/Å at h = 1e-3 Å here).
Tolerances state what else limits the agreement:
- PySCF molecular PBE: forces include the grid-response term; residual 3e-5 eV/Å measured (the integration
  grid and SCF convergence, conv_tol 1e-10 Ha); without grid response the error is 4e-4 eV/Å.
- tblite: Cu4 at 5000 K, residual 3e-7 eV/Å measured; the internal energy U = F + TS misses by 0.05 eV/Å,
  which proves that tblite's total energy is the Mermin free energy F = U - TS (the force-consistent one).
- PySCF periodic: H2 in a 3.5 Å box, Γ (multigrid, smeared) and a 2×1×1 k-mesh (FFTDF); residuals 5e-5 and
  7e-5 eV/Å measured (integration grids and SCF convergence), tolerance 2e-4 eV/Å.
"""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError

from fastqmd.reference.calculator import EngineCalculator
from fastqmd.reference.pyscf_mol import PySCFMolEngine
from fastqmd.reference.pyscf_pbc import PySCFPBCEngine
from fastqmd.reference.xtb import TBLiteEngine
from fastqmd.testing import check_gradient
from fastqmd.units import KB_EV

H_ANG = 1e-3


def energy_at(engine, atoms: Atoms, energy=lambda s: s.energy):
    """R [N, 3] Å ↦ energy(engine.compute(atoms at R)) (eV)."""

    def f(R):
        b = atoms.copy()
        b.positions = R
        return energy(engine.compute(b))

    return f


def check(engine, atoms, comps, tol):
    """F = −∂E/∂R on the components `comps` [(atom, axis)] to `tol` eV/Å (central differences, h = H_ANG)."""
    s = engine.compute(atoms)
    check_gradient(energy_at(engine, atoms), atoms.positions, -s.forces, h=H_ANG, atol=tol, indices=comps)
    return s


def test_pyscf_molecule_forces_match_finite_differences():
    at = molecule("H2O")
    at.positions[1] += [0.03, -0.02, 0.05]
    check(PySCFMolEngine(smearing_K=5000.0), at, [(0, 2), (1, 1)], tol=1e-4)


def electronic_entropy_term(s) -> float:
    """T S_el = -2 kT Σ_i [f ln f + (1-f) ln(1-f)] (eV), f = occupation / 2 (closed shell, Γ only)."""
    f = np.clip(s.occupations[0] / 2, 1e-300, 1 - 1e-16)
    return float(-2 * s.electronic_temperature_K * KB_EV * np.sum(f * np.log(f) + (1 - f) * np.log1p(-f)))


def test_tblite_forces_match_finite_differences_at_high_electronic_temperature():
    cu = bulk("Cu", "fcc", a=3.61, cubic=True)
    cu.positions += np.random.default_rng(1).uniform(-0.1, 0.1, (4, 3))
    eng = TBLiteEngine("GFN1-xTB", electronic_temperature_K=5000.0, accuracy=1e-4)
    s = check(eng, cu, [(0, 0), (2, 1)], tol=1e-4)
    # sensitivity: the internal energy U = F + TS is *not* force-consistent (misses by ~0.05 eV/Å here)
    internal = energy_at(eng, cu, lambda t: t.energy + electronic_entropy_term(t))
    with pytest.raises(AssertionError):
        check_gradient(internal, cu.positions, -s.forces, h=H_ANG, atol=1e-2, indices=[(2, 1)])


def test_pyscf_periodic_gamma_forces_match_finite_differences():
    h2 = Atoms("H2", positions=[[1, 1, 1], [1.74, 1.05, 0.97]], cell=np.eye(3) * 3.5, pbc=True)
    eng = PySCFPBCEngine(precision=1e-6, smearing_K=3000.0)
    check(eng, h2, [(1, 0), (1, 1)], tol=2e-4)


def test_pyscf_periodic_kmesh_forces_match_finite_differences():
    """The k-mesh path (KRKS + FFTDF gradients); coarse cutoff for speed, residual 7e-5 eV/Å measured."""
    h2 = Atoms("H2", positions=[[1, 1, 1], [1.74, 1.05, 0.97]], cell=np.eye(3) * 3.5, pbc=True)
    eng = PySCFPBCEngine(kmesh=(2, 1, 1), precision=1e-6, ke_cutoff_Ha=30.0)
    check(eng, h2, [(1, 0)], tol=2e-4)


def test_engine_calculator_exposes_energy_forces_eigenvalues():
    at = molecule("H2O")
    at.calc = EngineCalculator(TBLiteEngine("GFN2-xTB"))
    e = at.get_potential_energy()
    f = at.get_forces()
    s = at.calc.sample
    assert e == s.energy == at.get_potential_energy(force_consistent=True)
    assert np.array_equal(f, s.forces)
    assert at.calc.results["eigenvalues"].shape == (1, 6)
    at.positions[0, 0] += 0.01  # a new geometry triggers a new calculation
    assert at.get_potential_energy() != pytest.approx(e, abs=1e-9)


def test_pyscf_periodic_without_gradients_records_why():
    """meta-GGA k-point gradients are not implemented in PySCF 2.14: forces None, reason in extras."""
    h2 = Atoms("H2", positions=[[1, 1, 1], [1.74, 1.05, 0.97]], cell=np.eye(3) * 3.5, pbc=True)
    s = PySCFPBCEngine(xc="SCAN", kmesh=(2, 1, 1), precision=1e-6, ke_cutoff_Ha=30.0).compute(h2)
    assert s.forces is None and "metaGGA" in s.extras["forces_unavailable"]
    calc = EngineCalculator(PySCFPBCEngine(xc="SCAN", kmesh=(2, 1, 1), precision=1e-6, ke_cutoff_Ha=30.0))
    h2.calc = calc
    with pytest.raises(PropertyNotImplementedError, match="metaGGA"):
        h2.get_forces()


@pytest.mark.parametrize("engine, atoms", [
    (TBLiteEngine("GFN1-xTB", electronic_temperature_K=3000.0), "water"),
    (PySCFMolEngine(xc="HF", basis="sto-3g", smearing_K=3000.0), "water"),
    (PySCFPBCEngine(precision=1e-6, ke_cutoff_Ha=30.0, smearing_K=3000.0), "h2_box"),
])
def test_energy_forces_is_the_md_path_of_compute(engine, atoms):
    """`Engine.energy_forces` (what MD runs) returns exactly the energy, forces, eigenvalues and Fermi level of
    `Engine.compute` (the same SCF), without building the H/S sample."""
    if atoms == "water":
        at = molecule("H2O")
        at.positions[1] += [0.03, -0.02, 0.05]
    else:
        at = Atoms("H2", positions=[[1, 1, 1], [1.74, 1.05, 0.97]], cell=np.eye(3) * 3.5, pbc=True)
    s, r = engine.compute(at), engine.energy_forces(at)
    assert abs(r.energy - s.energy) < 1e-10
    assert np.abs(r.forces - s.forces).max() < 1e-8  # eV/Å; PySCF re-runs its SCF from scratch
    assert np.abs(r.eigenvalues - s.eigenvalues).max() < 1e-7 and r.eigenvalues.shape == s.eigenvalues.shape
    assert r.fermi_level == pytest.approx(s.fermi_level, abs=1e-7)
