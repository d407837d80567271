"""Generation (in-process and on Dask): end to end, resume after kill -9, failures recorded, bad input → exit 2."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from fastqmd.config import load_config
from fastqmd.data.generate import GenerateConfig, generate, parts_dir, plan_jobs
from fastqmd.data.info import summarize
from fastqmd.data.store import Dataset

FASTQMD = [sys.executable, "-c", "from fastqmd.cli import main; main()"]
# the CLI with a LocalCluster that always pays (after the first, in-process sample): the Dask path on tiny jobs
FASTQMD_DASK = [sys.executable, "-c", "import fastqmd.data.generate as g; g.CLUSTER_START_S = 0.0; "
                "from fastqmd.cli import main; main()"]


def water_config(tmp_path, count=6, method="GFN2-xTB", out="water.h5", **engine):
    cfg = {
        "structures": [{"kind": "molecule", "name": "H2O", "sampling": "random", "displacement_A": 0.05,
                        "count": count, "seed": 4}],
        "engine": {"kind": "tblite", "method": method, **engine},
        "output": str(tmp_path / out),
        "workers": 2,
    }
    path = tmp_path / f"cfg-{method}-{count}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_generate_end_to_end_and_rerun_is_a_no_op(tmp_path):
    cfg = load_config(GenerateConfig, water_config(tmp_path))
    rep = generate(cfg, progress=False)
    assert (rep.requested, rep.already_done, rep.computed, rep.failed) == (6, 0, 6, 0)
    ds = Dataset(cfg.output)
    assert ds.keys() == [f"{i:08d}" for i in range(6)]
    jobs = plan_jobs(cfg)
    for key, job in zip(ds.keys(), jobs):
        np.testing.assert_array_equal(ds.read(key, ("positions",))["positions"], job.atoms.positions)
    ds.close()
    assert not parts_dir(cfg.output).exists()
    before = cfg.output.read_bytes()
    rep2 = generate(cfg, progress=False)
    assert (rep2.already_done, rep2.computed) == (6, 0)
    assert cfg.output.read_bytes() == before
    s = summarize(cfg.output)
    assert s["samples"] == {"total": 6, "ok": 6, "failed": 0} and s["elements"] == ["H", "O"]
    assert s["basis"]["O"]["n_orbitals"] == 4 and s["basis"]["H"]["n_orbitals"] == 1
    assert s["valence_electrons"] == {"H": 1, "O": 6}


def test_extending_the_count_keeps_earlier_samples(tmp_path):
    small = load_config(GenerateConfig, water_config(tmp_path, count=3))
    generate(small, progress=False)
    e_small = [Dataset(small.output).read(k, ())["energy"] for k in Dataset(small.output).keys()]
    big = load_config(GenerateConfig, water_config(tmp_path, count=5))
    rep = generate(big, progress=False)
    assert (rep.already_done, rep.computed) == (3, 2)
    ds = Dataset(big.output)
    assert len(ds) == 5 and [ds.read(k, ())["energy"] for k in ds.keys()[:3]] == e_small


def test_resume_after_kill_9_has_exactly_the_requested_samples(tmp_path):
    n = 40
    cfg_path = water_config(tmp_path, count=n)
    out = tmp_path / "water.h5"
    proc = subprocess.Popen([*FASTQMD_DASK, "generate", str(cfg_path), "--quiet"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = parts_dir(out)
    deadline = time.time() + 400  # generous: a loaded machine starts the Dask workers slowly
    while time.time() < deadline and len(list(parts.glob("*.h5"))) < 5:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the client and its Dask workers, mid-run
    proc.wait()
    done_before = len(list(parts.glob("*.h5")))
    assert 5 <= done_before < n, "the kill must land mid-run"
    assert not out.exists()
    r = subprocess.run([*FASTQMD, "generate", str(cfg_path), "--quiet"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{n} structures, {done_before} already done, {n - done_before} computed" in r.stdout
    ds = Dataset(out)
    assert ds.keys(None) == [f"{i:08d}" for i in range(n)]  # none missing, none duplicated
    assert len(ds.keys("ok")) == n
    cfg = load_config(GenerateConfig, cfg_path)
    for key, job in zip(ds.keys(), plan_jobs(cfg)):
        np.testing.assert_array_equal(ds.read(key, ("positions",))["positions"], job.atoms.positions)
    # journalled samples are bitwise the same as freshly computed ones
    from fastqmd.data.generate import _engine

    fresh = _engine(cfg.engine.model_dump_json()).compute(plan_jobs(cfg)[0].atoms)
    d0 = ds.read("00000000", ("H",))
    np.testing.assert_allclose(d0["energy"], fresh.energy, atol=1e-8)
    np.testing.assert_allclose(d0["H"], fresh.H, atol=1e-7)


def test_failed_scf_is_recorded_and_retry_failed_recomputes(tmp_path):
    cfg = load_config(GenerateConfig, water_config(tmp_path, count=3, max_iter=1))
    rep = generate(cfg, progress=False)
    assert rep.failed == 3
    s = summarize(cfg.output)
    assert s["samples"]["failed"] == 3 and s["failed"][0]["error"]
    cfg_ok = load_config(GenerateConfig, water_config(tmp_path, count=3))
    assert generate(cfg_ok, progress=False).computed == 0  # failed samples are done unless retried
    rep = generate(cfg_ok, retry_failed=True, progress=False)
    assert rep.computed == 3 and rep.failed == 0
    assert summarize(cfg.output)["samples"] == {"total": 3, "ok": 3, "failed": 0}


# ------------------------------------------------------------------ bad input: one line, exit code 2


def run_cli(args):
    r = subprocess.run([*FASTQMD, *map(str, args)], capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def write_yaml(tmp_path, name, data):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def file_config(tmp_path, structure_path, out="o.h5"):
    return {"structures": [{"kind": "file", "path": str(structure_path)}],
            "engine": {"kind": "tblite", "method": "GFN2-xTB"}, "output": str(tmp_path / out)}


def bad_xyz(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


BAD_CASES = {
    "unknown key": (lambda t: {"structures": [{"kind": "molecule", "name": "H2O"}], "engine": {"kind": "tblite"},
                               "output": str(t / "o.h5"), "wokers": 2}, "unknown config key 'wokers'"),
    "wrong type": (lambda t: {"structures": [{"kind": "molecule", "name": "H2O", "count": "many"}],
                              "engine": {"kind": "tblite"}, "output": str(t / "o.h5")}, "count"),
    "unsupported element": (lambda t: file_config(t, bad_xyz(t, "u.xyz", "2\n\nU 0 0 0\nU 0 0 2.5\n")),
                            "not supported"),
    "atoms too close": (lambda t: file_config(t, bad_xyz(t, "c.xyz", "2\n\nH 0 0 0\nH 0 0 0.2\n")),
                        "apart"),
    "nan coordinates": (lambda t: file_config(t, bad_xyz(t, "n.xyz", "2\n\nH 0 0 0\nH 0 nan 0.7\n")),
                        "non-finite"),
    "zero-volume cell": (lambda t: file_config(t, bad_xyz(
        t, "z.extxyz", '1\nLattice="1 0 0 2 0 0 0 0 1" Properties=species:S:1:pos:R:3 pbc="T T T"\nH 0 0 0\n')),
        "zero volume"),
    "missing structure file": (lambda t: file_config(t, t / "nope.xyz"), "not found"),
    "unreadable structure file": (lambda t: file_config(t, bad_xyz(t, "bad.cif", "garbage\n")), "cannot read"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, case):
    make, expected = BAD_CASES[case]
    cfg = write_yaml(tmp_path, "bad.yaml", make(tmp_path))
    code, out, err = run_cli(["generate", cfg, "--quiet"])
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "o.h5").exists() and not (tmp_path / "o.h5.parts").exists()


def test_output_holding_other_engine_is_refused_untouched(tmp_path):
    cfg = load_config(GenerateConfig, water_config(tmp_path, count=2))
    generate(cfg, progress=False)
    before = cfg.output.read_bytes()
    other = water_config(tmp_path, count=2, method="GFN1-xTB")
    code, _, err = run_cli(["generate", other, "--quiet"])
    assert code == 2 and "different engine or settings" in err and len(err.strip().splitlines()) == 1
    assert cfg.output.read_bytes() == before and not parts_dir(cfg.output).exists()


def test_cli_missing_config_and_info_export(tmp_path):
    code, _, err = run_cli(["generate", tmp_path / "nope.yaml"])
    assert code == 2 and err.strip() == f"error: config file not found: {tmp_path / 'nope.yaml'}"
    code, _, err = run_cli(["dataset", "info", tmp_path / "nope.h5"])
    assert code == 2 and "not found" in err
    cfg = load_config(GenerateConfig, water_config(tmp_path, count=2))
    generate(cfg, progress=False)
    code, out, _ = run_cli(["dataset", "info", cfg.output])
    assert code == 0 and "2 ok, 0 failed" in out
    code, out, _ = run_cli(["dataset", "export", cfg.output, "--format", "extxyz", "-o", tmp_path / "w.extxyz"])
    assert code == 0
    from ase.io import read

    frames = read(tmp_path / "w.extxyz", ":")
    assert len(frames) == 2 and abs(frames[0].get_potential_energy()) > 100
    code, _, err = run_cli(["dataset", "export", cfg.output, "--format", "pdb"])
    assert code == 2 and "unsupported export format" in err
