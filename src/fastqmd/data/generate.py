"""Resumable generation of a reference dataset: in this process for small jobs, on Dask when it pays.

In:  a `GenerateConfig` (structure sources, a reference engine config, output path, workers).
Out: one HDF5 dataset (`fastqmd.data.schema`) with one group per requested structure: labelled, or marked
     failed with the reason.

Flow: every structure is built and validated on the client before anything is written. The run then holds
an exclusive lock on `<output>.lock` until it ends, so a second run on the same output is refused at once
(`output_lock`). Reference calculations run in the calling process while that is cheaper than starting a
cluster (`pays_to_start_cluster`), otherwise as Dask tasks (a LocalCluster on 127.0.0.1 without a dashboard
unless asked, or an existing scheduler, connected before anything is written); the client is the only
writer. Each finished sample is journalled as its own small HDF5 file in `<output>.parts/` (uniquely named
temporary file + fsync + atomic rename), so a kill -9 at any moment loses at most the calculations in flight.
When all samples are done the journal is merged into a copy of the dataset, which atomically replaces it.
Rerunning the same command resumes: samples already in the dataset or the journal are never recomputed or
duplicated (the sample key is its index in the config's structure list).
"""

from __future__ import annotations

import fcntl
import glob
import json
import logging
import os
import shutil
import socket
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import h5py
from ase import Atoms
from pydantic import Field, NonNegativeInt, PositiveInt

from fastqmd.atomic import temp_name
from fastqmd.config import FrozenModel, check_output_file
from fastqmd.data.schema import SAMPLES, sample_key
from fastqmd.data.store import (
    Failure,
    Header,
    PER_ELEMENT_ATTRS,
    atomic_write,
    merge_per_element,
    read_header,
    write_failure,
    write_header,
    write_sample,
)
from fastqmd.errors import InputError
from fastqmd.reference.base import Sample
from fastqmd.reference.config import EngineConfig, build_engine
from fastqmd.structures import StructureSource, build_structures, min_distance, validate_atoms

# Cost of a 2-worker LocalCluster: importing dask 1.3 s, start 3.2 s, worker imports 0.5 s, stop 1.0 s (measured
# on a loaded 1-core box); a wrong value only moves the break-even of `pays_to_start_cluster`
CLUSTER_START_S = 6.0
CONNECT_TIMEOUT_S = 3.0  # an existing scheduler that does not answer within this is an input error


class GenerateConfig(FrozenModel):
    structures: list[StructureSource] = Field(min_length=1)
    engine: EngineConfig
    output: Path
    workers: NonNegativeInt = 2  # at most this many LocalCluster worker processes; 0: all in this process
    threads_per_worker: PositiveInt = 1  # OpenMP threads of each worker's engine (in-process: the caller's)


@dataclass(frozen=True)
class Job:
    """One structure to label: its index in the config's structure list and its source label."""

    index: int
    source: str
    atoms: Atoms


def plan_jobs(cfg: GenerateConfig) -> list[Job]:
    """Build and validate every structure of the config, in order (index = position in this list)."""
    engine = build_engine(cfg.engine)
    jobs: list[Job] = []
    checked: set[tuple[int, ...]] = set()
    for s, src in enumerate(cfg.structures):
        label = f"{src.kind}[{s}]"
        for atoms in build_structures(src):
            idx = len(jobs)
            validate_atoms(atoms, f"structure {idx} ({label})")
            elements = tuple(sorted(set(atoms.numbers.tolist())))
            if elements not in checked:
                engine.check(atoms)
                checked.add(elements)
            jobs.append(Job(idx, label, atoms))
    return jobs


# ---------------------------------------------------------------- worker side


@lru_cache(maxsize=4)
def _engine(cfg_json: str):
    from pydantic import TypeAdapter

    return build_engine(TypeAdapter(EngineConfig).validate_json(cfg_json))


def label_structure(cfg_json: str, index: int, atoms: Atoms) -> Sample | Failure:
    """One task (Dask or in-process): run the reference engine; any failure is returned (not raised)."""
    t0 = time.perf_counter()
    try:
        return _engine(cfg_json).compute(atoms)
    except Exception as exc:  # recorded per sample, never stops the run
        msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        return Failure(index, atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, msg,
                       time.perf_counter() - t0)


# ---------------------------------------------------------------- the output lock


