"""Universal MLIPs offline (fastqmd.mlip.universal): SevenNet-0 and CHGNet through the fastqmd potential equal the
libraries' own ASE calculators, forces are −∇E and stress (1/V) ∂E/∂ε by central differences, E is invariant
and F covariant under rotation, a molecule in CHGNet's vacuum box is isolated, the dataset score recovers known
offsets, `fastqmd md` runs on SevenNet-0 with the energy conserved, and bad input ends as one line, exit 2.

Every model in this file loads with the network refused: `socket.connect` raises and records the attempt.
The networks run in float32 (energy ulp ≈ 1e-6 eV at |E| ≈ 15 eV), so the tolerances are float32-sized:
central differences with h = 3e-3 Å agree to ≈ 1e-3 eV/Å here; a 1 % force error (≈ 7e-3 eV/Å) fails.
"""

from __future__ import annotations

import os
import socket
import sys

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.build import bulk, molecule
from ase.io import write

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fastqmd.errors import InputError  # noqa: E402
from fastqmd.potential import system_from_atoms  # noqa: E402
from fastqmd.testing import finite_difference_forces, finite_difference_stress_xx, potential_equivariance  # noqa: E402

FD_STEP_A = 3e-3
FD_FORCE_ATOL = 5e-3  # eV/Å, float32 energies (module docstring)
FD_STRESS_ATOL = 2e-4  # eV/Å³ (|σ_xx| ≈ 1e-2 here)
SAME_CODE_ATOL = 1e-5  # eV, eV/Å: our adapter vs the library's calculator, the same float32 network
RIGID_MOTION_ATOL = (2e-4, 2e-4)  # E (eV), F (eV/Å) after a rotation or shift: float32 round-off of moved positions
SEVENN_SHIPPED = {"7net-0", "7net-0_22may2024", "7net-l3i5", "7net-mf-0"}
CHGNET_SHIPPED = {"0.3.0", "0.2.0", "r2scan"}


class NetworkRefused(OSError):
    pass


