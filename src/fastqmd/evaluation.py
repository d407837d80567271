"""Scoring any model on labelled structures: energy, force and orbital-energy errors, streamed, → JSON-ready dict.

In:  labelled structures (`Labelled`) — the ok samples of a fastqmd dataset, or the frames of any ASE-readable file
     (extxyz, traj, …; `read_labelled`) whose frames carry an energy and/or forces (ASE's calculator results, as
     `fastqmd dataset export` writes them) and optionally reference orbital energies:
       atoms.info["orbital_energies"]     eV, the levels at Γ (molecules: the MO energies), lowest first [n];
       atoms.info["orbital_occupations"]  electrons per level, spin included [n] (optional; without it the lowest
                                          N_e / spin_factor levels of the model's electron count are occupied);
       atoms.info["fermi_level"]          eV (optional; else the highest occupied level) — the ±1 eV window.
     — and a model's prediction per structure (E eV, F [N, 3] eV/Å, eigenvalues [nk, n] eV).
Out: `Scorer.metrics()`:
  - energy errors ΔE_s = E_model − E_ref (eV, per structure and per atom: MAE, RMSE) raw, and with an offset removed:
      constant      c = ⟨ΔE⟩ over the set,                        ΔE_s − c;
      per element   μ = argmin Σ_s (ΔE_s + Σ_Z n_sZ μ_Z)²,          ΔE_s + n_s·μ  (`fastqmd.mlip.universal.
                    fit_energy_offset`, minimum norm; its rank is reported).
    "energy_offset_used" names the headline one: per_element where compositions vary, else constant (the two
    coincide for one composition);
  - force errors over all components (MAE, RMSE; eV/Å and meV/Å);
  - orbital-energy MAE (all, occupied, within ±1 eV of the reference Fermi level) when the data carry them;
  - per_structure: key, n_atoms, ΔE raw and offset-removed, force MAE/RMSE — one row per structure.
Memory: running sums for forces and levels; only a few numbers per structure are kept (for the offset fits and
the per-structure table), so a large test set costs no more than a small one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from fastqmd.errors import InputError

FERMI_WINDOW_EV = 1.0
ORBITAL_ENERGIES_KEY = "orbital_energies"
ORBITAL_OCCUPATIONS_KEY = "orbital_occupations"


@dataclass
class Labelled:
    """One reference structure: Atoms (no calculator needed) and its labels (None where absent)."""

    key: str
    atoms: Atoms
    energy: float | None  # eV
    forces: np.ndarray | None  # [N, 3] eV/Å
    orbital_energies: np.ndarray | None = None  # [n] eV, Γ
    occupations: np.ndarray | None = None  # [n]
    fermi_level: float | None = None  # eV


def labelled_from_atoms(atoms: Atoms, key: str) -> Labelled:
    """The labels of an ASE frame: energy/forces from its calculator results, orbital levels from atoms.info."""
    res = atoms.calc.results if atoms.calc is not None else {}
    e = res.get("energy", res.get("free_energy"))
    f = res.get("forces")
    info = atoms.info
    eig = info.get(ORBITAL_ENERGIES_KEY)
    occ = info.get(ORBITAL_OCCUPATIONS_KEY)
    mu = info.get("fermi_level")
    return Labelled(key, atoms, None if e is None else float(e), None if f is None else np.asarray(f, float),
                    None if eig is None else np.asarray(eig, float).ravel(),
                    None if occ is None else np.asarray(occ, float).ravel(),
                    None if mu is None or not np.isfinite(mu) else float(mu))


def _iread(path: Path):
    from ase.io import iread

    try:
        yield from iread(str(path), index=":")
    except InputError:
        raise
    except Exception as exc:
        msg = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:160]
        raise InputError(f"cannot read {path} as a structure file ({msg})") from None


def read_labelled(path: str | Path) -> Iterator[Labelled]:
    """The frames of an ASE-readable file as `Labelled`, one at a time (keys: frame index)."""
    for i, atoms in enumerate(_iread(Path(path))):
        yield labelled_from_atoms(atoms, str(i))


@dataclass(frozen=True)
class DataSummary:
    """What a cheap first pass over the data found (checked before any model runs)."""

    n_structures: int
    numbers: tuple[int, ...]  # sorted atomic numbers present
    n_energies: int
    n_forces: int
    n_orbital_energies: int


def scan_file(path: str | Path) -> DataSummary:
    """One pass over an ASE file without keeping its frames: InputError if it is unreadable, empty, or carries
    neither energies nor forces."""
    path = Path(path)
    n = ne = nf = no = 0
    numbers: set[int] = set()
    for s in read_labelled(path):
        n += 1
        numbers.update(int(z) for z in s.atoms.numbers)
        ne += s.energy is not None
        nf += s.forces is not None
        no += s.orbital_energies is not None
    if n == 0:
        raise InputError(f"{path} holds no structures")
    if ne == 0 and nf == 0:
        raise InputError(f"{path}: none of its {n} structures has an energy or forces (a labelled file needs "
                         "them, e.g. extxyz with energy= and forces as `fastqmd dataset export` writes)")
    return DataSummary(n, tuple(sorted(numbers)), ne, nf, no)


def _stat(x: np.ndarray) -> dict | None:
    x = np.asarray(x, dtype=np.float64)
    return {"mae": float(np.abs(x).mean()), "rmse": float(np.sqrt((x**2).mean()))} if len(x) else None


@dataclass
class RunningError:
    """Σ|x|, Σx², count and max|x| of a stream of errors (MAE, RMSE without keeping x)."""

    n: int = 0
    abs_sum: float = 0.0
    sq_sum: float = 0.0
    max_abs: float = 0.0

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if len(x):
            self.n += len(x)
            self.abs_sum += float(np.abs(x).sum())
            self.sq_sum += float((x * x).sum())
            self.max_abs = max(self.max_abs, float(np.abs(x).max()))

    def mean(self) -> float | None:
        return self.abs_sum / self.n if self.n else None

    def stat(self) -> dict | None:
        return {"mae": self.abs_sum / self.n, "rmse": (self.sq_sum / self.n) ** 0.5} if self.n else None


def level_errors(eig: np.ndarray, ref: np.ndarray, occ: np.ndarray, mu: float, spin_factor: float) -> dict:
    """|ε_model − ε_ref| [nk, n] (the common n levels) split as all / occupied (occ > spin_factor / 2) /
    |ε_ref − μ| < 1 eV."""
    n = min(ref.shape[1], eig.shape[1])
    de = np.abs(eig[:, :n] - ref[:, :n])
    return {"all": de, "occupied": de[occ[:, :n] > 0.5 * spin_factor],
            f"fermi_pm_{FERMI_WINDOW_EV:g}eV": de[np.abs(ref[:, :n] - mu) < FERMI_WINDOW_EV]}


def reference_fermi_level(ref: np.ndarray, occ: np.ndarray, fermi_level: float | None, spin_factor: float) -> float:
    """The reference's μ, else its highest occupied level, else NaN (no window)."""
    if fermi_level is not None and np.isfinite(fermi_level):
        return float(fermi_level)
    occupied = occ > 0.5 * spin_factor
    return float(ref[occupied].max()) if occupied.any() else float("nan")


