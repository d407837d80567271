"""The `fastqmd md` runner: restart after interruption (also kill -9) reproduces the uninterrupted files byte
for byte; pinned atoms stay put; the blow-up guard stops cleanly; bad input is one line and exit code 2."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase.calculators.emt import EMT
from ase.io import read

from fastqmd.errors import CalculationFailed
from fastqmd.md.config import MDConfig
from fastqmd.md.run import MDBlowUp, run_md
from fastqmd.potential import calculator_to_potential


def cfg_dict(out, steps=60, ensemble=None, **kw):
    d = {
        "structure": {"kind": "rattled_bulk", "element": "Cu", "supercell": 2, "cubic": True,
                      "max_displacement_fraction": 0.01, "seed": 3},
        "potential": {"kind": "emt"},
        "ensemble": ensemble or {"kind": "nose_hoover", "tau_fs": 50},
        "temperature_K": 300, "timestep_fs": 2.0, "steps": steps,
        "output": {"dir": str(out), "traj_every": 5, "checkpoint_every": 20, "progress": False},
    }
    d.update(kw)
    return d


class Crash(RuntimeError):
    pass


class CrashingPotential:
    """EMT that raises after `n` evaluations (a crash in the middle of a run)."""

    def __init__(self, n):
        self.inner, self.n = calculator_to_potential(EMT()), n

    def compute(self, system):
        self.n -= 1
        if self.n < 0:
            raise Crash()
        return self.inner.compute(system)


def files(out):
    return [(Path(out) / f).read_bytes() for f in ("trajectory.extxyz", "thermo.csv")]


@pytest.mark.parametrize("ensemble", [{"kind": "nose_hoover", "tau_fs": 50},
                                      {"kind": "langevin", "friction_per_fs": 0.02, "seed": 4}])
def test_restart_equals_uninterrupted(tmp_path, ensemble):
    full = MDConfig.model_validate(cfg_dict(tmp_path / "full", ensemble=ensemble))
    run_md(full)
    part = MDConfig.model_validate(cfg_dict(tmp_path / "part", ensemble=ensemble))
    with pytest.raises(Crash):
        run_md(part, potential=CrashingPotential(47))  # dies after step 46, last checkpoint at 40
    s = run_md(part)
    assert s.resumed_from == 40
    assert files(tmp_path / "full") == files(tmp_path / "part")
    frames = read(tmp_path / "part" / "trajectory.extxyz", ":")
    assert [f.info["step"] for f in frames] == list(range(0, 61, 5))


def test_restart_after_kill9(tmp_path):
    steps = 400
    cfg = cfg_dict(tmp_path / "killed", steps=steps, ensemble={"kind": "nve"})
    cfg["output"].update(traj_every=1, checkpoint_every=37)
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    code = "import sys; from fastqmd.cli import main; sys.argv=['fastqmd','md',sys.argv[1]]; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], env=env)
    log = tmp_path / "killed" / "thermo.csv"
    t0 = time.time()
    while time.time() - t0 < 120:
        if log.exists() and log.read_text().count("\n") > 80:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert log.read_text().count("\n") < steps  # really interrupted
    s = run_md(MDConfig.model_validate(cfg))
    assert s.resumed_from is not None and s.resumed_from > 0
    ref = cfg_dict(tmp_path / "ref", steps=steps, ensemble={"kind": "nve"})
    ref["output"].update(traj_every=1, checkpoint_every=37)
    run_md(MDConfig.model_validate(ref))
    assert files(tmp_path / "killed") == files(tmp_path / "ref")


@pytest.mark.parametrize("kind", ["nve", "nose_hoover", "langevin", "berendsen"])
def test_pinned_atoms_do_not_move(tmp_path, kind):
    cfg = MDConfig.model_validate(cfg_dict(tmp_path, steps=30, ensemble={"kind": kind}, pinned=[0, 7]))
    run_md(cfg)
    frames = read(tmp_path / "trajectory.extxyz", ":")
    p0 = frames[0].positions
    for f in frames:
        assert np.array_equal(f.positions[[0, 7]], p0[[0, 7]])
        assert np.all(f.arrays["velocities"][[0, 7]] == 0)
    assert np.abs(frames[-1].positions - p0).max() > 1e-3  # the others move


@pytest.mark.parametrize("kind", ["nve", "nose_hoover", "berendsen"])
def test_total_momentum_stays_zero(tmp_path, kind):
    run_md(MDConfig.model_validate(cfg_dict(tmp_path, steps=40, ensemble={"kind": kind})))
    for f in read(tmp_path / "trajectory.extxyz", ":"):
        p = (f.get_masses()[:, None] * f.arrays["velocities"]).sum(0)
        assert np.abs(p).max() < 1e-5  # file precision: 1e-8 Å/fs × 64 amu × 32 atoms


def test_blowup_guard_saves_last_good_frame(tmp_path):
    cfg = MDConfig.model_validate(cfg_dict(tmp_path, steps=50, guard={"max_temperature_K": 150}))
    with pytest.raises(MDBlowUp, match="temperature") as exc:
        run_md(cfg)
    assert isinstance(exc.value, CalculationFailed)  # CLI exit code 3
    stopped, good = map(int, re.search(r"stopped at step (\d+).*\(step (\d+)\)", str(exc.value)).groups())
    assert good == stopped - 1  # the state before the one the guard rejected
    last = read(tmp_path / "last_good.extxyz")
    assert last.info["step"] == good
    saved = {f.info["step"]: f for f in read(tmp_path / "trajectory.extxyz", ":")}
    if good in saved:  # the same state as the trajectory's frame of that step
        assert np.array_equal(last.positions, saved[good].positions)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ck["state"]["step"] <= good  # the checkpoint never points past the last good state


def _cli(monkeypatch, capsys, *args):
    from fastqmd.cli import main

    monkeypatch.setattr(sys, "argv", ["fastqmd", *args])
    with pytest.raises(SystemExit) as e:
        main()
    return e.value.code, capsys.readouterr().err.strip().splitlines()


def test_cli_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    bad = cfg_dict(tmp_path / "o")
    bad["temprature_K"] = bad.pop("temperature_K")
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(bad))
    code, err = _cli(monkeypatch, capsys, "md", str(p))
    assert code == 2 and len(err) == 1 and "temperature_K" in err[0]
    code, err = _cli(monkeypatch, capsys, "md", str(tmp_path / "missing.yaml"))
    assert code == 2 and len(err) == 1
    pot = cfg_dict(tmp_path / "o", potential={"kind": "ase", "factory": "no_such_module:Calc"})
    p.write_text(yaml.safe_dump(pot))
    code, err = _cli(monkeypatch, capsys, "md", str(p))
    assert code == 2 and len(err) == 1 and "no_such_module" in err[0]
    code, err = _cli(monkeypatch, capsys, "analyze", str(tmp_path / "nothing.extxyz"))
    assert code == 2 and len(err) == 1


def test_cli_blowup_exit_3(tmp_path, monkeypatch, capsys):
    p = tmp_path / "hot.yaml"
    p.write_text(yaml.safe_dump(cfg_dict(tmp_path / "o", steps=20, guard={"max_temperature_K": 150})))
    code, err = _cli(monkeypatch, capsys, "md", str(p))
    assert code == 3 and len(err) == 1 and "last good frame" in err[0]


def test_generic_ase_calculator_potential(tmp_path):
    """`kind: ase` runs any importable calculator factory (here ASE's EMT by its import path)."""
    cfg = cfg_dict(tmp_path, steps=10, potential={"kind": "ase", "factory": "ase.calculators.emt:EMT"})
    run_md(MDConfig.model_validate(cfg))
    emt = cfg_dict(tmp_path / "emt", steps=10)
    run_md(MDConfig.model_validate(emt))
    assert files(tmp_path) == files(tmp_path / "emt")


def test_md_starts_from_an_exported_dataset_sample(tmp_path, monkeypatch, capsys):
    """The README's route from a dataset sample to MD: `dataset export`, then `structure: {kind: file,
    path: …, index: "1"}` starts from exactly that sample's structure."""
    from fastqmd.data.store import Dataset
    from fastqmd.testing import make_water_dataset

    h5 = make_water_dataset(tmp_path / "w.h5", n=3)
    code, err = _cli(monkeypatch, capsys, "dataset", "export", str(h5), "-o", str(tmp_path / "w.extxyz"))
    assert code in (0, None), err
    cfg = cfg_dict(tmp_path / "run", steps=2, structure={"kind": "file", "path": str(tmp_path / "w.extxyz"),
                                                          "index": "1"}, ensemble={"kind": "nve"})
    run_md(MDConfig.model_validate(cfg))
    first = read(tmp_path / "run" / "trajectory.extxyz", "0")
    ds = Dataset(h5)
    np.testing.assert_allclose(first.positions, ds.read("00000001", ("positions",))["positions"], atol=1e-8)
    ds.close()