@pytest.fixture(scope="module")
def no_network():
    """socket.connect raises for the whole module; `attempts` lists every address something tried."""
    attempts: list = []

    def refuse(self, address, *a, **k):
        attempts.append(address)
        raise NetworkRefused(f"network refused in this test: {address}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        yield attempts


@pytest.fixture(scope="module")
def pots(no_network):
    from fastqmd.mlip.universal import load_universal

    return {"sevenn": load_universal("sevenn", "7net-0"), "chgnet": load_universal("chgnet")}


def water() -> Atoms:
    a = molecule("H2O")
    a.positions += np.random.default_rng(0).normal(0.0, 0.05, (3, 3))
    return a


def cu4() -> Atoms:
    a = bulk("Cu", "fcc", a=3.61, cubic=True)
    a.rattle(0.05, seed=1)
    return a


STRUCTURES = {"water": water, "cu4": cu4}
CASES = [(k, s) for k in ("sevenn", "chgnet") for s in STRUCTURES]


def test_installed_checkpoints_load_offline(pots, no_network):
    from fastqmd.mlip.universal import available_models

    assert SEVENN_SHIPPED <= set(available_models("sevenn"))  # read from the wheel, download-only names left out
    assert "7net-omni" not in available_models("sevenn")
    assert set(available_models("chgnet")) == CHGNET_SHIPPED
    assert pots["sevenn"].spec == "sevenn:7net-0" and pots["chgnet"].spec == "chgnet:0.3.0"
    assert no_network == []  # nothing tried to connect


@pytest.mark.parametrize("kind,name", CASES)
def test_equals_the_library_calculator(pots, no_network, kind, name):
    """Our potential and its ASE face equal a fresh library calculator made by the library's own defaults
    (SevenNetCalculator('7net-0'), CHGNetCalculator()) — so our name → checkpoint resolution is theirs."""
    from fastqmd.mlip.universal import universal_calculator, vacuum_box

    ref = _library_calculator(kind)
    atoms = STRUCTURES[name]()
    res = pots[kind].compute(system_from_atoms(atoms))
    lib_atoms = vacuum_box(atoms, pots[kind].cutoff) if kind == "chgnet" and name == "water" else atoms.copy()
    lib_atoms.calc = ref
    assert abs(float(res.energy) - lib_atoms.get_potential_energy()) < SAME_CODE_ATOL
    assert np.abs(res.forces.numpy() - lib_atoms.get_forces()).max() < SAME_CODE_ATOL
    ase_atoms = atoms.copy()
    ase_atoms.calc = universal_calculator(kind)
    assert abs(ase_atoms.get_potential_energy() - float(res.energy)) < SAME_CODE_ATOL
    if name == "cu4":
        assert np.abs(res.stress.numpy() - _full(lib_atoms.get_stress())).max() < SAME_CODE_ATOL
        assert np.abs(ase_atoms.get_stress() - lib_atoms.get_stress()).max() < SAME_CODE_ATOL
    else:
        assert res.stress is None  # no stress for a molecule
    assert no_network == []


_LIBRARY = {}


def _library_calculator(kind):
    if kind not in _LIBRARY:
        import contextlib
        import io
        import warnings

        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "sevenn":
                from sevenn.calculator import SevenNetCalculator

                _LIBRARY[kind] = SevenNetCalculator("7net-0", device="cpu")
            else:
                from chgnet.model import CHGNetCalculator

                _LIBRARY[kind] = CHGNetCalculator(use_device="cpu")
    return _LIBRARY[kind]


def _full(voigt):
    from fastqmd.potential import voigt_to_full

    return voigt_to_full(np.asarray(voigt))


@pytest.mark.parametrize("kind,name", CASES)
def test_forces_are_minus_the_energy_gradient(pots, kind, name):
    s = system_from_atoms(STRUCTURES[name]())
    F = pots[kind].compute(s).forces.numpy()
    fd = finite_difference_forces(pots[kind], s, h=FD_STEP_A)
    assert np.abs(F).max() > 0.1  # the check has something to compare
    assert np.abs(F - fd).max() < FD_FORCE_ATOL


@pytest.mark.parametrize("kind", ["sevenn", "chgnet"])
def test_stress_is_the_strain_derivative(pots, kind):
    atoms = cu4()
    sigma = pots[kind].compute(system_from_atoms(atoms)).stress.numpy()
    fd = finite_difference_stress_xx(pots[kind], atoms, h=1e-3)
    assert abs(fd) > 1e-3 and abs(sigma[0, 0] - fd) < FD_STRESS_ATOL


@pytest.mark.parametrize("kind,name", CASES)
def test_energy_invariant_forces_covariant_under_rotation(pots, kind, name):
    s = system_from_atoms(STRUCTURES[name]())
    potential_equivariance(pots[kind], s, seed=3, atol=RIGID_MOTION_ATOL, permutation=True)


def test_chgnet_molecule_box_is_isolated(pots):
    """CHGNet sees a molecule in a periodic vacuum box; a box 12 Å larger (the molecule re-centred) gives the same
    energy and forces."""
    from fastqmd.mlip.universal import vacuum_box

    atoms = water()
    r = pots["chgnet"].compute(system_from_atoms(atoms))
    big = pots["chgnet"].compute(system_from_atoms(vacuum_box(atoms, pots["chgnet"].cutoff + 12.0)))
    assert abs(float(r.energy) - float(big.energy)) < RIGID_MOTION_ATOL[0]
    assert np.abs(r.forces.numpy() - big.forces.numpy()).max() < RIGID_MOTION_ATOL[1]


def test_elements_outside_the_model_and_slabs_are_refused(pots):
    rn = Atoms("OHHRn", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0], [4, 0, 0]])
    with pytest.raises(InputError, match=r"sevenn:7net-0 does not cover Rn \(it covers H–Bi"):
        pots["sevenn"].compute(system_from_atoms(rn))
    am = Atoms("CuAm", positions=[[0, 0, 0], [2.5, 0, 0]])
    with pytest.raises(InputError, match=r"chgnet:0.3.0 does not cover Am \(it covers H–Pu\)"):
        pots["chgnet"].compute(system_from_atoms(am))
    slab = Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]], cell=[5, 5, 10], pbc=[True, True, False])
    with pytest.raises(InputError, match="partly periodic"):  # CHGNet's pymatgen lattice is periodic in 3D
        pots["chgnet"].compute(system_from_atoms(slab))


