"""Generation, the house rules: one run per output (a lock that kill -9 releases), temporary names no two
writers share, small jobs in this process (identical results to Dask), no dashboard unless asked, and bad
scheduler/workers input refused in one line before anything is written."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import yaml

import fastqmd.data.generate as gen
from fastqmd.config import load_config
from fastqmd.data.generate import (GenerateConfig, generate, lock_path, output_lock, parts_dir,
                                   pays_to_start_cluster, plan_jobs)
from fastqmd.data.schema import SAMPLES
from fastqmd.data.store import Dataset
from fastqmd.errors import InputError

FASTQMD = [sys.executable, "-c", "from fastqmd.cli import main; main()"]
# the CLI with a slow fake engine (in-process, workers 0): every sample takes SLOW_S seconds more, and waits
# while the file HOLD exists
FASTQMD_SLOW = [sys.executable, "-c",
                "import os, time; import fastqmd.data.generate as g; f = g.label_structure\n"
                "def slow(*a):\n"
                "    time.sleep(float(os.environ['SLOW_S']))\n"
                "    while os.path.exists(os.environ.get('HOLD', '')): time.sleep(0.05)\n"
                "    return f(*a)\n"
                "g.label_structure = slow\n"
                "from fastqmd.cli import main; main()"]
REFUSED_WITHIN_S = 20.0  # CLI start-up (imports, structure checks) + the 3 s scheduler connect timeout


def water_config(tmp_path, count=6, workers=0, out="water.h5"):
    cfg = {
        "structures": [{"kind": "molecule", "name": "H2O", "sampling": "random", "displacement_A": 0.05,
                        "count": count, "seed": 4}],
        "engine": {"kind": "tblite", "method": "GFN2-xTB"},
        "output": str(tmp_path / out),
        "workers": workers,
    }
    path = tmp_path / f"cfg-{count}-{workers}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_slow(cfg_path, slow_s, hold=""):
    return subprocess.Popen([*FASTQMD_SLOW, "generate", str(cfg_path), "--quiet"], start_new_session=True,
                            env={**os.environ, "SLOW_S": str(slow_s), "HOLD": str(hold)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout_s=120.0):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def lock_record(out):
    try:
        return json.loads(lock_path(out).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def n_parts(out):
    return len(list(parts_dir(out).glob("*.h5")))


def assert_complete(out, cfg_path, n):
    ds = Dataset(out)
    assert ds.keys(None) == [f"{i:08d}" for i in range(n)]  # none missing, none duplicated
    assert len(ds.keys("ok")) == n
    for key, job in zip(ds.keys(), plan_jobs(load_config(GenerateConfig, cfg_path))):
        np.testing.assert_array_equal(ds.read(key, ("positions",))["positions"], job.atoms.positions)
    ds.close()
    assert not parts_dir(out).exists() and not lock_path(out).exists()


# ------------------------------------------------------------------ one run per output


def test_second_run_on_a_locked_output_exits_2_naming_the_holder(tmp_path):
    n = 12
    cfg_path = water_config(tmp_path, count=n)
    out = tmp_path / "water.h5"
    hold = tmp_path / "hold"
    hold.touch()
    first = start_slow(cfg_path, 0.0, hold)  # holds the lock, its samples wait while `hold` exists
    wait_for(lambda: lock_record(out).get("pid") == first.pid)
    t0 = time.perf_counter()
    r = subprocess.run([*FASTQMD, "generate", str(cfg_path), "--quiet"], capture_output=True, text=True,
                       timeout=120)
    refused_after = time.perf_counter() - t0
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr
    assert f"pid {first.pid} on host {socket.gethostname()}" in lines[0] and str(out) in lines[0]
    assert refused_after < REFUSED_WITHIN_S
    assert first.poll() is None, "the second run must be refused while the first still runs"
    hold.unlink()
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert_complete(out, cfg_path, n)  # the first run's output is complete and intact


def test_kill_9_releases_the_lock_and_the_rerun_completes_without_duplicates(tmp_path):
    n = 12
    cfg_path = water_config(tmp_path, count=n)
    out = tmp_path / "water.h5"
    proc = start_slow(cfg_path, 0.3)
    wait_for(lambda: n_parts(out) >= 3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    done_before = n_parts(out)
    assert 3 <= done_before < n and not out.exists()
    assert lock_record(out)["pid"] == proc.pid  # a stale record: the lock itself died with its holder
    r = subprocess.run([*FASTQMD, "generate", str(cfg_path), "--quiet"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{n} structures, {done_before} already done, {n - done_before} computed" in r.stdout
    assert_complete(out, cfg_path, n)


def test_output_lock_is_exclusive_names_its_holder_and_is_removed_on_release(tmp_path):
    out = tmp_path / "d.h5"
    with output_lock(out) as path:
        record = json.loads(path.read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with pytest.raises(InputError, match=f"pid {os.getpid()} on host"):
            with output_lock(out):  # a second open file description of the same file: refused
                pass
        assert path.exists()  # the refused run leaves the holder's lock alone
    assert not path.exists()
    with output_lock(out):  # free again
        pass


def test_temporary_names_are_unique_hidden_and_stale_ones_are_removed(tmp_path):
    p = tmp_path / "parts" / "00000003.h5"
    names = {gen._temp_name(p) for _ in range(100)}
    assert len(names) == 100
    for t in names:
        assert t.parent == p.parent and t.name.startswith(".00000003.h5.") and t.suffix == ".tmp"
        assert f".{os.getpid()}-" in t.name and not t.match("*.h5")  # never mistaken for a journal part
    cfg_path = water_config(tmp_path, count=2)
    out = tmp_path / "water.h5"
    parts = parts_dir(out)
    parts.mkdir()
    stale = [tmp_path / ".water.h5.999-0123abcd.tmp", tmp_path / "water.h5.tmp",
             parts / ".00000001.h5.999-0123abcd.tmp", parts / "00000001.h5.tmp", parts / "manifest.tmp"]
    for s in stale:
        s.write_bytes(b"half-written by a killed run")
    rep = generate(load_config(GenerateConfig, cfg_path), progress=False)
    assert rep.computed == 2 and not any(s.exists() for s in stale)
    assert_complete(out, cfg_path, 2)


# ------------------------------------------------------------------ small jobs in this process


@pytest.mark.parametrize("n_left, t_s, workers, expected", [
    (12, 0.01, 2, False),   # the 12-water job of the issue: 0.06 s of saved work < T_start
    (100, 1.0, 2, True),    # 50 s saved > T_start
    (100, 1.0, 1, False),   # one worker process is never faster than this process
    (100, 1.0, 0, False),   # workers: 0 — no Dask at all
    (30, 0.5, 4, True),     # 11.25 s saved > 10 s
    (20, 0.5, 4, False),    # 7.5 s saved < 10 s
])
def test_a_cluster_is_started_only_when_it_pays(n_left, t_s, workers, expected):
    assert pays_to_start_cluster(n_left, t_s, workers, start_s=10.0) is expected


def _contents(path):
    """Every array and attribute of every sample, except its wall time."""
    out = {}
    with h5py.File(path, "r") as f:
        for key, g in f[SAMPLES].items():
            out[key] = ({k: v for k, v in g.attrs.items() if k != "wall_time_s"},
                        {k: g[k][()] for k in g})
        out["/"] = {k: v for k, v in f.attrs.items()}
    return out


def test_in_process_and_dask_give_the_same_dataset(tmp_path, monkeypatch):
    local = load_config(GenerateConfig, water_config(tmp_path, count=4, workers=0, out="local.h5"))
    rep = generate(local, progress=False)
    assert rep.ran_on == "this process" and rep.computed == 4
    auto = load_config(GenerateConfig, water_config(tmp_path, count=4, workers=2, out="auto.h5"))
    assert generate(auto, progress=False).ran_on == "this process"  # a tiny job never pays for a cluster
    monkeypatch.setattr(gen, "CLUSTER_START_S", 0.0)  # now it always pays: sample 0 here, 1-3 on Dask
    dask = load_config(GenerateConfig, water_config(tmp_path, count=4, workers=2, out="dask.h5"))
    rep = generate(dask, progress=False)
    assert rep.ran_on == "this process + LocalCluster(2)" and rep.computed == 4
    a, b = _contents(local.output), _contents(dask.output)
    assert a.keys() == b.keys() and a["/"] == b["/"]
    for key in a:
        if key == "/":
            continue
        assert a[key][0] == b[key][0]
        assert a[key][1].keys() == b[key][1].keys()
        for name in a[key][1]:
            np.testing.assert_array_equal(a[key][1][name], b[key][1][name], err_msg=f"{key}/{name}")


def test_no_dashboard_and_nothing_on_8787_unless_asked():
    client = gen.make_client(1, 1)
    try:
        http = client.cluster.scheduler.http_server
        assert http.port != 8787
        assert all(sock.getsockname()[0] == "127.0.0.1" for sock in http._sockets.values())
    finally:
        gen._close(client)


# ------------------------------------------------------------------ bad scheduler / workers: one line, exit 2


def run_cli(args, timeout=120):
    t0 = time.perf_counter()
    r = subprocess.run([*FASTQMD, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr, time.perf_counter() - t0


def assert_refused(code, out, err, expected, tmp_path):
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    written = [p.name for p in tmp_path.iterdir() if not p.name.endswith(".yaml")]
    assert written == [], f"a refused run left {written} behind"


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:9", "nonsense"])
def test_scheduler_pointing_at_nothing_is_one_line_within_seconds_and_writes_nothing(tmp_path, address):
    cfg_path = water_config(tmp_path, count=2, workers=2)
    code, out, err, wall = run_cli(["generate", cfg_path, "--scheduler", address, "--quiet"])
    assert_refused(code, out, err, f"cannot reach the Dask scheduler at {address}", tmp_path)
    assert wall < REFUSED_WITHIN_S


def test_negative_workers_is_one_line_exit_2(tmp_path):
    cfg_path = water_config(tmp_path, count=2, workers=-1)
    code, out, err, _ = run_cli(["generate", cfg_path, "--quiet"])
    assert_refused(code, out, err, "workers", tmp_path)
    cfg_path.unlink()
    cfg_path = water_config(tmp_path, count=2, workers=2)
    code, out, err, _ = run_cli(["generate", cfg_path, "--workers", "-3", "--quiet"])
    assert_refused(code, out, err, "--workers", tmp_path)
    cfg = load_config(GenerateConfig, cfg_path).model_copy(update={"workers": -1})  # skips validation
    with pytest.raises(InputError, match="workers must be ≥ 0"):
        generate(cfg, progress=False)
    assert not (tmp_path / "water.h5").exists() and not lock_path(tmp_path / "water.h5").exists()


def test_output_folder_missing_or_a_folder_is_refused_before_anything_is_written(tmp_path):
    cfg = load_config(GenerateConfig, water_config(tmp_path, count=1))
    with pytest.raises(InputError, match="does not exist"):
        generate(cfg.model_copy(update={"output": tmp_path / "no" / "such" / "d.h5"}), progress=False)
    assert not (tmp_path / "no").exists()
    (tmp_path / "d.h5").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        generate(cfg.model_copy(update={"output": tmp_path / "d.h5"}), progress=False)
    assert list((tmp_path / "d.h5").iterdir()) == [] and not lock_path(tmp_path / "d.h5").exists()
