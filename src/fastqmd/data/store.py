"""Reading and writing the HDF5 dataset (layout in `fastqmd.data.schema`).

Writes are crash-safe by construction: a dataset file is only ever replaced atomically (write a temporary
file, fsync, `os.replace`), and generation journals each finished sample as its own small file first
(`fastqmd.data.generate`). Readers open the file read-only and touch only the arrays they ask for: one
atom-pair block of a 216-atom Hamiltonian reads a few chunks, never the dense matrix.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from fastqmd import __version__
from fastqmd.atomic import write_atomically
from fastqmd.data.schema import FORMAT_NAME, SAMPLES, SCHEMA_VERSION, TILE, sample_key
from fastqmd.errors import InputError
from fastqmd.reference.base import BasisSpec, Sample


@dataclass(frozen=True)
class Header:
    """What identifies a dataset: the engine and its level-of-theory settings."""

    engine: str
    settings: dict[str, Any]

    def settings_json(self) -> str:
        return json.dumps(self.settings, sort_keys=True)


@dataclass(frozen=True)
class Failure:
    """A structure whose reference calculation failed, with the reason."""

    index: int
    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    error: str
    wall_time_s: float = 0.0


# ---------------------------------------------------------------- writing


def _write_matrix(g: h5py.Group, name: str, M: np.ndarray) -> None:
    """[nk, nao, nao] chunked in TILE×TILE orbital tiles, lzf-compressed (exact zeros are common)."""
    nao = M.shape[-1]
    t = min(TILE, nao)
    g.create_dataset(name, data=M, chunks=(1, t, t), compression="lzf", shuffle=True)


def write_header(f: h5py.File, header: Header) -> None:
    f.attrs["format"] = FORMAT_NAME
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["engine"] = header.engine
    f.attrs["settings"] = header.settings_json()
    f.attrs["fastqmd_version"] = __version__
    f.require_group(SAMPLES)


def _write_structure(g: h5py.Group, numbers, positions, cell, pbc) -> None:
    g.create_dataset("numbers", data=np.asarray(numbers, dtype=np.int32))
    g.create_dataset("positions", data=np.asarray(positions, dtype=np.float64))
    g.create_dataset("cell", data=np.asarray(cell, dtype=np.float64).reshape(3, 3))
    g.create_dataset("pbc", data=np.asarray(pbc, dtype=bool).reshape(3))


def write_sample(f: h5py.File, index: int, sample: Sample, source: str, min_distance_A: float) -> None:
    """Store one successful sample under /samples/<index>; merges its basis into the root `basis` attr."""
    g = f[SAMPLES].create_group(sample_key(index))
    _write_structure(g, sample.numbers, sample.positions, sample.cell, sample.pbc)
    if sample.forces is not None:
        g.create_dataset("forces", data=np.asarray(sample.forces, dtype=np.float64))
    symbols = [_symbol(z) for z in sample.numbers]
    g.create_dataset("orbital_offsets", data=sample.basis.offsets(symbols))
    g.create_dataset("kpoints", data=np.asarray(sample.kpoints, dtype=np.float64).reshape(-1, 3))
    g.create_dataset("kweights", data=np.asarray(sample.kweights, dtype=np.float64))
    _write_matrix(g, "H", np.asarray(sample.H))
    _write_matrix(g, "S", np.asarray(sample.S))
    g.create_dataset("eigenvalues", data=np.asarray(sample.eigenvalues, dtype=np.float64))
    g.create_dataset("occupations", data=np.asarray(sample.occupations, dtype=np.float64))
    g.attrs.update(
        status="ok",
        source=source,
        wall_time_s=float(sample.wall_time_s),
        versions=json.dumps(sample.versions, sort_keys=True),
        energy=float(sample.energy),
        n_electrons=float(sample.n_electrons),
        fermi_level=float("nan") if sample.fermi_level is None else float(sample.fermi_level),
        electronic_temperature_K=float(sample.electronic_temperature_K),
        min_distance_A=float(min_distance_A),
        extras=json.dumps(_jsonable(sample.extras), sort_keys=True),
    )
    merge_basis(f, sample.basis)
    if "valence_electrons" in sample.extras:
        merge_per_element(f, "valence_electrons", sample.extras["valence_electrons"])


def write_failure(f: h5py.File, failure: Failure, source: str, min_distance_A: float) -> None:
    """Store a failed structure with its reason (no labels)."""
    g = f[SAMPLES].create_group(sample_key(failure.index))
    _write_structure(g, failure.numbers, failure.positions, failure.cell, failure.pbc)
    g.attrs.update(
        status="failed",
        error=failure.error,
        source=source,
        wall_time_s=float(failure.wall_time_s),
        min_distance_A=float(min_distance_A),
    )


PER_ELEMENT_ATTRS = ("basis", "valence_electrons")  # root JSON attrs: element -> value, fixed per element


def merge_per_element(f: h5py.File, name: str, values: dict) -> None:
    """Root JSON attr `name` = union of the per-element values seen; an element's value must never change."""
    current = json.loads(f.attrs.get(name, "{}"))
    for el, v in values.items():
        if el in current and current[el] != v:
            raise ValueError(f"{name} of {el} changed between samples: {current[el]} vs {v}")
        current[el] = v
    f.attrs[name] = json.dumps(current, sort_keys=True)


def merge_basis(f: h5py.File, basis: BasisSpec) -> None:
    merge_per_element(f, "basis", basis.to_json())


def atomic_write(path: Path, fill) -> None:
    """Create `path` by calling fill(h5py.File) on a uniquely named temporary sibling (two writers never
    share one), fsync, then rename over `path`; a failed fill leaves no temporary behind."""

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            fill(f)

    write_atomically(path, write)


