"""Training an NNH energy model on H, forces, energies (and S): `fastqmd train CONFIG.yaml`.

In:  a fastqmd dataset (H(k), S(k) eV at the stored k-points, E eV, F eV/Å) and a `TrainConfig`.
Out: in `output/`: model.pt (best-validation EMA weights, `fastqmd.nnh.checkpoint`), checkpoint.pt (resumable),
     metrics.jsonl (one line per step, one per validation), summary.json (split sizes, test metrics),
     split.json (the sample keys of train/val/test).

Loss per sample s (batch mean; α, β, γ, δ from `LossWeights`):

    L = α·mean_{k,μν} (|H_NN(k) − H_DFT(k)|_μν / σ_c(μν))²  +  β·mean_{i,a} (F_NN − F_DFT)²_ia
      + γ·((E_NN − E_DFT)/N)²  +  δ·mean_{k,μν} |S_NN(k) − S_DFT(k)|²   (δ: learned S only)

σ_c is the training-set std of the H elements of orbital-pair class c (`fastqmd.nnh.targets`); units: L_H is
dimensionless, L_F in (eV/Å)², L_E in (eV/atom)². F_NN = −∂E/∂R is differentiated w.r.t. θ (double backward
through the exact-derivative Mermin free energy).
Optimisation: AdamW; learning rate = warmup (linear) then cosine decay, or reduce-on-plateau on the validation
loss; EMA of the weights (used for validation, the model file and evaluation); early stopping on the
validation loss. Determinism and resume: the split and each epoch's sample order are pure functions of
(seed, epoch), the global batch is cut from that order, weights are initialised from `seed`; checkpoints
(every `checkpoint_every` steps, atomic) hold model, optimiser, schedule, EMA, early-stopping and RNG state and
the metrics-log length, so a run killed with kill -9 and restarted reproduces the uninterrupted run step for
step (bitwise on CPU with one thread).
Data parallel: under `torchrun --nproc_per_node P` every rank takes batch[rank::P] of the same global batch and
DistributedDataParallel (gloo on CPU, nccl on CUDA) averages the gradients: the update equals the 1-process
update with the same global batch up to floating-point summation order.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, PositiveFloat, PositiveInt

from fastqmd.config import FrozenModel
from fastqmd.electronic.tblite_overlap import tblite_table_config
from fastqmd.errors import InputError
from fastqmd.nnh.blocks import to_kspace
from fastqmd.nnh.checkpoint import CHECKPOINT_FORMAT, atomic_save, load, save_model
from fastqmd.nnh.energy import EnergyModel, EnergyModelConfig, energy_forces
from fastqmd.nnh.model import NNHConfig
from fastqmd.nnh.overlap import OverlapConfig
from fastqmd.nnh.repulsion import RepulsionConfig
from fastqmd.nnh.targets import (
    Target,
    irrep_statistics,
    load_targets,
    orbital_pair_classes,
    orbital_pair_scales,
    reference_energies,
    temperature_K,
    valence_electrons,
)


class ModelSpec(FrozenModel):
    """Network hyperparameters (the basis comes from the dataset)."""

    cutoff: PositiveFloat = 5.0
    hidden_irreps: str = "32x0e+16x1o+16x1e+8x2e+8x2o+4x3o+4x3e+4x4e"
    n_layers: PositiveInt = 2
    lmax: int | None = None
    n_radial: PositiveInt = 8
    radial_hidden: PositiveInt = 32
    n_scalars_embed: PositiveInt = 16
    avg_num_neighbors: PositiveFloat | None = None  # default: mean neighbour count of the training set
    overlap: Literal["auto", "exact", "learned", "table"] = "auto"  # auto: exact (PySCF), table (tblite datasets)
    overlap_cutoff: PositiveFloat | None = None  # default: cutoff
    repulsion_cutoff: PositiveFloat = 4.0
    repulsion_many_body: bool = True
    energy_mode: Literal["mermin", "band"] = "mermin"


class LossWeights(FrozenModel):
    alpha_H: float = Field(1.0, ge=0)
    beta_F: float = Field(1.0, ge=0)
    gamma_E: float = Field(0.1, ge=0)
    delta_S: float = Field(10.0, ge=0)
    h_only_steps: int = Field(0, ge=0)  # first phase: L_H (and L_S) only — no eigensolve, cheap steps
    rep_only_steps: int = Field(0, ge=0)  # then the H network frozen: forces/energies train E_rep (and S head)
    fit_repulsion: bool = True  # least-squares fit of E_rep's pair terms when the H-only phase ends
    force_ramp_steps: int = Field(0, ge=0)  # then β grows linearly from 0 over these steps (H first, then forces)


class Split(FrozenModel):
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.1, ge=0, lt=1)
    seed: int = 0


class Schedule(FrozenModel):
    kind: Literal["cosine", "plateau", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.01, ge=0, le=1)  # cosine floor
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    plateau_patience: PositiveInt = 3  # validations without improvement


class TrainConfig(FrozenModel):
    dataset: Path
    output: Path
    model: ModelSpec = ModelSpec()
    loss: LossWeights = LossWeights()
    split: Split = Split()
    schedule: Schedule = Schedule()
    lr: PositiveFloat = 2e-3
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: PositiveFloat | None = 100.0
    ema_decay: float = Field(0.99, ge=0, lt=1)  # 0: no EMA
    batch_size: PositiveInt = 4  # global batch (split over torchrun ranks)
    max_steps: PositiveInt = 1000
    eval_every: PositiveInt = 50
    early_stopping_patience: PositiveInt | None = 20  # validations without improvement
    checkpoint_every: PositiveInt = 50
    # learned S: full-batch Adam on L_S alone (≤ 32 samples) first, until L_S < s_pretrain_tol or the step cap
    s_pretrain_steps: int = Field(2000, ge=0)
    s_pretrain_tol: PositiveFloat = 1e-7
    s_pretrain_lr: PositiveFloat = 3e-3
    dtype: Literal["float32", "float64"] = "float32"
    device: Literal["cpu", "cuda"] = "cpu"
    seed: int = 0
    progress: bool = True


# ------------------------------------------------------------------ setup


def split_indices(n: int, split: Split) -> tuple[list[int], list[int], list[int]]:
    """Seeded (train, val, test) index lists; val/test get ⌈fraction·n⌉ when the fraction is > 0."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split.seed)).tolist()
    n_test = math.ceil(split.test_fraction * n) if split.test_fraction > 0 else 0
    n_val = math.ceil(split.val_fraction * n) if split.val_fraction > 0 else 0
    if n - n_test - n_val < 1:
        raise InputError(f"dataset has {n} samples: nothing left to train on after the val/test split")
    return sorted(perm[n_test + n_val:]), sorted(perm[n_test:n_test + n_val]), sorted(perm[:n_test])


