"""ASE Calculator and CLI: units at the boundary, warm starts, errors as one line with exit code 2."""

import numpy as np
import pytest
from ase import Atoms
from ase.units import Bohr, Hartree
from pydantic import ValidationError
from typer.testing import CliRunner

from fastqmd.dft.calculator import RSDFTCalculator, extrapolate
from fastqmd.dft.grid import Grid
from fastqmd.dft.scf import Model, scf

L_BOHR = 12.0
SETTINGS = dict(grid_points=24, fd_order=4, energy_tol_eV=1e-9)


def water_atoms():
    L0, th = 1.83 * Bohr, np.deg2rad(104.5)
    pos = [[0, 0, 0], [L0 * np.cos(th / 2), L0 * np.sin(th / 2), 0], [L0 * np.cos(th / 2), -L0 * np.sin(th / 2), 0]]
    return Atoms("OH2", positions=pos, cell=[L_BOHR * Bohr] * 3, pbc=True)


def test_calculator_units_match_atomic_unit_core():
    atoms = water_atoms()
    atoms.calc = RSDFTCalculator(**SETTINGS)
    E, F = atoms.get_potential_energy(), atoms.get_forces()
    res = scf(Model(("O", "H", "H"), atoms.positions / Bohr), Grid((24,) * 3, (0.5,) * 3, (0.0,) * 3, 4), e_tol=1e-11)
    from fastqmd.dft.forces import hellmann_feynman_forces

    assert E == pytest.approx(res.free_energy * Hartree, abs=1e-6)
    np.testing.assert_allclose(F, hellmann_feynman_forces(res) * Hartree / Bohr, atol=1e-4)
    assert atoms.calc.scf_result.orbitals.shape == (6, 24**3)


def test_warm_start_saves_iterations_and_gives_the_same_energy():
    atoms = water_atoms()
    calc = RSDFTCalculator(**SETTINGS)
    atoms.calc = calc
    energies, iters = [], []
    for step in range(3):
        atoms.positions[1] += [0.004, 0.002, 0.0]
        energies.append(atoms.get_potential_energy())
        iters.append(calc.results["scf_iterations"])
    cold = RSDFTCalculator(**SETTINGS, warm_start=False)
    atoms.calc = cold
    assert atoms.get_potential_energy() == pytest.approx(energies[-1], abs=1e-6)
    assert iters[2] < cold.results["scf_iterations"]


def test_extrapolation_is_exact_for_linear_rotating_subspaces():
    rng = np.random.default_rng(1)
    U0 = np.linalg.qr(rng.standard_normal((50, 3)))[0].T
    Q = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    np.testing.assert_allclose(extrapolate(U0, Q @ U0), U0, atol=1e-12)  # same subspace, other basis


def test_settings_reject_unknown_keys():
    with pytest.raises(ValidationError):
        RSDFTCalculator(grid_pionts=32)


def test_cli_single_prints_energy_and_user_errors_exit_2(tmp_path):
    from fastqmd.cli import app

    path = tmp_path / "w.xyz"
    water_atoms().write(path)
    out = CliRunner().invoke(app, ["rsdft", "single", str(path), "--points", "20", "--json"])
    assert out.exit_code == 0, out.output
    assert '"energy_eV"' in out.output and '"forces_eV_per_ang"' in out.output
    import subprocess
    import sys

    bad = subprocess.run([sys.executable, "-c", "from fastqmd.cli import main; main()", "rsdft", "single",
                          str(tmp_path / "missing.xyz")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "not found" in bad.stderr


def test_unconverged_scf_is_a_calculation_failed_and_keeps_the_last_state():
    """Today's promise: an SCF that does not converge is never returned silently (CLI: exit 3)."""
    from fastqmd.errors import CalculationFailed

    atoms = water_atoms()
    atoms.calc = RSDFTCalculator(grid_points=16, max_iter=2)
    with pytest.raises(CalculationFailed, match="not converged in 2 iterations"):
        atoms.get_potential_energy()
    assert atoms.calc.scf_result is not None and not atoms.calc.scf_result.converged


def test_cli_single_unconverged_scf_exits_3_with_one_line(tmp_path, monkeypatch, capsys):
    """`fastqmd rsdft single` on an SCF that cannot converge in its iteration budget: exit 3, one line."""
    import sys

    import fastqmd.dft.calculator as calc_mod
    from fastqmd.cli import main

    class TwoIterations(calc_mod.RSDFTSettings):
        max_iter: int = 2

    monkeypatch.setattr(calc_mod, "RSDFTSettings", TwoIterations)
    path = tmp_path / "w.xyz"
    water_atoms().write(path)
    monkeypatch.setattr(sys, "argv", ["fastqmd", "rsdft", "single", str(path), "--points", "16"])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 3
    assert err.startswith("error: real-space SCF not converged in 2 iterations") and err.count("\n") == 1
