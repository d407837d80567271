"""Forgetting-aware fine-tuning of a pretrained energy MLIP on the one trainer (`fastqmd finetune CONFIG.yaml`).

In:  a pretrained model — `sevenn:7net-0` (or another single-fidelity checkpoint the sevenn wheel ships, or a
     SevenNet checkpoint file) or a fastqmd MLIP model.pt (`model.kind` bp / equivariant) — a fine-tuning dataset
     (fastqmd .h5 with energies, and forces for a force loss) and, for EWC and replay, pretraining data at the
     model's level of theory (`fastqmd.mlip.replay`; the MPtrj sample of `make replay-data` for SevenNet-0).
Out: the trainer's run folder (checkpoint.pt, model.pt, metrics.jsonl, split.json, summary.json) and
     finetune.json: fine-tuning test-set and held-out pretraining-set E/F errors before and after (the forgetting).
     model.pt is a fastqmd MLIP file (`load_mlip`, `potential: {kind: mlip, model: …}`, `fastqmd evaluate`).

Methods (`method:`), each a loss and a batch on `fastqmd.training`:
    vanilla          L = L_FT(θ)                                   (L_FT: `fastqmd.mlip.kind` loss, E + F [+ σ])
    lower_lr         vanilla with lr × lr_factor
    layer_freezing   vanilla with the sub-modules in `freeze` given no gradient (bit-identical weights)
    ewc              L = L_FT(θ) + (λ/2) Σ_i F_i (θ_i − θ*_i)²,  F_i = (1/B) Σ_b (∂L_b/∂θ_i)²|θ*
                     (diagonal empirical Fisher over B pretraining mini-batches at the pretrained θ*;
                     Kirkpatrick et al., PNAS 114, 3521 (2017); arXiv 2506.15223 for universal MLIPs)
    replay           every batch: B fine-tuning structures + round(ratio·B) memory structures from the pretraining
                     pool; L = mean over all of them (sevenn's reEWC preset: 8 memory per 4 target)
    reewc            replay + ewc
Energy zero: the fine-tuning labels may be at another level of theory (PySCF all-electron vs MPtrj PBE). Before
training, μ_Z = argmin Σ_s (E_ref,s − E_θ*,s − Σ_Z n_sZ μ_Z)² on the training split (minimum norm) is added to
the model's per-element offsets (not trained), and the pretraining labels are moved by the same Σ_Z n_Z μ_Z, so both
sets are compared on one zero and the saved model predicts the fine-tuning level's energies.
The Fisher, μ and the memory order are pure functions of (config, seed, step): a resumed run recomputes them, and
a run killed with kill -9 and restarted reproduces the uninterrupted run bit for bit on CPU.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from ase.data import chemical_symbols
from pydantic import Field, PositiveFloat, PositiveInt
from torch import Tensor

from fastqmd.config import FrozenModel
from fastqmd.errors import InputError
from fastqmd.mlip.kind import (ArchitectureSpec, AtomsBatch, MLIPKind, MLIPLoss, MLIPLossWeights, MLIPModel,
                               Structure, TrainingStatistics, build_model, collate, energy_forces_stress, load_mlip,
                               species_index, validate)
from fastqmd.training.config import TrainerSettings
from fastqmd.training.phases import Phase

METHODS = ("vanilla", "lower_lr", "layer_freezing", "ewc", "replay", "reewc")
# level of theory of the checkpoints' pretraining data (a declared pretraining set must match it)
PRETRAINING_LEVEL = {"7net-0": "MPtrj", "7net-0_22may2024": "MPtrj", "7net-l3i5": "MPtrj"}


# ------------------------------------------------------------------ SevenNet as a trainable architecture


class SevenNetSpec(ArchitectureSpec):
    """A SevenNet checkpoint as an energy-MLIP architecture: `checkpoint` is a name the sevenn wheel ships
    (7net-0, …) or a SevenNet checkpoint file; `cutoff` must be the checkpoint's (5 Å for 7net-0)."""

    kind: Literal["sevenn"] = "sevenn"
    checkpoint: str = "7net-0"
    cutoff: PositiveFloat = 5.0


