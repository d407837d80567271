"""Stored H and S reproduce each engine's own orbital energies: eigh(H(k), S(k)) = ε(k) to 1e-5 eV.

Also: the stored PySCF H is PySCF's own Kohn-Sham (Fock) matrix, and S(k) follows the documented Bloch phase
convention S(k) = Σ_R e^{i2π k·n_R} S(0, R) (k fractional), checked against a real-space lattice sum.
"""

import numpy as np
import pytest
import scipy.linalg as sl
from scipy.special import expit
from ase import Atoms
from ase.build import bulk, molecule

from fastqmd.reference.pyscf_mol import PySCFMolEngine, pyscf_to_fastqmd_perm
from fastqmd.reference.pyscf_pbc import PySCFPBCEngine
from fastqmd.reference.xtb import TBLiteEngine
from fastqmd.errors import CalculationFailed
from fastqmd.reference.base import SCFError
from fastqmd.units import BOHR_ANG, HARTREE_EV, KB_EV

TOL_EIG_EV = 1e-5  # issue requirement; H is rebuilt from the engine's eigenpairs, so ~1e-12 is typical
TOL_FOCK_EV = 1e-4  # stored H vs PySCF get_fock(final density): limited by SCF convergence (conv_tol 1e-10 Ha)


def eig_error(sample) -> float:
    """max_k max_i |eigh(H_k, S_k)_i - ε_ki| in eV."""
    errs = []
    for H, S, e in zip(sample.H, sample.S, sample.eigenvalues):
        assert np.abs(H - H.conj().T).max() < 1e-10 and np.abs(S - S.conj().T).max() < 1e-12
        errs.append(np.abs(sl.eigh(H, S, eigvals_only=True) - e).max())
    return float(max(errs))


def common_checks(s, n_atoms):
    nao = s.basis.offsets([str(x) for x in s.atoms().get_chemical_symbols()])[-1]
    assert s.H.shape == s.S.shape == (len(s.kpoints), nao, nao)
    assert np.all(np.diff(s.eigenvalues, axis=1) >= -1e-12)  # ascending
    assert abs((s.occupations * s.kweights[:, None]).sum() - s.n_electrons) < 1e-6
    assert s.forces is None or s.forces.shape == (n_atoms, 3)
    assert abs(s.kweights.sum() - 1) < 1e-12


def test_pyscf_molecule_eigenproblem_and_fock():
    at = molecule("H2O")
    eng = PySCFMolEngine()
    s = eng.compute(at)
    common_checks(s, 3)
    assert eig_error(s) < TOL_EIG_EV
    assert s.extras["homo_eV"] < s.fermi_level < s.extras["lumo_eV"]
    # the stored H is PySCF's Fock matrix of the converged density, reordered
    mol = eng.build_mol(at)
    mf = eng.build_scf(mol)
    mf.kernel()
    p = pyscf_to_fastqmd_perm(mol)
    F = mf.get_fock()[np.ix_(p, p)] * HARTREE_EV
    assert np.abs(F - s.H[0]).max() < TOL_FOCK_EV


def test_pyscf_periodic_gamma_si2_eigenproblem():
    si = bulk("Si", "diamond", a=5.43)
    si.positions[1] += [0.05, -0.03, 0.02]
    s = PySCFPBCEngine(precision=1e-6, ke_cutoff_Ha=40.0).compute(si)  # reduced cutoff: speed
    common_checks(s, 2)
    assert s.H.dtype == np.float64 and np.allclose(s.kpoints, 0)
    assert s.basis.shells["Si"] == (0, 1)  # gth-szv: 3s 3p
    assert s.n_electrons == 8  # GTH valence
    assert eig_error(s) < TOL_EIG_EV
    assert s.forces is not None and np.abs(s.forces.sum(0)).max() < 1e-2  # momentum conservation (grid-limited)


@pytest.fixture(scope="module")
def h2_kmesh():
    h2 = Atoms("H2", positions=[[1, 1, 1], [1.74, 1.05, 0.97]], cell=np.eye(3) * 3.5, pbc=True)
    eng = PySCFPBCEngine(kmesh=(2, 1, 1), precision=1e-6, ke_cutoff_Ha=30.0)  # coarse: speed, not accuracy
    return eng, h2, eng.compute(h2)


def test_pyscf_periodic_kmesh_eigenproblem(h2_kmesh):
    _, _, s = h2_kmesh
    common_checks(s, 2)
    assert s.H.dtype == np.complex128
    assert np.allclose(s.kpoints, [[0, 0, 0], [0.5, 0, 0]])
    assert eig_error(s) < TOL_EIG_EV