def aufbau_occupations(n_levels: int, n_electrons: float, spin_factor: float) -> np.ndarray:
    """T = 0 occupations of n_levels sorted levels holding n_electrons (spin_factor per level)."""
    return np.clip(n_electrons - spin_factor * np.arange(n_levels), 0.0, spin_factor)


@dataclass
class Scorer:
    """Accumulates one structure at a time (`add`) and turns the sums into the metrics of the module docstring."""

    keys: list[str] = field(default_factory=list)
    n_atoms: list[int] = field(default_factory=list)
    numbers: list[np.ndarray] = field(default_factory=list)  # per structure, for the offset fit
    dE: list[float] = field(default_factory=list)  # NaN where unlabelled
    f_rows: list[tuple[float | None, float | None]] = field(default_factory=list)
    forces: RunningError = field(default_factory=RunningError)
    levels: dict[str, RunningError] = field(default_factory=dict)
    t0: float = field(default_factory=time.perf_counter)

    def add(self, key: str, numbers, energy: float | None, ref_energy: float | None,
            forces: np.ndarray | None = None, ref_forces: np.ndarray | None = None,
            levels: dict[str, np.ndarray] | None = None) -> None:
        numbers = np.asarray(numbers, dtype=np.int64)
        self.keys.append(key)
        self.n_atoms.append(len(numbers))
        self.numbers.append(numbers)
        self.dE.append(float(energy) - float(ref_energy) if energy is not None and ref_energy is not None
                       else float("nan"))
        if forces is not None and ref_forces is not None:
            d = np.asarray(forces, np.float64) - np.asarray(ref_forces, np.float64)
            self.forces.add(d)
            self.f_rows.append((float(np.abs(d).mean()), float(np.sqrt((d * d).mean()))))
        else:
            self.f_rows.append((None, None))
        for k, v in (levels or {}).items():
            self.levels.setdefault(k, RunningError()).add(v)

    def energy_metrics(self) -> tuple[dict, np.ndarray]:
        """Raw and offset-removed energy errors (module docstring) and the offset-removed ΔE per structure."""
        dE = np.array(self.dE, dtype=np.float64)
        has = np.isfinite(dE)
        nat = np.array(self.n_atoms, dtype=np.float64)
        out: dict = {"energy_eV": None, "energy_per_atom_eV": None}
        removed = np.full(len(dE), np.nan)
        if not has.any():
            return out, removed
        from fastqmd.mlip.universal import fit_energy_offset

        d, n = dE[has], nat[has]
        elements = sorted({int(z) for k in np.flatnonzero(has) for z in self.numbers[k]})
        counts = np.array([[int((self.numbers[k] == z).sum()) for z in elements] for k in np.flatnonzero(has)])
        c = float(d.mean())
        mu, rank = fit_energy_offset(counts, -d)
        d_el = d + counts @ mu
        varies = bool((counts != counts[0]).any())
        used = "per_element" if varies else "constant"
        best = d_el if varies else d - c
        removed[has] = best
        out.update(
            energy_eV=_stat(d), energy_per_atom_eV=_stat(d / n),
            energy_offset_constant={"offset_eV": c, "energy_eV": _stat(d - c),
                                    "energy_per_atom_eV": _stat((d - c) / n)},
            energy_offset={"per_element_eV": {chemical_symbols[z]: float(m) for z, m in zip(elements, mu)},
                           "rank": rank, "energy_eV": _stat(d_el), "energy_per_atom_eV": _stat(d_el / n)},
            energy_offset_used=used,
            energy_mae_meV_per_atom=1e3 * float(np.abs(d / n).mean()),
            energy_mae_meV_per_atom_offset=1e3 * float(np.abs(best / n).mean()),
        )
        return out, removed

    def metrics(self) -> dict:
        em, removed = self.energy_metrics()
        f = self.forces.stat()
        elements = sorted({int(z) for x in self.numbers for z in x})
        out = {
            "n_samples": len(self.keys), "n_atoms": int(sum(self.n_atoms)),
            "elements": [chemical_symbols[z] for z in elements],
            "n_energies": int(np.isfinite(np.array(self.dE, dtype=np.float64)).sum()),
            "n_forces": sum(r[0] is not None for r in self.f_rows),
            **em,
            "forces_eV_per_A": f,
            "force_mae_meV_per_A": None if f is None else 1e3 * f["mae"],
            "force_rmse_meV_per_A": None if f is None else 1e3 * f["rmse"],
            "force_max_abs_meV_per_A": None if f is None else 1e3 * self.forces.max_abs,
        }
        if self.levels:
            out["eigenvalue_mae_eV"] = {k: v.mean() for k, v in self.levels.items()}
        out["s_per_structure"] = (time.perf_counter() - self.t0) / max(1, len(self.keys))
        out["per_structure"] = [
            {"key": k, "n_atoms": n, "energy_error_eV": None if not np.isfinite(e) else e,
             "energy_error_offset_eV": None if not np.isfinite(r) else float(r),
             "force_mae_meV_per_A": None if fa is None else 1e3 * fa,
             "force_rmse_meV_per_A": None if fr is None else 1e3 * fr}
            for k, n, e, r, (fa, fr) in zip(self.keys, self.n_atoms, self.dE, removed, self.f_rows)]
        return out