# ---------------------------------------------------------------- reading


def read_header(path: Path) -> Header:
    """Engine and settings of an existing dataset; a file that is not a dataset, or whose root attributes
    are damaged (missing, unparsable JSON, no /samples group), is one InputError naming what is wrong."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            return _parse_root(f, path)
    except OSError:
        raise InputError(f"{path} exists and is not a readable HDF5 dataset") from None


def _parse_root(f: h5py.File, path: Path) -> Header:
    if f.attrs.get("format") != FORMAT_NAME:
        raise InputError(f"{path} is not a fastqmd dataset")
    missing = [name for name in ("schema_version", "engine", "settings") if name not in f.attrs]
    if missing:
        raise InputError(f"{path}: corrupt dataset header (missing attribute '{missing[0]}')")
    try:
        version = int(f.attrs["schema_version"])
        engine = f.attrs["engine"]
        settings = json.loads(f.attrs["settings"])
        for name in PER_ELEMENT_ATTRS:  # written with the first sample: absent in a dataset without any
            if not isinstance(json.loads(f.attrs.get(name, "{}")), dict):
                raise ValueError(f"'{name}' is not a mapping")
        if not isinstance(settings, dict):
            raise ValueError("'settings' is not a mapping")
        if not isinstance(f.get(SAMPLES), h5py.Group):
            raise ValueError(f"no '/{SAMPLES}' group")
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: corrupt dataset header ({str(exc).splitlines()[0]})") from None
    if version > SCHEMA_VERSION:
        raise InputError(f"{path} has schema version {version}; this fastqmd reads ≤ {SCHEMA_VERSION}")
    return Header(str(engine), settings)


@contextmanager
def damaged_sample(path: Path, key: str):
    """A missing attribute or array of a stored sample becomes one InputError naming the sample."""
    try:
        yield
    except (KeyError, OSError) as exc:
        raise InputError(f"{path}: sample {key} is damaged ({_missing(exc)})") from None


def _missing(exc: Exception) -> str:
    """h5py's and dict's KeyError texts as "no attribute 'x'" / "no array 'x'"."""
    msg = str(exc).strip("\"'")
    if m := re.search(r"attribute: '([^']+)'", msg):
        return f"no attribute '{m.group(1)}'"
    if m := re.search(r"object '([^']+)' doesn't exist", msg):
        return f"no array '{m.group(1)}'"
    return f"no '{msg}'" if isinstance(exc, KeyError) and " " not in msg else msg


class Dataset:
    """Read-only view of a dataset file. Opens lazily (safe to pickle into DataLoader workers)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"dataset not found: {self.path}")
        self.header = read_header(self.path)
        self._f: h5py.File | None = None

    @property
    def file(self) -> h5py.File:
        if self._f is None:
            self._f = h5py.File(self.path, "r")
        return self._f

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __getstate__(self):
        return {"path": self.path, "header": self.header, "_f": None}

    @property
    def basis(self) -> BasisSpec:
        return BasisSpec.from_json(json.loads(self.file.attrs.get("basis", "{}")))

    @property
    def valence_electrons(self) -> dict[str, int]:
        """Element → valence electrons of the neutral atom (N_e of a neutral structure = Σ over atoms)."""
        return json.loads(self.file.attrs.get("valence_electrons", "{}"))

    def keys(self, status: str | None = "ok") -> list[str]:
        """Sample group names in index order, filtered by status (None: all)."""
        g = self.file[SAMPLES]
        if status is None:
            return sorted(g.keys())
        out = []
        for k in sorted(g.keys()):
            with damaged_sample(self.path, k):
                if g[k].attrs["status"] == status:
                    out.append(k)
        return out

    def indices(self, status: str | None = None) -> set[int]:
        return {int(k) for k in self.keys(status)}

    def group(self, key: str) -> h5py.Group:
        samples = self.file[SAMPLES]
        if key not in samples:
            raise InputError(f"{self.path} has no sample {key}")
        return samples[key]

    def block(self, key: str, name: str, i: int, j: int, k: int = 0) -> np.ndarray:
        """One atom-pair block of H or S at k-point k: reads only the chunks that hold it."""
        g = self.group(key)
        off = g["orbital_offsets"]
        return g[name][k, off[i] : off[i + 1], off[j] : off[j + 1]]

    def read(self, key: str, arrays: tuple[str, ...] | None = None) -> dict[str, Any]:
        """A sample's attributes and (selected) arrays as numpy."""
        with damaged_sample(self.path, key):
            g = self.group(key)
            out: dict[str, Any] = {k: v for k, v in g.attrs.items()}
            for name in arrays if arrays is not None else g.keys():
                if name in g:
                    out[name] = g[name][()]
        return out

    def atoms(self, key: str):
        """The structure of a sample as ASE Atoms, with energy/forces as a SinglePointCalculator."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        d = self.read(key, ("numbers", "positions", "cell", "pbc", "forces"))
        with damaged_sample(self.path, key):
            atoms = Atoms(numbers=d["numbers"], positions=d["positions"], cell=d["cell"], pbc=d["pbc"])
            atoms.info.update(index=int(key), status=str(d["status"]), source=str(d["source"]))
            if d["status"] == "ok":
                atoms.calc = SinglePointCalculator(atoms, energy=float(d["energy"]), forces=d.get("forces"))
                atoms.info["fermi_level"] = float(d["fermi_level"])
            else:
                atoms.info["error"] = str(d["error"])
        return atoms

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[int(z)]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
