"""Forgetting-aware fine-tuning (`fastqmd.mlip.finetune`) on the one trainer, with a tiny BP model as the
pretrained model (fast) and SevenNet-0 through its fastqmd wrapper: the EWC penalty and its gradient, the Fisher
as the mean squared gradient, the per-element level offset, replay batches interleaving the two sets in the
configured ratio, frozen layers bit-identical, a run killed with kill -9 (or stopped) resuming to the
uninterrupted one, and bad input as one line with exit code 2."""

import json

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from fastqmd.mlip.finetune import (FinetuneConfig, diagonal_fisher, ewc_penalty, finetune, fit_level_offsets,
                                   with_offsets)
from fastqmd.mlip.kind import MLIPLoss, MLIPSamples, load_mlip, train, train_config_type
from fastqmd.testing import cli_error_line, make_water_dataset

TINY_BP = dict(kind="bp", cutoff=4.0, n_radial=4, n_angular=1, zetas=[1.0], hidden=[8])
EXACT = 1e-12  # float64 identities (penalty, gradient, Fisher)
LEVEL = "tblite GFN2-xTB"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A BP model pretrained on 8 GFN2 waters, a fine-tuning set (10 waters, larger rattle) and the pretraining
    set as extxyz (source = the level of theory)."""
    d = tmp_path_factory.mktemp("ft")
    pre = make_water_dataset(d / "pre.h5", n=8, seed=0, rattle=0.05)
    ft = make_water_dataset(d / "ft.h5", n=10, seed=1, rattle=0.15)
    cfg = train_config_type("bp")(dataset=pre, output=d / "pre_run", model=TINY_BP, max_steps=30, batch_size=4,
                                  lr=1e-2, split={"val_fraction": 0.0, "test_fraction": 0.0}, dtype="float64",
                                  progress=False)
    train(cfg)
    frames = []
    s = MLIPSamples(pre)
    for i in range(len(s)):
        a = Atoms(s[i].numbers, s[i].positions, info={"source": LEVEL})
        a.calc = SinglePointCalculator(a, energy=s[i].energy, forces=s[i].forces)
        frames.append(a)
    write(d / "pre.xyz", frames, format="extxyz")
    return {"dir": d, "pre_h5": pre, "ft": ft, "model": d / "pre_run" / "model.pt", "xyz": d / "pre.xyz"}


def config(data, out, method, **kw):
    base = dict(pretrained=str(data["model"]), dataset=str(data["ft"]), output=str(out), method=method,
                batch_size=2, max_steps=6, eval_every=3, checkpoint_every=2, lr=5e-3, dtype="float64",
                split={"val_fraction": 0.2, "test_fraction": 0.2}, progress=False)
    if method in ("ewc", "replay", "reewc"):
        base["pretraining"] = {"path": str(data["xyz"]), "level_of_theory": LEVEL, "held_out": 2}
    if method in ("ewc", "reewc"):
        base["ewc"] = {"strength": 10.0, "fisher_batch_size": 2}
    if method in ("replay", "reewc"):
        base["replay"] = {"ratio": 2.0}
    return FinetuneConfig.model_validate({**base, **kw})


def test_ewc_penalty_is_zero_at_theta_star_and_its_gradient_is_lambda_F_dtheta():
    g = torch.Generator().manual_seed(0)
    star = {"a": torch.randn(5, 3, generator=g, dtype=torch.float64), "b": torch.randn(4, generator=g,
                                                                                        dtype=torch.float64)}
    F = {k: torch.rand(v.shape, generator=g, dtype=torch.float64) for k, v in star.items()}
    lam = 1e5
    at_star = {k: v.clone().requires_grad_(True) for k, v in star.items()}
    assert float(ewc_penalty(at_star, star, F).detach()) == 0.0
    theta = {k: (v + 0.1 * torch.randn(v.shape, generator=g, dtype=torch.float64)).requires_grad_(True)
             for k, v in star.items()}
    grads = torch.autograd.grad(lam * ewc_penalty(theta, star, F), list(theta.values()))
    for (k, t), gr in zip(theta.items(), grads):
        torch.testing.assert_close(gr, lam * F[k] * (t.detach() - star[k]), rtol=EXACT, atol=EXACT)


def test_fisher_is_the_mean_squared_minibatch_gradient_and_the_run_starts_with_zero_penalty(data, tmp_path):
    model = load_mlip(data["model"]).train()
    lm = MLIPLoss(model, "cpu")
    s = MLIPSamples(data["pre_h5"])
    structures = [s[i] for i in range(4)]
    F = diagonal_fisher(lm, structures, [1.0, 1.0, 0.0], batch_size=2)
    params = dict(model.named_parameters())
    ref = {n: torch.zeros_like(p) for n, p in params.items()}
    for b in (structures[:2], structures[2:]):
        model.zero_grad()
        lm(b, [1.0, 1.0, 0.0])[0].backward()
        for n, p in params.items():
            ref[n] += p.grad**2 / 2
    for n in params:
        torch.testing.assert_close(F[n], ref[n], rtol=1e-10, atol=1e-14)
    finetune(config(data, tmp_path / "ewc", "ewc", max_steps=2))
    rec = [json.loads(x) for x in (tmp_path / "ewc" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rec if "L_EWC" in r]
    assert steps[0]["L_EWC"] == 0.0 and steps[1]["L_EWC"] > 0  # θ = θ* at the first step, then not


def test_level_offset_recovers_a_constant_per_element_shift(data):
    """Labels = the model's own energies + n_H μ_H + n_O μ_O (one composition: only n·μ is fixed) → the model
    with the fitted offsets reproduces the labels."""
    import dataclasses

    from fastqmd.mlip.kind import collate, energy_forces_stress

    model = load_mlip(data["model"])
    s = MLIPSamples(data["ft"])
    b = collate([s[i] for i in range(len(s))], model.elements, model.cutoff)
    E = energy_forces_stress(model, b, forces=False)[0].detach().numpy()
    shifted = [dataclasses.replace(s[i], energy=float(E[i]) + 2 * 1.5 - 40.0) for i in range(len(s))]
    mu = fit_level_offsets(model, shifted)
    assert abs(2 * mu[1] + mu[8] - (2 * 1.5 - 40.0)) < 1e-9
    E2 = energy_forces_stress(with_offsets(model, mu), b, forces=False)[0].detach().numpy()
    np.testing.assert_allclose(E2, [x.energy for x in shifted], atol=1e-9)


def test_replay_batches_interleave_the_two_sets_in_the_configured_ratio(data, tmp_path, monkeypatch):
    import fastqmd.training.loop as loop

    seen = []
    real = loop.take_step

    def spy(setup, state, batch):
        seen.append([s.key for s in batch])
        return real(setup, state, batch)

    monkeypatch.setattr(loop, "take_step", spy)
    finetune(config(data, tmp_path / "replay", "replay", max_steps=6, replay={"ratio": 1.5}))
    pool = 8 - 2  # pretraining structures minus the held-out ones: 2 epochs of 3 memory batches of 3
    used = []
    assert len(seen) == 6
    for keys in seen:
        mem = [k for k in keys if k.startswith("pre.xyz:")]
        assert len(keys) - len(mem) == 2 and len(mem) == 3  # B = 2 fine-tuning + round(1.5 · B) memory
        assert all(not k.startswith("pre.xyz:") for k in keys[:2])  # fine-tuning first, then memory
        used += mem
    names, counts = np.unique(used, return_counts=True)
    assert len(names) == pool and counts.min() == counts.max() == 6 * 3 // pool  # whole epochs of the pool


def test_layer_freezing_leaves_frozen_weights_bit_identical(data, tmp_path):
    out = tmp_path / "frozen"
    finetune(config(data, out, "layer_freezing", freeze=["net.nets.0"]))
    pre = torch.load(data["model"], weights_only=True)["state"]
    for name in ("model.pt", "checkpoint.pt"):
        obj = torch.load(out / name, weights_only=True)
        states = [obj["state"]] + ([obj["ema"]] if obj.get("ema") else [])
        for st in states:
            frozen = [k for k in st if k.startswith("net.nets.0.")]
            trained = [k for k in st if k.startswith("net.nets.1.")]
            assert frozen and trained
            for k in frozen:
                assert torch.equal(st[k], pre[k]), (name, k)
            assert any(not torch.equal(st[k], pre[k]) for k in trained)


def test_interrupted_reewc_run_resumes_to_the_uninterrupted_run(data, tmp_path):
    ref = finetune(config(data, tmp_path / "ref", "reewc", max_steps=7, checkpoint_every=3))
    cut = config(data, tmp_path / "cut", "reewc", max_steps=7, checkpoint_every=3)
    finetune(cut, stop_after=4)  # saved at steps 3 and 4, like a run killed after its step-4 checkpoint
    assert not (tmp_path / "cut" / "finetune.json").exists()
    res = finetune(cut)
    assert res["resumed_from"] == 4
    assert (tmp_path / "ref" / "metrics.jsonl").read_text() == (tmp_path / "cut" / "metrics.jsonl").read_text()
    for name in ("model.pt", "checkpoint.pt"):
        a = torch.load(tmp_path / "ref" / name, weights_only=True)
        b = torch.load(tmp_path / "cut" / name, weights_only=True)
        for k, v in a["state"].items():
            assert torch.equal(v, b["state"][k]), (name, k)
    assert ref["finetune"] == res["finetune"]
    r = ref["finetune"]
    assert r["n_pretraining_held_out"] == 2 and r["ft_test"]["after"]["F_mae_meV_A"] > 0


def _write(path, **cfg):
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg, default=str))))
    return str(path)


def _without_forces(src, dst):
    import shutil

    import h5py

    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        for g in f["samples"].values():
            del g["forces"]
    return dst


BAD = {
    "unknown_method": (dict(method="distill"), "method"),
    "missing_block": (dict(method="ewc", pretraining=None, ewc=None), "method ewc needs pretraining, ewc"),
    "replay_level": (dict(method="replay", pretraining={"level_of_theory": "PBE MPtrj"}),
                     "labelled at level of theory 'tblite GFN2-xTB', not the declared 'PBE MPtrj'"),
    "sevenn_level": (dict(method="replay", pretrained="sevenn:7net-0", pretraining={"level_of_theory": "r2SCAN"}),
                     "is not the level sevenn:7net-0 was trained at ('MPtrj')"),
    "no_forces": (dict(method="vanilla", dataset="NOFORCES"), "samples have no forces"),
    "bad_freeze": (dict(method="layer_freezing", freeze=["net.nope"]), "freeze: net.nope not a sub-module"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_finetune_input_is_one_line_exit_2(case, data, tmp_path, monkeypatch, capsys):
    change, expect = BAD[case]
    base = dict(pretrained=str(data["model"]), dataset=str(data["ft"]), output=str(tmp_path / "out"),
                method="replay", max_steps=2, progress=False,
                pretraining={"path": str(data["xyz"]), "level_of_theory": LEVEL, "held_out": 2},
                replay={"ratio": 1.0})
    cfg = {**base, **change}
    if isinstance(change.get("pretraining"), dict):
        cfg["pretraining"] = {**base["pretraining"], **change["pretraining"]}
    if cfg["method"] != "replay":
        cfg.pop("replay")
        if cfg["method"] not in ("ewc",):
            cfg.pop("pretraining")
    cfg = {k: v for k, v in cfg.items() if v is not None}
    if cfg["dataset"] == "NOFORCES":
        cfg["dataset"] = str(_without_forces(data["ft"], tmp_path / "noforces.h5"))
    line = cli_error_line(["finetune", _write(tmp_path / "c.yaml", **cfg)], 2, monkeypatch, capsys)
    assert expect in line, line
    assert not (tmp_path / "out").exists()


def test_sevennet_wrapper_equals_its_calculator_and_survives_a_model_file(tmp_path):
    """SevenNet-0 as an `MLIPModel` (fastqmd graph, autograd forces) gives SevenNetCalculator's E and F on a
    molecule and a periodic cell; the saved file (as `fastqmd finetune` writes it) loads back to the same E."""
    from ase.build import bulk, molecule

    from fastqmd.mlip.finetune import sevenn_model
    from fastqmd.mlip.kind import MLIPKind, Structure, collate, energy_forces_stress
    from fastqmd.mlip.universal import load_universal
    from fastqmd.potential import system_from_atoms

    atoms = [molecule("H2O"), bulk("Cu", "fcc", a=3.61).repeat(2)]
    for k, a in enumerate(atoms):
        a.rattle(0.05, seed=k)
    model = sevenn_model("7net-0")
    st = [Structure(str(k), a.numbers, a.positions, np.array(a.cell[:]), a.pbc, 0.0) for k, a in enumerate(atoms)]
    E, F, _ = energy_forces_stress(model, collate(st, model.elements, model.cutoff, torch.float32))
    pot, off = load_universal("sevenn", "7net-0"), 0
    for k, a in enumerate(atoms):
        r = pot.compute(system_from_atoms(a))
        assert abs(float(E[k]) - float(r.energy)) < 1e-4  # float32 network, |E| ≲ 40 eV
        np.testing.assert_allclose(F[off:off + len(a)].detach().double().numpy(), r.forces.numpy(), atol=1e-5)
        off += len(a)
    MLIPKind().save_model(with_offsets(model, {1: 0.5, 8: -1.0}), tmp_path / "m.pt")
    back = load_mlip(tmp_path / "m.pt", dtype="float32")
    E2 = energy_forces_stress(back, collate(st[:1], back.elements, back.cutoff, torch.float32), forces=False)[0]
    assert abs(float(E2[0]) - (float(E[0]) + 2 * 0.5 - 1.0)) < 1e-4



def test_finetune_killed_with_sigkill_resumes_to_the_uninterrupted_run(data, tmp_path):
    """`fastqmd finetune` (reEWC) killed with kill -9 mid-run and rerun: metrics.jsonl and the weights equal those
    of an uninterrupted run bit for bit."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

    def cfg(out):
        c = json.loads(config(data, out, "reewc", max_steps=600, checkpoint_every=7, eval_every=50)
                       .model_dump_json())
        return _write(tmp_path / f"{out.name}.yaml", **c)

    run = [sys.executable, "-m", "fastqmd.cli", "finetune"]
    r = subprocess.run([*run, cfg(tmp_path / "ref")], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    p = subprocess.Popen([*run, cfg(tmp_path / "killed")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = tmp_path / "killed" / "metrics.jsonl"
    t0 = time.time()
    while time.time() - t0 < 300:  # after a few checkpoints, well before step 600
        if (log.exists() and len(log.read_text().splitlines()) >= 40) or p.poll() is not None:
            break
        time.sleep(0.02)
    assert p.poll() is None, "fine-tuning finished before it could be killed"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    r = subprocess.run([*run, cfg(tmp_path / "killed")], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "resumed at step" in r.stdout, r.stderr
    assert (tmp_path / "ref" / "metrics.jsonl").read_text() == log.read_text()
    for name in ("model.pt", "checkpoint.pt"):
        a = torch.load(tmp_path / "ref" / name, weights_only=True)
        b = torch.load(tmp_path / "killed" / name, weights_only=True)
        for k, v in a["state"].items():
            assert torch.equal(v, b["state"][k]), (name, k)
    assert json.loads((tmp_path / "ref" / "finetune.json").read_text()) == \
        json.loads((tmp_path / "killed" / "finetune.json").read_text())
