"""The training domain of a potential: how far a structure's atomic environments lie from those it was fitted on.

In:  training structures (ASE Atoms: a fastqmd dataset's ok samples, optionally a training run's "train" split, or
     the frames of any ASE-readable file), Å; later any structure to score. Out: a `Domain` (a small file,
     `save_domain`, loadable with `torch.load(weights_only=True)`) and per structure a `DomainScore` (unit-free):

    x_i  = (G_i − μ_a) / σ_a                   standardized descriptors of atom i, element a
    d_i  = min_{r ∈ R_a} ‖x_i − x_r‖₂          distance to the nearest training reference point of its element
    s_i  = d_i / d_ref,a                       1 ≈ the edge of the training data
    s    = max_i s_i                           the structure's extrapolation score (∞: an element unseen in training)

G_i: Behler–Parrinello G2 (radial) + G4 (angular) symmetry functions resolved by neighbour element
(`fastqmd.mlip.descriptors`, n2p2 grids to `cutoff` Å) on the BP model's neighbour list (`fastqmd.mlip.kind.collate`).
μ_a, σ_a: mean and standard deviation over the training atoms of element a (σ floored at STD_FLOOR · max_f σ_a, so
features constant in training count but cannot divide by zero); R_a: those atoms' x, a seeded subsample of at most
`max_points_per_element`; d_ref,a: the `quantile` (0.99) of the leave-one-out distances min_{r' ≠ r} ‖x_r − x_r'‖
over r ∈ R_a. Also kept: the per-feature min/max of G over the training atoms (`DomainScore.outside_range`).
Model-agnostic: it looks at structures only, so it guards an NNH, an MLIP, MOR or any ASE calculator — through
`DomainGuardedPotential` (a Potential: Results.extras["extrapolation"]) or `fastqmd md`'s `guard.domain`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from torch import Tensor

from fastqmd.errors import CalculationFailed, InputError
from fastqmd.mlip.descriptors import SymmetryFunctions, generate_parameters, symmetry_functions

FORMAT, VERSION = "fastqmd-domain", 1
STD_FLOOR = 1e-3  # σ_f ≥ STD_FLOOR · max_f σ_f (per element)
D_REF_FLOOR = 1e-9  # d_ref ≥ this (standardized units): identical training environments give d_ref = 0
R_MIN_A, N_RADIAL, N_ANGULAR = 0.5, 8, 4  # the descriptor grids (`generate_parameters`)


class ExtrapolationWarning(UserWarning):
    """A structure scored above the domain threshold: the potential is extrapolating."""


class ExtrapolationError(CalculationFailed):
    """A structure scored above the domain threshold with action "stop" (CLI exit code 3)."""


@dataclass(frozen=True)
class Domain:
    """Per element a (order of `elements`): μ, σ, min, max of G [n_s, F], reference points x [n_ref_a, F] and
    d_ref [n_s]; the descriptor set `sf`."""

    elements: tuple[str, ...]
    sf: SymmetryFunctions
    mean: Tensor  # [n_s, F]
    std: Tensor  # [n_s, F]
    lo: Tensor  # [n_s, F] min of G over the training atoms
    hi: Tensor  # [n_s, F] max
    reference: tuple[Tensor, ...]  # per element [n_ref_a, F], standardized
    d_ref: Tensor  # [n_s]
    quantile: float
    n_atoms: tuple[int, ...]  # training atoms per element
    n_structures: int
    source: str = ""

    def summary(self) -> str:
        per = ", ".join(f"{e} ({n} atoms, {len(r)} reference, d_ref {float(d):.3g})"
                        for e, n, r, d in zip(self.elements, self.n_atoms, self.reference, self.d_ref))
        return f"{self.n_structures} structures, {self.sf.n_features} features, cutoff {self.sf.cutoff:g} Å: {per}"


@dataclass(frozen=True)
class DomainScore:
    """One structure's score s = max_i s_i (module docstring), the atom where it is reached, and per-atom detail."""

    score: float  # inf when an element was not in training
    atom: int  # index of the atom with the largest s_i
    element: str  # its element
    per_atom: np.ndarray  # [N] s_i
    outside_range: np.ndarray  # [N] number of features outside the training [min, max] (-1: unseen element)
    unseen: tuple[str, ...]  # elements absent from training

    def describe(self) -> str:
        if self.unseen:
            return f"element(s) {', '.join(self.unseen)} not in the training domain (score inf, atom {self.atom})"
        return f"extrapolation score {self.score:.3g} (atom {self.atom}, {self.element})"


# ------------------------------------------------------------------ descriptors and distances