def epoch_order(n_train: int, seed: int, epoch: int) -> list[int]:
    """The sample order of one epoch: a pure function of (seed, epoch)."""
    return torch.randperm(n_train, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


def global_batch(step: int, n_train: int, batch_size: int, seed: int) -> list[int]:
    """Training-set positions of the global batch of `step` (epochs of ⌊n/B⌋ full batches)."""
    per_epoch = max(1, n_train // batch_size)
    order = epoch_order(n_train, seed, step // per_epoch)
    b = step % per_epoch
    return [order[(b * batch_size + k) % n_train] for k in range(batch_size)]


def mean_neighbors(targets: list[Target], cutoff: float, species: list[str], n_orb: dict[str, int]) -> float:
    from fastqmd.nnh.graph import build_graph

    counts = [build_graph(list(t.frame.symbols), t.positions.numpy(), t.cell.numpy(), t.frame.pbc, cutoff,
                          species, n_orb).edge_i.numel() / len(t.frame.symbols) for t in targets]
    return max(1.0, float(np.mean(counts)))


def build_energy_config(cfg: TrainConfig, engine: str, settings: dict, basis: dict[str, tuple[int, ...]],
                        train: list[Target], recorded_valence: dict[str, int] | None = None) -> EnergyModelConfig:
    """The EnergyModelConfig implied by the training config and the training data (constants fitted here)."""
    m = cfg.model
    species = sorted(basis)
    overlap = m.overlap if m.overlap != "auto" else ("exact" if engine.startswith("pyscf") else "table")
    if overlap == "exact" and not engine.startswith("pyscf"):
        raise InputError(f"overlap 'exact' needs a PySCF dataset (this one is {engine!r})")
    if overlap == "table" and engine != "tblite":
        raise InputError(f"overlap 'table' needs a tblite dataset (this one is {engine!r})")
    n_orb = {s: sum(2 * l + 1 for l in basis[s]) for s in species}
    avg = m.avg_num_neighbors or mean_neighbors(train, m.cutoff, species, n_orb)
    h = NNHConfig(basis=basis, cutoff=m.cutoff, hidden_irreps=m.hidden_irreps, n_layers=m.n_layers, lmax=m.lmax,
                  n_radial=m.n_radial, radial_hidden=m.radial_hidden, n_scalars_embed=m.n_scalars_embed,
                  avg_num_neighbors=avg, dtype=cfg.dtype)
    s = OverlapConfig(basis=basis, cutoff=m.overlap_cutoff or m.cutoff, n_radial=m.n_radial,
                      radial_hidden=m.radial_hidden, dtype=cfg.dtype) if overlap == "learned" else None
    table = tblite_table_config(settings["method"], species) if overlap == "table" else None
    if table is not None and table.basis != {k: tuple(v) for k, v in basis.items()}:
        raise InputError(f"dataset basis {basis} differs from tblite {settings['method']}'s {table.basis}")
    rep = RepulsionConfig(species=tuple(species), cutoff=m.repulsion_cutoff, n_radial=m.n_radial,
                          many_body=m.repulsion_many_body, dtype=cfg.dtype)
    T = temperature_K(train)
    val = valence_electrons(train, species, recorded_valence)
    eref = reference_energies(train, species, val, T, mode=m.energy_mode)
    return EnergyModelConfig(h=h, overlap=overlap, s=s, table=table, repulsion=rep, energy_mode=m.energy_mode,
                             electronic_temperature_K=T, valence_electrons=val, reference_energies=eref,
                             pyscf_basis=settings.get("basis") if overlap == "exact" else None)


def fit_repulsion(model: EnergyModel, targets: list[Target], device, max_samples: int = 64,
                  energy_weight: float = 1.0, ridge: float = 1e-8) -> dict[str, float]:
    """Least-squares fit of the linear part of E_rep (pair potentials + per-species constants) to what the current
    H leaves unexplained — DFTB's repulsive fit:

        θ = argmin Σ_s [ Σ_ia (F_res,ia + ∂(Φ·θ)/∂R_ia)² + w_E (E_res − Φ·θ)² ] + ridge·|θ|²,
        F_res = F_ref + ∂Ω/∂R,   E_res = E_ref − Ω − Σ_i e_{Z_i}

    with Ω the Mermin free energy of the model's H (frozen) and Φ(R) `Repulsion.pair_features`. Called when
    training leaves the H-only phase: Adam would need thousands of steps to grow E_rep to the eV/Å scale of the
    residual forces (measured on water: F MAE still 7.3 eV/Å after 100 Adam steps on E_rep alone).
    Returns RMS residual forces before and after the fit (eV/Å)."""
    rep = model.rep
    rows, rhs, is_force = [], [], []
    for t in targets[:max_samples]:
        if t.forces is None:
            continue
        g = model.graph(t.frame.symbols, t.positions.numpy(), t.cell.numpy(), t.frame.pbc).to(device)
        pos = t.positions.to(device).clone().requires_grad_(True)
        cell = t.cell.to(device)
        parts = model(t.frame, pos, cell, g)
        f_omega = -torch.autograd.grad(parts.omega, pos)[0].detach()
        F_res = (t.forces.to(device) - f_omega).to(torch.float64)
        E_res = t.energy - float(parts.omega.detach()) - model.reference_energy(t.frame.symbols)
        p2 = t.positions.to(device, rep.pair.dtype).clone().requires_grad_(True)
        phi = rep.pair_features(p2, cell.to(rep.pair.dtype), g)
        J = torch.stack([torch.autograd.grad(phi[k], p2, retain_graph=True, allow_unused=True)[0]
                         if phi[k].requires_grad else torch.zeros_like(p2) for k in range(len(phi))])  # [P, N, 3]
        J = torch.nan_to_num(J.to(torch.float64))
        rows.append(J.reshape(len(phi), -1).T)  # d(Φθ)/dR = −F_rep → rows: J θ = −F_res
        rhs.append(-F_res.reshape(-1))
        is_force.append(torch.ones(F_res.numel(), dtype=torch.bool))
        w = energy_weight ** 0.5
        rows.append(w * phi.detach().to(torch.float64)[None])
        rhs.append(torch.tensor([w * E_res], dtype=torch.float64, device=device))
        is_force.append(torch.zeros(1, dtype=torch.bool))
    if not rows:
        return {}
    A, b, f = torch.cat(rows), torch.cat(rhs), torch.cat(is_force).to(device)
    AtA = A.T @ A
    AtA = AtA + ridge * torch.trace(AtA) / len(AtA) * torch.eye(len(AtA), dtype=A.dtype, device=A.device)
    theta = torch.linalg.solve(AtA, A.T @ b)
    rep.set_linear_parameters(theta.to(rep.pair.dtype))
    r = A @ theta - b
    return {"F_rms_before_eV_A": float(b[f].pow(2).mean().sqrt()), "F_rms_after_eV_A": float(r[f].pow(2).mean().sqrt()),
            "E_rms_before_eV": float(b[~f].pow(2).mean().sqrt() / energy_weight**0.5),
            "E_rms_after_eV": float(r[~f].pow(2).mean().sqrt() / energy_weight**0.5)}


def pretrain_overlap(model: EnergyModel, targets: list[Target], max_steps: int, device, lr: float = 3e-3,
                     tol: float = 1e-6, check_every: int = 25) -> tuple[float, int, bool]:
    """Fit the S head alone to min mean |S_θ − S_DFT|² (deterministic full-batch Adam) so that S(k) is positive
    definite and close to the reference before the energy is ever evaluated with it; stops when L_S < tol and
    λ_min(S_θ) ≥ ½ λ_min(S_DFT) on every sample (checked every `check_every` steps), else after max_steps.
    Near-singular reference overlaps (e.g. GFN1 Cu: λ_min(S) ≈ 4e-3) need L_S ≲ 1e-7.
    Returns (L_S, steps, whether the metric criterion holds)."""

    opt = torch.optim.Adam(model.s.parameters(), lr=lr)
    data = []
    for t in targets:
        g = model.graph(t.frame.symbols, t.positions.numpy(), t.cell.numpy(), t.frame.pbc).to(device)
        data.append((g, t.positions.to(device, model.dtype), t.cell.to(device, model.dtype),
                     torch.as_tensor(t.frame.kpoints, dtype=model.dtype, device=device), t.S.to(device)))
    L, step = torch.zeros(()), 0
    for step in range(1, max_steps + 1):
        for grp in opt.param_groups:  # cosine decay to lr/100 over the step cap
            grp["lr"] = lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (step - 1) / max(1, max_steps))))
        L = sum(((to_kspace(model.s(p, c, g), g, k) - S).abs() ** 2).mean() for g, p, c, k, S in data) / len(data)
        opt.zero_grad()
        L.backward()
        opt.step()
        if step % check_every == 0 and float(L.detach()) < tol and _keeps_metric(model, data):
            return float(L.detach()), step, True
    return float(L.detach()), step, _keeps_metric(model, data)


