"""Universal MLIPs offline: the SevenNet and CHGNet checkpoints that their wheels ship, as fastqmd potentials,
as ASE calculators, and as models scored on any fastqmd dataset.

In:  a model — kind "sevenn" (a checkpoint the `sevenn` wheel ships: 7net-0, 7net-0_22may2024, 7net-l3i5,
     7net-mf-0 with `modal` PBE or R2SCAN; or a SevenNet checkpoint file) or kind "chgnet" (0.3.0, 0.2.0,
     r2scan from the `chgnet` wheel, or a CHGNet model file) — and a `System` (fastqmd.potential).
Out: `Results`: energy (eV, on the model's own reference: MPtrj PBE(+U) total energies for 7net-0 and CHGNet
     0.3.0), forces [N, 3] eV/Å = −∂E/∂R (autograd inside the model), stress [3, 3] eV/Å³ for fully periodic
     cells (ASE sign, σ = (1/V) ∂E/∂ε). The networks run in float32; results are cast to float64.
Offline: names are resolved against the files installed with the wheels (`available_models`); a name whose
checkpoint is download-only (sevenn's 7net-omni, 7net-mf-ompa, …) is an InputError, never a download.
Molecules: SevenNet takes open boundaries as they are; CHGNet reads a pymatgen Structure, which always has a
lattice, so a molecule is put in a cubic vacuum box whose periodic images all lie beyond the model's cutoff
(the energy is that of the isolated molecule).
Scoring (`evaluate_universal`): energy and force errors on a dataset, the energy both raw and after a fitted
per-element offset, since a dataset's level of theory (and its energy zero) is not the model's.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.data import chemical_symbols

from fastqmd.errors import InputError
from fastqmd.potential import DTYPE, PotentialCalculator, Results, System, voigt_to_full

KINDS = ("sevenn", "chgnet")
DEFAULT_MODEL = {"sevenn": "7net-0", "chgnet": "0.3.0"}
VACUUM_MARGIN_A = 1.0  # CHGNet molecule box: images ≥ cutoff + margin apart


# ---------------------------------------------------------------- which checkpoints are installed


def _sevenn_models() -> dict[str, str]:
    """Name → checkpoint path for every pretrained name sevenn knows whose file is installed; the download
    sevenn would start for a missing one is refused (FileNotFoundError), so the name is just left out."""
    from sevenn import util

    def no_download(path, url):
        raise FileNotFoundError(path)

    out = {}
    with mock.patch.object(util, "download_checkpoint", no_download):
        for name in util.get_available_pretrained_models():
            try:
                out[name] = util.pretrained_name_to_path(name)
            except (FileNotFoundError, ValueError):
                pass
    return out


def _sevenn_known() -> set[str]:
    """Every pretrained name sevenn knows, installed or download-only (lower case)."""
    from sevenn import util

    return {n.lower() for n in util.get_available_pretrained_models()}


def _chgnet_models() -> dict[str, str]:
    """Name → file for the weights in the chgnet wheel (chgnet/pretrained/<name>/*.pth.tar, the names
    `CHGNet.load(model_name=...)` takes)."""
    import chgnet

    root = Path(chgnet.__file__).parent / "pretrained"
    return {d.name: str(f) for d in sorted(root.iterdir()) if d.is_dir() for f in sorted(d.glob("*.pth.tar"))[:1]}


def available_models(kind: str) -> dict[str, str]:
    """The checkpoints of `kind` ("sevenn" or "chgnet") that load with no network: name → file."""
    if kind == "sevenn":
        return _sevenn_models()
    if kind == "chgnet":
        return _chgnet_models()
    raise InputError(f"unknown universal MLIP kind '{kind}' (known: {', '.join(KINDS)})")


def resolve_model(kind: str, model: str | None) -> tuple[str, str, bool]:
    """(name, checkpoint file, shipped with the wheel?) of a model name or checkpoint path; an unknown name is
    one InputError that lists the installed names."""
    model = model or DEFAULT_MODEL.get(kind, "")
    names = available_models(kind)
    if Path(model).is_file():
        return Path(model).name, str(model), False
    key = next((n for n in names if n.lower() == model.lower()), None)
    if key is None and kind == "sevenn" and model.lower() in _sevenn_known():
        raise InputError(f"sevenn checkpoint '{model}' is download-only (not in the installed wheel; fastqmd does "
                         f"not download; installed: {', '.join(names)})")
    if key is None:
        raise InputError(f"unknown {kind} checkpoint '{model}' (installed: {', '.join(names)}; or a checkpoint file)")
    return key, names[key], True


# ---------------------------------------------------------------- the potential


@contextlib.contextmanager
def _quiet():
    """The libraries' load-time prints ("CHGNet will run on cpu") and sevenn's no-accelerator warning."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _sevenn_calculator(name: str, path: str, shipped: bool, device: str,
                       modal: str | None) -> tuple[Calculator, frozenset[int], float]:
    from sevenn.calculator import SevenNetCalculator

    with _quiet():
        try:
            calc = SevenNetCalculator(path, device=device, modal=modal)
        except ValueError as exc:
            if "modal" not in str(exc):
                raise
            raise InputError(f"sevenn {name}: {str(exc).splitlines()[0]}") from None  # modal missing / unknown
    return calc, frozenset(int(z) for z in calc.type_map), float(calc.cutoff)


def _chgnet_calculator(name: str, path: str, shipped: bool, device: str,
                       modal: None = None) -> tuple[Calculator, frozenset[int], float]:
    from chgnet.model import CHGNet, CHGNetCalculator

    with _quiet():
        model = (CHGNet.load(model_name=name, use_device=device, verbose=False) if shipped  # the version's options
                 else CHGNet.from_file(path).to(device))
        calc = CHGNetCalculator(model, use_device=device)
    n_species = model.atom_embedding.embedding.num_embeddings  # species index = Z − 1
    return calc, frozenset(range(1, n_species + 1)), float(model.graph_converter.atom_graph_cutoff)


def _z_ranges(numbers) -> str:
    """Sorted atomic numbers as element ranges, e.g. "H–Bi, Ac–Pu"."""
    zs, out, start = sorted(numbers), [], None
    for i, z in enumerate(zs):
        start = z if start is None else start
        if i + 1 == len(zs) or zs[i + 1] != z + 1:
            out.append(chemical_symbols[start] + ("" if z == start else f"–{chemical_symbols[z]}"))
            start = None
    return ", ".join(out)


def vacuum_box(atoms: Atoms, cutoff: float) -> Atoms:
    """A molecule centred in a cubic periodic box of edge L = extent + cutoff + margin: every periodic image of
    an atom is farther than `cutoff` from every atom, so a periodic model sees the isolated molecule."""
    a = atoms.copy()
    extent = float((a.positions.max(0) - a.positions.min(0)).max())
    L = extent + cutoff + VACUUM_MARGIN_A
    a.set_cell(np.eye(3) * L)
    a.set_pbc(True)
    a.center()
    return a


@dataclass
class UniversalPotential:
    """A universal MLIP checkpoint as a fastqmd Potential (module docstring: units, molecules, offline).

    `calc` is the library's own ASE calculator (SevenNetCalculator / CHGNetCalculator); `numbers` the atomic
    numbers its species embedding covers; `cutoff` its graph cutoff (Å)."""

    kind: str
    name: str
    calc: Calculator
    numbers: frozenset[int]
    cutoff: float
    capabilities = frozenset({"stress"})

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.name}"

    def check_numbers(self, numbers) -> None:
        """An element outside the model's species is one InputError naming it and what the model covers."""
        lacking = sorted(set(int(z) for z in numbers) - self.numbers)
        if lacking:
            names = ", ".join(chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}" for z in lacking)
            raise InputError(f"{self.spec} does not cover {names} (it covers {_z_ranges(self.numbers)})")

    def atoms(self, system: System) -> Atoms:
        """The structure the library sees: as is, or (CHGNet, open boundaries) in a vacuum box."""
        atoms = system.to_atoms()
        if self.kind == "chgnet" and not atoms.pbc.all():
            if atoms.pbc.any():
                raise InputError(f"{self.spec}: partly periodic systems (pbc {atoms.pbc.tolist()}) are not "
                                 "supported; use a fully periodic cell with vacuum or open boundaries")
            atoms = vacuum_box(atoms, self.cutoff)
        return atoms

    def compute(self, system: System) -> Results:
        self.check_numbers(system.numbers.cpu().tolist())
        periodic = bool(system.pbc.all())
        self.calc.calculate(self.atoms(system), ["energy", "forces", *(["stress"] if periodic else [])],
                            all_changes)
        r, dev = self.calc.results, system.positions.device
        stress = voigt_to_full(np.asarray(r["stress"], dtype=np.float64)) if periodic else None
        return Results(
            torch.as_tensor(float(r["energy"]), dtype=DTYPE, device=dev),
            torch.as_tensor(np.asarray(r["forces"], dtype=np.float64), device=dev),
            stress=None if stress is None else torch.as_tensor(stress, device=dev),
        )


def load_universal(kind: str, model: str | None = None, device: str = "cpu",
                   modal: str | None = None) -> UniversalPotential:
    """A universal MLIP checkpoint (name or file, `resolve_model`) as a Potential, loaded with no network.
    `modal`: the fidelity of a multi-fidelity SevenNet (7net-mf-0: "PBE" or "R2SCAN")."""
    if kind not in KINDS:
        raise InputError(f"unknown universal MLIP kind '{kind}' (known: {', '.join(KINDS)})")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{kind} device 'cuda' requested but CUDA is not available")
    if modal is not None and kind != "sevenn":
        raise InputError(f"'modal' is a SevenNet multi-fidelity option; {kind} has none")
    name, path, shipped = resolve_model(kind, model)
    build = _sevenn_calculator if kind == "sevenn" else _chgnet_calculator
    try:
        calc, numbers, cutoff = build(name, path, shipped, device, modal)
    except InputError:
        raise
    except Exception as exc:  # a user's file that is not a checkpoint of this kind
        if shipped:
            raise
        msg = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        raise InputError(f"cannot load {path} as a {kind} checkpoint ({msg})") from None
    return UniversalPotential(kind, name, calc, numbers, cutoff)


def universal_calculator(kind: str, model: str | None = None, device: str = "cpu",
                         modal: str | None = None) -> PotentialCalculator:
    """The same model as an ASE Calculator (energy, forces; stress for periodic cells), e.g. for
    `potential: {kind: ase, factory: "fastqmd.mlip.universal:universal_calculator", kwargs: {kind: chgnet}}`."""
    return PotentialCalculator(load_universal(kind, model, device, modal))


def parse_spec(spec: str) -> tuple[str, str]:
    """"KIND[:MODEL]" → (kind, model), e.g. "sevenn:7net-0", "chgnet" (its default, 0.3.0), "sevenn:ft.pth"."""
    kind, _, model = spec.partition(":")
    if kind not in KINDS:
        raise InputError(f"model spec '{spec}': unknown kind '{kind}' (KIND[:MODEL] with KIND one of "
                         f"{', '.join(KINDS)})")
    return kind, model or DEFAULT_MODEL[kind]


# ---------------------------------------------------------------- scoring on a dataset


def fit_energy_offset(counts: np.ndarray, residual: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-element offsets μ [n_el] minimising Σ_i (r_i − Σ_Z n_iZ μ_Z)², r_i = E_ref,i − E_model,i, counts
    n_iZ [n_samples, n_el]; the minimum-norm solution when the compositions do not fix every μ (one
    composition: only Σ_Z n_Z μ_Z is determined). Returns (μ, rank of the counts)."""
    mu, _, rank, _ = np.linalg.lstsq(counts.astype(np.float64), residual, rcond=None)
    return mu, int(rank)


def _stat(x: np.ndarray) -> dict | None:
    return {"mae": float(np.abs(x).mean()), "rmse": float(np.sqrt((x**2).mean()))} if len(x) else None


def dataset_structures(dataset: str | Path) -> list[Atoms]:
    """The ok samples of a fastqmd dataset as Atoms with their reference energy/forces attached."""
    from fastqmd.data.store import Dataset

    ds = Dataset(dataset)
    try:
        return [ds.atoms(k) for k in ds.keys("ok")]
    finally:
        ds.close()


def evaluate_universal(model_spec: str | UniversalPotential, dataset_path: str | Path, device: str = "cpu",
                       modal: str | None = None) -> dict:
    """Energy and force errors of a universal MLIP ("KIND[:MODEL]" or a loaded potential) on a dataset's ok
    samples (eV, Å): raw energy errors, energy errors after the fitted per-element offset (`fit_energy_offset`,
    reported with its μ_Z and rank), force errors (samples with forces), seconds per structure. The dataset's
    elements are checked against the model before any evaluation."""
    from fastqmd.potential import system_from_atoms

    pot = model_spec if isinstance(model_spec, UniversalPotential) else load_universal(
        *parse_spec(model_spec), device=device, modal=modal)
    structures = dataset_structures(dataset_path)
    if not structures:
        raise InputError(f"{dataset_path} has no successful sample to evaluate on")
    elements = sorted({int(z) for a in structures for z in a.numbers})
    pot.check_numbers(elements)
    dE, n_atoms, dF, counts = [], [], [], []
    t0 = time.perf_counter()
    for a in structures:
        res = pot.compute(system_from_atoms(a))
        dE.append(float(res.energy) - a.get_potential_energy())
        n_atoms.append(len(a))
        counts.append([int((a.numbers == z).sum()) for z in elements])
        ref_f = a.calc.results.get("forces")
        if ref_f is not None:
            dF.append((res.forces.numpy() - ref_f).reshape(-1))
    seconds = time.perf_counter() - t0
    dE, n_atoms, counts = np.array(dE), np.array(n_atoms), np.array(counts)
    mu, rank = fit_energy_offset(counts, -dE)  # E_ref − E_model ≈ n·μ
    dE_off = dE + counts @ mu
    forces = _stat(np.concatenate(dF)) if dF else None
    return {
        "model": pot.spec, "dataset": str(dataset_path), "n_samples": len(structures),
        "n_atoms": int(n_atoms.sum()), "elements": [chemical_symbols[z] for z in elements],
        "energy_eV": _stat(dE), "energy_per_atom_eV": _stat(dE / n_atoms),
        "energy_offset": {"per_element_eV": {chemical_symbols[z]: float(m) for z, m in zip(elements, mu)},
                          "rank": rank, "energy_eV": _stat(dE_off), "energy_per_atom_eV": _stat(dE_off / n_atoms)},
        "forces_eV_per_A": forces,
        "force_mae_meV_per_A": None if forces is None else 1e3 * forces["mae"],
        "energy_mae_meV_per_atom_offset": 1e3 * float(np.abs(dE_off / n_atoms).mean()),
        "s_per_structure": seconds / len(structures),
    }
