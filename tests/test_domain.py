"""The training-domain indicator (fastqmd.domain): water fitted on small rattles scores ≤ ~1 in its domain and far
above 1 with a stretched O–H; the score is invariant to rotation, translation and atom order; unseen elements are
infinite and named; the file round-trips with weights_only=True; `fastqmd domain fit/score` and their bad input
(one line, exit 2, nothing written); the calculator wrapper; `fastqmd md` with guard.domain (warn: runs to the end
and reports; stop: exit 3 with the checkpoint intact, like the blow-up guard; old config hashes unchanged)."""

import json
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.calculators.emt import EMT
from ase.io import read, write
from scipy.spatial.transform import Rotation

from fastqmd.domain import (
    DomainGuardedPotential,
    ExtrapolationError,
    ExtrapolationWarning,
    fit_domain,
    load_domain,
    save_domain,
    score,
)
from fastqmd.errors import CalculationFailed, InputError
from fastqmd.md.config import MDConfig
from fastqmd.md.run import MDBlowUp, config_hash, run_md
from fastqmd.potential import PotentialCalculator, calculator_to_potential
from fastqmd.structures import build_structures
from fastqmd.testing import tree_snapshot

WATER = np.array([[0.0, 0.0, 0.119], [0.0, 0.763, -0.477], [0.0, -0.763, -0.477]])  # Å, O–H 0.97 Å
RATTLE_A = 0.02  # Gaussian σ of the training rattles
INVARIANCE_TOL = 1e-9  # same environments up to round-off
STRETCHED_MIN = 5.0  # O–H 1.4 Å: measured 19, clearly outside


def water(rng, sigma=RATTLE_A):
    return Atoms("OHH", positions=WATER + sigma * rng.normal(size=(3, 3)))


def stretched(oh=1.4):
    a = Atoms("OHH", positions=WATER.copy())
    v = WATER[1] - WATER[0]
    a.positions[1] = WATER[0] + oh * v / np.linalg.norm(v)
    return a


@pytest.fixture(scope="module")
def water_train():
    rng = np.random.default_rng(0)
    return [water(rng) for _ in range(100)]


@pytest.fixture(scope="module")
def water_domain(water_train):
    return fit_domain(water_train, cutoff=5.0)


def test_training_domain_scores_at_most_about_one(water_train, water_domain):
    """Training structures are their own reference points (score 0); fresh draws of the same distribution score
    around the calibrated edge: median well below 1, few above (d_ref: the 99 % leave-one-out quantile per atom,
    and a water has three atoms)."""
    assert max(score(water_domain, a).score for a in water_train) == 0.0
    rng = np.random.default_rng(1)
    held = np.array([score(water_domain, water(rng)).score for _ in range(100)])
    assert np.median(held) < 0.5 and (held > 1).mean() <= 0.1, (np.median(held), (held > 1).mean())
    sub = fit_domain(water_train, max_points_per_element=60)  # subsampled references: training atoms not all kept
    train = np.array([score(sub, a).score for a in water_train])
    assert (train > 1).mean() <= 0.1 and train.max() < STRETCHED_MIN


def test_stretched_oh_scores_far_above_one(water_domain):
    s = score(water_domain, stretched(1.4))
    assert s.score > STRETCHED_MIN and s.atom in (0, 1), s
    assert s.outside_range[s.atom] > 0  # also beyond the per-feature training min/max
    assert score(water_domain, stretched(0.97)).score < 1.0  # the equilibrium geometry is inside


def test_score_is_invariant_to_rotation_translation_permutation(water_domain):
    rng = np.random.default_rng(2)
    a = water(rng, 0.05)
    ref = score(water_domain, a)
    b = a.copy()
    b.positions = Rotation.random(random_state=3).apply(a.positions) + [3.1, -2.0, 7.5]
    perm = [2, 0, 1]
    c = b[perm]
    sc = score(water_domain, c)
    assert abs(sc.score - ref.score) < INVARIANCE_TOL * max(1.0, ref.score)
    np.testing.assert_allclose(sc.per_atom, ref.per_atom[perm], rtol=INVARIANCE_TOL, atol=INVARIANCE_TOL)
    assert sc.atom == perm.index(ref.atom)


def test_unseen_element_is_infinite_and_named(water_domain):
    a = Atoms("OHF", positions=WATER)
    s = score(water_domain, a)
    assert s.score == np.inf and s.unseen == ("F",) and s.atom == 2 and s.element == "F"
    assert np.isfinite(s.per_atom[:2]).all()  # the others are scored without the unseen atom
    assert "F" in s.describe()