@torch.no_grad()
def _keeps_metric(model: EnergyModel, data) -> bool:
    """λ_min(S_θ(k)) ≥ ½ λ_min(S_DFT(k)) for every pretraining sample and k-point."""

    for g, p, c, k, S in data:
        Sm = to_kspace(model.s(p, c, g), g, k)
        if bool((torch.linalg.eigvalsh(Sm).min(-1).values < 0.5 * torch.linalg.eigvalsh(S).min(-1).values).any()):
            return False
    return True


# ------------------------------------------------------------------ loss


def loss_weights(w: LossWeights, step: int) -> list[float]:
    """[α(step), β(step), γ(step), δ]. Phases: "h" (step < h_only_steps): β = γ = 0; "rep" (the next
    rep_only_steps): α = 0 and the H network frozen (`training_phase`); then all terms. After the "h" phase
    β ramps as β·min(1, (s + 1)/force_ramp_steps), s = step − h_only_steps."""
    phase = training_phase(w, step)
    if phase == "h":
        return [w.alpha_H, 0.0, 0.0, w.delta_S]
    s = step - w.h_only_steps
    ramp = min(1.0, (s + 1) / w.force_ramp_steps) if w.force_ramp_steps else 1.0
    return [0.0 if phase == "rep" else w.alpha_H, w.beta_F * ramp, w.gamma_E, w.delta_S]