def score_potential(potential, structures, spin_factor: float = 2.0, n_electrons=None) -> dict:
    """Metrics of a fastqmd Potential (`compute(System) -> Results`) on `structures` (an iterable of `Labelled`,
    read lazily). Orbital energies are scored where a structure has them and the potential reports eigenvalues;
    `n_electrons(symbols)` (the model's count) sets the T = 0 occupations when the file gives none."""
    from fastqmd.potential import system_from_atoms

    sc = Scorer()
    for s in structures:
        res = potential.compute(system_from_atoms(s.atoms))
        levels = None
        if s.orbital_energies is not None and res.eigenvalues is not None:
            eig = np.atleast_2d(res.eigenvalues.detach().cpu().numpy())[:1]  # Γ (the first k-point)
            ref = s.orbital_energies[None, :]
            if s.occupations is not None:
                occ = s.occupations[None, :]
            elif n_electrons is not None:
                occ = aufbau_occupations(ref.shape[1], n_electrons(s.atoms.get_chemical_symbols()), spin_factor)[None]
            else:
                occ = np.zeros_like(ref)
            mu = reference_fermi_level(ref, occ, s.fermi_level, spin_factor)
            levels = level_errors(eig, ref, occ, mu, spin_factor)
        sc.add(s.key, s.atoms.numbers, float(res.energy), s.energy,
               res.forces.detach().cpu().numpy(), s.forces, levels)
    return sc.metrics()


