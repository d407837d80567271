"""Energy MLIPs on the one trainer: `MLIPKind` (`model.kind: bp | equivariant | …` in `fastqmd train`).

An *architecture* is a torch module that maps a batch of structures to energies; everything else — data,
neighbour graphs, per-element energy offsets, forces, stress, the loss, metrics, files — lives here once.

Architecture protocol (`register_architecture(name, spec, builder)`; spec/builder may be "module:attr" strings,
imported on first use):
    spec      a pydantic `ArchitectureSpec` subclass with `kind: Literal[name]` and `cutoff` (Å): the `model:` block
    builder(spec, elements, stats) -> torch.nn.Module whose forward(batch: AtomsBatch) -> [n_structures] eV is
              the energy *after* the per-element offsets (`MLIPModel` adds Σ_i e_{Z_i}); `elements` are symbols in
              the model's species order (`batch.species` indexes them); `stats` a `TrainingStatistics`, whose
              `samples` (the training structures) is None when a saved model is rebuilt — so anything derived
              from data (feature means, scales) must be a buffer, restored with the state_dict.
    The module reads geometry only through `batch.edge_vectors()` (or batch.positions/cell), so that
        F = −∂E/∂R,   σ = (1/V) ∂E/∂ε  (ASE sign; R → R(1 + ε), cell → cell(1 + ε), ε symmetric)
    come by autograd in `energy_forces_stress`, never in an architecture.

Loss per structure s (batch mean; weights `loss.energy`, `loss.forces`, `loss.stress` = w_E, w_F, w_S):
    L = w_E ((E − E_ref)/N)²  +  w_F mean_ia (F − F_ref)²_ia  [+ w_S mean_ab (σ − σ_ref)²_ab, labelled cells only]
in (eV/atom)², (eV/Å)², (eV/Å³)². Before training, e_Z = argmin Σ_s (E_s − Σ_Z n_sZ e_Z)² (least squares,
minimum norm for collinear compositions) on the training set. Validation: E MAE meV/atom, F MAE meV/Å.
Files: model.pt = {"format": MODEL_FORMAT, "config": JSON (architecture, spec, elements, statistics), "state"};
checkpoint.pt is the trainer's (`fastqmd.training.checkpoint`) with the same "config". `load_mlip` reads either.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols
from pydantic import Field, PositiveFloat, create_model
from torch import Tensor

from fastqmd.config import FrozenModel
from fastqmd.errors import InputError
from fastqmd.training.config import TrainerSettings
from fastqmd.training.phases import Phase

MODEL_FORMAT = "fastqmd-mlip-model"
CHECKPOINT_FORMAT = "fastqmd-mlip-checkpoint"
TERMS = ("E", "F", "S")


# ------------------------------------------------------------------ architectures


class ArchitectureSpec(FrozenModel):
    """Base of a `model:` block: `kind` names the architecture, `cutoff` (Å) the neighbour graph it gets."""

    kind: str
    cutoff: PositiveFloat = 5.0


_ARCHITECTURES: dict[str, tuple] = {}


def register_architecture(name: str, spec, builder) -> None:
    """`model.kind: name` builds `builder(spec, elements, stats)` (module docstring); strings "module:attr" are
    imported on first use."""
    _ARCHITECTURES[name] = (spec, builder)


def _resolve(obj):
    if isinstance(obj, str):
        module, _, attr = obj.partition(":")
        return getattr(importlib.import_module(module), attr)
    return obj


def get_architecture(name: str) -> tuple[type[ArchitectureSpec], Callable]:
    """(spec class, builder) of `name`; InputError naming the known architectures when there is none."""
    if name not in _ARCHITECTURES:
        raise InputError(f"unknown MLIP architecture {name!r} (known: {', '.join(sorted(_ARCHITECTURES))})")
    spec, builder = _ARCHITECTURES[name]
    return _resolve(spec), _resolve(builder)


register_architecture("bp", "fastqmd.mlip.bp:BPSpec", "fastqmd.mlip.bp:build_bp")
register_architecture("equivariant", "fastqmd.mlip.equivariant:EquivariantSpec",
                      "fastqmd.mlip.equivariant:build_equivariant")
register_architecture("sevenn", "fastqmd.mlip.finetune:SevenNetSpec", "fastqmd.mlip.finetune:build_sevenn")


@dataclass(frozen=True)
class TrainingStatistics:
    """Training-set numbers an architecture may scale itself with (saved with the model)."""

    energy_offsets: tuple[float, ...]  # e_Z eV, in the model's species order
    energy_std_per_atom: float  # std over structures of (E − Σ e_Z)/N, eV/atom
    force_rms: float  # RMS force component, eV/Å (1.0 without forces or when all are zero)
    avg_num_neighbors: float  # mean neighbours within spec.cutoff
    samples: Sequence | None = None  # the training `Structure`s; None when a saved model is rebuilt

    def numbers(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "samples"}


# ------------------------------------------------------------------ data


@dataclass(frozen=True)
class Structure:
    """One labelled structure (numpy float64; ASE units)."""

    key: str
    numbers: np.ndarray  # [N] int
    positions: np.ndarray  # [N, 3] Å
    cell: np.ndarray  # [3, 3] Å, rows
    pbc: np.ndarray  # [3] bool
    energy: float  # eV
    forces: np.ndarray | None = None  # [N, 3] eV/Å
    stress: np.ndarray | None = None  # [3, 3] eV/Å³ (ASE sign)


class MLIPSamples:
    """The ok samples of a fastqmd dataset as `Structure`s (the trainer's `Samples`): read on first access and
    kept (structures and labels only, a few kB per structure), as are their neighbour lists; subsets share both."""

    def __init__(self, path, keys: list[str] | None = None, _cache: dict | None = None):
        from fastqmd.data.store import Dataset

        self.path = Path(path)
        self.store = Dataset(self.path)
        self.keys = list(keys) if keys is not None else self.store.keys("ok")
        self.store.close()
        self._cache = _cache if _cache is not None else {}

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> Structure:
        key = self.keys[i]
        if key not in self._cache:
            d = self.store.read(key, ("numbers", "positions", "cell", "pbc", "forces", "stress"))
            self._cache[key] = Structure(
                key, np.asarray(d["numbers"], dtype=np.int64), np.asarray(d["positions"], dtype=np.float64),
                np.asarray(d["cell"], dtype=np.float64), np.asarray(d["pbc"], dtype=bool), float(d["energy"]),
                np.asarray(d["forces"], dtype=np.float64) if "forces" in d else None,
                np.asarray(d["stress"], dtype=np.float64) if "stress" in d else None)
        return self._cache[key]

    def subset(self, indices) -> "MLIPSamples":
        return MLIPSamples(self.path, [self.keys[i] for i in indices], self._cache)


_NEIGHBOURS: dict = {}
_CACHE_EDGES = 4_000_000  # ~160 MB of cached (i, j, R); the cache is emptied when it would grow past this


def neighbour_list(s: Structure, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full list (i, j, R) with |R_j − R_i + R·cell| < cutoff (vesin, `fastqmd.nnh.graph.neighbor_pairs`);
    cached for dataset structures (keyed on key, cutoff and the positions' and cell's bytes)."""
    from fastqmd.nnh.graph import neighbor_pairs

    key = (s.key, float(cutoff), s.positions.tobytes(), s.cell.tobytes()) if s.key else None
    if key is not None and key in _NEIGHBOURS:
        return _NEIGHBOURS[key]
    out = neighbor_pairs(s.positions, s.cell, s.pbc, cutoff)
    if key is not None:
        n = _NEIGHBOURS.pop("n_edges", 0) + len(out[0])
        if n > _CACHE_EDGES:
            _NEIGHBOURS.clear()
            n = len(out[0])
        _NEIGHBOURS[key], _NEIGHBOURS["n_edges"] = out, n
    return out


@dataclass(frozen=True)
class AtomsBatch:
    """Structures concatenated atom-wise, with their neighbour graph (full list, both directions, no self pair).
    Shapes: N atoms, S structures, E edges."""

    positions: Tensor  # [N, 3] Å
    cell: Tensor  # [S, 3, 3] Å, rows
    numbers: Tensor  # [N] int64 atomic numbers
    species: Tensor  # [N] int64 index into the model's elements
    pbc: Tensor  # [S, 3] bool
    structure: Tensor  # [N] int64 structure of each atom
    edge_i: Tensor  # [E] centre atom (batch index)
    edge_j: Tensor  # [E] neighbour atom
    shifts: Tensor  # [E, 3] integer lattice shift of j (positions' dtype)
    n_structures: int

    def edge_vectors(self) -> Tensor:
        """r_ij = R_j − R_i + shift·cell_s [E, 3], differentiable in positions and cell."""
        cell_e = self.cell[self.structure[self.edge_i]]  # [E, 3, 3]
        return (self.positions[self.edge_j] - self.positions[self.edge_i]
                + torch.einsum("ec,ecd->ed", self.shifts, cell_e))

    def sum_per_structure(self, x: Tensor) -> Tensor:
        """[N, ...] per-atom values → [S, ...] sums per structure."""
        return x.new_zeros((self.n_structures, *x.shape[1:])).index_add(0, self.structure, x)


def species_index(elements: Sequence[str], numbers: np.ndarray) -> np.ndarray:
    """Index of each atomic number in `elements`; InputError naming elements the model does not cover."""
    numbers = np.asarray(numbers, dtype=np.int64)
    z = [atomic_numbers[e] for e in elements]
    lut = np.full(max([*z, int(numbers.max(initial=0))]) + 1, -1, dtype=np.int64)
    lut[z] = np.arange(len(z))
    idx = lut[numbers]
    if (idx < 0).any():
        missing = sorted({chemical_symbols[int(n)] for n in numbers[idx < 0]})
        raise InputError(f"element(s) {', '.join(missing)} not in the model (it knows {', '.join(elements)})")
    return idx


def collate(structures: Sequence[Structure], elements: Sequence[str], cutoff: float, dtype=torch.float64,
            device="cpu") -> AtomsBatch:
    """An `AtomsBatch` of `structures` with the neighbour graph at `cutoff` (Å)."""
    pos, cell, num, spc, pbc, sid, ei, ej, sh = [], [], [], [], [], [], [], [], []
    offset = 0
    for k, s in enumerate(structures):
        i, j, R = neighbour_list(s, cutoff)
        n = len(s.numbers)
        pos.append(s.positions), cell.append(s.cell), num.append(s.numbers), pbc.append(s.pbc)
        spc.append(species_index(elements, s.numbers)), sid.append(np.full(n, k, dtype=np.int64))
        ei.append(i + offset), ej.append(j + offset), sh.append(R)
        offset += n
    t = lambda x, dt: torch.as_tensor(np.concatenate(x), dtype=dt, device=device)  # noqa: E731
    return AtomsBatch(t(pos, dtype), torch.as_tensor(np.stack(cell), dtype=dtype, device=device),
                      t(num, torch.int64), t(spc, torch.int64),
                      torch.as_tensor(np.stack(pbc), dtype=torch.bool, device=device), t(sid, torch.int64),
                      t(ei, torch.int64), t(ej, torch.int64), t(sh, dtype).reshape(-1, 3), len(structures))


# ------------------------------------------------------------------ the model: architecture + offsets


class MLIPModel(torch.nn.Module):
    """E_s = net(batch)_s + Σ_{i ∈ s} e_{Z_i}: an architecture's energy plus the fitted per-element offsets.
    The offsets and E are float64 whatever the network's dtype (|E| ~ 100 eV would lose meV in float32)."""

    def __init__(self, architecture: str, spec: ArchitectureSpec, elements: Sequence[str],
                 stats: TrainingStatistics, net: torch.nn.Module, dtype=torch.float64):
        super().__init__()
        self.architecture, self.spec, self.elements = architecture, spec, list(elements)
        self.statistics = dataclasses.replace(stats, samples=None)
        self.cutoff, self.dtype = float(spec.cutoff), dtype
        self.net = net
        self._offsets = torch.tensor(stats.energy_offsets, dtype=torch.float64)  # [n_elements] eV (not trained)

    def offsets(self, device) -> Tensor:
        if self._offsets.device != torch.device(device):
            self._offsets = self._offsets.to(device)
        return self._offsets

    def forward(self, batch: AtomsBatch) -> Tensor:
        e0 = self.offsets(batch.positions.device)[batch.species]  # [N] float64
        return self.net(batch).to(torch.float64) + batch.sum_per_structure(e0)  # [S] eV

    def config_json(self) -> str:
        """Everything `load_mlip` needs besides the weights."""
        return json.dumps({"architecture": self.architecture, "spec": json.loads(self.spec.model_dump_json()),
                           "elements": self.elements, "statistics": self.statistics.numbers(),
                           "dtype": str(self.dtype).removeprefix("torch.")}, sort_keys=True)


def energy_forces_stress(model: torch.nn.Module, batch: AtomsBatch, *, forces: bool = True, stress: bool = False,
                         create_graph: bool = False) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """E [S] eV, F = −∂E/∂R [N, 3] eV/Å, σ = (1/V) ∂E/∂ε [S, 3, 3] eV/Å³ (ASE sign; NaN for V = 0): the one place
    where forces and stress of an energy MLIP come from. The strain acts as R → R(1 + ε_s), cell → cell(1 + ε_s)
    with ε_s symmetric (rows are vectors), at ε = 0."""
    pos = batch.positions.detach().requires_grad_(forces)
    eps = torch.zeros_like(batch.cell, requires_grad=stress)  # [S, 3, 3]
    sym = 0.5 * (eps + eps.transpose(1, 2))
    strained = dataclasses.replace(batch, positions=pos + torch.einsum("na,nab->nb", pos, sym[batch.structure]),
                                   cell=batch.cell + batch.cell @ sym)
    E = model(strained)
    wrt = [x for x, want in ((pos, forces), (eps, stress)) if want]
    if not wrt:
        return E, None, None
    grads = torch.autograd.grad(E.sum(), wrt, create_graph=create_graph)
    F = -grads[0] if forces else None
    sigma = None
    if stress:
        V = torch.linalg.det(batch.cell).abs()
        sigma = grads[-1] / torch.where(V > 0, V, torch.nan)[:, None, None]
    return E, F, sigma


def build_model(spec: ArchitectureSpec, elements: Sequence[str], stats: TrainingStatistics,
                dtype=torch.float64) -> MLIPModel:
    """The `MLIPModel` of an architecture spec (a builder's ValueError is an InputError)."""
    _, builder = get_architecture(spec.kind)
    try:
        net = builder(spec, list(elements), stats)
    except ValueError as exc:
        raise InputError(f"model: {exc}") from None
    return MLIPModel(spec.kind, spec, elements, stats, net, dtype).to(dtype)


def load_mlip(path: str | Path, device="cpu", dtype=None) -> MLIPModel:
    """An `MLIPModel` from model.pt or checkpoint.pt (its EMA weights) of an MLIP training run."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"MLIP model file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{path} is not a readable model file ({type(exc).__name__})") from None
    if not isinstance(obj, dict) or obj.get("format") not in (MODEL_FORMAT, CHECKPOINT_FORMAT):
        raise InputError(f"{path} is not an MLIP model file (fastqmd train with model.kind bp/equivariant)")
    c = json.loads(obj["config"])
    spec_type, _ = get_architecture(c["architecture"])
    spec = spec_type.model_validate(c["spec"])
    stats = TrainingStatistics(**{k: tuple(v) if isinstance(v, list) else v for k, v in c["statistics"].items()})
    dt = getattr(torch, dtype or c.get("dtype", "float64"))
    model = build_model(spec, c["elements"], stats, dt)
    state = (obj.get("ema") or obj["state"]) if obj["format"] == CHECKPOINT_FORMAT else obj["state"]
    model.load_state_dict(state)
    return model.to(device, dt).eval()


def is_mlip_file(path: str | Path) -> bool:
    """Does `path` hold an MLIP model or checkpoint (so `fastqmd evaluate` takes the MLIP path)?"""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(obj, dict) and obj.get("format") in (MODEL_FORMAT, CHECKPOINT_FORMAT)


# ------------------------------------------------------------------ statistics


def fit_energy_offsets(structures: Sequence[Structure], elements: Sequence[str]) -> np.ndarray:
    """e_Z = argmin Σ_s (E_s − Σ_Z n_sZ e_Z)² (numpy lstsq: minimum norm when compositions are collinear)."""
    A = np.zeros((len(structures), len(elements)))
    b = np.array([s.energy for s in structures])
    for k, s in enumerate(structures):
        A[k] = np.bincount(species_index(elements, s.numbers), minlength=len(elements))
    return np.linalg.lstsq(A, b, rcond=None)[0]


def training_statistics(train: Sequence[Structure], elements: Sequence[str], cutoff: float) -> TrainingStatistics:
    """Offsets, per-atom residual energy std, force RMS and mean neighbour count of the training set."""
    e = fit_energy_offsets(train, elements)
    res = [(s.energy - e[species_index(elements, s.numbers)].sum()) / len(s.numbers) for s in train]
    f = [s.forces.ravel() for s in train if s.forces is not None]
    f_rms = float(np.sqrt(np.mean(np.concatenate(f) ** 2))) if f else 0.0
    nn = [len(neighbour_list(s, cutoff)[0]) / len(s.numbers) for s in train]
    return TrainingStatistics(tuple(float(x) for x in e), float(np.std(res)), f_rms if f_rms > 0 else 1.0,
                              max(1.0, float(np.mean(nn))), train)


def dataset_elements(train: Sequence[Structure]) -> list[str]:
    """Elements of the training structures, by atomic number."""
    z = sorted({int(n) for s in train for n in s.numbers})
    return [chemical_symbols[n] for n in z]


# ------------------------------------------------------------------ config, loss, metrics


class MLIPLossWeights(FrozenModel):
    energy: float = Field(1.0, ge=0)  # w_E on ((E − E_ref)/N)², (eV/atom)²
    forces: float = Field(1.0, ge=0)  # w_F on mean (F − F_ref)², (eV/Å)²
    stress: float = Field(0.0, ge=0)  # w_S on mean (σ − σ_ref)², (eV/Å³)², structures with stress labels


class MLIPTrainConfig(TrainerSettings):
    """`fastqmd train` config of an energy MLIP: the trainer's settings, `model:` (an architecture spec) and
    `loss:`. The concrete class per architecture is `train_config_type(name)`."""

    model: ArchitectureSpec
    loss: MLIPLossWeights = MLIPLossWeights()


@lru_cache(maxsize=None)
def train_config_type(architecture: str) -> type[MLIPTrainConfig]:
    """MLIPTrainConfig with `model:` typed as the architecture's spec."""
    spec, _ = get_architecture(architecture)
    return create_model(f"{spec.__name__.removesuffix('Spec')}TrainConfig", __base__=MLIPTrainConfig,
                        model=(spec, ...))


class MLIPLoss(torch.nn.Module):
    """forward(structures, w = [w_E, w_F, w_S]) → (batch-mean loss, [Σ L_E, Σ L_F, Σ L_S, B]) — the DDP unit."""

    def __init__(self, model: MLIPModel, device):
        super().__init__()
        self.model, self.device = model, torch.device(device)

    def outputs(self, structures: Sequence[Structure], forces: bool, stress: bool, create_graph: bool):
        b = collate(structures, self.model.elements, self.model.cutoff, self.model.dtype, self.device)
        return b, *energy_forces_stress(self.model, b, forces=forces, stress=stress, create_graph=create_graph)

    def terms(self, structures: Sequence[Structure], w: Sequence[float], create_graph: bool):
        """[B, 3] per-structure L_E, L_F, L_S (a term of weight 0 is left 0), and (batch, E, F, σ)."""
        has_s = [s.stress is not None for s in structures]
        b, E, F, sig = self.outputs(structures, w[1] > 0, w[2] > 0 and any(has_s), create_graph)
        dt, dev = E.dtype, E.device
        n = torch.tensor([len(s.numbers) for s in structures], dtype=dt, device=dev)
        E_ref = torch.tensor([s.energy for s in structures], dtype=dt, device=dev)
        LE = ((E - E_ref) / n) ** 2
        LF = torch.zeros_like(LE)
        if F is not None:
            F_ref = torch.as_tensor(np.concatenate([s.forces for s in structures]), dtype=dt, device=dev)
            LF = b.sum_per_structure(((F - F_ref) ** 2).sum(-1)) / (3 * n)
        LS = torch.zeros_like(LE)
        if sig is not None:
            mask = torch.tensor(has_s, device=dev)
            ref = torch.as_tensor(np.stack([s.stress if s.stress is not None else np.zeros((3, 3))
                                            for s in structures]), dtype=dt, device=dev)
            LS = torch.where(mask, ((torch.nan_to_num(sig) - ref) ** 2).mean((1, 2)), 0.0)
        return torch.stack([LE, LF, LS], -1), (b, E, F, sig)

    def forward(self, batch: list[Structure], wl: list[float], create_graph: bool = True):
        t, _ = self.terms(batch, wl, create_graph)
        loss = (t @ torch.tensor(wl, dtype=t.dtype, device=t.device)).mean()
        return loss, torch.cat([t.detach().sum(0), t.new_tensor([len(batch)])])


def validate(lm: MLIPLoss, samples: Sequence[Structure], weights: dict[str, float], chunk: int = 16) -> dict:
    """Mean loss terms, the weighted loss and E MAE (meV/atom) / F MAE (meV/Å) and RMSEs over `samples`."""
    if not len(samples):
        return {}
    sums, n = np.zeros(3), 0
    e_err, f_err = [], []
    for start in range(0, len(samples), chunk):
        part = [samples[i] for i in range(start, min(len(samples), start + chunk))]
        has_f = all(s.forces is not None for s in part)
        with torch.enable_grad():
            t, (b, E, F, _) = lm.terms(part, [1.0, 1.0 if has_f else 0.0, 1.0], create_graph=False)
        sums += t.detach().sum(0).cpu().double().numpy()
        n += len(part)
        E = E.detach().cpu().double().numpy()
        e_err += [(E[k] - s.energy) / len(s.numbers) for k, s in enumerate(part)]
        if F is not None:
            f_err.append(F.detach().cpu().double().numpy() - np.concatenate([s.forces for s in part]))
    m = sums / n
    out = {"loss": float(sum(weights[k] * v for k, v in zip(TERMS, m))),
           **{f"L_{k}": float(v) for k, v in zip(TERMS, m)},
           "E_mae_meV_atom": 1e3 * float(np.mean(np.abs(e_err))),
           "E_rmse_meV_atom": 1e3 * float(np.sqrt(np.mean(np.square(e_err))))}
    if f_err:
        f = np.concatenate(f_err)
        out.update(F_mae_meV_A=1e3 * float(np.abs(f).mean()), F_rmse_meV_A=1e3 * float(np.sqrt((f**2).mean())))
    return out


# ------------------------------------------------------------------ the kind


class MLIPKind:
    """Every energy MLIP architecture as one `fastqmd.training.ModelKind`."""

    name = "mlip"
    checkpoint_format = CHECKPOINT_FORMAT
    terms = TERMS
    schedule_fields: tuple[str, ...] = ()

    def check(self, cfg: MLIPTrainConfig) -> None:
        if not (cfg.loss.energy or cfg.loss.forces or cfg.loss.stress):
            raise InputError("loss: every weight is 0 (energy, forces, stress)")

    def samples(self, cfg: MLIPTrainConfig) -> MLIPSamples:
        from fastqmd.data.store import read_header

        if not Path(cfg.dataset).is_file():
            raise InputError(f"dataset not found: {cfg.dataset}")
        read_header(cfg.dataset)
        out = MLIPSamples(cfg.dataset)
        if not len(out):
            raise InputError(f"{cfg.dataset}: no successful samples")
        if cfg.loss.forces > 0:
            missing = [out[i].key for i in range(len(out)) if out[i].forces is None]
            if missing:
                raise InputError(f"{cfg.dataset}: {len(missing)} of {len(out)} samples have no forces (first "
                                 f"{missing[0]}) but loss.forces is {cfg.loss.forces:g}; set loss.forces: 0 to "
                                 "train on energies only")
        if cfg.loss.stress > 0 and not any(out[i].stress is not None for i in range(len(out))):
            raise InputError(f"{cfg.dataset}: no sample has a stress, but loss.stress is {cfg.loss.stress:g}")
        return out

    def build(self, cfg: MLIPTrainConfig, train: MLIPSamples, device) -> MLIPModel:
        structures = [train[i] for i in range(len(train))]
        elements = dataset_elements(structures)
        stats = training_statistics(structures, elements, cfg.model.cutoff)
        return build_model(cfg.model, elements, stats, getattr(torch, cfg.dtype)).to(device)

    def phases(self, cfg: MLIPTrainConfig) -> list[Phase]:
        w = cfg.loss
        return [Phase("all", None, {"E": w.energy, "F": w.forces, "S": w.stress})]

    def loss_module(self, cfg, model: MLIPModel, train, device) -> MLIPLoss:
        return MLIPLoss(model, device)

    def validate(self, lm: MLIPLoss, samples, weights: dict[str, float]) -> dict:
        return validate(lm, samples, weights)

    def checkpoint_payload(self, model: MLIPModel) -> dict:
        return {"config": model.config_json()}

    def save_model(self, model: MLIPModel, path: Path, state: dict | None = None) -> None:
        from fastqmd.atomic import atomic_torch_save

        atomic_torch_save({"format": MODEL_FORMAT, "version": 1, "config": model.config_json(),
                           "state": state or model.state_dict()}, path)


def evaluate_mlip(model_path: str | Path, dataset: str | Path, keys: list[str] | None = None,
                  device: str = "cpu") -> dict:
    """E/F errors of a trained MLIP on a dataset (all ok samples, or `keys`): `validate`'s metrics with
    w = (1, 1, 0), plus n_samples, model and dataset."""
    from fastqmd.data.store import read_header

    model = load_mlip(model_path, device)
    if not Path(dataset).is_file():
        raise InputError(f"dataset not found: {dataset}")
    read_header(dataset)
    samples = MLIPSamples(dataset, keys)
    if not len(samples):
        raise InputError(f"{dataset}: no successful samples")
    m = validate(MLIPLoss(model, device), samples, {"E": 1.0, "F": 1.0, "S": 0.0})
    return {"model": str(model_path), "architecture": model.architecture, "dataset": str(dataset),
            "n_samples": len(samples), **m}


def train(cfg: MLIPTrainConfig, overwrite: bool = False, stop_after: int | None = None) -> dict:
    """Train (or resume) the MLIP run of `cfg` (`fastqmd.training.loop.fit`)."""
    from fastqmd.training.loop import fit

    return fit(MLIPKind(), cfg, overwrite=overwrite, stop_after=stop_after)


__all__ = ["ArchitectureSpec", "AtomsBatch", "MLIPKind", "MLIPLossWeights", "MLIPModel", "MLIPTrainConfig",
           "Structure", "TrainingStatistics", "collate", "energy_forces_stress", "evaluate_mlip", "get_architecture",
           "load_mlip",
           "register_architecture", "train", "train_config_type"]