def training_phase(w: LossWeights, step: int) -> str:
    """"h" (H alone: the network learns the Hamiltonian before any force is seen), "rep" (H frozen: forces and
    energies fit E_rep, so that their large early errors cannot distort H), or "joint"."""
    if step < w.h_only_steps:
        return "h"
    return "rep" if step < w.h_only_steps + w.rep_only_steps else "joint"


class LossModule(torch.nn.Module):
    """forward(list of targets) → (batch-mean loss, per-term sums [L_H, L_F, L_E, L_S, n]) — the DDP unit."""

    def __init__(self, model: EnergyModel, weights: LossWeights, scales: torch.Tensor, device: torch.device):
        super().__init__()
        self.model = model
        self.w = weights
        self.register_buffer("scales", scales.to(device))
        self.device = device

    def sample_terms(self, t: Target, create_graph: bool, w: list[float], return_outputs: bool = False):
        """[L_H, L_F, L_E, L_S] of one sample; terms whose weight in w = [α, β, γ, δ] is 0 may be left 0.
        return_outputs (needs β > 0 and forces): also (EnergyParts, F)."""
        dev = self.device
        g = self.model.graph(t.frame.symbols, t.positions.numpy(), t.cell.numpy(), t.frame.pbc).to(dev)
        pos = t.positions.to(dev).clone().requires_grad_(True)
        need_f = w[1] > 0 and t.forces is not None
        H_ref = t.H.to(dev)
        if not need_f and w[2] == 0:  # H-only phase: no overlap, eigensolve or E_rep needed
            m = self.model
            kpts = torch.as_tensor(t.frame.kpoints, dtype=m.dtype, device=dev)
            H = to_kspace(m.h(pos.to(m.dtype), t.cell.to(dev, m.dtype), g), g, kpts)
            LH = ((H.to(H_ref.dtype) - H_ref).abs() / self.scales[t.hclass.to(dev)]).pow(2).mean()
            zero = LH.new_zeros(())
            return torch.stack([LH, zero, zero, self.overlap_loss(t, g, pos) if m.config.overlap == "learned"
                                else zero])
        if need_f:
            parts, F, _ = energy_forces(self.model, t.frame, pos, t.cell.to(dev), g, create_graph=create_graph)
            LF = ((F - t.forces.to(dev)) ** 2).mean()
        else:
            parts = self.model(t.frame, pos, t.cell.to(dev), g)
            LF = parts.energy.new_zeros(())
        LH = ((parts.H - H_ref).abs() / self.scales[t.hclass.to(dev)]).pow(2).mean()
        LE = ((parts.energy - t.energy) / len(t.frame.symbols)) ** 2
        LS = self.overlap_loss(t, g, pos) if self.model.config.overlap == "learned" else LH * 0
        terms = torch.stack([LH, LF, LE, LS])
        return (terms, parts, F if need_f else None) if return_outputs else terms

    def overlap_loss(self, t: Target, g, pos: torch.Tensor) -> torch.Tensor:
        """L_S = mean |S_θ(k) − S_DFT(k)|² — the only loss that trains the S head (s_grad_from_energy False)."""
        m = self.model
        kpts = torch.as_tensor(t.frame.kpoints, dtype=m.dtype, device=self.device)
        S = to_kspace(m.s(pos.detach().to(m.dtype), t.cell.to(self.device, m.dtype), g), g, kpts)
        return ((S - t.S.to(self.device)).abs() ** 2).mean().to(torch.float64)

    def forward(self, batch: list[Target], step: int = 0, create_graph: bool = True):
        wl = loss_weights(self.w, step)
        terms = torch.stack([self.sample_terms(t, create_graph, wl) for t in batch])  # [B, 4]
        w = torch.tensor(wl, dtype=terms.dtype, device=terms.device)
        loss = (terms @ w).mean()
        return loss, torch.cat([terms.detach().sum(0), terms.new_tensor([len(batch)])])