def test_bloch_phase_convention_of_stored_overlap(h2_kmesh):
    """S(k) = Σ_n e^{i2π k·n} S(0, n) with S(0, n)_μν = <φ_μ(r)|φ_ν(r - n·cell)>, from molecular integrals."""
    from pyscf import gto

    eng, h2, s = h2_kmesh
    cell = eng.build_cell(h2)
    a = h2.cell.array
    images = [np.array(n) - 2 for n in np.ndindex(5, 5, 5)]  # n ∈ {-2..2}³: overlaps beyond are < 1e-10
    atoms = [("H", tuple(p)) for p in h2.positions]
    for n in images:
        atoms += [("H", tuple(p + n @ a)) for p in h2.positions]
    mol = gto.M(atom=atoms, basis={"H": cell._basis["H"]}, unit="Angstrom", verbose=0)
    S_all = mol.intor_symmetric("int1e_ovlp")
    nao = 2  # one s function per H (gth-szv)
    for k, kf in enumerate(s.kpoints):
        blocks = [S_all[:nao, nao * (i + 1) : nao * (i + 2)] for i in range(len(images))]  # S(0, n)
        Sk = sum(np.exp(2j * np.pi * kf @ n) * b for n, b in zip(images, blocks))
        assert np.abs(Sk - s.S[k]).max() < 1e-8


def rattled_cu4() -> Atoms:
    cu = bulk("Cu", "fcc", a=3.61, cubic=True)
    cu.positions += np.random.default_rng(0).uniform(-0.1, 0.1, (4, 3))
    return cu


# GFN2-xTB's SCC does not converge for this 4-atom Cu cell at T ≤ 1000 K (tblite 0.8.0, accuracy 1 to 0.01);
# at 3000 K it does.
@pytest.mark.parametrize("method,T", [("GFN1-xTB", 1000.0), ("GFN2-xTB", 3000.0)])
def test_tblite_periodic_cu_eigenproblem(method, T):
    s = TBLiteEngine(method, electronic_temperature_K=T).compute(rattled_cu4())
    common_checks(s, 4)
    assert s.basis.shells["Cu"] == (2, 0, 1)  # tblite: 3d 4s 4p
    assert eig_error(s) < TOL_EIG_EV
    assert np.abs(s.forces.sum(0)).max() < 1e-8
    f = s.occupations[0] / 2  # Fermi-Dirac at the reported μ and T
    kT = T * KB_EV
    assert np.abs(f - expit(-(s.eigenvalues[0] - s.fermi_level) / kT)).max() < 1e-6


def test_tblite_unconverged_scc_raises_scf_error():
    with pytest.raises(SCFError, match="not converged") as exc:
        TBLiteEngine("GFN2-xTB", electronic_temperature_K=300.0, max_iter=20).compute(rattled_cu4())
    assert isinstance(exc.value, CalculationFailed)  # the CLI's exit 3


def test_tblite_h0_is_not_the_scc_hamiltonian():
    """Why H is rebuilt: tblite's saved `hamiltonian-matrix` is H0, whose eigenvalues differ from ε."""
    from tblite.interface import Calculator

    at = molecule("H2O")
    calc = Calculator("GFN2-xTB", at.numbers, at.positions / BOHR_ANG)
    calc.set("verbosity", 0)
    calc.set("save-integrals", 1)
    r = calc.singlepoint()
    w = sl.eigh(r.get("hamiltonian-matrix"), r.get("overlap-matrix"), eigvals_only=True)
    assert np.abs(w - r.get("orbital-energies")).max() * HARTREE_EV > 0.1


def test_fermi_level_from_fillings_or_midgap():
    from fastqmd.reference.pyscf_mol import fermi_level

    eps = np.array([-3.0, -1.0, -0.2, 0.1, 2.0])
    kT, mu = 0.05, -0.07
    occ = 2 * expit(-(eps - mu) / kT)
    homo, lumo, ef = fermi_level(eps, occ, 2.0, kT)
    assert abs(ef - mu) < 1e-10 and (homo, lumo) == (-0.2, 0.1)
    homo, lumo, ef = fermi_level(eps, np.array([2.0, 2.0, 0, 0, 0]), 2.0, kT)  # integer: midgap
    assert (homo, lumo, ef) == (-1.0, -0.2, -0.6)
