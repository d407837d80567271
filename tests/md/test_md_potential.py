"""The potential seam: ASE adapters both ways, the finite-difference force helper, reference engines in MD."""

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.md.verlet import VelocityVerlet as AseVelocityVerlet
from ase import units

from fastqmd.md.config import MDConfig
from fastqmd.md.run import run_md
from fastqmd.potential import (
    Potential,
    PotentialCalculator,
    ZeroPotential,
    calculator_to_potential,
    system_from_atoms,
)
from fastqmd.testing import energy_drift, finite_difference_forces, force_error

FD_TOL = 1e-6  # eV/Å: O(h²) error of central differences at h = 1e-4 Å on EMT is ~1e-8


def test_protocol_and_zero_potential(cu32):
    assert isinstance(ZeroPotential(), Potential)
    assert isinstance(calculator_to_potential(EMT()), Potential)
    r = ZeroPotential().compute(system_from_atoms(cu32))
    assert float(r.energy) == 0 and r.forces.shape == (32, 3)


def test_emt_forces_match_finite_differences(cu32):
    s = system_from_atoms(cu32)
    assert force_error(EMT(), s, h=1e-4, atoms=[0, 5, 17]) < FD_TOL
    fd = finite_difference_forces(EMT(), s, atoms=[3])
    assert np.isnan(fd[0]).all() and np.isfinite(fd[3]).all()


def test_potential_calculator_round_trip(cu32):
    """EMT → Potential → ASE Calculator gives EMT's numbers and drives ASE's own MD identically."""
    a, b = cu32.copy(), cu32.copy()
    a.calc = EMT()
    b.calc = PotentialCalculator(calculator_to_potential(EMT()))
    assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), abs=1e-12)
    assert np.abs(b.get_forces() - a.get_forces()).max() < 1e-12
    for x in (a, b):
        x.set_velocities(np.full((32, 3), 0.01))
        AseVelocityVerlet(x, timestep=2 * units.fs).run(20)
    assert np.abs(a.positions - b.positions).max() < 1e-10


def water_cfg(out, engine, steps, ensemble, dt=0.5):
    return MDConfig.model_validate({
        "structure": {"kind": "molecule", "name": "H2O", "sampling": "random", "displacement_A": 0.02},
        "potential": {"kind": "reference", "engine": engine},
        "ensemble": ensemble, "temperature_K": 300, "timestep_fs": dt, "steps": steps,
        "output": {"dir": str(out), "progress": False, "checkpoint_every": 10},
    })


def _thermo(out):
    return np.loadtxt(out / "thermo.csv", delimiter=",", skiprows=1)


def test_tblite_reference_nve(tmp_path):
    """Born–Oppenheimer NVE of water with tblite GFN2-xTB (Δt = 0.5 fs, 200 steps): total energy within
    2 meV (tblite's default SCC accuracy limits force consistency), eigenvalues stored per frame."""
    from ase.io import read

    run_md(water_cfg(tmp_path, {"kind": "tblite", "method": "GFN2-xTB"}, 200, {"kind": "nve"}))
    th = _thermo(tmp_path)
    d = energy_drift(th[:, 6], th[:, 1])
    assert d.max_abs_dev_eV < 2e-3
    f = read(tmp_path / "trajectory.extxyz", "-1")
    assert f.info["eigenvalues"].size == 6  # GFN2 minimal basis of H2O: 4 + 1 + 1


def test_pyscf_reference_nose_hoover(tmp_path):
    """PySCF (HF/6-31G: exact analytic forces, no XC grid; max force 1.1 eV/Å at the start) drives the study's
    Nosé–Hoover MD: 12 steps of 0.25 fs (the O–H stretch period is 9 fs); the Nosé–Hoover energy stays within
    1 meV. (With LDA/STO-3G the start is 7 eV/Å from its minimum, the molecule heats to 2000 K and the O(Δt²)
    error reaches 3 meV: judge integrators on a sane start.)"""
    run_md(water_cfg(tmp_path, {"kind": "pyscf-mol", "xc": "HF", "basis": "6-31g", "conv_tol": 1e-11},
                     12, {"kind": "nose_hoover", "tau_fs": 20}, dt=0.25))
    th = _thermo(tmp_path)
    assert th.shape[0] == 13
    assert np.abs(th[:, 6] - th[0, 6]).max() < 1e-3


def test_reference_engine_potential_is_direct_and_matches_the_calculator_route():
    """`potential: {kind: reference}` builds an EnginePotential (energy + forces, no H/S sample per step) with
    the numbers of the old route Engine → Sample → EngineCalculator → CalculatorPotential (tblite water)."""
    from fastqmd.md.config import build_potential
    from fastqmd.reference.calculator import EngineCalculator, EnginePotential
    from fastqmd.reference.xtb import TBLiteEngine
    from ase.build import molecule

    cfg = water_cfg("unused", {"kind": "tblite", "method": "GFN2-xTB"}, 1, {"kind": "nve"})
    direct = build_potential(cfg.potential)
    assert isinstance(direct, EnginePotential)
    old = calculator_to_potential(EngineCalculator(TBLiteEngine("GFN2-xTB")))
    at = molecule("H2O")
    at.positions[1] += [0.03, -0.02, 0.05]
    for shift in (0.0, 0.01):  # two geometries: nothing carried between calls
        at.positions[0, 0] += shift
        s = system_from_atoms(at)
        a, b = direct.compute(s), old.compute(s)
        assert abs(float(a.energy) - float(b.energy)) < 1e-10
        assert float((a.forces - b.forces).abs().max()) < 1e-10
        assert np.abs(a.eigenvalues.numpy() - b.eigenvalues.numpy()).max() < 1e-10
        assert a.extras["fermi_level"] == pytest.approx(b.extras["fermi_level"], abs=1e-10)
    assert force_error(direct, system_from_atoms(at), h=1e-3, atoms=[1]) < 1e-4  # −∂E/∂R (tblite SCC accuracy)