# ------------------------------------------------------------------ schedule, EMA


def cosine_lr(step: int, cfg: TrainConfig) -> float:
    """lr·min(1, (step+1)/warmup) · [r + (1 − r)(1 + cos(π·p))/2], p = progress after warmup, r = min_lr_ratio."""
    s = cfg.schedule
    if s.warmup_steps and step < s.warmup_steps:
        return cfg.lr * (step + 1) / s.warmup_steps
    p = (step - s.warmup_steps) / max(1, cfg.max_steps - s.warmup_steps)
    return cfg.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def learning_rate(step: int, cfg: TrainConfig, plateau_scale: float) -> float:
    if cfg.schedule.kind == "cosine":
        return cosine_lr(step, cfg)
    warm = min(1.0, (step + 1) / cfg.schedule.warmup_steps) if cfg.schedule.warmup_steps else 1.0
    return cfg.lr * warm * (plateau_scale if cfg.schedule.kind == "plateau" else 1.0)


@torch.no_grad()
def ema_update(ema: dict[str, torch.Tensor], model: torch.nn.Module, decay: float, step: int) -> None:
    """θ_ema ← d θ_ema + (1 − d) θ with d = min(decay, (1 + step)/(10 + step)) (float tensors only)."""
    d = min(decay, (1 + step) / (10 + step))
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            ema[k].mul_(d).add_(v, alpha=1 - d)