def dataset_labelled(path: str | Path, keys: list[str] | None = None) -> Iterator[Labelled]:
    """The ok samples (or `keys`) of a fastqmd dataset as `Labelled`, read one at a time (no H, S)."""
    from fastqmd.data.store import Dataset

    ds = Dataset(path)
    try:
        for k in (keys if keys is not None else ds.keys("ok")):
            a = ds.atoms(k)
            s = labelled_from_atoms(a, k)
            s.fermi_level = None
            yield s
    finally:
        ds.close()


def scan_dataset(path: str | Path, keys: list[str] | None = None) -> DataSummary:
    """The elements and label counts of a dataset's ok samples (or `keys`), reading only numbers and forces."""
    from fastqmd.data.store import Dataset

    ds = Dataset(path)
    try:
        ks = keys if keys is not None else ds.keys("ok")
        if not ks:
            raise InputError(f"{path}: no successful samples")
        numbers: set[int] = set()
        nf = 0
        for k in ks:
            g = ds.group(k)
            numbers.update(int(z) for z in g["numbers"][()])
            nf += "forces" in g
    finally:
        ds.close()
    return DataSummary(len(ks), tuple(sorted(numbers)), len(ks), nf, 0)


def is_dataset(path: str | Path) -> bool:
    """A fastqmd dataset (HDF5) rather than an ASE structure file."""
    import h5py

    return h5py.is_hdf5(str(path))


def check_data_path(path: str | Path, keys: list[str] | None = None, keys_option: str = "--subset") -> bool:
    """Is `path` a fastqmd dataset (its header checked) rather than a structure file? InputError for a missing
    path, a folder, a damaged dataset header, or `keys` (a training split, given by `keys_option`) on a file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"data not found: {path}")
    if path.is_dir():
        raise InputError(f"data {path} is a folder, not a dataset or structure file")
    if is_dataset(path):
        from fastqmd.data.store import read_header

        read_header(path)
        return True
    if keys is not None:
        raise InputError(f"{keys_option} selects samples of a fastqmd dataset; {path} is a structure file")
    return False


def check_data(path: str | Path, keys: list[str] | None = None) -> tuple[bool, DataSummary]:
    """(is a dataset?, its summary): InputError for a missing path, an unreadable or unlabelled file, or
    `keys` (a training split) on a file."""
    if check_data_path(path, keys):
        return True, scan_dataset(path, keys)
    return False, scan_file(path)


def evaluate_potential(potential, data: str | Path, covers=None, keys: list[str] | None = None,
                       spin_factor: float = 2.0, n_electrons=None) -> dict:
    """`score_potential` on a dataset's ok samples (or `keys`) or on the frames of an ASE file, after one cheap
    pass that checks the labels and, with `covers(numbers)` (raises InputError), the elements — before any
    model evaluation."""
    dataset, summary = check_data(data, keys)
    if covers is not None:
        try:
            covers(summary.numbers)
        except InputError as exc:
            raise InputError(f"{data}: {exc}") from None
    structures = dataset_labelled(data, keys) if dataset else read_labelled(data)
    m = score_potential(potential, structures, spin_factor=spin_factor, n_electrons=n_electrons)
    m["data"] = str(data)
    m["data_format"] = "fastqmd-dataset" if dataset else "ase-file"
    return m
