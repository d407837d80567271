"""Snapshot generation: a kill -9 mid-run and a rerun give the complete file, no geometry twice, and the same
arrays as an uninterrupted run; the stored set is consistent (density of the stored orbitals, forces of the
stored state); chains on Dask give the same numbers as in this process. Coarse grid: 20³, h = 0.5 Bohr, filtered
pseudopotentials (one warm SCF ≈ 0.2 s)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from fastqmd.mor.snapshots import (BIG, GEOMETRIES, Snapshots, SnapshotsConfig, generate_snapshots, journalled,
                                   parts_dir, run_chain)

ARRAYS = ("positions", "forces", "eigenvalues", "occupations", "hamiltonian", "orbitals", "density")


def config(tmp: Path, name: str, **kw) -> dict:
    d = {"sampling": {"molecule": "water", "grid": {"bond_factors": [0.95, 1.0, 1.05], "angle_offsets_deg": [-5.0, 5.0]}},
         "solver": {"grid_points": 20, "box_bohr": 10.0, "fd_order": 4, "filter_pseudo": True},
         "output": str(tmp / name), "chains": 2, "workers": 0}
    d.update(kw)
    return d


def read_all(path: Path) -> dict[str, dict]:
    with h5py.File(path, "r") as f:
        return {k: {**{n: g[n][()] for n in g}, **dict(g.attrs)} for k, g in f[GEOMETRIES].items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run (12 geometries, 2 chains, in this process)."""
    tmp = tmp_path_factory.mktemp("ref")
    cfg = SnapshotsConfig.model_validate(config(tmp, "ref.h5"))
    report = generate_snapshots(cfg, progress=False)
    assert report["solved"] == 12 and report["chains"] == 2
    return cfg, read_all(cfg.output)


def assert_same(a: dict, b: dict, names=ARRAYS) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        for n in names:
            assert np.array_equal(a[k][n], b[k][n]), (k, n)
        assert a[k]["free_energy"] == b[k]["free_energy"] and a[k]["warm_from"] == b[k]["warm_from"]


def test_kill_9_mid_run_then_rerun_gives_the_uninterrupted_result(reference, tmp_path):
    ref_cfg, ref = reference
    data = config(tmp_path, "snap.h5")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fastqmd.cli", "mor", "snapshots", "c.yaml", "--quiet"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parts = parts_dir(tmp_path / "snap.h5")
    t0 = time.time()
    while len(journalled(parts)) < 3 and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(journalled(parts))
    assert 3 <= n_before < 12, f"the run was not interrupted mid-way ({n_before} parts)"
    assert not (tmp_path / "snap.h5").exists()
    cfg = SnapshotsConfig.model_validate(data)
    report = generate_snapshots(cfg, progress=False)
    assert report["already_done"] == n_before and report["solved"] == 12 - n_before
    got = read_all(cfg.output)
    assert len(got) == 12  # nothing lost, nothing twice
    assert_same(got, ref)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "snap.h5"]  # no journal, lock or temporary left


class Interrupt(Exception):
    pass


def test_energies_only_run_strips_orbitals_yet_resumes_exactly(tmp_path):
    six = {"molecule": "water", "grid": {"bond_factors": [0.95, 1.05], "angle_offsets_deg": [-5.0, 5.0]}}
    cfg = SnapshotsConfig.model_validate(config(tmp_path, "e.h5", store_orbitals=False, chains=1, sampling=six))
    ref1 = read_all(generate_snapshots(SnapshotsConfig.model_validate(
        config(tmp_path, "e1.h5", chains=1, sampling=six)), progress=False)["output"])
    # interrupt after 4 of the 6 geometries of the single chain: only the chain's last part keeps its orbitals
    from fastqmd.mor.snapshots import _check_journal, plan

    geoms, chains = plan(cfg)
    parts = parts_dir(cfg.output)
    _check_journal(parts, cfg.identity(), False)
    count = []

    def stop(rec, wall):
        count.append(rec)
        if len(count) == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_chain(cfg.model_dump_json(), 0, chains[0], stop)
    with_big = []
    for p in sorted(parts.glob("*.h5")):
        with h5py.File(p, "r") as f:
            g = next(iter(f[GEOMETRIES].values()))
            if all(n in g for n in BIG):
                with_big.append(p.stem)
    assert len(journalled(parts)) == 4 and len(with_big) == 1
    generate_snapshots(cfg, progress=False)
    got = read_all(cfg.output)
    assert all(not any(n in g for n in BIG) for g in got.values())
    assert_same(got, ref1, names=("positions", "forces", "eigenvalues", "occupations", "hamiltonian"))
    with pytest.raises(Exception, match="store_orbitals: false"):
        Snapshots(cfg.output).orbital_matrix()