def load_sevennet(checkpoint: str):
    """The checkpoint's AtomGraphSequential, loaded offline (`fastqmd.mlip.universal.resolve_model`), with its
    force/stress head removed: forces come from `energy_forces_stress` like every fastqmd MLIP."""
    from sevenn import util

    from fastqmd.mlip.universal import _quiet, resolve_model

    _, path, _ = resolve_model("sevenn", checkpoint)
    with _quiet():
        model = util.load_checkpoint(path).build_model()
    if getattr(model, "modal_map", None):
        raise InputError(f"sevenn {checkpoint} is a multi-fidelity model; fine-tuning supports single-fidelity "
                         "checkpoints (7net-0, 7net-0_22may2024, 7net-l3i5)")
    model.delete_module_by_key("force_output")
    model.key_grad = None  # the edge vectors already carry the positions' graph
    model.set_is_batch_data(True)
    return model


class SevenNetEnergy(torch.nn.Module):
    """forward(batch) → E [S] eV: SevenNet's network on the fastqmd neighbour graph (same edges i → j and
    vectors r_ij = R_j − R_i + shift·cell as sevenn's own graph builder, so E equals SevenNetCalculator's)."""

    def __init__(self, sevennet):
        super().__init__()
        self.sevennet = sevennet

    def forward(self, batch: AtomsBatch) -> Tensor:
        import sevenn._keys as KEY

        n = torch.bincount(batch.structure, minlength=batch.n_structures)
        data = {KEY.NODE_FEATURE: batch.numbers, KEY.ATOMIC_NUMBERS: batch.numbers,
                KEY.EDGE_IDX: torch.stack([batch.edge_i, batch.edge_j]),  # [2, E]
                KEY.EDGE_VEC: batch.edge_vectors(), KEY.BATCH: batch.structure, KEY.NUM_ATOMS: n}
        return self.sevennet(data)[KEY.PRED_TOTAL_ENERGY]  # [S]


def build_sevenn(spec: SevenNetSpec, elements: list[str], stats: TrainingStatistics) -> SevenNetEnergy:
    net = load_sevennet(spec.checkpoint)
    if abs(float(net.cutoff) - spec.cutoff) > 1e-9:
        raise ValueError(f"cutoff {spec.cutoff} Å is not the checkpoint's {float(net.cutoff)} Å")
    return SevenNetEnergy(net)


def sevenn_model(checkpoint: str, dtype=torch.float32) -> MLIPModel:
    """A SevenNet checkpoint as an `MLIPModel` (offsets 0: E is the checkpoint's own total energy)."""
    net = load_sevennet(checkpoint)
    elements = [chemical_symbols[z] for z in sorted(net.type_map)]
    stats = TrainingStatistics(tuple(0.0 for _ in elements), 1.0, 1.0, 1.0)
    return build_model(SevenNetSpec(checkpoint=checkpoint, cutoff=float(net.cutoff)), elements, stats, dtype)


def load_pretrained(spec: str, dtype: str = "float32") -> MLIPModel:
    """"sevenn[:NAME|:FILE]" or a fastqmd MLIP model file, as a trainable `MLIPModel`."""
    kind, _, name = spec.partition(":")
    if kind == "sevenn":
        return sevenn_model(name or "7net-0", getattr(torch, dtype)).train()
    if kind == "chgnet":
        raise InputError("fine-tuning supports SevenNet and fastqmd MLIPs (bp, equivariant); CHGNet is not wired")
    return load_mlip(spec, dtype=dtype).train()


# ------------------------------------------------------------------ config


class PretrainingData(FrozenModel):
    """Labelled structures at the pretrained model's level of theory (`fastqmd.mlip.replay`)."""

    path: Path  # extxyz (energy, forces per frame) or a fastqmd dataset
    level_of_theory: str  # must equal the file's: extxyz `source` (MPtrj), dataset "engine method/xc basis"
    held_out: PositiveInt = 50  # structures kept out of replay and Fisher: the forgetting is measured on them
    max_structures: PositiveInt | None = None  # size of the replay/Fisher pool (default: all the rest)
    max_atoms: PositiveInt | None = None  # skip larger structures
    seed: int = 0


class EWCSettings(FrozenModel):
    strength: PositiveFloat  # λ of (λ/2) Σ F_i (θ_i − θ*_i)²  (sevenn's reEWC preset: 1e5)
    fisher_batch_size: PositiveInt = 1  # structures per Fisher mini-batch (1: per-structure empirical Fisher)
    fisher_structures: PositiveInt | None = None  # the first N of the pool (default: the whole pool)


class ReplaySettings(FrozenModel):
    ratio: PositiveFloat = 2.0  # memory structures per fine-tuning structure in every batch