class swap_weights:
    """Context: load `state` into `model`, restore the original weights afterwards."""

    def __init__(self, model: torch.nn.Module, state: dict | None):
        self.model, self.state = model, state

    def __enter__(self):
        if self.state:
            self.saved = {k: v.clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(self.state)

    def __exit__(self, *exc):
        if self.state:
            self.model.load_state_dict(self.saved)


# ------------------------------------------------------------------ validation


def validate(lm: LossModule, targets: list[Target], weights: LossWeights) -> dict[str, float]:
    """Mean loss terms, weighted loss (final weights: no phase or ramp, so the best model is comparable across
    phases) and H/F/E MAEs over `targets` (no parameter graph)."""
    if not targets:
        return {}
    sums = torch.zeros(5, dtype=torch.float64)
    mae_h, mae_f, mae_e = [], [], []
    full = [weights.alpha_H, 1.0, 1.0, weights.delta_S]  # every term computed
    for t in targets:
        with torch.enable_grad():
            terms, parts, F = lm.sample_terms(t, create_graph=False, w=full, return_outputs=True)
        terms = terms.detach().cpu().to(torch.float64)
        sums[:4] += terms
        sums[4] += 1
        mae_h.append(float((parts.H.detach().cpu() - t.H).abs().mean()))
        if t.forces is not None:
            mae_f.append(float((F.detach().cpu() - t.forces).abs().mean()))
        mae_e.append(abs(float(parts.energy.detach()) - t.energy) / len(t.frame.symbols))
    m = (sums[:4] / sums[4]).tolist()
    w = [weights.alpha_H, weights.beta_F, weights.gamma_E, weights.delta_S]
    return {"loss": sum(a * b for a, b in zip(m, w)), "L_H": m[0], "L_F": m[1], "L_E": m[2], "L_S": m[3],
            "H_mae_eV": float(np.mean(mae_h)), "F_mae_eV_A": float(np.mean(mae_f)) if mae_f else float("nan"),
            "E_mae_eV_atom": float(np.mean(mae_e))}


# ------------------------------------------------------------------ the run


def _dist(device: str) -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun (WORLD_SIZE > 1): gloo on CPU, nccl
    on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device == "cuda" else "gloo")
    if world > 1:
        return torch.distributed.get_rank(), world
    return 0, 1


def config_json(cfg: TrainConfig) -> str:
    d = json.loads(cfg.model_dump_json())
    d.pop("progress")
    d.pop("max_steps")  # a run may be extended
    return json.dumps(d, sort_keys=True)


FUTURE_ONLY_LOSS_FIELDS = ("h_only_steps", "rep_only_steps", "force_ramp_steps")


def resumable(saved_json: str, cfg: TrainConfig, step: int) -> bool:
    """May the checkpoint of a run with config `saved_json` (`config_json`) continue under `cfg` at `step`?
    Yes if the configs are equal up to max_steps, checkpoint_every and the phase lengths
    (`FUTURE_ONLY_LOSS_FIELDS`), provided every completed step s < step had the same phase and loss weights
    under both: then the resumed run is the uninterrupted run of `cfg` (a phase may be shortened or lengthened
    before it ends, e.g. to fit a time budget)."""
    old, new = json.loads(saved_json), json.loads(config_json(cfg))
    w_old = LossWeights(**old["loss"])
    for d in (old, new):
        d.pop("checkpoint_every", None)
        for k in FUTURE_ONLY_LOSS_FIELDS:
            d["loss"].pop(k, None)
    if old != new:
        return False
    return all(training_phase(w_old, s) == training_phase(cfg.loss, s)
               and loss_weights(w_old, s) == loss_weights(cfg.loss, s) for s in range(step))


