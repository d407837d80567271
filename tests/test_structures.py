"""Structure samplers: sizes, seeding, displacement bounds, thermal statistics, and input validation."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.io import write

from fastqmd.errors import InputError
from fastqmd.structures import (
    Molecule,
    RattledBulk,
    StructureFile,
    build_structures,
    normal_modes,
    thermal_displacements,
    validate_atoms,
)
from fastqmd.units import KB_EV as kB


@pytest.mark.parametrize("n,natoms", [(4, 64), (5, 125), (6, 216)])
def test_primitive_fcc_supercells_have_study_sizes(n, natoms):
    (atoms,) = build_structures(RattledBulk(element="Cu", supercell=n, max_displacement_fraction=0.0))
    assert len(atoms) == natoms
    assert abs(atoms.cell.volume / natoms - 3.61**3 / 4) < 1e-9  # fcc: a³/4 per atom


def test_pd_default_lattice_and_conventional_cell():
    (atoms,) = build_structures(RattledBulk(element="Pd", supercell=2, cubic=True, max_displacement_fraction=0))
    assert len(atoms) == 32
    np.testing.assert_allclose(atoms.cell.lengths(), [2 * 3.89] * 3)


def test_rattle_is_seeded_bounded_and_count_independent():
    ideal = bulk("Cu", "fcc", a=3.61).repeat(4)
    a = build_structures(RattledBulk(count=3, seed=7, max_displacement_fraction=0.25))
    b = build_structures(RattledBulk(count=5, seed=7, max_displacement_fraction=0.25))
    c = build_structures(RattledBulk(count=1, seed=8, max_displacement_fraction=0.25))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.positions, y.positions)
    assert not np.allclose(a[0].positions, c[0].positions)
    disp = np.concatenate([s.positions - ideal.positions for s in b])
    assert np.abs(disp).max() <= 0.25 * 3.61
    assert np.abs(disp).max() > 0.9 * 0.25 * 3.61  # uniform up to the bound: it gets close to it


def test_min_distance_floor_redraws_deterministically():
    from fastqmd.structures import min_distance

    src = RattledBulk(supercell=2, max_displacement_fraction=0.25, min_distance_A=1.5, count=4, seed=3)
    a, b = build_structures(src), build_structures(src)  # median nearest pair 1.2 Å: most draws rejected
    assert all(min_distance(x) >= 1.5 for x in a)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.positions, y.positions)
    with pytest.raises(InputError, match="no structure"):
        build_structures(RattledBulk(supercell=2, max_displacement_fraction=0.25, min_distance_A=2.5))


def test_thermal_normal_mode_sampling_has_equipartition():
    """Classical harmonic sampling: <½ Σ ω² Q²> = (n_vib/2) kT, judged in standard errors."""
    mol, w2, vecs = normal_modes(molecule("H2O"), "GFN2-xTB")
    vib = w2 > 1e-3 * w2.max()
    assert vib.sum() == 3
    kT = kB * 300.0
    rng = np.random.default_rng(0)
    m = np.repeat(mol.get_masses(), 3)
    e = []
    for _ in range(2000):
        dx = thermal_displacements(w2, vecs, mol.get_masses(), kT, False, rng).ravel()
        q = vecs[:, vib].T @ (np.sqrt(m) * dx)
        e.append(0.5 * np.sum(w2[vib] * q**2))
    e = np.array(e)
    sem = e.std() / np.sqrt(len(e))
    assert abs(e.mean() - 1.5 * kT) < 4 * sem
    # the rigid-body modes are not excited: no net translation
    dx = thermal_displacements(w2, vecs, mol.get_masses(), kT, False, rng)
    assert np.linalg.norm(mol.get_masses() @ dx) < 1e-8


def test_molecule_sources_are_reproducible(tmp_path):
    a = build_structures(Molecule(name="H2O", sampling="random", displacement_A=0.1, count=2, seed=3))
    b = build_structures(Molecule(name="H2O", sampling="random", displacement_A=0.1, count=2, seed=3))
    np.testing.assert_array_equal(a[1].positions, b[1].positions)
    write(tmp_path / "w.xyz", molecule("H2O"))
    c = build_structures(Molecule(file=tmp_path / "w.xyz", sampling="random", count=1))
    assert c[0].get_chemical_formula() == "H2O"


@pytest.mark.parametrize("ext", ["extxyz", "traj", "cif", "vasp"])
def test_structure_files_of_several_formats(tmp_path, ext):
    frames = [bulk("Cu", "fcc", a=3.61, cubic=True), bulk("Pd", "fcc", a=3.89, cubic=True)]
    path = tmp_path / ("POSCAR" if ext == "vasp" else f"s.{ext}")
    if ext == "vasp":
        write(path, frames[0], format="vasp")
        frames = frames[:1]
    else:
        write(path, frames)
    got = build_structures(StructureFile(path=path))
    assert [g.get_chemical_formula() for g in got] == [f.get_chemical_formula() for f in frames]


def test_bad_structures_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="0.300 Å apart"):
        validate_atoms(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.3]]))
    with pytest.raises(InputError, match="non-finite"):
        validate_atoms(Atoms("H2", positions=[[0, 0, 0], [0, np.nan, 1.0]]))
    with pytest.raises(InputError, match="zero volume"):
        validate_atoms(Atoms("Cu", positions=[[0, 0, 0]], cell=[[1, 0, 0], [2, 0, 0], [0, 0, 1]], pbc=True))
    # minimum image: atoms close through the periodic boundary
    with pytest.raises(InputError, match="apart"):
        validate_atoms(Atoms("H2", positions=[[0.1, 0, 0], [4.9, 0, 0]], cell=[5, 5, 5], pbc=True))
    with pytest.raises(InputError, match="not found"):
        build_structures(StructureFile(path=tmp_path / "missing.xyz"))
    (tmp_path / "junk.xyz").write_text("this is not\nan xyz file\n")
    with pytest.raises(InputError, match="cannot read"):
        build_structures(StructureFile(path=tmp_path / "junk.xyz"))
    with pytest.raises(InputError, match="no atoms"):
        validate_atoms(Atoms())
    with pytest.raises(InputError, match="mixed periodic"):
        validate_atoms(Atoms("H2", positions=[[0, 0, 0], [0, 0, 1.0]], cell=[5, 5, 5], pbc=[True, True, False]))


def test_file_sources_take_path_and_accept_file(tmp_path):
    """`kind: file` and `kind: molecule` read a structure file from `path:`; `file:` is an accepted alias of both,
    and the stored field names (config hashes of existing runs) are unchanged."""
    write(tmp_path / "w.xyz", molecule("H2O"))
    for key in ("path", "file"):
        f = StructureFile.model_validate({"kind": "file", key: str(tmp_path / "w.xyz")})
        m = Molecule.model_validate({"kind": "molecule", key: str(tmp_path / "w.xyz"), "sampling": "random"})
        assert build_structures(f)[0].get_chemical_formula() == "H2O"
        assert build_structures(m)[0].get_chemical_formula() == "H2O"
        assert f.model_dump()["path"] == m.model_dump()["file"] == tmp_path / "w.xyz"