class FinetuneConfig(TrainerSettings):
    """`fastqmd finetune` config: the trainer's settings (dataset = the fine-tuning set), the pretrained model,
    the method and its blocks."""

    pretrained: str  # sevenn:7net-0 | sevenn:FILE | a fastqmd MLIP model.pt
    method: Literal["vanilla", "lower_lr", "layer_freezing", "ewc", "replay", "reewc"]
    loss: MLIPLossWeights = MLIPLossWeights()
    lr_factor: float = Field(0.1, gt=0, lt=1)  # lower_lr: lr × lr_factor
    freeze: tuple[str, ...] = ()  # layer_freezing: sub-module names, e.g. net.sevennet.0_convolution
    pretraining: PretrainingData | None = None
    ewc: EWCSettings | None = None
    replay: ReplaySettings | None = None

    @property
    def uses_ewc(self) -> bool:
        return self.method in ("ewc", "reewc")

    @property
    def uses_replay(self) -> bool:
        return self.method in ("replay", "reewc")


# ------------------------------------------------------------------ EWC


def ewc_penalty(params: dict[str, Tensor], theta_star: dict[str, Tensor], fisher: dict[str, Tensor]) -> Tensor:
    """½ Σ_i F_i (θ_i − θ*_i)² over the parameters in `fisher` (λ is the loss term's weight), so that
    ∂(λ · penalty)/∂θ = λ F (θ − θ*)."""
    terms = [(fisher[n] * (p - theta_star[n]) ** 2).sum() for n, p in params.items() if n in fisher]
    return 0.5 * torch.stack(terms).sum()


def diagonal_fisher(lm: MLIPLoss, structures: Sequence[Structure], weights: Sequence[float],
                    batch_size: int = 1) -> dict[str, Tensor]:
    """F_i = (1/B) Σ_b (∂L_b/∂θ_i)² at the current θ (= θ*), L_b the batch-mean loss of mini-batch b of
    `structures` (in order, `batch_size` each) with loss weights (w_E, w_F, w_S); trainable parameters only."""
    params = {n: p for n, p in lm.model.named_parameters() if p.requires_grad}
    F = {n: torch.zeros_like(p) for n, p in params.items()}
    batches = [list(structures[k:k + batch_size]) for k in range(0, len(structures), batch_size)]
    for b in batches:
        loss, _ = lm(b, list(weights))
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (n, _), g in zip(params.items(), grads):
            if g is not None:
                F[n] += g.detach() ** 2
    return {n: f / len(batches) for n, f in F.items()}


class FinetuneLoss(torch.nn.Module):
    """forward(structures, w = [w_E, w_F, w_S, λ]) → (batch-mean L_FT + λ · ½ Σ F (θ − θ*)²,
    [Σ L_E, Σ L_F, Σ L_S, B · penalty, B]) — the DDP unit; no anchors: the penalty is 0."""

    def __init__(self, model: MLIPModel, device, theta_star: dict | None = None, fisher: dict | None = None):
        super().__init__()
        self.inner = MLIPLoss(model, device)
        self.theta_star, self.fisher = theta_star, fisher

    @property
    def model(self) -> MLIPModel:
        return self.inner.model

    def penalty(self) -> Tensor:
        if not self.fisher:
            return torch.zeros((), dtype=torch.float64)
        params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        if not any(n in self.fisher for n in params):  # every anchored parameter frozen in this phase
            return torch.zeros((), dtype=torch.float64)
        return ewc_penalty(params, self.theta_star, self.fisher)

    def forward(self, batch: list[Structure], wl: list[float]):
        loss, sums = self.inner(batch, wl[:3])
        pen = self.penalty().to(loss.device)
        total = loss + wl[3] * pen.to(loss.dtype) if wl[3] else loss
        B = sums[3:]
        return total, torch.cat([sums[:3], (pen.detach().to(sums.dtype) * B), B])


# ------------------------------------------------------------------ energy zero of the fine-tuning level


def fit_level_offsets(model: MLIPModel, structures: Sequence[Structure], chunk: int = 16) -> dict[int, float]:
    """μ_Z (eV) by Z: least squares of E_ref − E_model ≈ Σ_Z n_Z μ_Z over `structures` at the model's current
    weights (`fastqmd.mlip.universal.fit_energy_offset`; minimum norm for one composition)."""
    from fastqmd.mlip.universal import fit_energy_offset

    zs = sorted({int(z) for s in structures for z in s.numbers})
    resid, counts = [], []
    for k in range(0, len(structures), chunk):
        part = list(structures[k:k + chunk])
        b = collate(part, model.elements, model.cutoff, model.dtype, next(model.parameters()).device)
        with torch.no_grad():
            E, _, _ = energy_forces_stress(model, b, forces=False)
        resid += [s.energy - float(e) for s, e in zip(part, E)]
        counts += [[int((s.numbers == z).sum()) for z in zs] for s in part]
    mu, _ = fit_energy_offset(np.array(counts), np.array(resid))
    return {z: float(m) for z, m in zip(zs, mu)}


