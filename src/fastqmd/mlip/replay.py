"""Pretraining ("replay") data for forgetting-aware fine-tuning: labelled structures at the pretrained model's
level of theory, read as `fastqmd.mlip.kind.Structure`s.

In:  an extended-XYZ file (ase.io; energy and forces from each frame's calculator, eV and eV/Å; the level of
     theory is the frames' `source` info key, e.g. `source=MPtrj` in the MPtrj sample that the mattersim sdist
     ships, `make replay-data`) or a fastqmd dataset (.h5; the level of theory is its header: engine and
     method/xc/basis, e.g. "pyscf-mol PBE def2-SVP", "tblite GFN2-xTB"), and the level of theory the config
     declares for it.
Out: `PretrainingSet(pool, held_out)`: a seeded split of the usable structures into the replay/Fisher pool and
     the held-out structures the forgetting is measured on. Stress labels are not carried (the loss of the
     fine-tuning study is energy + forces, and sign conventions of foreign files differ).
A file whose level of theory is not the declared one, or a structure without forces, is one InputError.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastqmd.errors import InputError
from fastqmd.mlip.kind import Structure


def dataset_level(path: Path) -> str:
    """The level of theory of a fastqmd dataset: engine and its method / xc / basis settings, space-joined."""
    from fastqmd.data.store import read_header

    h = read_header(path)
    parts = [str(h.settings[k]) for k in ("method", "xc", "basis") if h.settings.get(k) is not None]
    return " ".join([h.engine, *parts])


def read_xyz(path: Path) -> tuple[list[Structure], str | None]:
    """Structures of an extended-XYZ file and its level of theory (the frames' common `source`; None if a frame
    has none or they differ)."""
    from ase.io import read

    try:
        frames = read(path, ":")
    except Exception as exc:
        raise InputError(f"{path}: not a readable extended-XYZ file ({type(exc).__name__})") from None
    sources = {a.info.get("source") for a in frames}
    out = []
    for k, a in enumerate(frames):
        res = a.calc.results if a.calc is not None else {}
        if "energy" not in res:
            raise InputError(f"{path}: frame {k} has no energy label")
        f = res.get("forces")
        out.append(Structure(f"{path.name}:{k}", np.asarray(a.numbers, dtype=np.int64),
                             np.asarray(a.positions, dtype=np.float64), np.asarray(a.cell[:], dtype=np.float64),
                             np.asarray(a.pbc, dtype=bool), float(res["energy"]),
                             None if f is None else np.asarray(f, dtype=np.float64)))
    return out, (sources.pop() if len(sources) == 1 else None)


def read_pretraining(path: str | Path) -> tuple[list[Structure], str | None]:
    """(structures, level of theory) of an extxyz file or a fastqmd dataset."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"pretraining data not found: {path}")
    if path.suffix in (".h5", ".hdf5"):
        from fastqmd.mlip.kind import MLIPSamples

        level = dataset_level(path)
        s = MLIPSamples(path)
        return [s[i] for i in range(len(s))], level
    return read_xyz(path)


@dataclass(frozen=True)
class PretrainingSet:
    pool: list[Structure]  # replay memory and EWC Fisher structures
    held_out: list[Structure]  # the forgetting is measured here
    level_of_theory: str


def load_pretraining(path: str | Path, declared: str, held_out: int, max_structures: int | None = None,
                     max_atoms: int | None = None, seed: int = 0, forces: bool = True) -> PretrainingSet:
    """The pretraining set at `path`, checked against the `declared` level of theory: structures with at most
    `max_atoms` atoms, in a seeded order; the first `held_out` are held out, the next `max_structures` (default
    all) are the pool. Needs forces on every structure used when `forces`."""
    structures, level = read_pretraining(path)
    if level is None:
        raise InputError(f"{path}: the file states no single level of theory (extxyz frames need one common "
                         f"'source' info key), but {declared!r} is declared")
    if level != declared:
        raise InputError(f"{path} is labelled at level of theory {level!r}, not the declared {declared!r}")
    usable = [s for s in structures if max_atoms is None or len(s.numbers) <= max_atoms]
    order = np.random.default_rng(seed).permutation(len(usable))
    usable = [usable[i] for i in order]
    if len(usable) <= held_out:
        raise InputError(f"{path}: {len(usable)} usable structures (max_atoms {max_atoms}), but {held_out} are to be "
                         "held out and at least one is needed for the pool")
    end = held_out + max_structures if max_structures else len(usable)
    chosen = usable[:end]
    if forces:
        missing = [s.key for s in chosen if s.forces is None]
        if missing:
            raise InputError(f"{path}: {len(missing)} pretraining structures have no forces (first {missing[0]}) "
                             "but the loss has a force term")
    return PretrainingSet(chosen[held_out:], chosen[:held_out], level)


def shift_energies(structures: list[Structure], mu: dict[int, float]) -> list[Structure]:
    """Structures with E' = E + Σ_i μ_{Z_i}: labels moved onto the energy zero of a model whose per-element
    offsets were raised by μ (energy differences at fixed composition and forces unchanged)."""
    import dataclasses

    return [dataclasses.replace(s, energy=s.energy + float(sum(mu.get(int(z), 0.0) for z in s.numbers)))
            for s in structures]