def lock_path(output: Path) -> Path:
    return output.with_name(output.name + ".lock")


@contextmanager
def output_lock(output: Path):
    """Hold an exclusive lock on `<output>.lock` for the block; if another run holds it, InputError at once.

    flock(2) belongs to the open file, so the kernel drops it when the holder exits, also on kill -9: a stale
    lock file never blocks a rerun. The holder writes its pid, host and start time into the file for the
    message of a refused run, and removes the file on release. A run that opened the file just before that
    removal would lock a deleted inode, so after locking it checks that the path still names the inode it
    holds, and starts over otherwise.
    """
    path = lock_path(output)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"cannot create the lock file {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise InputError(f"{output} is being generated by another run ({holder}); wait for it to end "
                             "or choose another output") from None
        if _names_inode(path, fd):
            break
        os.close(fd)
    try:
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}).encode())
        yield path
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _names_inode(path: Path, fd: int) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _holder(fd: int) -> str:
    """'pid P on host H, started T' from a held lock file (the holder may be a moment from writing it)."""
    for _ in range(20):
        raw = os.pread(fd, 4096, 0)
        try:
            h = json.loads(raw)
            return f"pid {h['pid']} on host {h['host']}, started {h['started']}"
        except (ValueError, KeyError, TypeError):
            time.sleep(0.05)
    return "holder unknown"


# ---------------------------------------------------------------- journal


def parts_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def _part_path(parts: Path, index: int) -> Path:
    return parts / f"{sample_key(index)}.h5"


# the journal's writes go through the one crash-safe writer of the store (unique temporary names)
_temp_name = temp_name
_atomic_h5 = atomic_write


def _remove_stale_temps(output: Path) -> None:
    """Temporary files of runs killed mid-write (safe to delete: the caller holds the output lock)."""
    parts = parts_dir(output)
    stale = list(output.parent.glob(f".{glob.escape(output.name)}.*.tmp"))
    stale.append(output.with_name(output.name + ".tmp"))  # the fixed temporary names of earlier versions
    if parts.is_dir():
        stale += list(parts.glob(".*.tmp")) + list(parts.glob("*.h5.tmp")) + [parts / "manifest.tmp"]  # (same)
    for p in stale:
        p.unlink(missing_ok=True)


def journal_result(parts: Path, header: Header, job: Job, result: Sample | Failure) -> None:
    """Write one finished sample atomically as its own one-sample dataset file."""

    def fill(f: h5py.File) -> None:
        write_header(f, header)
        if isinstance(result, Failure):
            write_failure(f, result, job.source, min_distance(job.atoms))
        else:
            write_sample(f, job.index, result, job.source, min_distance(job.atoms))

    _atomic_h5(_part_path(parts, job.index), fill)


def journalled_indices(parts: Path) -> set[int]:
    return {int(p.stem) for p in parts.glob("*.h5") if p.stem.isdigit()}


def _check_manifest(parts: Path, header: Header) -> None:
    manifest = parts / "manifest.json"
    if manifest.is_file():
        old = json.loads(manifest.read_text())
        if old["engine"] != header.engine or old["settings"] != header.settings:
            raise InputError(f"{parts} holds an unfinished run with a different engine or settings")


def _start_journal(parts: Path, header: Header) -> None:
    parts.mkdir(exist_ok=True)
    manifest = parts / "manifest.json"
    if not manifest.is_file():
        tmp = _temp_name(manifest)
        tmp.write_text(json.dumps({"engine": header.engine, "settings": header.settings}, sort_keys=True))
        tmp.replace(manifest)


def consolidate(output: Path, header: Header) -> int:
    """Merge the journal into (a copy of) the dataset and atomically replace it; returns samples merged."""
    parts = parts_dir(output)
    files = sorted(parts.glob("*.h5")) if parts.is_dir() else []
    files = [p for p in files if p.stem.isdigit()]
    if not files and output.exists():
        shutil.rmtree(parts, ignore_errors=True)
        return 0

    def fill(f: h5py.File) -> None:
        if output.exists():
            with h5py.File(output, "r") as old:
                for k, v in old.attrs.items():
                    f.attrs[k] = v
                old.copy(old[SAMPLES], f, name=SAMPLES)
        else:
            write_header(f, header)
        for p in files:
            with h5py.File(p, "r") as part:
                for key in part[SAMPLES]:
                    if key in f[SAMPLES]:
                        del f[SAMPLES][key]  # a retried failure replaces the old record
                    part.copy(part[SAMPLES][key], f[SAMPLES], name=key)
                for name in PER_ELEMENT_ATTRS:
                    if name in part.attrs:
                        merge_per_element(f, name, json.loads(part.attrs[name]))

    _atomic_h5(output, fill)
    shutil.rmtree(parts, ignore_errors=True)
    return len(files)