def descriptor_functions(cutoff: float, n_elements: int) -> SymmetryFunctions:
    """G2 (shifted grid) + G4 functions to `cutoff` Å on n2p2's grids (`generate_parameters`)."""
    if not cutoff > R_MIN_A:
        raise InputError(f"domain cutoff must be > {R_MIN_A} Å, got {cutoff:g}")
    return generate_parameters(cutoff, n_elements, r_min=R_MIN_A, n_radial=N_RADIAL, n_angular=N_ANGULAR)


def descriptors(sf: SymmetryFunctions, elements: Sequence[str], frames: Sequence[Atoms],
                chunk: int = 64) -> tuple[Tensor, Tensor]:
    """G [N, F] and species index [N] of all atoms of `frames` (concatenated), on the BP model's neighbour list."""
    from fastqmd.mlip.kind import Structure, collate

    G, spc = [], []
    for k in range(0, len(frames), chunk):
        batch = [Structure("", np.asarray(a.numbers, np.int64), np.asarray(a.positions, np.float64),
                           np.asarray(a.cell.array, np.float64), np.asarray(a.pbc, bool), 0.0)
                 for a in frames[k:k + chunk]]
        b = collate(batch, list(elements), sf.cutoff)
        G.append(symmetry_functions(sf, b.edge_vectors(), b.edge_i, b.edge_j, b.species))
        spc.append(b.species)
    return torch.cat(G), torch.cat(spc)


def nearest_distance(x: Tensor, ref: Tensor, leave_one_out: bool = False, chunk: int = 2048) -> Tensor:
    """min_r ‖x_i − ref_r‖₂ [n]; `leave_one_out`: x is ref and r = i is skipped (∞ for a single point)."""
    out = []
    for k in range(0, len(x), chunk):
        d = torch.cdist(x[k:k + chunk], ref, compute_mode="donot_use_mm_for_euclid_dist")  # [c, n_ref] exact
        if leave_one_out:
            rows = torch.arange(d.shape[0])
            d[rows, rows + k] = math.inf
        out.append(d.min(1).values if d.shape[1] else torch.full((d.shape[0],), math.inf, dtype=d.dtype))
    return torch.cat(out) if out else x.new_zeros(0)


def standardize_statistics(G: Tensor) -> tuple[Tensor, Tensor]:
    """μ, σ [F] of one element's training G [n, F]; σ_f ← max(σ_f, STD_FLOOR · max σ) (1 if all σ are 0)."""
    mean, std = G.mean(0), G.std(0, correction=0)
    floor = STD_FLOOR * std.max()
    return mean, std.clamp(min=float(floor)) if floor > 0 else torch.ones_like(std)


def reference_scale(ref: Tensor, quantile: float) -> float:
    """d_ref = the `quantile` of the leave-one-out nearest-neighbour distances within `ref` (≥ D_REF_FLOOR)."""
    d = nearest_distance(ref, ref, leave_one_out=True)
    return max(float(torch.quantile(d, quantile)), D_REF_FLOOR)


# ------------------------------------------------------------------ fit and score


def fit_domain(structures: Sequence[Atoms], cutoff: float = 5.0, max_points_per_element: int = 2000,
               quantile: float = 0.99, seed: int = 0, source: str = "") -> Domain:
    """The domain of `structures` (module docstring); every element needs ≥ 2 training atoms."""
    if not structures:
        raise InputError("no training structures to fit a domain on")
    if max_points_per_element < 2 or not 0 < quantile <= 1:
        raise InputError(f"need max_points_per_element ≥ 2 and 0 < quantile ≤ 1, got {max_points_per_element}, "
                         f"{quantile:g}")
    zs = sorted({int(z) for a in structures for z in a.numbers})
    elements = tuple(chemical_symbols[z] for z in zs)
    sf = descriptor_functions(cutoff, len(elements))
    G, spc = descriptors(sf, elements, structures)
    rng = np.random.default_rng(seed)
    stats = []
    for a, el in enumerate(elements):
        Ga = G[spc == a]  # [n_a, F]
        if len(Ga) < 2:
            raise InputError(f"element {el} has {len(Ga)} training atom; a domain needs at least 2 per element")
        mean, std = standardize_statistics(Ga)
        keep = np.sort(rng.choice(len(Ga), max_points_per_element, replace=False)) \
            if len(Ga) > max_points_per_element else np.arange(len(Ga))
        ref = ((Ga - mean) / std)[torch.as_tensor(keep)]
        stats.append((mean, std, Ga.min(0).values, Ga.max(0).values, ref, reference_scale(ref, quantile), len(Ga)))
    mean, std, lo, hi, ref, dref, n = zip(*stats)
    return Domain(elements, sf, torch.stack(mean), torch.stack(std), torch.stack(lo), torch.stack(hi), tuple(ref),
                  torch.tensor(dref, dtype=torch.float64), float(quantile), tuple(n), len(structures), str(source))


