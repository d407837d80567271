"""Resumable, Dask-parallel generation of a reference dataset.

In:  a `GenerateConfig` (structure sources, a reference engine config, output path, workers).
Out: one HDF5 dataset (`fastqmd.data.schema`) with one group per requested structure: labelled, or marked
     failed with the reason.

Flow: every structure is built and validated on the client before anything is written; reference
calculations run as Dask tasks (a LocalCluster bound to 127.0.0.1 by default, or an existing scheduler);
the client is the only writer. Each finished sample is journalled as its own small HDF5 file in
`<output>.parts/` (temporary file + fsync + atomic rename), so a kill -9 at any moment loses at most the
calculations in flight. When all samples are done the journal is merged into a copy of the dataset, which
atomically replaces it. Rerunning the same command resumes: samples already in the dataset or the journal
are never recomputed or duplicated (the sample key is its index in the config's structure list).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import h5py
from ase import Atoms
from pydantic import Field, PositiveInt

from fastqmd.config import FrozenModel
from fastqmd.data.schema import SAMPLES, sample_key
from fastqmd.data.store import (
    Failure,
    Header,
    atomic_write,
    PER_ELEMENT_ATTRS,
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


class GenerateConfig(FrozenModel):
    structures: list[StructureSource] = Field(min_length=1)
    engine: EngineConfig
    output: Path
    workers: PositiveInt = 2  # LocalCluster worker processes (ignored with a scheduler address)
    threads_per_worker: PositiveInt = 1  # OpenMP threads of each worker's engine


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
    """Dask task: run the reference engine; any failure is returned (not raised) with its reason."""
    t0 = time.perf_counter()
    try:
        return _engine(cfg_json).compute(atoms)
    except Exception as exc:  # recorded per sample, never stops the run
        msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        return Failure(index, atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, msg,
                       time.perf_counter() - t0)


# ---------------------------------------------------------------- journal


def parts_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def _part_path(parts: Path, index: int) -> Path:
    return parts / f"{sample_key(index)}.h5"


def journal_result(parts: Path, header: Header, job: Job, result: Sample | Failure) -> None:
    """Write one finished sample atomically as its own one-sample dataset file."""

    def fill(f: h5py.File) -> None:
        write_header(f, header)
        if isinstance(result, Failure):
            write_failure(f, result, job.source, min_distance(job.atoms))
        else:
            write_sample(f, job.index, result, job.source, min_distance(job.atoms))

    atomic_write(_part_path(parts, job.index), fill)


def journalled_indices(parts: Path) -> set[int]:
    return {int(p.stem) for p in parts.glob("*.h5") if p.stem.isdigit()}


def _check_manifest(parts: Path, header: Header) -> None:
    manifest = parts / "manifest.json"
    if manifest.is_file():
        old = json.loads(manifest.read_text())
        if old["engine"] != header.engine or old["settings"] != header.settings:
            raise InputError(f"{parts} holds an unfinished run with a different engine or settings")


def _start_journal(parts: Path, header: Header) -> None:
    parts.mkdir(parents=True, exist_ok=True)
    manifest = parts / "manifest.json"
    if not manifest.is_file():
        tmp = manifest.with_suffix(".tmp")
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

    atomic_write(output, fill)
    shutil.rmtree(parts, ignore_errors=True)
    return len(files)


# ---------------------------------------------------------------- driver


@dataclass
class GenerateReport:
    requested: int
    already_done: int
    computed: int
    failed: int
    wall_time_s: float
    engine_time_s: float


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


def make_client(workers: int, threads: int, scheduler: str | None):
    """A dask.distributed Client: an existing scheduler, or a LocalCluster bound to localhost."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="30s")
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
        env={"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)},
    )
    return Client(cluster)


def generate(cfg: GenerateConfig, scheduler: str | None = None, retry_failed: bool = False,
             progress: bool = True) -> GenerateReport:
    """Label every structure of `cfg` into `cfg.output`, resuming whatever a previous run finished."""
    t0 = time.perf_counter()
    engine = build_engine(cfg.engine)
    header = Header(engine.name, engine.settings)
    jobs = plan_jobs(cfg)
    todo = pending(cfg, header, jobs, retry_failed)
    parts = parts_dir(cfg.output)
    computed = failed = 0
    engine_time = 0.0
    if todo:
        _start_journal(parts, header)
        cfg_json = cfg.engine.model_dump_json()
        client = make_client(cfg.workers, cfg.threads_per_worker, scheduler)
        try:
            from dask.distributed import as_completed

            by_key = {}
            futures = []
            for job in todo:
                fut = client.submit(label_structure, cfg_json, job.index, job.atoms, key=f"fastqmd-sample-{job.index}-{uuid.uuid4().hex[:8]}")
                by_key[fut.key] = job
                futures.append(fut)
            with _progress(progress, len(jobs), len(jobs) - len(todo)) as advance:
                for fut in as_completed(futures):
                    job = by_key[fut.key]
                    result = fut.result()
                    fut.release()
                    journal_result(parts, header, job, result)
                    computed += 1
                    engine_time += result.wall_time_s
                    if isinstance(result, Failure):
                        failed += 1
                        advance(f"sample {job.index} failed: {result.error}")
                    else:
                        advance(None)
        finally:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()
    consolidate(cfg.output, header)
    return GenerateReport(len(jobs), len(jobs) - len(todo), computed, failed,
                          time.perf_counter() - t0, engine_time)


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
