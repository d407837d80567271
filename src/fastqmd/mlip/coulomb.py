"""Point charges with bare Coulomb interactions: an exact, analytic labeller for toy MLIP experiments.

In:  positions [N, 3] Å and charges [N] in units of e (no periodicity, no cutoff, no screening).
Out: E   = Σ_{i<j} k_e q_i q_j / r_ij                                  (eV)
     F_i = −∂E/∂R_i = k_e q_i Σ_{j≠i} q_j (R_i − R_j) / r_ij³           (eV/Å)
     with k_e = e²/(4πε₀) = Hartree · Bohr = 14.399645 eV·Å (ASE's CODATA values, `fastqmd.units`).

A charge belongs to an element (an MLIP sees species, not charges), so a toy system is an ASE `Atoms` plus a
map {element: charge in e}. `coulomb_sample` labels one structure as a `fastqmd.reference.base.Sample` and
`write_coulomb_dataset` writes a whole set as an ordinary fastqmd dataset (engine "coulomb", the charge map in
the header settings) that `fastqmd train` and `fastqmd evaluate` read like any other. There is no electronic
structure: each atom gets one placeholder orbital (H = 0, S = 1, no electrons), which the store requires.
Used by `benchmarks/mlip_extrapolation/` (the lecture's extrapolation experiment).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from fastqmd.errors import InputError
from fastqmd.units import BOHR_ANG, HARTREE_EV

COULOMB_K_EV_A: float = HARTREE_EV * BOHR_ANG  # e²/(4πε₀) = 14.399645 eV·Å
ENGINE = "coulomb"


def coulomb_energy_forces(positions: np.ndarray, charges: np.ndarray) -> tuple[float, np.ndarray]:
    """(E eV, F [N, 3] eV/Å) of point charges `charges` [N] (e) at `positions` [N, 3] (Å), every pair counted
    once: E = Σ_{i<j} k_e q_i q_j / r_ij, F_i = k_e q_i Σ_{j≠i} q_j (R_i − R_j) / r_ij³. Coincident charges
    are a ValueError (the energy is infinite)."""
    R = np.asarray(positions, dtype=np.float64)
    q = np.asarray(charges, dtype=np.float64)
    D = R[:, None, :] - R[None, :, :]  # [N, N, 3]  R_i − R_j
    r = np.linalg.norm(D, axis=-1)  # [N, N]
    np.fill_diagonal(r, np.inf)
    if not np.all(r > 0):
        raise ValueError("two point charges coincide")
    qq = COULOMB_K_EV_A * q[:, None] * q[None, :]  # [N, N] eV·Å
    energy = 0.5 * float(np.sum(qq / r))
    forces = np.einsum("ij,ijk->ik", qq / r**3, D)  # [N, 3]
    return energy, forces


def charges_of(symbols: Sequence[str], charges_e: Mapping[str, float]) -> np.ndarray:
    """[N] charges (e) of atoms by element; an element without a charge is an InputError."""
    missing = sorted(set(symbols) - set(charges_e))
    if missing:
        known = ", ".join(sorted(charges_e))
        raise InputError(f"no charge given for element(s) {', '.join(missing)} (charges for {known})")
    return np.array([float(charges_e[s]) for s in symbols])


def header_settings(charges_e: Mapping[str, float]) -> dict:
    """The dataset's level of theory: the charge map and k_e."""
    return {"charges_e": {k: float(v) for k, v in sorted(charges_e.items())}, "k_e_eV_A": COULOMB_K_EV_A}


def coulomb_sample(atoms: Atoms, charges_e: Mapping[str, float]):
    """One labelled structure as a `Sample` (non-periodic; the cell and pbc of `atoms` are ignored)."""
    from fastqmd import __version__
    from fastqmd.reference.base import BasisSpec, Sample

    symbols = atoms.get_chemical_symbols()
    energy, forces = coulomb_energy_forces(atoms.positions, charges_of(symbols, charges_e))
    n = len(atoms)
    return Sample(
        numbers=atoms.numbers.copy(), positions=atoms.positions.copy(), cell=np.zeros((3, 3)), pbc=np.zeros(3, bool),
        energy=energy, forces=forces, basis=BasisSpec({s: (0,) for s in set(symbols)}),
        kpoints=np.zeros((1, 3)), kweights=np.ones(1), H=np.zeros((1, n, n)), S=np.eye(n)[None],
        eigenvalues=np.zeros((1, n)), occupations=np.zeros((1, n)), n_electrons=0.0, fermi_level=None,
        electronic_temperature_K=0.0, engine=ENGINE, settings=header_settings(charges_e),
        versions={"fastqmd": __version__}, wall_time_s=0.0)


def write_coulomb_dataset(path: str | Path, structures: Sequence[Atoms], charges_e: Mapping[str, float]) -> Path:
    """Label `structures` and write them as a fastqmd dataset at `path` (replaced atomically); sample i is
    structures[i], its source `atoms.info["source"]` (default "coulomb")."""
    from fastqmd.data.store import Header, atomic_write, write_header, write_sample
    from fastqmd.structures import min_distance

    samples = [coulomb_sample(a, charges_e) for a in structures]  # label everything before writing anything
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def fill(f) -> None:
        write_header(f, Header(ENGINE, header_settings(charges_e)))
        for i, (a, s) in enumerate(zip(structures, samples)):
            write_sample(f, i, s, str(a.info.get("source", ENGINE)), min_distance(a))

    atomic_write(path, fill)
    return path


__all__ = ["COULOMB_K_EV_A", "charges_of", "coulomb_energy_forces", "coulomb_sample", "header_settings",
           "write_coulomb_dataset"]