def with_offsets(model: MLIPModel, mu: dict[int, float]) -> MLIPModel:
    """The model with per-element offsets e_Z + μ_Z (saved with the model: it predicts the fine-tuning level)."""
    e = [float(x) + mu.get(int(z), 0.0) for x, z in
         zip(model.statistics.energy_offsets, (chemical_symbols.index(el) for el in model.elements))]
    model.statistics = dataclasses.replace(model.statistics, energy_offsets=tuple(e))
    model._offsets = torch.tensor(e, dtype=torch.float64)
    return model


# ------------------------------------------------------------------ the kind


class FinetuneKind(MLIPKind):
    """Fine-tuning as a `fastqmd.training.ModelKind`: the MLIP kind's data, loss and files, with the pretrained
    model as the build, an EWC term, frozen sub-modules, and replay memory mixed into each batch (`mix_batch`).
    State set while the trainer plans a run (samples → build → loss_module): the pretraining set, μ, θ*, F."""

    name = "mlip-finetune"
    terms = ("E", "F", "S", "EWC")

    def __init__(self):
        self.pretraining = None
        self.mu: dict[int, float] = {}
        self.memory: list[Structure] = []
        self.held_out: list[Structure] = []

    def check(self, cfg: FinetuneConfig) -> None:
        super().check(cfg)
        m = cfg.method
        need = {"layer_freezing": ["freeze"], "ewc": ["pretraining", "ewc"], "replay": ["pretraining", "replay"],
                "reewc": ["pretraining", "ewc", "replay"]}.get(m, [])
        missing = [k for k in need if not getattr(cfg, k)]
        if missing:
            raise InputError(f"method {m} needs {', '.join(missing)}")
        unused = [k for k in ("freeze", "ewc", "replay") if getattr(cfg, k) and k not in need]
        if unused:
            raise InputError(f"method {m} does not use {', '.join(unused)}")
        kind, _, name = cfg.pretrained.partition(":")
        known = PRETRAINING_LEVEL.get(name or "7net-0") if kind == "sevenn" else None
        if cfg.pretraining and known and cfg.pretraining.level_of_theory != known:
            raise InputError(f"pretraining.level_of_theory {cfg.pretraining.level_of_theory!r} is not the level "
                             f"{cfg.pretrained} was trained at ({known!r})")

    def samples(self, cfg: FinetuneConfig):
        from fastqmd.mlip.replay import load_pretraining

        out = super().samples(cfg)
        p = cfg.pretraining
        if p is not None:
            self.pretraining = load_pretraining(p.path, p.level_of_theory, p.held_out, p.max_structures,
                                                p.max_atoms, p.seed, forces=cfg.loss.forces > 0)
        return out

    def build(self, cfg: FinetuneConfig, train, device) -> MLIPModel:
        from fastqmd.mlip.replay import shift_energies

        model = load_pretrained(cfg.pretrained, cfg.dtype).to(device)
        structures = [train[i] for i in range(len(train))]
        pool = (self.pretraining.pool + self.pretraining.held_out) if self.pretraining else []
        for s in structures + pool:
            species_index(model.elements, s.numbers)
        names = dict(model.named_modules())
        bad = [n for n in cfg.freeze if n not in names or n == ""]
        if bad:
            top = [n for n in names if n.count(".") <= 2 and n][:12]
            raise InputError(f"freeze: {', '.join(bad)} not a sub-module of the model (e.g. {', '.join(top)})")
        self.mu = fit_level_offsets(model, structures)
        model = with_offsets(model, self.mu)
        if self.pretraining:
            self.memory = shift_energies(self.pretraining.pool, self.mu)
            self.held_out = shift_energies(self.pretraining.held_out, self.mu)
        return model

    def phases(self, cfg: FinetuneConfig) -> list[Phase]:
        w = cfg.loss
        lam = cfg.ewc.strength if cfg.uses_ewc else 0.0
        return [Phase("finetune", None, {"E": w.energy, "F": w.forces, "S": w.stress, "EWC": lam},
                      frozen=tuple(cfg.freeze))]

    def loss_module(self, cfg: FinetuneConfig, model: MLIPModel, train, device) -> FinetuneLoss:
        if not cfg.uses_ewc:
            return FinetuneLoss(model, device)
        lm = FinetuneLoss(model, device)
        pool = self.memory[:cfg.ewc.fisher_structures] if cfg.ewc.fisher_structures else self.memory
        w = cfg.loss
        fisher = diagonal_fisher(lm.inner, pool, [w.energy, w.forces, w.stress], cfg.ewc.fisher_batch_size)
        theta_star = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        return FinetuneLoss(model, device, theta_star, fisher)

    def validate(self, lm: FinetuneLoss, samples, weights: dict[str, float]) -> dict:
        return validate(lm.inner, samples, weights)

    def mix_batch(self, cfg: FinetuneConfig, step: int, batch: list) -> list:
        """The fine-tuning batch, plus round(ratio · B) memory structures (replay, reewc): a pure function of
        (seed, step) over the pool, epoch by epoch like the fine-tuning batches."""
        if not cfg.uses_replay:
            return batch
        from fastqmd.training.loop import global_batch

        n_mem = max(1, round(cfg.replay.ratio * len(batch)))
        return batch + [self.memory[i] for i in global_batch(step, len(self.memory), n_mem, cfg.seed + 1)]


