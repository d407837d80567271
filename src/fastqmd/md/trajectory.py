"""Trajectory and thermo-log files, written so that a kill at any moment can be repaired exactly.

trajectory.extxyz: one extxyz frame per saved step. Per atom: positions (Å), `velocities` (Å/fs, a plain
array, not ASE momenta), forces (eV/Å). Per frame (info): step, time_fs, energy (eV, potential),
temperature_K, conserved_eV, dof, and `eigenvalues` (eV, flattened) when the potential reports them.
thermo.csv: step,time_fs,T_K,E_kin_eV,E_pot_eV,E_tot_eV,conserved_eV.

Both files are only appended to. A checkpoint stores their byte sizes after a flush + fsync; restarting
truncates them back to those sizes, so frames written after the last checkpoint (possibly half-written by a
kill) are dropped and then rewritten identically by the deterministic continuation.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from fastqmd.errors import InputError
from fastqmd.md.state import MDState, kinetic_energy, temperature

THERMO_HEADER = "step,time_fs,T_K,E_kin_eV,E_pot_eV,E_tot_eV,conserved_eV\n"


def state_to_atoms(state: MDState, conserved: float) -> Atoms:
    """One trajectory frame (numpy copies) from a state."""
    atoms = state.system.to_atoms()
    atoms.set_masses(state.masses.cpu().numpy())
    atoms.arrays["velocities"] = state.velocities.detach().cpu().numpy().copy()
    energy = float(state.energy)
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=state.forces.detach().cpu().numpy().copy())
    atoms.info.update(
        step=int(state.step),
        time_fs=float(state.time_fs),
        temperature_K=float(temperature(state.velocities, state.masses, state.dof)),
        conserved_eV=float(conserved),
        dof=int(state.dof),
    )
    eig = state.extras.get("eigenvalues")
    if eig is not None:
        atoms.info["eigenvalues"] = np.asarray(eig, dtype=np.float64).ravel()
    return atoms


def frame_text(atoms: Atoms) -> str:
    """The extxyz text of one frame."""
    buf = io.StringIO()
    write(buf, atoms, format="extxyz")
    return buf.getvalue()


def thermo_row(state: MDState, conserved: float) -> str:
    k = float(kinetic_energy(state.velocities, state.masses))
    u = float(state.energy)
    t = float(temperature(state.velocities, state.masses, state.dof))
    return f"{state.step},{state.time_fs:.6f},{t:.10g},{k:.12g},{u:.12g},{k + u:.12g},{conserved:.12g}\n"


class AppendFile:
    """A text file opened for appending, with `sync()` (flush + fsync) and `truncate_to(size)`."""

    def __init__(self, path: Path, header: str = ""):
        self.path = Path(path)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.fh = open(self.path, "a", encoding="utf-8")
        if new and header:
            self.fh.write(header)

    def write(self, text: str) -> None:
        self.fh.write(text)

    def sync(self) -> int:
        """Flush to disk; returns the file size in bytes."""
        self.fh.flush()
        os.fsync(self.fh.fileno())
        return self.path.stat().st_size

    def close(self) -> None:
        self.fh.close()


def check_length(path: Path, size: int) -> None:
    """A restart needs `path` to be at least as long as its checkpoint recorded."""
    if not path.exists() or path.stat().st_size < size:
        raise InputError(f"cannot restart: {path} is shorter than its checkpoint says; delete the output dir")


def truncate_file(path: Path, size: int) -> None:
    """Cut `path` back to `size` bytes (it must be at least that long)."""
    check_length(path, size)
    with open(path, "r+b") as fh:
        fh.truncate(size)
        fh.flush()
        os.fsync(fh.fileno())


def read_trajectory(path: str | Path, index: str = ":") -> list[Atoms]:
    """Frames of an extxyz trajectory (ours or any ASE-readable file); InputError when unreadable."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"trajectory not found: {p}")
    try:
        frames = read(p, index=index)
    except Exception as exc:  # ASE raises many types for bad files
        raise InputError(f"cannot read trajectory {p}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        raise InputError(f"no frames in {p}")
    return frames


def frame_velocities(atoms: Atoms) -> np.ndarray:
    """Velocities in Å/fs: our `velocities` array, else ASE momenta/masses converted from ASE units."""
    from fastqmd.units import FS

    if "velocities" in atoms.arrays:
        return np.asarray(atoms.arrays["velocities"])
    return atoms.get_velocities() * FS