def train(cfg: TrainConfig, overwrite: bool = False, stop_after: int | None = None) -> dict:
    """Train (or resume) the run of `cfg`; returns the summary dict (also written to output/summary.json).
    `stop_after`: return after this many total steps without finishing (tests, benchmarks)."""
    from fastqmd.data.store import Dataset

    if cfg.model.energy_mode == "band" and cfg.loss.beta_F > 0:
        raise InputError("energy_mode 'band' (E = Σ f ε) has no second derivative, so it cannot be trained with a "
                         "force loss; use energy_mode 'mermin' or loss.beta_F: 0")
    rank, world = _dist(cfg.device)
    if cfg.batch_size % world:
        raise InputError(f"batch_size {cfg.batch_size} must be a multiple of the number of processes {world}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but CUDA is not available")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cfg.device == "cuda" else "cpu")
    out = Path(cfg.output)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    ds = Dataset(cfg.dataset)
    engine, settings, basis = ds.header.engine, ds.header.settings, ds.basis.shells
    recorded_valence = ds.valence_electrons
    ds.close()
    targets = load_targets(cfg.dataset)
    i_train, i_val, i_test = split_indices(len(targets), cfg.split)
    train_t = [targets[i] for i in i_train]
    val_t, test_t = [targets[i] for i in i_val], [targets[i] for i in i_test]
    if rank == 0:  # which samples are which: `fastqmd evaluate --subset test` reads it
        from fastqmd.atomic import replace_durably

        tmp = out / "split.json.tmp"
        tmp.write_text(json.dumps({"train": [t.key for t in train_t], "val": [t.key for t in val_t],
                                   "test": [t.key for t in test_t]}))
        replace_durably(tmp, out / "split.json")

    ecfg = build_energy_config(cfg, engine, settings, basis, train_t, recorded_valence)
    torch.manual_seed(cfg.seed)
    try:
        model = EnergyModel(ecfg).to(device)
    except ValueError as exc:  # e.g. hidden_irreps that cannot build the dataset's orbital blocks
        raise InputError(f"model: {exc}") from None
    if ecfg.overlap == "learned":
        for s in model.species:
            t = next(t for t in train_t if s in t.frame.symbols)
            a = t.frame.symbols.index(s)
            off = np.cumsum([0] + [model.h.layout.n_orbitals[x] for x in t.frame.symbols])
            model.s.set_onsite_from_block(s, t.S[0].real[off[a]:off[a + 1], off[a]:off[a + 1]].numpy())
    model.h.set_output_statistics(*irrep_statistics(train_t, model.h))  # raw outputs O(1); resume reloads
    resuming = (out / "checkpoint.pt").exists() and not overwrite
    if ecfg.overlap == "learned" and not resuming:  # (a resumed run loads the trained S head)
        ls, n, ok = pretrain_overlap(model, train_t[:32], cfg.s_pretrain_steps, device, cfg.s_pretrain_lr,
                                     cfg.s_pretrain_tol)
        if not ok and rank == 0:
            import warnings

            warnings.warn(f"S pretraining ended after {n} steps with L_S = {ls:.2e} and a learned S that may not be "
                          "positive definite: raise s_pretrain_steps, model.radial_hidden or model.overlap_cutoff",
                          stacklevel=1)
    n_cls = orbital_pair_classes(targets, model.species, model.h.layout.n_orbitals)
    scales = orbital_pair_scales(train_t, n_cls)
    model.s_grad_from_energy = False
    lm = LossModule(model, cfg.loss, scales, device)
    net = torch.nn.parallel.DistributedDataParallel(lm, find_unused_parameters=True) if world > 1 else lm
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()} if cfg.ema_decay > 0 else None

    st = {"step": 0, "plateau_scale": 1.0, "plateau_best": float("inf"), "plateau_bad": 0, "best_val": float("inf"),
          "bad_evals": 0, "stopped_early": False, "log_bytes": 0, "rep_fitted": False, "train_wall_s": 0.0}
    ckpt, log_path = out / "checkpoint.pt", out / "metrics.jsonl"
    cj, ej = config_json(cfg), ecfg.model_dump_json()
    if resuming:
        c = load(ckpt)
        if c.get("train_config") is None or not resumable(c["train_config"], cfg, c["progress"]["step"]):
            raise InputError(f"{ckpt} belongs to a different training config (only max_steps, checkpoint_every "
                             "and phase lengths not yet reached may change); use --overwrite to start afresh")
        model.load_state_dict(c["state"])
        opt.load_state_dict(c["optimizer"])
        ema = c.get("ema") or ema
        st.update(c["progress"])
        torch.set_rng_state(c["rng"])
        resumed = st["step"]
    else:
        resumed = None
        if rank == 0 and log_path.exists():
            log_path.unlink()
    if rank == 0:
        with open(log_path, "a+b") as fh:
            fh.truncate(st["log_bytes"])

    def checkpoint():
        if rank != 0:
            return
        st["log_bytes"] = log_path.stat().st_size if log_path.exists() else 0
        st["train_wall_s"] = wall_before + time.perf_counter() - t0  # all runs, up to this checkpoint
        atomic_save({"format": CHECKPOINT_FORMAT, "version": 1, "config": ej, "train_config": cj,
                     "state": model.state_dict(), "optimizer": opt.state_dict(), "ema": ema or {},
                     "progress": dict(st), "rng": torch.get_rng_state()}, ckpt)

    def log(rec: dict):
        if rank == 0:
            with open(log_path, "a") as fh:
                fh.write(json.dumps(rec) + "\n")

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(TextColumn("train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TextColumn("{task.fields[info]}"), TimeRemainingColumn(), disable=not (cfg.progress and rank == 0))
    task = prog.add_task("train", total=cfg.max_steps, completed=st["step"], info="")
    end = min(cfg.max_steps, stop_after) if stop_after else cfg.max_steps
    t0, wall_before = time.perf_counter(), float(st["train_wall_s"])
    with prog:
        while st["step"] < end and not st["stopped_early"]:
            step = st["step"]
            lr = learning_rate(step, cfg, st["plateau_scale"])
            for g in opt.param_groups:
                g["lr"] = lr
            batch = global_batch(step, len(train_t), cfg.batch_size, cfg.seed)[rank::world]
            if (cfg.loss.fit_repulsion and cfg.loss.h_only_steps and step == cfg.loss.h_only_steps
                    and not st.get("rep_fitted")):
                info = fit_repulsion(model, train_t, device)
                st["rep_fitted"] = True
                if ema is not None:
                    for k, v in model.state_dict().items():
                        if k.startswith("rep."):
                            ema[k].copy_(v)
                log({"step": step, "repulsion_fit": info})
            opt.zero_grad(set_to_none=True)
            frozen = training_phase(cfg.loss, step) == "rep"
            for p in model.h.parameters():
                p.requires_grad_(not frozen)
            loss, sums = net([train_t[i] for i in batch], step)
            loss.backward()
            for p in model.h.parameters():
                p.requires_grad_(True)
            if world > 1:
                torch.distributed.all_reduce(sums)
            gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or float("inf")))
            opt.step()
            if ema is not None:
                ema_update(ema, model, cfg.ema_decay, step)
            m = (sums[:4] / sums[4]).tolist()
            w = loss_weights(cfg.loss, step)
            rec = {"step": step + 1, "lr": lr, "loss": sum(a * b for a, b in zip(m, w)), "L_H": m[0], "L_F": m[1],
                   "L_E": m[2], "L_S": m[3], "grad_norm": gnorm}
            log(rec)
            st["step"] = step + 1
            if val_t and (st["step"] % cfg.eval_every == 0 or st["step"] == cfg.max_steps):
                _validate_step(lm, val_t, cfg, ema, st, out, model, log, rank)
            if st["step"] % cfg.checkpoint_every == 0 or st["step"] == end:
                checkpoint()
            prog.update(task, completed=st["step"], info=f"loss {rec['loss']:.3e}  lr {lr:.2e}")
    wall = time.perf_counter() - t0
    if world > 1:
        torch.distributed.barrier()
    summary = {"steps": st["step"], "resumed_from": resumed, "stopped_early": st["stopped_early"],
               "wall_time_s": wall, "wall_time_s_all_runs": wall_before + wall, "world_size": world,
               "split": {"train": len(train_t), "val": len(val_t), "test": len(test_t)}}
    if rank == 0 and (st["step"] >= cfg.max_steps or st["stopped_early"]):
        if not (out / "model.pt").exists() or not val_t:
            save_model(model, out / "model.pt", ema)
        with swap_weights(model, ema):
            summary["test"] = validate(lm, test_t, cfg.loss) if test_t else {}
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _validate_step(lm, val_t, cfg, ema, st, out, model, log, rank) -> None:
    """Validation with EMA weights; best model file, plateau schedule and early stopping (these only in the
    final training phase: earlier phases do not optimise the full loss)."""
    with swap_weights(model, ema):
        v = validate(lm, val_t, cfg.loss)
        if training_phase(cfg.loss, st["step"] - 1) != training_phase(cfg.loss, cfg.max_steps - 1):
            log({"step": st["step"], "val": v})
            return
        if v["loss"] < st["best_val"]:
            st["best_val"], st["bad_evals"] = v["loss"], 0
            if rank == 0:
                save_model(model, out / "model.pt")
        else:
            st["bad_evals"] += 1
    log({"step": st["step"], "val": v})
    if v["loss"] < st["plateau_best"]:
        st["plateau_best"], st["plateau_bad"] = v["loss"], 0
    else:
        st["plateau_bad"] += 1
        if st["plateau_bad"] >= cfg.schedule.plateau_patience:
            st["plateau_scale"] *= cfg.schedule.plateau_factor
            st["plateau_bad"] = 0
    if cfg.early_stopping_patience and st["bad_evals"] >= cfg.early_stopping_patience:
        st["stopped_early"] = True