def test_unknown_checkpoint_lists_the_installed_ones(no_network, tmp_path):
    from fastqmd.mlip.universal import load_universal

    (tmp_path / "junk.pth").write_text("not a checkpoint")
    for kind in ("sevenn", "chgnet"):
        with pytest.raises(InputError, match=f"cannot load .*junk.pth as a {kind} checkpoint"):
            load_universal(kind, str(tmp_path / "junk.pth"))

    with pytest.raises(InputError, match="unknown sevenn checkpoint '7net-9'") as e:
        load_universal("sevenn", "7net-9")
    assert all(n in str(e.value) for n in SEVENN_SHIPPED)
    with pytest.raises(InputError, match="'7net-omni' is download-only"):
        load_universal("sevenn", "7net-omni")
    with pytest.raises(InputError, match=r"unknown chgnet checkpoint '9.9' \(installed: 0.2.0, 0.3.0, r2scan"):
        load_universal("chgnet", "9.9")
    with pytest.raises(InputError, match="modal argument missing"):  # a multi-fidelity model without its fidelity
        load_universal("sevenn", "7net-mf-0")


def test_offset_fit_recovers_per_element_shifts():
    """r_i = Σ_Z n_iZ μ_Z exactly (two compositions, two elements): μ recovered, residual zero."""
    from fastqmd.mlip.universal import fit_energy_offset

    counts = np.array([[1, 2], [2, 2], [1, 2], [2, 2]])  # (O, H) of H2O, H2O2, ...
    mu_true = np.array([-430.1, -13.7])
    mu, rank = fit_energy_offset(counts, counts @ mu_true)
    assert rank == 2 and np.allclose(mu, mu_true, atol=1e-9)


def _labelled_dataset(path, pot, shift: dict[int, float]):
    """H2O and H2O2 structures labelled with `pot` itself, energies shifted by Σ_Z n_Z shift_Z."""
    from fastqmd.data.store import Header, atomic_write, write_header, write_sample
    from fastqmd.reference.base import BasisSpec, Sample

    rng = np.random.default_rng(2)
    samples = []
    for name in ("H2O", "H2O2", "H2O", "H2O2"):
        a = molecule(name)
        a.positions += rng.normal(0.0, 0.04, a.positions.shape)
        r = pot.compute(system_from_atoms(a))
        n = len(a)
        samples.append(Sample(
            numbers=a.numbers, positions=a.positions, cell=np.zeros((3, 3)), pbc=np.zeros(3, bool),
            energy=float(r.energy) + sum(shift[int(z)] for z in a.numbers), forces=r.forces.numpy(),
            basis=BasisSpec({"O": (0,), "H": (0,)}), kpoints=np.zeros((1, 3)), kweights=np.ones(1),
            H=np.zeros((1, n, n)), S=np.eye(n)[None], eigenvalues=np.zeros((1, n)), occupations=np.zeros((1, n)),
            n_electrons=0.0, fermi_level=None, electronic_temperature_K=0.0, engine="self", settings={},
            versions={}, wall_time_s=0.0))

    def fill(f):
        write_header(f, Header("self", {}))
        for i, s in enumerate(samples):
            write_sample(f, i, s, "test", 0.5)

    atomic_write(path, fill)
    return path


def test_evaluate_on_the_models_own_labels(pots, tmp_path):
    """Labels = the model itself + known per-element shifts: force MAE 0, raw energy error = the shifts,
    and after the fitted offset the energy error is 0 and μ_Z are the shifts."""
    from fastqmd.mlip.universal import evaluate_universal

    shift = {8: -3.0, 1: 0.25}
    ds = _labelled_dataset(tmp_path / "self.h5", pots["sevenn"], shift)
    m = evaluate_universal(pots["sevenn"], ds)
    assert m["n_samples"] == 4 and m["elements"] == ["H", "O"]
    assert m["forces_eV_per_A"]["mae"] < 1e-6
    assert abs(m["energy_eV"]["mae"] - 4.0) < 1e-4  # E_model − E_ref: +2.5 eV (H2O), +5.5 eV (H2O2)
    off = m["energy_offset"]
    assert off["rank"] == 2
    assert abs(off["per_element_eV"]["O"] - shift[8]) < 1e-4 and abs(off["per_element_eV"]["H"] - shift[1]) < 1e-4
    assert m["energy_mae_meV_per_atom_offset"] < 1e-2


# ---------------------------------------------------------------- the CLI


def _cli(monkeypatch, capsys, *args):
    from fastqmd.cli import main

    monkeypatch.setattr(sys, "argv", ["fastqmd", *args])
    with pytest.raises(SystemExit) as e:
        main()
    cap = capsys.readouterr()
    return e.value.code, cap.out.strip().splitlines(), cap.err.strip().splitlines()