def pending(cfg: GenerateConfig, header: Header, jobs: list[Job], retry_failed: bool) -> list[Job]:
    """Jobs not yet in the dataset or the journal. Raises InputError on an incompatible output path."""
    out = cfg.output
    done: set[int] = set()
    if out.exists():
        old = read_header(out)
        if old.engine != header.engine or old.settings != header.settings:
            raise InputError(
                f"{out} holds a dataset made with a different engine or settings "
                f"({old.engine}); choose another output path"
            )
        from fastqmd.data.store import Dataset

        ds = Dataset(out)
        done = ds.indices("ok") if retry_failed else ds.indices(None)
        ds.close()
    parts = parts_dir(out)
    if parts.is_dir():
        _check_manifest(parts, header)
        journal = journalled_indices(parts)
        if retry_failed:
            journal = {i for i in journal if _part_ok(_part_path(parts, i))}
        done |= journal
    return [j for j in jobs if j.index not in done]


def _part_ok(path: Path) -> bool:
    with h5py.File(path, "r") as f:
        return all(g.attrs["status"] == "ok" for g in f[SAMPLES].values())


# ---------------------------------------------------------------- where the work runs


def pays_to_start_cluster(n_left: int, t_sample_s: float, workers: int, start_s: float) -> bool:
    """Whether `workers` worker processes finish the `n_left` remaining samples sooner than this process.

    In this process the rest takes n·t; on a fresh cluster T_start + n·t/w (t: mean time per sample so far,
    T_start = `start_s`: start-up, worker imports and shutdown of a LocalCluster). Start one only when
        n·t·(1 − 1/w) > T_start,
    which never holds for w ≤ 1 (`workers: 0` or 1 run everything here, without Dask).
    """
    return workers > 1 and n_left * t_sample_s * (1.0 - 1.0 / workers) > start_s


def label_in_process(cfg_json: str, jobs: list[Job], record, workers: int) -> list[Job]:
    """Label `jobs` in this process, one by one, while `pays_to_start_cluster` says no; returns the jobs left
    for a cluster (empty when all were done here). The first job always runs here: it is the probe that
    measures t. Building the engine (imports, basis set-up) is not counted in t."""
    _engine(cfg_json)
    spent = 0.0
    for n, job in enumerate(jobs):
        if n and pays_to_start_cluster(len(jobs) - n, spent / n, workers, CLUSTER_START_S):
            return jobs[n:]
        t0 = time.perf_counter()
        result = label_structure(cfg_json, job.index, job.atoms)
        spent += time.perf_counter() - t0
        record(job, result)
    return []


def label_on_dask(client, cfg_json: str, jobs: list[Job], record) -> None:
    """Submit every job as a Dask task; journal results as they complete (the client is the only writer)."""
    from dask.distributed import as_completed

    by_key = {}
    futures = []
    for job in jobs:
        fut = client.submit(label_structure, cfg_json, job.index, job.atoms,
                            key=f"fastqmd-sample-{job.index}-{uuid.uuid4().hex[:8]}")
        by_key[fut.key] = job
        futures.append(fut)
    for fut in as_completed(futures):
        job = by_key[fut.key]
        result = fut.result()
        fut.release()
        record(job, result)


def connect(scheduler: str):
    """A Client of an existing scheduler; one that does not answer within CONNECT_TIMEOUT_S is an InputError."""
    from dask.distributed import Client

    try:
        return Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S:g}s")
    except Exception as exc:  # OSError (timeout, refused), ValueError (malformed address), …
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot reach the Dask scheduler at {scheduler} within {CONNECT_TIMEOUT_S:g} s "
                         f"({reason})") from None