def unseen_elements(domain: Domain, numbers: Iterable[int]) -> tuple[str, ...]:
    """Elements of `numbers` that the domain was not fitted on, sorted by atomic number."""
    known = {atomic_numbers[e] for e in domain.elements}
    return tuple(chemical_symbols[z] for z in sorted({int(z) for z in numbers} - known))


def score(domain: Domain, atoms: Atoms) -> DomainScore:
    """s_i = min_r ‖x_i − x_r‖ / d_ref,a and s = max_i s_i (module docstring). Atoms of unseen elements get s_i = ∞
    (named in `unseen`); the others are scored in their environment without those atoms."""
    n = len(atoms)
    if n == 0:
        raise InputError("cannot score a structure without atoms")
    unseen = unseen_elements(domain, atoms.numbers)
    known = ~np.isin(atoms.numbers, [atomic_numbers[e] for e in unseen])
    per_atom, outside = np.full(n, math.inf), np.full(n, -1, dtype=np.int64)
    if known.any():
        G, spc = descriptors(domain.sf, domain.elements, [atoms[known] if unseen else atoms])
        x = (G - domain.mean[spc]) / domain.std[spc]  # [n_known, F]
        s = torch.empty(len(spc), dtype=torch.float64)
        for a, ref in enumerate(domain.reference):
            m = spc == a
            if m.any():
                s[m] = nearest_distance(x[m], ref) / domain.d_ref[a]
        per_atom[known] = s.numpy()
        outside[known] = ((G < domain.lo[spc]) | (G > domain.hi[spc])).sum(1).numpy()
    i = int(np.argmax(per_atom))
    return DomainScore(float(per_atom[i]), i, atoms.get_chemical_symbols()[i], per_atom, outside, unseen)


# ------------------------------------------------------------------ file


def save_domain(domain: Domain, path: str | Path) -> None:
    """Atomically to `path`: plain tensors, lists and numbers (`torch.load(path, weights_only=True)` reads it)."""
    from fastqmd import __version__
    from fastqmd.atomic import atomic_torch_save

    sf = domain.sf
    t = lambda p, w: torch.tensor(p, dtype=torch.float64).reshape(-1, w)  # noqa: E731
    atomic_torch_save({
        "format": FORMAT, "version": VERSION, "fastqmd_version": __version__, "elements": list(domain.elements),
        "cutoff": sf.cutoff, "radial": t(sf.radial, 2), "g4": t(sf.g4, 3), "g5": t(sf.g5, 3),
        "mean": domain.mean, "std": domain.std, "min": domain.lo, "max": domain.hi,
        "reference": list(domain.reference), "d_ref": domain.d_ref, "quantile": domain.quantile,
        "n_atoms": list(domain.n_atoms), "n_structures": domain.n_structures, "source": domain.source,
    }, path)