def test_save_load_round_trip_weights_only(tmp_path, water_domain):
    p = tmp_path / "w.pt"
    save_domain(water_domain, p)
    raw = torch.load(p, weights_only=True)
    assert raw["format"] == "fastqmd-domain" and raw["elements"] == ["H", "O"] and raw["cutoff"] == 5.0
    d = load_domain(p)
    assert d.sf == water_domain.sf and d.elements == water_domain.elements
    a = stretched(1.2)
    assert score(d, a).score == score(water_domain, a).score
    assert p.stat().st_size < 300_000  # a small file


def test_load_rejects_bad_files(tmp_path):
    (tmp_path / "text.pt").write_text("not a torch file")
    torch.save({"state": torch.zeros(2)}, tmp_path / "other.pt")
    for name, what in [("missing.pt", "not found"), ("text.pt", "cannot read"), ("other.pt", "not a fastqmd domain")]:
        with pytest.raises(InputError, match=what) as e:
            load_domain(tmp_path / name)
        assert len(str(e.value).splitlines()) == 1


def test_fit_rejects_too_few_atoms_of_an_element():
    with pytest.raises(InputError, match="element O has 1 training atom"):
        fit_domain([Atoms("OHH", positions=WATER)])


# ------------------------------------------------------------------ CLI