def test_the_stored_set_is_consistent(reference):
    """density = Σ o U²/dV of the stored orbitals, F from that state, hamiltonian = U H[V_eff[n]] Uᵀ; the
    eigenvalues (of the SCF's input potential) agree with eig(hamiltonian) to the SCF tolerance."""
    from fastqmd.dft.forces import hellmann_feynman_forces
    from fastqmd.dft.hamiltonian import Hamiltonian
    from fastqmd.dft.scf import SCFResult, discretize, effective_potential, free_energy_terms
    from fastqmd.dft.occupations import fermi_dirac

    cfg, ref = reference
    snap = Snapshots(cfg.output)
    grid = snap.grid.grid()
    assert len(snap) == 12 and snap.n_occupied == 4 and snap.orbital_matrix().shape == (48, grid.size)
    for k in list(ref)[::5]:
        r = ref[k]
        U, occ, n = r["orbitals"], r["occupations"], r["density"]
        assert np.abs(U @ U.T - np.eye(len(U))).max() < 1e-12
        assert np.abs(n - occ @ (U * U) / grid.dV).max() < 1e-12
        disc = discretize(snap.model.model(r["positions"]), grid)
        V, parts = effective_potential(disc, n.reshape(grid.shape))
        h = U @ Hamiltonian(grid, V, disc.blocks).apply(U).T
        assert np.abs(h - r["hamiltonian"]).max() < 1e-12
        assert np.abs(np.linalg.eigvalsh(h) - r["eigenvalues"]).max() < 1e-4  # input vs output potential
        _, _, mTS = fermi_dirac(r["eigenvalues"], snap.model.n_electrons, snap.model.kT)
        terms = free_energy_terms(disc, U, occ, mTS)[0]
        assert terms["free_energy"] == pytest.approx(r["free_energy"], abs=1e-10)
        res = SCFResult(disc, r["eigenvalues"], occ, U, n.reshape(grid.shape), parts["hartree_total"][1],
                        parts["xc"][1], V, r["mu"], terms, True, 0, 0.0)
        assert np.abs(hellmann_feynman_forces(res) - r["forces"]).max() < 1e-12


@pytest.mark.slow
def test_chains_on_dask_equal_the_chains_in_this_process(reference, tmp_path, monkeypatch):
    import fastqmd.mor.snapshots as snapshots

    _, ref = reference
    cfg = SnapshotsConfig.model_validate(config(tmp_path, "d.h5", workers=2))
    monkeypatch.setattr(snapshots, "CLUSTER_START_S", 1e9)  # a cluster that never pays: all in this process
    assert generate_snapshots(cfg.model_copy(update={"output": tmp_path / "p.h5"}),
                              progress=False)["ran_on"] == "this process"
    monkeypatch.setattr(snapshots, "CLUSTER_START_S", 0.0)  # now it pays: the probe here, both chains on Dask
    report = generate_snapshots(cfg, progress=False)
    assert report["ran_on"] == "this process + LocalCluster(2)"
    got = read_all(cfg.output)
    for k in ref:  # other processes, same BLAS: equal to rounding
        for n in ARRAYS:
            assert np.allclose(got[k][n], ref[k][n], rtol=0, atol=1e-10), (k, n)


def test_a_basis_from_the_snapshots_reproduces_them_to_the_discarded_energy(reference):
    from fastqmd.mor.basis import basis_from_snapshots

    cfg, ref = reference
    b = basis_from_snapshots(cfg.output, epsilon=1e-6, criterion="sigma2")
    U = Snapshots(cfg.output).orbital_matrix()  # 12 geometries × 4 occupied orbitals
    assert b.n_snapshots == 48 and np.abs(b.vectors @ b.vectors.T - np.eye(b.rank)).max() < 1e-12
    lost = np.sum((U - (U @ b.vectors.T) @ b.vectors) ** 2) / b.grid.dV  # Σ_j Σ_r |(1 − P) ψ_j|², ψ = U/√dV
    assert lost == pytest.approx(np.sum(b.singular_values[b.rank:] ** 2), rel=1e-6)
    assert lost / np.sum(b.singular_values**2) < 1e-6  # the discarded energy fraction is below ε
    assert np.asarray(b.extras["training_geometries_bohr"]).shape == (12, 3, 3)
    b.check_compatible(cfg.solver.grid(), cfg.solver.model(("O", "H", "H"), np.zeros((3, 3))), ("O", "H", "H"))