def load_domain(path: str | Path) -> Domain:
    """A `save_domain` file; InputError (one line) for a missing, foreign, newer or damaged file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"domain file not found: {path}")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"cannot read {path} as a domain file ({type(exc).__name__})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise InputError(f"{path} is not a fastqmd domain file (`fastqmd domain fit` writes one)")
    if int(d.get("version", 0)) > VERSION:
        raise InputError(f"{path} has domain format version {d['version']}; this fastqmd reads ≤ {VERSION}")
    try:
        tup = lambda x: tuple(tuple(float(v) for v in row) for row in x.tolist())  # noqa: E731
        ns = len(d["elements"])
        sf = SymmetryFunctions(float(d["cutoff"]), tup(d["radial"]), tup(d["g4"]), tup(d["g5"]), ns)
        dom = Domain(tuple(d["elements"]), sf, d["mean"], d["std"], d["min"], d["max"], tuple(d["reference"]),
                     d["d_ref"], float(d["quantile"]), tuple(int(n) for n in d["n_atoms"]), int(d["n_structures"]),
                     str(d.get("source", "")))
        shapes = [dom.mean.shape, dom.std.shape, dom.lo.shape, dom.hi.shape]
        if any(s != (ns, sf.n_features) for s in shapes) or len(dom.reference) != ns or dom.d_ref.shape != (ns,) \
                or any(r.shape[1:] != (sf.n_features,) for r in dom.reference):
            raise ValueError("array shapes do not match the descriptor set")
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise InputError(f"{path}: damaged domain file ({str(exc).splitlines()[0] if str(exc) else 'KeyError'})") \
            from None
    return dom


# ------------------------------------------------------------------ training data


def train_keys(run: str | Path) -> list[str]:
    """The "train" sample keys of the training run that wrote `run` (its folder, or a model file in it): split.json."""
    run = Path(run)
    path = (run if run.is_dir() else run.parent) / "split.json"
    if not path.is_file():
        raise InputError(f"--split-of needs {path} (written by `fastqmd train` in its run folder)")
    try:
        keys = json.loads(path.read_text()).get("train") or []
    except (ValueError, AttributeError):
        raise InputError(f"{path} is not a training run's split.json") from None
    if not keys:
        raise InputError(f"{path}: the train split is empty")
    return [str(k) for k in keys]


def read_frames(path: str | Path, keys: list[str] | None = None) -> list[Atoms]:
    """Structures of a fastqmd dataset (its ok samples, or `keys`) or of any ASE-readable file (all frames)."""
    from fastqmd.evaluation import check_data_path, dataset_labelled, read_labelled

    path = Path(path)
    if check_data_path(path, keys, keys_option="--split-of"):
        frames = [s.atoms for s in dataset_labelled(path, keys)]
    else:
        frames = [s.atoms for s in read_labelled(path)]
    if not frames or any(len(a) == 0 for a in frames):
        raise InputError(f"{path} holds no structures" if not frames else f"{path}: a structure without atoms")
    return frames


# ------------------------------------------------------------------ guarding a potential


class DomainMonitor:
    """Scores structures against a domain and remembers the run's worst: max score, its step, the first step above
    `threshold`, the number of checks. `check` warns once (`warn(message)`) the first time s > threshold, and with
    action "stop" returns the reason to stop instead. Its state round-trips through `to_dict` and `state=` (checkpoints).
    Steps are MD steps, or the index of the check when `check` gets none."""

    def __init__(self, domain: Domain, threshold: float = 1.0, action: Literal["warn", "stop"] = "warn",
                 warn: Callable[[str], None] | None = None, state: dict | None = None):
        if action not in ("warn", "stop") or not threshold > 0:
            raise InputError(f"domain guard needs action warn or stop and threshold > 0, got {action!r}, {threshold}")
        self.domain, self.threshold, self.action = domain, float(threshold), action
        self.warn = warn or (lambda msg: warnings.warn(msg, ExtrapolationWarning, stacklevel=4))
        s = state or {}
        self.max_score, self.max_step = float(s.get("max_score", 0.0)), int(s.get("max_step", -1))
        self.first_above, self.n_checks = int(s.get("first_above", -1)), int(s.get("n_checks", 0))
        self.last: DomainScore | None = None

    def check(self, atoms: Atoms, step: int | None = None) -> str | None:
        """Score `atoms` (at MD `step`, if any); the reason to stop (action "stop", s > threshold) or None."""
        sc = self.last = score(self.domain, atoms)
        at = "" if step is None else f" at step {step}"
        step = self.n_checks if step is None else step  # without MD steps: the index of the check
        self.n_checks += 1
        if sc.score > self.max_score or self.n_checks == 1:
            self.max_score, self.max_step = sc.score, step
        if sc.score <= self.threshold:
            return None
        msg = f"{sc.describe()} above the threshold {self.threshold:g}{at}: outside the training domain"
        if self.first_above < 0:
            self.first_above = step
            if self.action == "warn":
                self.warn(msg)
        return msg if self.action == "stop" else None

    def to_dict(self) -> dict:
        return {"max_score": self.max_score, "max_step": self.max_step, "first_above": self.first_above,
                "n_checks": self.n_checks}

    def report(self) -> dict:
        """JSON-ready: threshold, action, number of checks, max score (∞ as "inf"), its step, the first step above."""
        return {"threshold": self.threshold, "action": self.action, "n_checks": self.n_checks,
                "max_score": self.max_score if math.isfinite(self.max_score) else "inf",
                "max_step": self.max_step, "first_step_above": self.first_above if self.first_above >= 0 else None}


class DomainGuardedPotential:
    """A Potential that scores each structure it computes: Results.extras["extrapolation"] = s and
    ["extrapolation_atom"] (so `PotentialCalculator(...).results["extrapolation"]`). s > threshold: one
    `ExtrapolationWarning` (action "warn", the first time) or `ExtrapolationError` before the inner potential
    runs (action "stop", a CalculationFailed). Capabilities are the inner potential's."""

    def __init__(self, potential, domain: Domain | str | Path, threshold: float = 1.0,
                 action: Literal["warn", "stop"] = "warn"):
        from fastqmd.potential import capabilities

        self.potential = potential
        self.capabilities = capabilities(potential)
        self.monitor = DomainMonitor(domain if isinstance(domain, Domain) else load_domain(domain), threshold, action)

    def compute(self, system):
        reason = self.monitor.check(system.to_atoms())
        if reason is not None:
            raise ExtrapolationError(reason)
        res = self.potential.compute(system)
        sc = self.monitor.last
        return dataclasses.replace(res, extras={**res.extras, "extrapolation": sc.score, "extrapolation_atom": sc.atom})