# ------------------------------------------------------------------ the run and its forgetting report


def effective_config(cfg: FinetuneConfig) -> FinetuneConfig:
    """The trainer's config of a method: lower_lr trains at lr × lr_factor."""
    return cfg.model_copy(update={"lr": cfg.lr * cfg.lr_factor}) if cfg.method == "lower_lr" else cfg


def errors(model: MLIPModel, structures: Sequence[Structure], device="cpu") -> dict:
    """E MAE (meV/atom), F MAE (meV/Å) and RMSEs of `model` on `structures` (`fastqmd.mlip.kind.validate`)."""
    if not len(structures):
        return {}
    m = validate(MLIPLoss(model, device), list(structures), {"E": 1.0, "F": 1.0, "S": 0.0})
    return {k: v for k, v in m.items() if k.startswith(("E_", "F_"))}


def forgetting_report(kind: FinetuneKind, cfg: FinetuneConfig) -> dict:
    """Fine-tuning test split and held-out pretraining errors of the pretrained model (with μ) and of model.pt."""
    from fastqmd.mlip.kind import MLIPSamples

    out = Path(cfg.output)
    keys = json.loads((out / "split.json").read_text())["test"]
    test = MLIPSamples(cfg.dataset, keys)
    test = [test[i] for i in range(len(test))]
    device = "cuda" if cfg.device == "cuda" else "cpu"
    before = with_offsets(load_pretrained(cfg.pretrained, cfg.dtype).to(device), kind.mu).eval()
    after = load_mlip(out / "model.pt", device, cfg.dtype)
    return {"method": cfg.method, "pretrained": cfg.pretrained, "lr": cfg.lr,
            "mu_per_element_eV": {chemical_symbols[z]: v for z, v in kind.mu.items()},
            "n_ft_test": len(test), "n_pretraining_held_out": len(kind.held_out),
            "ft_test": {"before": errors(before, test, device), "after": errors(after, test, device)},
            "pretraining_held_out": {"before": errors(before, kind.held_out, device),
                                     "after": errors(after, kind.held_out, device)}}


def finetune(cfg: FinetuneConfig, overwrite: bool = False, stop_after: int | None = None) -> dict:
    """Fine-tune (or resume) the run of `cfg` on `fastqmd.training.loop.fit`; when it ends, the forgetting
    report goes to output/finetune.json and summary["finetune"]."""
    from fastqmd.training.loop import _write_json, fit

    kind, run_cfg = FinetuneKind(), effective_config(cfg)
    summary = fit(kind, run_cfg, overwrite=overwrite, stop_after=stop_after)
    if summary["steps"] >= run_cfg.max_steps or summary["stopped_early"]:
        report = forgetting_report(kind, run_cfg)
        _write_json(Path(cfg.output) / "finetune.json", report, indent=1)
        summary["finetune"] = report
    return summary


def load_finetune_config(path: str | Path) -> FinetuneConfig:
    from fastqmd.config import load_config

    return load_config(FinetuneConfig, path)


__all__ = ["METHODS", "EWCSettings", "FinetuneConfig", "FinetuneKind", "FinetuneLoss", "PretrainingData",
           "ReplaySettings", "SevenNetEnergy", "SevenNetSpec", "diagonal_fisher", "ewc_penalty", "finetune",
           "fit_level_offsets", "load_pretrained", "sevenn_model"]
