"""GPAW LCAO engine (PBE, dzp, PAW): the orbital convention by rotation, the Bloch phases, H and S against GPAW's
own eigenvalues, forces against finite differences, and `fastqmd generate` on Dask.

System: Cu₂ (two primitive fcc cells, one atom displaced) at a coarse grid (h = 0.3 Å), so each SCF takes ~2-4 s.
Measured tolerances (docs/GPAW.md):
- A rotation by a cubic symmetry operation (90° about z) is exact: H, S and forces to 1e-13. A random rotation
  moves H by 8e-5 eV, E by 1e-5 eV and forces by 3e-5 eV/Å: GPAW integrates the PAW corrections on a
  space-fixed Lebedev grid (as PySCF's DFT grid in test_ref_rotation.py); S is exact (6e-15).
- eigh(H, S) = GPAW's eigenvalues to 4e-11 eV at every k-point.
- Forces with a tight SCF: central differences at h = 1e-3 Å agree to 3.6e-5 eV/Å (1.7e-4 with GPAW's
  default SCF criteria).
"""

import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
import yaml
from ase.build import bulk

pytest.importorskip("gpaw")

from fastqmd.errors import InputError  # noqa: E402
from fastqmd.orbitals import orbital_rotation, real_wigner_D  # noqa: E402
from fastqmd.reference.config import build_engine, parse_engine_config  # noqa: E402
from fastqmd.reference.gpaw_lcao import GPAWLCAOEngine  # noqa: E402
from fastqmd.testing import Transform, assert_equivariant, directional_difference, random_transform  # noqa: E402

TIGHT = {"grid_spacing_A": 0.3, "energy_tol_eV": 1e-8, "density_tol": 1e-8}
TOL_EXACT = 1e-9  # eV (H), dimensionless (S), eV/Å (forces): symmetry-exact rotation, round-off only
TOL_H_ROT_EV = 5e-4  # random rotation: measured 8e-5 eV (space-fixed Lebedev quadrature in the PAW spheres)
TOL_F_ROT = 2e-4  # eV/Å, random rotation: measured 3e-5
WRONG_MIN_EV = 1e-2  # a wrong D misses by far more
TOL_EIG_EV = 1e-8
TOL_FD = 1e-4  # eV/Å at h = 1e-3 Å: measured 3.6e-5
CU_ORBITALS = 15  # dzp: 4s, 3d, 4s', 3d', p


def cu2():
    at = bulk("Cu", "fcc", a=3.61).repeat((2, 1, 1))
    at.positions[1] += [0.1, -0.05, 0.07]
    return at


class Outputs:
    """(positions, cell) ↦ (H(k), S(k), forces) of an engine, memoized (assert_equivariant calls f twice)."""

    def __init__(self, engine, atoms):
        self.engine, self.atoms, self.cache = engine, atoms, {}

    def sample(self, positions, cell):
        key = (np.asarray(positions).tobytes(), np.asarray(cell).tobytes())
        if key not in self.cache:
            b = self.atoms.copy()
            b.set_cell(cell, scale_atoms=False)
            b.positions = positions
            self.cache[key] = self.engine.compute(b)
        return self.cache[key]

    def __call__(self, positions, cell):
        s = self.sample(positions, cell)
        return s.H, s.S, s.forces

    def block_rotation(self, spoil=None):
        """M ↦ D(Q) M D(Q)ᵀ at every k-point (the fractional k-points do not move with the cell)."""

        def rho(M, T):
            D = orbital_rotation(self.first.basis, self.atoms.get_chemical_symbols(), T.Q)
            D = D if spoil is None else spoil(D, T.Q)
            return D @ M @ D.T

        return rho

    @property
    def first(self):
        return self.sample(self.atoms.positions, self.atoms.cell.array)


@pytest.fixture(scope="module")
def cu2_k3():
    """Cu₂ on a 3×1×1 Γ-centred mesh (complex H(k) at k = ±1/3), GPAW's default SCF criteria: a rotated or
    translated copy follows the same SCF path, so these comparisons do not need a tight SCF."""
    return Outputs(GPAWLCAOEngine(kpts=(3, 1, 1), grid_spacing_A=0.3), cu2())


