"""The energy-MLIP kind on the one trainer, with the BP architecture: offsets by least squares, a tiny overfit,
kill -9 + resume reproducing the uninterrupted run bit for bit, `fastqmd evaluate` and `fastqmd md` on the trained
model, and bad input as one line with exit code 2 (unknown model kind, a dataset without forces for a force loss,
an element the model does not cover at MD time)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
import yaml

from fastqmd.mlip.kind import Structure, fit_energy_offsets, train, train_config_type
from fastqmd.testing import make_water_dataset

PY = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
TINY_BP = dict(kind="bp", cutoff=4.0, n_radial=6, n_angular=2, zetas=[1.0, 4.0], hidden=[16, 16])
# Overfit of 8 GFN2 water molecules in 150 full-batch steps (measured: L_F 44 → 0.004 (eV/Å)², L_E 0.22 → 3e-6
# (eV/atom)²): demand a 1000× fall of L_F, an RMS force error under 10 % of the RMS reference force, and
# E within ~10 meV/atom.
L_F_FALL = 1e-3
F_REL = 0.01  # L_F ≤ 1 % of mean F_ref² (RMS error ≤ 10 % of RMS force)
L_E_MAX = 1e-4  # (eV/atom)²


@pytest.fixture(scope="module")
def water_h5(tmp_path_factory):
    return make_water_dataset(tmp_path_factory.mktemp("data") / "water.h5")


def run_cli(*args, timeout=300):
    return subprocess.run([PY, "-m", "fastqmd.cli", *args], env=ENV, capture_output=True, text=True, timeout=timeout)


def write_config(path, **cfg):
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg, default=str))))
    return path


def metrics(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def overfit_run(water_h5, tmp_path_factory):
    out = tmp_path_factory.mktemp("overfit") / "run"
    cfg = train_config_type("bp")(dataset=water_h5, output=out, model=TINY_BP, max_steps=150, eval_every=50,
                                  batch_size=8, lr=1e-2, ema_decay=0.0, schedule={"kind": "constant"},
                                  split={"val_fraction": 0.0, "test_fraction": 0.0}, dtype="float64",
                                  progress=False)
    train(cfg)
    return out


def test_energy_offsets_are_the_least_squares_per_element_energies():
    e = {"H": -13.6, "O": -432.1}
    rng = np.random.default_rng(0)
    structures = []
    for k in range(6):
        n_h, n_o = rng.integers(1, 5, 2)
        numbers = np.array([1] * n_h + [8] * n_o)
        structures.append(Structure(str(k), numbers, np.zeros((len(numbers), 3)), np.zeros((3, 3)),
                                    np.zeros(3, bool), float(n_h * e["H"] + n_o * e["O"])))
    np.testing.assert_allclose(fit_energy_offsets(structures, ["H", "O"]), [e["H"], e["O"]], atol=1e-10)


def test_tiny_bp_overfits_water(overfit_run, water_h5):
    from fastqmd.mlip.kind import MLIPSamples

    steps = [r for r in metrics(overfit_run) if "grad_norm" in r]
    assert len(steps) == 150
    f2 = np.mean([np.mean(s.forces**2) for s in (MLIPSamples(water_h5)[i] for i in range(8))])
    first, last = steps[0], steps[-1]
    assert last["L_F"] < L_F_FALL * first["L_F"], (first["L_F"], last["L_F"])
    assert last["L_F"] < F_REL * f2, (last["L_F"], f2)
    assert last["L_E"] < L_E_MAX, last["L_E"]


def test_evaluate_and_md_on_the_trained_model(overfit_run, water_h5, tmp_path):
    r = run_cli("evaluate", str(overfit_run / "model.pt"), str(water_h5), "-o", str(tmp_path / "eval"))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert m["n_samples"] == 8 and m["architecture"] == "bp"
    assert m["F_rmse_meV_A"] < 1e3 * np.sqrt(F_REL * 30)  # the training set itself: the overfit's level
    md = write_config(tmp_path / "md.yaml", structure={"kind": "file", "path": str(tmp_path / "w.xyz")},
                      potential={"kind": "mlip", "model": str(overfit_run / "model.pt")},
                      ensemble={"kind": "nve"}, temperature_K=100, timestep_fs=0.25, steps=10,
                      output={"dir": str(tmp_path / "md"), "progress": False})
    from ase import Atoms
    from ase.io import write

    from fastqmd.testing import WATER_A

    write(tmp_path / "w.xyz", Atoms("OHH", positions=WATER_A))
    r = run_cli("md", str(md))
    assert r.returncode == 0, r.stderr
    write(tmp_path / "w.xyz", Atoms("OHCu", positions=WATER_A))
    md_bad = write_config(tmp_path / "md_bad.yaml", **{**yaml.safe_load(md.read_text()),
                                                       "output": {"dir": str(tmp_path / "md_bad")}})
    r = run_cli("md", str(md_bad))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Cu not in the model" in r.stderr and not (tmp_path / "md_bad").exists()


def resume_config(tmp_path, water_h5, out):
    return write_config(tmp_path / f"{out.name}.yaml", dataset=str(water_h5), output=str(out), model=TINY_BP,
                        max_steps=160, eval_every=20, checkpoint_every=10, batch_size=4, lr=5e-3, ema_decay=0.9,
                        split={"val_fraction": 0.25, "test_fraction": 0.125}, dtype="float64", progress=False)


def test_kill9_resume_reproduces_uninterrupted_run(tmp_path, water_h5):
    r = run_cli("train", str(resume_config(tmp_path, water_h5, tmp_path / "ref")))
    assert r.returncode == 0, r.stderr
    assert "test E MAE" in r.stdout and "meV/Å" in r.stdout
    killed = resume_config(tmp_path, water_h5, tmp_path / "killed")
    p = subprocess.Popen([PY, "-m", "fastqmd.cli", "train", str(killed)], env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    log = tmp_path / "killed" / "metrics.jsonl"
    t0 = time.time()
    while time.time() - t0 < 120:  # kill mid-run: after a few checkpoints, well before step 160
        if (log.exists() and len(log.read_text().splitlines()) >= 40) or p.poll() is not None:
            break
        time.sleep(0.02)
    assert p.poll() is None, "training finished before it could be killed"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (tmp_path / "killed" / "summary.json").exists()
    r = run_cli("train", str(killed))
    assert r.returncode == 0, r.stderr
    assert "resumed at step" in r.stdout
    assert (tmp_path / "ref" / "metrics.jsonl").read_text() == log.read_text()  # every step and validation
    for name in ("model.pt", "checkpoint.pt"):
        a = torch.load(tmp_path / "ref" / name, weights_only=True)
        b = torch.load(tmp_path / "killed" / name, weights_only=True)
        assert a["config"] == b["config"]
        for k, v in a["state"].items():
            assert torch.equal(v, b["state"][k]), (name, k)


def _without_forces(src, dst):
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        for g in f["samples"].values():
            if "forces" in g:
                del g["forces"]
    return dst


@pytest.mark.parametrize("case", ["unknown_kind", "no_forces", "unknown_architecture_key"])
def test_bad_training_input_is_an_input_error(tmp_path, water_h5, case):
    from fastqmd.errors import InputError
    from fastqmd.training.loop import fit
    from fastqmd.training.registry import load_train_config

    base = dict(dataset=str(water_h5), output=str(tmp_path / "out"), model=TINY_BP, max_steps=2, progress=False)
    if case == "unknown_kind":
        base["model"] = {**TINY_BP, "kind": "schnet"}
        expect = "unknown model kind 'schnet' (known: bp, equivariant, nnh)"
    elif case == "no_forces":
        base["dataset"] = str(_without_forces(water_h5, tmp_path / "noforces.h5"))
        expect = "8 of 8 samples have no forces"
    else:
        base["model"] = {**TINY_BP, "n_layers": 2}
        expect = "unknown config key 'model.n_layers'"
    path = write_config(tmp_path / "c.yaml", **base)
    with pytest.raises(InputError) as err:
        fit(*load_train_config(path))
    assert expect in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
    if case == "no_forces":
        r = run_cli("train", str(path))  # the CLI: one line, exit code 2
        assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"error: {err.value}"], r.stderr
        s = fit(*load_train_config(write_config(tmp_path / "e.yaml", **{**base, "loss": {"forces": 0.0}})))
        assert s["steps"] == 2  # energies alone train


def test_configs_without_model_kind_are_nnh(tmp_path, water_h5):
    from fastqmd.nnh.train import NNHKind, TrainConfig
    from fastqmd.training.registry import load_train_config

    for model in ({}, {"kind": "nnh"}, {"cutoff": 3.0}):
        kind, cfg = load_train_config(write_config(tmp_path / "n.yaml", dataset=str(water_h5),
                                                   output=str(tmp_path / "o"), model=model))
        assert isinstance(kind, NNHKind) and type(cfg) is TrainConfig


def test_loss_terms_vanish_on_the_models_own_labels_and_stress_counts_where_labelled():
    """L_E, L_F, L_S are zero for labels equal to the model's own E, F, σ; a stress label enters L_S only for
    the structure that carries one."""
    from fastqmd.mlip.bp import BPSpec
    from fastqmd.mlip.kind import MLIPLoss, build_model, collate, energy_forces_stress, training_statistics
    from fastqmd.testing import WATER_A

    rng = np.random.default_rng(3)
    cell = np.diag([3.1, 3.3, 3.2])
    raw = [Structure("a", np.array([8, 1, 1]), WATER_A + 0.05 * rng.normal(size=(3, 3)), cell, np.ones(3, bool), 0.0),
           Structure("b", np.array([8, 1, 1]), WATER_A + 0.05 * rng.normal(size=(3, 3)), cell, np.ones(3, bool), 0.0)]
    spec = BPSpec(cutoff=3.0, n_radial=4, n_angular=1, zetas=(1.0,), hidden=(8,))
    torch.manual_seed(0)
    model = build_model(spec, ["H", "O"], training_statistics(raw, ["H", "O"], 3.0))
    E, F, sig = energy_forces_stress(model, collate(raw, ["H", "O"], 3.0), stress=True)
    own = [Structure(s.key, s.numbers, s.positions, s.cell, s.pbc, float(E[k].detach()), F[3 * k:3 * k + 3].detach().numpy(),
                     sig[k].detach().numpy() if k == 0 else None) for k, s in enumerate(raw)]
    t, _ = MLIPLoss(model, "cpu").terms(own, [1.0, 1.0, 1.0], create_graph=False)
    np.testing.assert_allclose(t.detach().numpy(), 0.0, atol=1e-24)
    shifted = [Structure(s.key, s.numbers, s.positions, s.cell, s.pbc, s.energy, s.forces,
                         None if s.stress is None else s.stress + 0.01) for s in own]
    t, _ = MLIPLoss(model, "cpu").terms(shifted, [1.0, 1.0, 1.0], create_graph=False)
    t = t.detach()
    assert float(t[0, 2]) == pytest.approx(1e-4, rel=1e-9) and float(t[1, 2]) == 0