def make_client(workers: int, threads: int, dashboard: bool = False):
    """A Client of a new LocalCluster bound to 127.0.0.1; the dashboard (HTTP, port 8787) only if asked.

    A Dask scheduler always opens an HTTP server (health and metrics routes, even with
    `dashboard_address=None`, which binds it to 8787); without the dashboard it gets a free loopback port, so
    nothing claims 8787 and nothing listens beyond this machine.
    """
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:8787" if dashboard else None,
        scheduler_kwargs=None if dashboard else {"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        silence_logs=logging.ERROR,
        env={"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)},
    )
    client = Client(cluster)
    if dashboard:
        print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
    return client


def _close(client) -> None:
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


# ---------------------------------------------------------------- driver


@dataclass
class GenerateReport:
    requested: int
    already_done: int
    computed: int
    failed: int
    wall_time_s: float
    engine_time_s: float
    ran_on: str = "nothing to do"  # "this process", "this process + LocalCluster(2)", or the scheduler


class _Recorder:
    """Journals each finished sample, counts it and advances the progress bar."""

    def __init__(self, parts: Path, header: Header, advance):
        self.parts, self.header, self.advance = parts, header, advance
        self.computed = self.failed = 0
        self.engine_time_s = 0.0

    def __call__(self, job: Job, result: Sample | Failure) -> None:
        journal_result(self.parts, self.header, job, result)
        self.computed += 1
        self.engine_time_s += result.wall_time_s
        if isinstance(result, Failure):
            self.failed += 1
            self.advance(f"sample {job.index} failed: {result.error}")
        else:
            self.advance(None)


def generate(cfg: GenerateConfig, scheduler: str | None = None, retry_failed: bool = False,
             progress: bool = True, dashboard: bool = False) -> GenerateReport:
    """Label every structure of `cfg` into `cfg.output`, resuming whatever a previous run finished.

    With `scheduler` every pending sample runs on that Dask cluster; otherwise in this process while that is
    cheaper, then on a LocalCluster of `cfg.workers` processes (`pays_to_start_cluster`). Everything that can
    be refused (config, structures, output path, the lock, an unreachable scheduler) is refused before the
    journal is created.
    """
    t0 = time.perf_counter()
    if cfg.workers < 0:  # a config built with model_copy skips validation
        raise InputError(f"workers must be ≥ 0 (0: run in this process), got {cfg.workers}")
    check_output_file(cfg.output)
    engine = build_engine(cfg.engine)
    header = Header(engine.name, engine.settings)
    jobs = plan_jobs(cfg)
    with output_lock(cfg.output):
        _remove_stale_temps(cfg.output)
        todo = pending(cfg, header, jobs, retry_failed)
        record = _Recorder(parts_dir(cfg.output), header, lambda msg: None)
        ran_on = "nothing to do"
        if todo:
            client = connect(scheduler) if scheduler else None
            try:
                _start_journal(record.parts, header)
                cfg_json = cfg.engine.model_dump_json()
                with _progress(progress, len(jobs), len(jobs) - len(todo)) as advance:
                    record.advance = advance
                    rest, ran_on = todo, scheduler
                    if client is None:
                        rest, ran_on = label_in_process(cfg_json, todo, record, cfg.workers), "this process"
                    if rest:
                        if client is None:
                            client = make_client(cfg.workers, cfg.threads_per_worker, dashboard)
                            ran_on += f" + LocalCluster({cfg.workers})"
                        label_on_dask(client, cfg_json, rest, record)
            finally:
                if client is not None:
                    _close(client)
        consolidate(cfg.output, header)
    return GenerateReport(len(jobs), len(jobs) - len(todo), record.computed, record.failed,
                          time.perf_counter() - t0, record.engine_time_s, ran_on)


class _progress:
    """A rich progress bar (rate and ETA) that also prints per-sample failures; no-op when disabled."""

    def __init__(self, enabled: bool, total: int, completed: int):
        self.enabled, self.total, self.completed = enabled, total, completed

    def __enter__(self):
        if not self.enabled:
            return lambda msg: None
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self._p = Progress(
            TextColumn("[bold]labelling"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        )
        self._p.start()
        self._t = self._p.add_task("gen", total=self.total, completed=self.completed, rate="")
        self._t0, self._n = time.perf_counter(), 0

        def advance(msg: str | None) -> None:
            self._n += 1
            rate = self._n / max(time.perf_counter() - self._t0, 1e-9)
            self._p.update(self._t, advance=1, rate=f"{rate * 60:.1f} samples/min")
            if msg:
                self._p.console.print(f"[yellow]{msg}")

        return advance

    def __exit__(self, *exc):
        if self.enabled:
            self._p.stop()
        return False