def _md_config(tmp_path, potential, structure=None, steps=10):
    cfg = {
        "structure": structure or {"kind": "file", "path": str(_xyz(tmp_path, water(), "water.extxyz"))},
        "potential": potential,
        "ensemble": {"kind": "nve"},
        "temperature_K": 300, "timestep_fs": 0.25, "steps": steps, "seed": 1,
        "output": {"dir": str(tmp_path / "run"), "traj_every": 5, "checkpoint_every": 5, "progress": False},
    }
    p = tmp_path / "md.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def _xyz(tmp_path, atoms, name):
    write(tmp_path / name, atoms, format="extxyz")
    return tmp_path / name


def test_md_on_sevenn_water(tmp_path, monkeypatch, capsys, no_network):
    """10 NVE steps of 0.25 fs on SevenNet-0 water: the run completes and E_kin + E_pot is conserved."""
    code, out, err = _cli(monkeypatch, capsys, "md", _md_config(tmp_path, {"kind": "sevenn", "model": "7net-0"}))
    assert code in (0, None), err
    rows = np.loadtxt(tmp_path / "run" / "thermo.csv", delimiter=",", skiprows=1)
    assert rows.shape[0] == 11 and rows[-1, 0] == 10
    swing = np.ptp(rows[:, 3])  # E_kin ↔ E_pot exchange, ≈ 0.017 eV here
    assert swing > 5e-3
    assert np.abs(rows[:, 6] - rows[0, 6]).max() < 2e-4  # measured 3e-5 eV; forces off by 1 % would give ≈ 1.7e-4
    assert no_network == []


@pytest.mark.parametrize("case", ["unknown_kind", "unknown_checkpoint", "uncovered_element"])
def test_md_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, capsys, case):
    am = Atoms("Cu2Am2", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [2.5, 2.5, 0]], cell=[5, 5, 5], pbc=True)
    potential, structure, fragment = {
        "unknown_kind": ({"kind": "sevenm"}, None, "potential"),
        "unknown_checkpoint": ({"kind": "sevenn", "model": "7net-9"}, None, "installed: 7net-0"),
        "uncovered_element": ({"kind": "chgnet"}, {"kind": "file", "path": str(_xyz(tmp_path, am, "am.extxyz"))},
                              "does not cover Am"),
    }[case]
    code, _, err = _cli(monkeypatch, capsys, "md", _md_config(tmp_path, potential, structure))
    assert code == 2 and len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "run").exists()


def test_cli_evaluate_chgnet_on_gfn2_water(tmp_path, monkeypatch, capsys, no_network):
    from fastqmd.testing import make_water_dataset

    ds = make_water_dataset(tmp_path / "w.h5", n=4)
    code, out, err = _cli(monkeypatch, capsys, "mlip", "evaluate", "chgnet:0.3.0", str(ds), "-o", str(tmp_path / "e"))
    assert code in (0, None), err
    import json

    m = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert m["model"] == "chgnet:0.3.0" and m["n_samples"] == 4
    assert 1.0 < m["force_mae_meV_per_A"] < 2000.0  # another level of theory: an error, but not garbage
    assert m["energy_offset"]["energy_eV"]["mae"] <= m["energy_eV"]["mae"]
    assert "force MAE" in out[-1]


def test_cli_models_lists_the_installed_checkpoints(monkeypatch, capsys, no_network):
    code, out, err = _cli(monkeypatch, capsys, "mlip", "models")
    assert code in (0, None), err
    listed = {line.split()[0] for line in out}
    assert {f"sevenn:{n}" for n in SEVENN_SHIPPED} | {f"chgnet:{n}" for n in CHGNET_SHIPPED} == listed


@pytest.mark.parametrize("spec,fragment", [("sevenm:7net-0", "unknown kind 'sevenm'"),
                                           ("sevenn:7net-9", "installed: 7net-0"),
                                           ("chgnet:nope", "installed: 0.2.0, 0.3.0, r2scan")])
def test_cli_evaluate_bad_spec_is_one_line_exit_2(tmp_path, monkeypatch, capsys, spec, fragment):
    from fastqmd.testing import make_water_dataset

    ds = make_water_dataset(tmp_path / "w.h5", n=1)
    code, _, err = _cli(monkeypatch, capsys, "mlip", "evaluate", spec, str(ds), "-o", str(tmp_path / "e"))
    assert code == 2 and len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "e").exists()