def test_sample_layout_and_gpaw_eigenvalues(cu2_k3):
    s = cu2_k3.first
    assert s.basis.shells == {"Cu": (0, 2, 0, 2, 1)}
    assert s.H.shape == s.S.shape == (3, 2 * CU_ORBITALS, 2 * CU_ORBITALS) and np.iscomplexobj(s.H)
    np.testing.assert_allclose(s.kpoints, [[-1 / 3, 0, 0], [0, 0, 0], [1 / 3, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(s.kweights, np.full(3, 1 / 3))
    assert s.n_electrons == 22 and s.extras["valence_electrons"] == {"Cu": 11}
    assert s.occupations.sum(axis=1) @ s.kweights == pytest.approx(22, abs=1e-8)
    assert s.fermi_level is not None and s.extras["homo_eV"] < s.extras["lumo_eV"]
    assert s.energy < s.extras["energy_zero_kT_eV"]  # F = U − TS lies below its kT → 0 extrapolation
    for k in range(3):
        assert np.abs(s.H[k] - s.H[k].conj().T).max() < 1e-12
        eps = scipy.linalg.eigh(s.H[k], s.S[k], eigvals_only=True)
        assert np.abs(eps - s.eigenvalues[k]).max() < TOL_EIG_EV


def test_cubic_rotation_rotates_blocks_exactly(cu2_k3):
    """90° about z maps GPAW's space-fixed angular grids onto themselves: covariance to round-off."""
    Q = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    T = Transform(Q, np.zeros(3), np.arange(2))
    rho = cu2_k3.block_rotation()
    atoms = cu2_k3.atoms
    assert_equivariant(cu2_k3, [atoms.positions, atoms.cell.array], ["positions", "vector"], (rho, rho, "forces"),
                       transform=T, atol=TOL_EXACT)


def test_random_rotation_rotates_blocks_and_a_wrong_D_fails(cu2_k3):
    T = random_transform(2, seed=5)
    rho = cu2_k3.block_rotation()
    atoms = cu2_k3.atoms
    args = ([atoms.positions, atoms.cell.array], ["positions", "vector"])
    assert_equivariant(cu2_k3, *args, (rho, rho, "forces"), transform=T, atol=(TOL_H_ROT_EV, TOL_EXACT, TOL_F_ROT))

    def transpose_first_d(D, Q):  # the first d shell of atom 0 rotated by D(Q)ᵀ = D(Q⁻¹)
        Dw = D.copy()
        Dw[1:6, 1:6] = real_wigner_D(2, Q).T
        return Dw

    bad = cu2_k3.block_rotation(transpose_first_d)
    with pytest.raises(AssertionError, match="output 0"):
        assert_equivariant(cu2_k3, *args, (bad, rho, "forces"), transform=T, atol=WRONG_MIN_EV)


def test_lattice_translation_of_an_atom_multiplies_its_bloch_sum(cu2_k3):
    """x_1 → x_1 + m·cell: H(k)_μν gains e^{−i2πk·m} on atom 1's columns (conjugate on its rows), although GPAW
    wraps both structures to the same one; the energy is unchanged."""
    s = cu2_k3.first
    m = np.array([1, 0, -2])
    pos = cu2_k3.atoms.positions.copy()
    pos[1] += m @ cu2_k3.atoms.cell.array
    t = cu2_k3.sample(pos, cu2_k3.atoms.cell.array)
    p = np.ones((3, 2 * CU_ORBITALS), complex)
    p[:, CU_ORBITALS:] = np.exp(-2j * np.pi * s.kpoints @ m)[:, None]
    expected = p.conj()[:, :, None] * s.H * p[:, None, :]
    assert np.abs(t.H - expected).max() < TOL_EXACT
    assert np.abs(t.H - s.H).max() > WRONG_MIN_EV  # the phases matter at k = ±1/3
    assert t.energy == pytest.approx(s.energy, abs=1e-9)


def test_bloch_sum_convention_against_a_supercell():
    """S(k) of one Cu atom (placed outside its cell) equals the fastqmd Bloch sum Σ_j e^{i2πk j} S_0j of the Γ
    overlap of its 3×1×1 supercell (docs/CONVENTIONS.md): the supercell's Γ overlap between copy 0 and copy j
    sums S(0, R) over R ≡ j (mod 3), and k = j'/3 makes the phases of those R equal."""
    prim = bulk("Cu", "fcc", a=3.61)
    prim.positions[0] += 1.3 * prim.cell[0] + [0.05, 0.0, 0.0]
    s = GPAWLCAOEngine(kpts=(3, 1, 1), grid_spacing_A=0.3).compute(prim)
    sc = prim.repeat((3, 1, 1))  # copy j at x_0 + j·a_1
    calc = GPAWLCAOEngine(grid_spacing_A=0.3)._calculator()
    calc.create_new_calculation(sc)  # S needs no SCF
    (S_sc,) = [w.S_MM.data for w in calc.dft.ibzwfs]
    n = CU_ORBITALS
    for k, kc in enumerate(s.kpoints):
        bloch = sum(np.exp(2j * np.pi * kc[0] * j) * S_sc[:n, j * n:(j + 1) * n] for j in range(3))
        assert np.abs(s.S[k] - bloch).max() < 1e-10


def test_forces_are_minus_the_gradient_of_the_free_energy():
    """EnginePotential (the MD path: Engine.energy_forces): F·v = −dF/dλ along a random direction v, by
    central differences of GPAW's free energy (Γ point)."""
    from fastqmd.potential import system_from_atoms
    from fastqmd.reference.calculator import EnginePotential

    pot = EnginePotential(GPAWLCAOEngine(**TIGHT))
    atoms = cu2()
    system = system_from_atoms(atoms)
    v = np.random.default_rng(0).normal(size=(2, 3))
    v /= np.linalg.norm(v)

    def energy(x):
        return float(pot.compute(system.with_positions(system.positions + x * v_t)).energy)

    import torch

    v_t = torch.as_tensor(v, dtype=system.positions.dtype)
    r = pot.compute(system)
    dE = directional_difference(energy, 0.0, 1.0, h=1e-3)
    assert abs(float((r.forces * v_t).sum()) + dE) < TOL_FD
    assert np.isfinite(r.extras["fermi_level"]) and r.eigenvalues.shape == (1, 2 * CU_ORBITALS)


def test_time_reversal_halves_the_mesh_with_the_same_energy():
    at = bulk("Cu", "fcc", a=3.61)
    at.positions[0] += [0.05, 0.02, -0.03]
    full = GPAWLCAOEngine(kpts=(3, 1, 1), grid_spacing_A=0.3).compute(at)
    half = GPAWLCAOEngine(kpts=(3, 1, 1), grid_spacing_A=0.3, time_reversal=True).compute(at)
    assert len(half.kpoints) == 2 and half.kweights.sum() == pytest.approx(1.0)
    assert half.energy == pytest.approx(full.energy, abs=1e-6)
    assert np.abs(half.forces - full.forces).max() < 1e-5


def test_config_builds_the_engine_and_check_refuses_what_gpaw_cannot_do():
    eng = build_engine(parse_engine_config({"kind": "gpaw-lcao", "kpts": [3, 3, 3], "setups": {"Pd": "10"},
                                            "electronic_temperature_K": 1160.45}))
    assert isinstance(eng, GPAWLCAOEngine)
    assert eng.settings["kpts"] == [3, 3, 3] and eng.settings["setups"] == {"Pd": "10"}
    eng.check(bulk("Pd", "fcc", a=3.89))
    slab = bulk("Cu", "fcc", a=3.61)
    slab.pbc = (True, True, False)
    with pytest.raises(InputError, match="fully periodic"):
        eng.check(slab)
    with pytest.raises(InputError, match="Cu.nosuch.PBE"):
        GPAWLCAOEngine(setups={"Cu": "nosuch"}).check(bulk("Cu", "fcc", a=3.61))


def test_generate_on_dask_labels_two_rattled_cells(tmp_path):
    from fastqmd.data.store import Dataset

    cfg = {
        "structures": [{"kind": "rattled_bulk", "element": "Cu", "supercell": 1, "max_displacement_fraction": 0.05,
                        "count": 2, "seed": 3}],
        "engine": {"kind": "gpaw-lcao", "kpts": [2, 2, 2], "grid_spacing_A": 0.3},
        "output": str(tmp_path / "cu.h5"),
        "workers": 2,
    }
    path = tmp_path / "gen.yaml"
    path.write_text(yaml.safe_dump(cfg))
    dask_cli = [sys.executable, "-c", "import fastqmd.data.generate as g; g.CLUSTER_START_S = 0.0; "
                "from fastqmd.cli import main; main()"]  # a LocalCluster even for two samples
    r = subprocess.run([*dask_cli, "generate", str(path), "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    ds = Dataset(tmp_path / "cu.h5")
    assert len(ds) == 2 and ds.basis.shells == {"Cu": (0, 2, 0, 2, 1)}
    d = ds.read(ds.keys()[1], ("H", "S", "eigenvalues", "kpoints"))
    assert d["H"].shape == (8, CU_ORBITALS, CU_ORBITALS) and d["kpoints"].shape == (8, 3)
    for k in range(8):
        eps = scipy.linalg.eigh(d["H"][k], d["S"][k], eigvals_only=True)
        assert np.abs(eps - d["eigenvalues"][k]).max() < TOL_EIG_EV
    ds.close()


def test_md_with_the_gpaw_reference_conserves_energy(tmp_path):
    """`fastqmd md` with `potential: {kind: reference, engine: {kind: gpaw-lcao}}` (AIMD): 3 NVE steps of 1 fs
    on Cu₂ (Γ, h = 0.3 Å, GPAW's default SCF criteria); the total energy stays within 0.1 meV (measured
    1.3e-6 eV)."""
    from ase.io import write

    from fastqmd.md.config import MDConfig
    from fastqmd.md.run import run_md

    write(tmp_path / "cu2.extxyz", cu2())
    cfg = MDConfig.model_validate({
        "structure": {"kind": "file", "path": str(tmp_path / "cu2.extxyz")},
        "potential": {"kind": "reference", "engine": {"kind": "gpaw-lcao", "grid_spacing_A": 0.3}},
        "ensemble": {"kind": "nve"}, "temperature_K": 300, "timestep_fs": 1.0, "steps": 3,
        "output": {"dir": str(tmp_path / "md"), "progress": False, "checkpoint_every": 2},
    })
    run_md(cfg)
    th = np.loadtxt(tmp_path / "md" / "thermo.csv", delimiter=",", skiprows=1)
    assert th.shape[0] == 4
    assert np.abs(th[:, 6] - th[0, 6]).max() < 1e-4


def test_kpath_bands_equal_the_unfolded_supercell_gamma_levels():
    """Two routes to the same crystal bands: GPAW's k-path (`band_structure`: primitive SCF on the 2×2×2 mesh, then
    fixed density at any k) and the Γ point of the 2×2×2 supercell unfolded (`fastqmd.nnh.bands`). On the same
    grid (supercell 12³ = 2 × 6³) they are one calculation: every level at every commensurate k agrees (measured
    1e-8 eV). (`evaluate_bands` with a k-path engine: tests/nnh_train/test_nnh_bands.py.)"""
    from fastqmd.nnh import bands as B

    prim = bulk("Cu", "fcc", a=3.61)
    eng = GPAWLCAOEngine(grid_spacing_A=0.3)
    ref, mu_sc, _ = B.reference_unfolded(eng, prim, 2)
    eps, mu = eng.band_structure(prim, ref.kpts, (2, 2, 2), gpts=(6, 6, 6))
    assert mu == pytest.approx(mu_sc, abs=1e-6)
    for ik in range(len(ref.kpts)):
        levels = ref.levels(ik)
        assert len(levels) == CU_ORBITALS
        assert np.abs(levels - eps[ik]).max() < 1e-6, (ref.kpts[ik], levels - eps[ik])
    # a different grid is a different (egg-box) calculation: the test above would see it
    eps8, _ = eng.band_structure(prim, ref.kpts[:1], (2, 2, 2), gpts=(8, 8, 8))
    assert np.abs(eps8[0] - eps[0]).max() > 1e-3


def test_reduced_basis_reads_the_file_in_parentheses():
    """GPAW's 'szp(dzp)' is the single-zeta-polarized subset of the dzp file: the file check looks for that file,
    and the engine accepts it (benchmarks/nnh_cu_dft/basis_conditioning.py relabels Cu32 with it)."""
    from fastqmd.reference.gpaw_lcao import setup_file_names

    assert setup_file_names("Cu", "paw", "PBE", "szp(dzp)") == ("Cu.PBE", "Cu.dzp.basis")
    assert setup_file_names("Pd", "10", "PBE", "dzp") == ("Pd.10.PBE", "Pd.10.dzp.basis")
    GPAWLCAOEngine(basis="szp(dzp)").check(bulk("Cu", "fcc", a=3.61))
    with pytest.raises(InputError, match="no file"):
        GPAWLCAOEngine(basis="szp(qzp)").check(bulk("Cu", "fcc", a=3.61))