def _cli(monkeypatch, capsys, *args):
    from fastqmd.cli import main

    monkeypatch.setattr(sys, "argv", ["fastqmd", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code or 0
    cap = capsys.readouterr()
    return code, cap.out.strip().splitlines(), cap.err.strip().splitlines()


def test_cli_fit_score_round_trip(tmp_path, monkeypatch, capsys, water_train):
    write(tmp_path / "train.extxyz", water_train)
    write(tmp_path / "test.extxyz", [water(np.random.default_rng(5)), stretched(1.4)])
    code, out, err = _cli(monkeypatch, capsys, "domain", "fit", tmp_path / "train.extxyz", "-o", tmp_path / "d.pt")
    assert code == 0 and not err and "100 structures" in out[0]
    code, out, err = _cli(monkeypatch, capsys, "domain", "score", tmp_path / "d.pt", tmp_path / "test.extxyz",
                          "-o", tmp_path / "s.json")
    assert code == 0 and not err, err
    r = json.loads((tmp_path / "s.json").read_text())
    assert r["n_frames"] == 2 and r["max_frame"] == 1 and r["max_score"] > STRETCHED_MIN
    assert r["fraction_above"] == 0.5 and r["frames"][0]["score"] < 1
    assert "1/2 = 50.0% above 1" in out[0]


def test_cli_fit_from_dataset_train_split(tmp_path, monkeypatch, capsys):
    from fastqmd.testing import make_water_dataset

    h5 = make_water_dataset(tmp_path / "w.h5", n=6, rattle=0.03)
    run = tmp_path / "run"
    run.mkdir()
    (run / "split.json").write_text(json.dumps({"train": ["00000000", "00000001", "00000002"], "val": ["00000003"],
                                                "test": ["00000004", "00000005"]}))
    code, out, err = _cli(monkeypatch, capsys, "domain", "fit", h5, "--split-of", run, "--cutoff", "4")
    assert code == 0 and not err, err
    d = load_domain(tmp_path / "w_domain.pt")
    assert d.n_structures == 3 and d.sf.cutoff == 4.0 and "train split" in d.source
    code, out, err = _cli(monkeypatch, capsys, "domain", "score", tmp_path / "w_domain.pt", h5)
    assert code == 0 and "6 frames" in out[0]


@pytest.mark.parametrize("case", ["missing_data", "data_folder", "empty_file", "not_a_dataset", "split_of_file",
                                  "no_split_json", "missing_domain", "not_a_domain", "unknown_element",
                                  "output_is_input"])
def test_cli_bad_input_one_line_exit_2_nothing_written(tmp_path, monkeypatch, capsys, water_domain, case):
    write(tmp_path / "w.extxyz", [water(np.random.default_rng(6)) for _ in range(3)])
    write(tmp_path / "f.extxyz", Atoms("OHF", positions=WATER))
    save_domain(water_domain, tmp_path / "d.pt")
    (tmp_path / "empty.extxyz").write_text("")
    (tmp_path / "folder").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "split.json").write_text(json.dumps({"train": ["00000000"]}))
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    o = tmp_path / "out.pt"
    args = {
        "missing_data": ("fit", tmp_path / "nope.extxyz", "-o", o),
        "data_folder": ("fit", tmp_path / "folder", "-o", o),
        "empty_file": ("fit", tmp_path / "empty.extxyz", "-o", o),
        "not_a_dataset": ("fit", tmp_path / "junk.h5", "-o", o),
        "split_of_file": ("fit", tmp_path / "w.extxyz", "--split-of", tmp_path / "run", "-o", o),
        "no_split_json": ("fit", tmp_path / "junk.h5", "--split-of", tmp_path / "folder", "-o", o),
        "missing_domain": ("score", tmp_path / "nope.pt", tmp_path / "w.extxyz", "-o", o),
        "not_a_domain": ("score", tmp_path / "w.extxyz", tmp_path / "w.extxyz", "-o", o),
        "unknown_element": ("score", tmp_path / "d.pt", tmp_path / "f.extxyz", "-o", o),
        "output_is_input": ("fit", tmp_path / "w.extxyz", "-o", tmp_path / "w.extxyz"),
    }[case]
    before = tree_snapshot(tmp_path)
    code, out, err = _cli(monkeypatch, capsys, "domain", *args)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (code, err)
    assert tree_snapshot(tmp_path) == before
    expect = {"unknown_element": "element(s) F not in the domain", "split_of_file": "is a structure file",
              "no_split_json": "split.json", "not_a_domain": "as a domain file", "empty_file": "empty.extxyz"}
    assert expect.get(case, "") in err[0]


# ------------------------------------------------------------------ the calculator wrapper


def cu_base():
    src = {"kind": "rattled_bulk", "element": "Cu", "supercell": 2, "cubic": True, "max_displacement_fraction": 0.0}
    return src, build_structures(_structure(src))[0]


def _structure(src):
    from pydantic import TypeAdapter

    from fastqmd.structures import StructureSource

    return TypeAdapter(StructureSource).validate_python(src)


@pytest.fixture(scope="module")
def cu_domain(tmp_path_factory):
    """fcc Cu (32 atoms) rattled by σ = 0.03 Å: 10 structures."""
    _, base = cu_base()
    train = []
    for k in range(10):
        a = base.copy()
        a.rattle(0.03, seed=k)
        train.append(a)
    path = tmp_path_factory.mktemp("cu") / "cu_domain.pt"
    save_domain(fit_domain(train), path)
    return path


def test_calculator_reports_extrapolation_and_warns_once(cu_domain):
    _, base = cu_base()
    calc = PotentialCalculator(DomainGuardedPotential(calculator_to_potential(EMT()), cu_domain, threshold=1.0))
    a = base.copy()
    a.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # inside the domain: no warning
        e = a.get_potential_energy()
    assert calc.results["extrapolation"] < 1.0 and np.isfinite(e)
    b = base.copy()
    b.set_cell(base.cell * 0.95, scale_atoms=True)  # 5 % compressed: outside
    b.calc = calc
    with pytest.warns(ExtrapolationWarning, match="outside the training domain") as rec:
        b.get_forces()
        b.positions[0] += 0.01
        b.get_forces()
    assert len(rec) == 1 and calc.results["extrapolation"] > 10
    assert calc.potential.monitor.first_above == 1 and calc.potential.monitor.n_checks == 3
    stop = PotentialCalculator(DomainGuardedPotential(calculator_to_potential(EMT()), cu_domain, action="stop"))
    b.calc = stop
    with pytest.raises(ExtrapolationError) as exc:
        b.get_forces()
    assert isinstance(exc.value, CalculationFailed)


# ------------------------------------------------------------------ fastqmd md with guard.domain


def md_dict(out, domain=None, steps=60, **guard):
    src, _ = cu_base()
    d = {"structure": src, "potential": {"kind": "emt"}, "ensemble": {"kind": "nve"}, "temperature_K": 600,
         "timestep_fs": 2.0, "steps": steps,
         "output": {"dir": str(out), "traj_every": 5, "checkpoint_every": 10, "progress": False}}
    if domain is not None:
        d["guard"] = {"domain": str(domain), "domain_every": 5, **guard}
    return d


def files(out):
    return [(Path(out) / f).read_bytes() for f in ("trajectory.extxyz", "thermo.csv")]


def test_md_warn_runs_to_the_end_and_reports(tmp_path, cu_domain, capsys):
    """600 K from perfect fcc leaves the σ = 0.03 Å training rattles within ~10 steps (measured: 2.1 at step 10,
    max 7.9 at step 25); the run goes on, with one warning line, an unchanged trajectory, and the report."""
    s = run_md(MDConfig.model_validate(md_dict(tmp_path / "warn", cu_domain)))
    err = capsys.readouterr().err.strip().splitlines()
    assert s.steps_done == 60 and len(err) == 1 and err[0].startswith("warning: md:") and "step 10" in err[0]
    d = s.domain
    assert d["n_checks"] == 13 and d["max_score"] > 3 and d["first_step_above"] == 10 and d["max_step"] > 10
    assert json.loads((tmp_path / "warn" / "domain.json").read_text()) == d
    run_md(MDConfig.model_validate(md_dict(tmp_path / "plain")))
    assert files(tmp_path / "warn") == files(tmp_path / "plain")  # the guard only looks


def test_md_domain_report_survives_resume(tmp_path, cu_domain):
    full = run_md(MDConfig.model_validate(md_dict(tmp_path / "full", cu_domain)))
    run_md(MDConfig.model_validate(md_dict(tmp_path / "part", cu_domain, steps=30)))
    resumed = run_md(MDConfig.model_validate(md_dict(tmp_path / "part", cu_domain, steps=60)))
    assert resumed.resumed_from == 30 and resumed.domain == {**full.domain, "domain": str(cu_domain)}
    assert files(tmp_path / "full") == files(tmp_path / "part")


def test_md_stop_exits_3_with_checkpoint_intact(tmp_path, cu_domain, monkeypatch, capsys):
    """action stop, threshold 3: the check at step 15 (score ~5) stops the run exactly like the blow-up guard."""
    p = tmp_path / "stop.yaml"
    out = tmp_path / "stop"
    p.write_text(yaml.safe_dump(md_dict(out, cu_domain, domain_action="stop", domain_threshold=3.0)))
    code, _, err = _cli(monkeypatch, capsys, "md", p)
    assert code == 3 and len(err) == 1 and "training domain" in err[0] and "last good frame" in err[0], err
    stopped, good = map(int, re.search(r"stopped at step (\d+).*\(step (\d+)\)", err[0]).groups())
    assert stopped % 5 == 0 and good == stopped - 1
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["state"]["step"] <= good and ck["domain"]["max_score"] <= 3.0
    assert read(out / "last_good.extxyz").info["step"] == good
    report = json.loads((out / "domain.json").read_text())
    assert report["max_score"] > 3.0 and report["first_step_above"] == stopped


def test_md_start_outside_domain_stops_before_writing(tmp_path, cu_domain):
    d = md_dict(tmp_path / "run", cu_domain, domain_action="stop")
    d["structure"] = {**d["structure"], "a": 3.45}  # 4.4 % compressed
    with pytest.raises(MDBlowUp, match="starting structure.*nothing written"):
        run_md(MDConfig.model_validate(d))
    assert not (tmp_path / "run").exists()


def test_md_bad_domain_is_bad_input(tmp_path, water_domain):
    save_domain(water_domain, tmp_path / "w.pt")
    (tmp_path / "junk.pt").write_text("junk")
    for dom, what in [(tmp_path / "w.pt", "fitted on H, O; the structure also has Cu"),
                      (tmp_path / "missing.pt", "domain file not found"), (tmp_path / "junk.pt", "cannot read")]:
        with pytest.raises(InputError, match=what):
            run_md(MDConfig.model_validate(md_dict(tmp_path / "run", dom)))
        assert not (tmp_path / "run").exists()


def test_config_hash_without_domain_is_unchanged():
    """A config without guard.domain hashes as before the domain guard existed (its checkpoints still resume):
    the value below was computed by the code before this feature."""
    d = {"structure": {"kind": "rattled_bulk", "element": "Cu", "supercell": 2, "cubic": True,
                       "max_displacement_fraction": 0.01, "seed": 3},
         "potential": {"kind": "emt"}, "ensemble": {"kind": "nose_hoover", "tau_fs": 50}, "temperature_K": 300,
         "timestep_fs": 2.0, "steps": 60,
         "output": {"dir": "md_out/cu", "traj_every": 5, "checkpoint_every": 20, "progress": False}}
    assert config_hash(MDConfig.model_validate(d)) == "0cfecc78ab98849d"
    d["guard"] = {"max_temperature_K": 150}
    assert config_hash(MDConfig.model_validate(d)) == "0c7a8691150c84d1"
    d["guard"]["domain"] = "cu.pt"
    assert config_hash(MDConfig.model_validate(d)) != "0c7a8691150c84d1"
