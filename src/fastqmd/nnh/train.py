"""The NNH model kind on the trainer (`fastqmd.training`): `fastqmd train CONFIG.yaml`.

In:  a fastqmd dataset (H(k), S(k) eV at the stored k-points, E eV, F eV/Å), read lazily (`TargetSet`), and a
     `TrainConfig` (the trainer's settings + `model:` `ModelSpec`, `loss:` `LossWeights`, S pretraining).
Out: in `output/`: model.pt (best-validation EMA weights, `fastqmd.nnh.checkpoint`), checkpoint.pt (resumable),
     metrics.jsonl (one line per step, one per validation), summary.json (split sizes, test metrics),
     split.json (the sample keys of train/val/test).

Loss per sample s (batch mean; α, β, γ, δ from `LossWeights`, terms "H", "F", "E", "S"):

    L = α·mean_{k,μν} (|H_NN(k) − H_DFT(k)|_μν / σ_c(μν))²  +  β·mean_{i,a} (F_NN − F_DFT)²_ia
      + γ·((E_NN − E_DFT)/N)²  +  δ·mean_{k,μν} |S_NN(k) − S_DFT(k)|²   (δ: learned S only)

σ_c is the training-set std of the H elements of orbital-pair class c (`fastqmd.nnh.targets`); units: L_H is
dimensionless, L_F in (eV/Å)², L_E in (eV/atom)². F_NN = −∂E/∂R is differentiated w.r.t. θ (double backward
through the exact-derivative Mermin free energy).
Phases (`nnh_phases`): "h" (h_only_steps: L_H and L_S only — no eigensolve), "rep" (rep_only_steps: the H network
frozen, forces and energies train E_rep), "joint"; β ramps in over force_ramp_steps after "h". Entering the
first phase after "h" fits E_rep by least squares (`fit_repulsion`); a learned S head is pretrained on L_S when
the first phase starts (`pretrain_overlap`). Optimiser, schedules, EMA, early stopping, checkpoints, resume and
torchrun: `fastqmd.training.loop`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, PositiveFloat, PositiveInt

from fastqmd.config import FrozenModel
from fastqmd.evaluation import FERMI_WINDOW_EV, level_errors, reference_fermi_level
from fastqmd.errors import InputError
from fastqmd.nnh.blocks import to_kspace
from fastqmd.nnh.checkpoint import CHECKPOINT_FORMAT, save_model
from fastqmd.nnh.energy import (
    CoreBaseline,
    EnergyModel,
    EnergyModelConfig,
    ExactOverlap,
    GPAWTableOverlap,
    LearnedOverlap,
    TableOverlap,
    energy_forces,
)
from fastqmd.nnh.electrostatics import Electrostatics
from fastqmd.nnh.gpaw_overlap import gpaw_table_config
from fastqmd.nnh.ks_functional import KSFunctional
from fastqmd.nnh.model import NNHConfig
from fastqmd.nnh.overlap import OverlapConfig
from fastqmd.nnh.repulsion import RepulsionConfig, RepulsionNetworkConfig
from fastqmd.nnh.tblite_overlap import tblite_table_config
from fastqmd.nnh.targets import (
    Target,
    TargetSet,
    irrep_statistics,
    orbital_pair_scales,
    pair_classes,
    reference_energies,
    spectral_frame,
    spectral_h_loss,
    structures_of,
    temperature_K,
    valence_electrons,
)
from fastqmd.training import loop
from fastqmd.training.config import Schedule, Split, TrainerSettings
from fastqmd.training.kind import HookContext
from fastqmd.training.loop import config_json as _config_json
from fastqmd.training.loop import split_indices  # noqa: F401 (re-exported: benchmarks import it from here)
from fastqmd.training.phases import Hook, Phase, Ramp, phase_at, weights_at


TERMS = ("H", "F", "E", "S")


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
    # auto: exact (PySCF), table (tblite and gpaw-lcao datasets: the engine's exact S from radial tables)
    overlap: Literal["auto", "exact", "learned", "table"] = "auto"
    overlap_cutoff: PositiveFloat | None = None  # default: cutoff
    repulsion_cutoff: PositiveFloat = 4.0
    repulsion_many_body: bool = True
    # an atomic-network term in E_rep (`fastqmd.nnh.repulsion`, study c); its avg_num_neighbors defaults to the
    # training set's mean neighbour count at repulsion_cutoff
    repulsion_network: RepulsionNetworkConfig | None = None
    # "ks": E = E_KS[P(H, S)] of the dataset's own functional (`fastqmd.nnh.ks_functional`; molecular PySCF data,
    # unsmeared): learns from L_H alone (loss.beta_F = loss.gamma_E = 0), no E_rep
    energy_mode: Literal["mermin", "band", "ks"] = "mermin"
    # exact baseline H⁰(R) under the network (fastqmd.nnh.core_baseline; molecular PySCF datasets): "core" = T + V_nuc,
    # "core+hartree" = T + V_nuc + J[neutral atoms]; the network, its output statistics and σ_c see H − H⁰
    h_baseline: Literal["none", "core", "core+hartree"] = "none"
    # the long-range charge channel (`fastqmd.nnh.electrostatics`): latent charges and the ½S(u_i + u_j) level
    # shift of their Ewald potential in H; e.g. {gaussian_width_A: 0.5}; None: the purely local model
    electrostatics: Electrostatics | None = None


class LossWeights(FrozenModel):
    alpha_H: float = Field(1.0, ge=0)
    beta_F: float = Field(1.0, ge=0)
    gamma_E: float = Field(0.1, ge=0)
    delta_S: float = Field(10.0, ge=0)
    h_only_steps: int = Field(0, ge=0)  # first phase: L_H (and L_S) only — no eigensolve, cheap steps
    rep_only_steps: int = Field(0, ge=0)  # then the H network frozen: forces/energies train E_rep (and S head)
    fit_repulsion: bool = True  # least-squares fit of E_rep's pair terms when the H-only phase ends
    force_ramp_steps: int = Field(0, ge=0)  # then β grows linearly from 0 over these steps (H first, then forces)
    # L_H += spectral_H · L_ε (eV²): the H error in the reference's S-orthonormal eigenbasis, pairs weighted by
    # 1/(1 + (max|ε − μ|/spectral_window_eV)²) (fastqmd.nnh.targets.spectral_h_loss) — the error the bands see
    spectral_H: float = Field(0.0, ge=0)
    spectral_window_eV: PositiveFloat = 2.0


class TrainConfig(TrainerSettings):
    """`fastqmd train` config: the trainer's settings (`TrainerSettings`) and the NNH model, loss and S pretraining."""

    model: ModelSpec = ModelSpec()
    loss: LossWeights = LossWeights()
    # learned S: full-batch Adam on L_S alone (≤ 32 samples) first, until L_S < s_pretrain_tol or the step cap
    s_pretrain_steps: int = Field(2000, ge=0)
    s_pretrain_tol: PositiveFloat = 1e-7
    s_pretrain_lr: PositiveFloat = 3e-3


__all__ = ["LossWeights", "ModelSpec", "NNHKind", "Schedule", "Split", "TrainConfig", "train"]


# ------------------------------------------------------------------ the model from config + training data


def mean_neighbors(targets: Sequence[Target], cutoff: float, species: list[str], n_orb: dict[str, int]) -> float:
    from fastqmd.nnh.graph import build_graph

    counts = [build_graph(list(t.frame.symbols), t.positions.numpy(), t.cell.numpy(), t.frame.pbc, cutoff,
                          species, n_orb).edge_i.numel() / len(t.frame.symbols) for t in structures_of(targets)]
    return max(1.0, float(np.mean(counts)))


def build_energy_config(cfg: TrainConfig, engine: str, settings: dict, basis: dict[str, tuple[int, ...]],
                        train: Sequence[Target], recorded_valence: dict[str, int] | None = None) -> EnergyModelConfig:
    """The EnergyModelConfig implied by the training config and the training data (constants fitted here).
    A learned S head is trained by L_S alone (`s_grad_from_energy` False, saved with the model)."""
    m = cfg.model
    species = sorted(basis)
    baseline = None
    if m.h_baseline != "none":
        if engine != "pyscf-mol" or not settings.get("basis"):
            raise InputError(f"model.h_baseline {m.h_baseline!r} needs a molecular PySCF dataset (pyscf-mol; this one "
                             f"is {engine!r})")
        baseline = CoreBaseline(kind=m.h_baseline, pyscf_basis=settings["basis"])
    overlap = m.overlap if m.overlap != "auto" else ("exact" if engine.startswith("pyscf") else "table")
    if overlap == "exact" and not engine.startswith("pyscf"):
        raise InputError(f"overlap 'exact' needs a PySCF dataset (this one is {engine!r})")
    if overlap == "table" and engine not in ("tblite", "gpaw-lcao"):
        raise InputError(f"overlap 'table' needs a tblite or gpaw-lcao dataset (this one is {engine!r})")
    n_orb = {s: sum(2 * l + 1 for l in basis[s]) for s in species}
    avg = m.avg_num_neighbors or mean_neighbors(train, m.cutoff, species, n_orb)
    h = NNHConfig(basis=basis, cutoff=m.cutoff, hidden_irreps=m.hidden_irreps, n_layers=m.n_layers, lmax=m.lmax,
                  n_radial=m.n_radial, radial_hidden=m.radial_hidden, n_scalars_embed=m.n_scalars_embed,
                  avg_num_neighbors=avg, dtype=cfg.dtype, electrostatics=m.electrostatics)
    if overlap == "learned":
        spec = LearnedOverlap(s=OverlapConfig(basis=basis, cutoff=m.overlap_cutoff or m.cutoff, n_radial=m.n_radial,
                                              radial_hidden=m.radial_hidden, dtype=cfg.dtype))
    elif overlap == "table" and engine == "gpaw-lcao":
        gt = gpaw_table_config(species, xc=settings["xc"], basis_name=settings["basis"],
                               setups=settings.get("setups") or {})
        if gt.basis != {k: tuple(v) for k, v in basis.items()}:
            raise InputError(f"dataset basis {basis} differs from GPAW {settings['basis']}'s {gt.basis}")
        spec = GPAWTableOverlap(table=gt)
    elif overlap == "table":
        table = tblite_table_config(settings["method"], species)
        if table.basis != {k: tuple(v) for k, v in basis.items()}:
            raise InputError(f"dataset basis {basis} differs from tblite {settings['method']}'s {table.basis}")
        spec = TableOverlap(table=table)
    else:
        if not settings.get("basis"):
            raise InputError(f"overlap 'exact' needs the dataset's PySCF basis (settings of {engine!r}: {settings})")
        spec = ExactOverlap(pyscf_basis=settings["basis"])
    net = m.repulsion_network
    if net is not None and "avg_num_neighbors" not in net.model_fields_set:
        net = net.model_copy(update={"avg_num_neighbors": mean_neighbors(train, m.repulsion_cutoff, species, n_orb)})
    rep = RepulsionConfig(species=tuple(species), cutoff=m.repulsion_cutoff, n_radial=m.n_radial,
                          many_body=m.repulsion_many_body, network=net, dtype=cfg.dtype)
    T = temperature_K(train)
    val = valence_electrons(train, species, recorded_valence)
    ks = ks_functional_of(engine, settings, T, overlap) if m.energy_mode == "ks" else None
    eref = {} if ks else reference_energies(train, species, val, T, mode=m.energy_mode)
    return EnergyModelConfig(h=h, overlap=spec, repulsion=rep, energy_mode=m.energy_mode, electronic_temperature_K=T,
                             valence_electrons=val, reference_energies=eref, s_grad_from_energy=False,
                             h_baseline=baseline, ks_functional=ks)


def ks_functional_of(engine: str, settings: dict, T_K: float, overlap: str) -> KSFunctional:
    """The dataset's own KS functional for `energy_mode: ks`; InputError (one line) where there is none."""
    if engine != "pyscf-mol" or T_K > 0 or settings.get("spin", 0) != 0 or overlap != "exact":
        raise InputError(f"model.energy_mode 'ks' needs unsmeared closed-shell molecular PySCF data with the exact "
                         f"overlap (this dataset: {engine!r}, {T_K:g} K, spin {settings.get('spin', 0)}, overlap "
                         f"{overlap!r})")
    return KSFunctional(xc=settings["xc"], pyscf_basis=settings["basis"], grid_level=settings.get("grid_level", 3),
                        charge=settings.get("charge", 0))


def fit_repulsion(model: EnergyModel, targets: Sequence[Target], device, max_samples: int = 64,
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
    for t in structures_of(targets)[:max_samples]:  # E, F and structures only: H and S are not read
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


def pretrain_overlap(model: EnergyModel, targets: Sequence[Target], max_steps: int, device, lr: float = 3e-3,
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


# ------------------------------------------------------------------ phases


def nnh_phases(w: LossWeights, s_pretrain: Hook | None = None, repulsion_fit: Hook | None = None) -> list[Phase]:
    """"h" (step < h_only_steps: α, δ only — the network learns H before any force is seen), "rep" (the next
    rep_only_steps: α = 0 and the H network frozen, so that the large early force and energy errors cannot
    distort H; forces and energies fit E_rep), "joint" (all terms). After "h", β ramps as
    β·min(1, (s + 1)/force_ramp_steps), s = step − h_only_steps. Hooks: `s_pretrain` on the first phase,
    `repulsion_fit` on the first phase after a non-empty "h"."""
    ramps = (Ramp("F", w.h_only_steps, w.force_ramp_steps),) if w.force_ramp_steps else ()
    full = {"H": w.alpha_H, "F": w.beta_F, "E": w.gamma_E, "S": w.delta_S}
    phases = [Phase("h", w.h_only_steps, {"H": w.alpha_H, "F": 0.0, "E": 0.0, "S": w.delta_S}),
              Phase("rep", w.rep_only_steps, {**full, "H": 0.0}, frozen=("h",), ramps=ramps),
              Phase("joint", None, full, ramps=ramps)]
    live = [p for p in phases if p.steps is None or p.steps > 0]
    if s_pretrain is not None:
        live[0] = _with_hook(live[0], s_pretrain)
    if repulsion_fit is not None and w.h_only_steps > 0:
        live[1] = _with_hook(live[1], repulsion_fit)
    return live


def _with_hook(p: Phase, hook: Hook) -> Phase:
    return Phase(p.name, p.steps, p.weights, p.frozen, p.ramps, (*p.on_enter, hook))


def loss_weights(w: LossWeights, step: int) -> list[float]:
    """[α(step), β(step), γ(step), δ] of the phase schedule `nnh_phases(w)`."""
    ws = weights_at(nnh_phases(w), step)
    return [ws[t] for t in TERMS]


def training_phase(w: LossWeights, step: int) -> str:
    """"h", "rep" or "joint" (`nnh_phases`)."""
    return phase_at(nnh_phases(w), step)[1].name


class _Residual(Sequence):
    """`targets` with H replaced by H − H⁰(R) (H⁰ the model's baseline), read lazily."""

    def __init__(self, model: EnergyModel, targets: Sequence[Target]):
        self.model, self.targets = model, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        t = self.targets[i]
        if t.H is None:
            return t
        H0 = self.model.baseline(t.frame.symbols, t.positions.to(torch.float64)).to(t.H.dtype)
        return dataclasses.replace(t, H=t.H - H0)


def residual_targets(model: EnergyModel, targets: Sequence[Target]) -> Sequence[Target]:
    """What the network learns: the targets themselves, or H − H⁰ when the model has an `h_baseline`."""
    return targets if model.baseline is None else _Residual(model, targets)


# ------------------------------------------------------------------ loss

class LossModule(torch.nn.Module):
    """forward(list of targets, w = [α, β, γ, δ]) → (batch-mean loss, per-term sums [L_H, L_F, L_E, L_S, n]) —
    the DDP unit."""

    def __init__(self, model: EnergyModel, scales: torch.Tensor, device: torch.device, spectral_H: float = 0.0,
                 spectral_window_eV: float = 2.0):
        super().__init__()
        self.model = model
        self.spectral_H, self.spectral_window_eV = spectral_H, spectral_window_eV
        self._frames: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # key → (C, w) of `spectral_frame`
        self.register_buffer("scales", scales.to(device))
        self.device = device
        self.learned_s = model.config.overlap.kind == "learned"

    def hclass(self, t: Target) -> torch.Tensor:
        """[nao, nao] orbital-pair class of every H element of t (`fastqmd.nnh.targets.pair_classes`)."""
        return pair_classes(t.frame.symbols, self.model.species, self.model.h.layout.n_orbitals).to(self.device)

    def spectral_frame(self, t: Target) -> tuple[torch.Tensor, torch.Tensor]:
        """(C, w) of t's reference spectrum (`fastqmd.nnh.targets.spectral_frame`), computed once per sample."""
        hit = self._frames.get(t.key)
        if hit is None:
            mu = reference_fermi_level(t.eigenvalues.numpy(), t.occupations.numpy(), t.fermi_level,
                                       self.model.config.spin_factor) if t.eigenvalues is not None else t.fermi_level
            hit = spectral_frame(t.H.to(torch.complex128 if t.H.is_complex() else torch.float64), t.S, mu,
                                 self.spectral_window_eV)
            self._frames[t.key] = hit
        return hit[0].to(self.device), hit[1].to(self.device)

    def h_loss(self, t: Target, H: torch.Tensor, H_ref: torch.Tensor) -> torch.Tensor:
        """L_H = mean (|ΔH| / σ_c)² in the orbital basis, + spectral_H · L_ε when that weight is > 0."""
        dH = H.to(H_ref.dtype) - H_ref
        LH = (dH.abs() / self.scales[self.hclass(t)]).pow(2).mean()
        if self.spectral_H > 0:
            LH = LH + self.spectral_H * spectral_h_loss(dH, *self.spectral_frame(t))
        return LH

    def sample_terms(self, t: Target, create_graph: bool, w: list[float], return_outputs: bool = False):
        """[L_H, L_F, L_E, L_S] of one sample; terms whose weight in w = [α, β, γ, δ] is 0 may be left 0.
        return_outputs (needs β > 0 and forces): also (EnergyParts, F)."""
        dev = self.device
        g = self.model.graph(t.frame.symbols, t.positions.numpy(), t.cell.numpy(), t.frame.pbc).to(dev)
        pos = t.positions.to(dev).clone().requires_grad_(True)
        need_f = w[1] > 0 and t.forces is not None
        H_ref = t.H.to(dev)
        if not need_f and w[2] == 0:  # H-only phase: no overlap, eigensolve or E_rep needed
            H = self.model.hamiltonian(t.frame, pos.detach(), t.cell.to(dev), g)  # no position gradient needed
            LH = self.h_loss(t, H, H_ref)
            zero = LH.new_zeros(())
            return torch.stack([LH, zero, zero, self.overlap_loss(t, g, pos) if self.learned_s
                                else zero])
        if need_f:
            parts, F, _ = energy_forces(self.model, t.frame, pos, t.cell.to(dev), g, create_graph=create_graph)
            LF = ((F - t.forces.to(dev)) ** 2).mean()
        else:
            parts = self.model(t.frame, pos, t.cell.to(dev), g)
            LF = parts.energy.new_zeros(())
        LH = self.h_loss(t, parts.H, H_ref)
        LE = ((parts.energy - t.energy) / len(t.frame.symbols)) ** 2
        LS = self.overlap_loss(t, g, pos) if self.learned_s else LH * 0
        terms = torch.stack([LH, LF, LE, LS])
        return (terms, parts, F if need_f else None) if return_outputs else terms

    def overlap_loss(self, t: Target, g, pos: torch.Tensor) -> torch.Tensor:
        """L_S = mean |S_θ(k) − S_DFT(k)|² — the only loss that trains the S head (s_grad_from_energy False)."""
        m = self.model
        kpts = torch.as_tensor(t.frame.kpoints, dtype=m.dtype, device=self.device)
        S = to_kspace(m.s(pos.detach().to(m.dtype), t.cell.to(self.device, m.dtype), g), g, kpts)
        return ((S - t.S.to(self.device)).abs() ** 2).mean().to(torch.float64)

    def forward(self, batch: list[Target], wl: list[float], create_graph: bool = True):
        terms = torch.stack([self.sample_terms(t, create_graph, wl) for t in batch])  # [B, 4]
        w = torch.tensor(wl, dtype=terms.dtype, device=terms.device)
        loss = (terms @ w).mean()
        return loss, torch.cat([terms.detach().sum(0), terms.new_tensor([len(batch)])])




# ------------------------------------------------------------------ validation


def validate(lm: LossModule, targets: Sequence[Target], weights: dict[str, float]) -> dict[str, float]:
    """Mean loss terms, weighted loss (`weights`: the final phase's, no ramp, so the best model is comparable
    across phases) and H/F/E MAEs over `targets` (no parameter graph)."""
    if not len(targets):
        return {}
    sums = torch.zeros(5, dtype=torch.float64)
    mae_h, mae_f, mae_e, eig_fermi = [], [], [], []
    full = [weights["H"], 1.0, 1.0, weights["S"]]  # every term computed
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
        if t.eigenvalues is not None and t.occupations is not None:
            ref, occ = t.eigenvalues.numpy(), t.occupations.numpy()
            mu = reference_fermi_level(ref, occ, t.fermi_level, lm.model.config.spin_factor)
            errs = level_errors(parts.spectrum.eigenvalues.detach().cpu().numpy(), ref, occ, mu,
                                lm.model.config.spin_factor)
            eig_fermi.append(errs[f"fermi_pm_{FERMI_WINDOW_EV:g}eV"])
    m = (sums[:4] / sums[4]).tolist()
    w = [weights[k] for k in TERMS]
    return {"loss": sum(a * b for a, b in zip(m, w)), "L_H": m[0], "L_F": m[1], "L_E": m[2], "L_S": m[3],
            "H_mae_eV": float(np.mean(mae_h)), "F_mae_eV_A": float(np.mean(mae_f)) if mae_f else float("nan"),
            "E_mae_eV_atom": float(np.mean(mae_e)),
            # |ε_θ − ε_ref| of the levels within ±1 eV of the reference μ (fastqmd.evaluation.level_errors)
            "eig_fermi_mae_eV": float(np.concatenate(eig_fermi).mean()) if eig_fermi and
            sum(map(len, eig_fermi)) else float("nan")}


# ------------------------------------------------------------------ the kind


def charge_feature_statistics(model: EnergyModel, train: Sequence[Target], device, n: int = 8,
                              floor: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ_s, 1/max(σ_s, floor)) [n0]: the mean and spread over the atoms of the first n training structures of the
    trunk's scalar features at initialization — the charge head's input standardisation (`NNHModel.charges`)."""
    ss = []
    with torch.no_grad():
        for t in list(train)[:n]:
            pos, cell = t.positions.to(device, model.dtype), t.cell.to(device, model.dtype)
            g = model.graph(t.frame.symbols, t.positions.numpy(), t.cell.numpy(), t.frame.pbc).to(device)
            ss.append(model.h.node_features(pos, cell, g)[0][:, model.h.scalar_idx])
    s = torch.cat(ss)
    return s.mean(0), 1.0 / s.std(0).clamp_min(floor)


class NNHKind:
    """The NNH energy model as a `fastqmd.training.ModelKind`."""

    name = "nnh"
    checkpoint_format = CHECKPOINT_FORMAT
    terms = TERMS
    schedule_fields = ("loss.h_only_steps", "loss.rep_only_steps", "loss.force_ramp_steps")

    def check(self, cfg: TrainConfig) -> None:
        if cfg.model.energy_mode == "band" and cfg.loss.beta_F > 0:
            raise InputError("energy_mode 'band' (E = Σ f ε) has no second derivative, so it cannot be trained with "
                             "a force loss; use energy_mode 'mermin' or loss.beta_F: 0")
        if cfg.model.energy_mode == "ks" and (cfg.loss.beta_F > 0 or cfg.loss.gamma_E > 0):
            raise InputError("energy_mode 'ks' learns H alone (its energy and forces follow from E_KS[P(H)]): set "
                             "loss.beta_F: 0 and loss.gamma_E: 0")

    def samples(self, cfg: TrainConfig) -> TargetSet:
        out = TargetSet(cfg.dataset)
        if not len(out):
            raise InputError(f"{cfg.dataset}: no successful samples")
        return out

    def build(self, cfg: TrainConfig, train: TargetSet, device: torch.device) -> EnergyModel:
        from fastqmd.data.store import Dataset

        ds = Dataset(cfg.dataset)
        engine, settings, basis, recorded = ds.header.engine, ds.header.settings, ds.basis.shells, ds.valence_electrons
        ds.close()
        ecfg = build_energy_config(cfg, engine, settings, basis, train, recorded)
        try:
            model = EnergyModel(ecfg).to(device)
        except ValueError as exc:  # e.g. hidden_irreps that cannot build the dataset's orbital blocks
            raise InputError(f"model: {exc}") from None
        if ecfg.overlap.kind == "learned":
            for s in model.species:
                t = next(t for t in train if s in t.frame.symbols)
                a = t.frame.symbols.index(s)
                off = np.cumsum([0] + [model.h.layout.n_orbitals[x] for x in t.frame.symbols])
                model.s.set_onsite_from_block(s, t.S[0].real[off[a]:off[a + 1], off[a]:off[a + 1]].numpy())
        model.h.set_output_statistics(*irrep_statistics(residual_targets(model, train), model.h))  # raw outputs O(1)
        if model.h.config.electrostatics is not None:
            model.h.set_charge_statistics(*charge_feature_statistics(model, train, device))
        return model

    def phases(self, cfg: TrainConfig) -> list[Phase]:
        s_hook = Hook("s_pretrain", partial(_s_pretrain_hook, cfg), writes=("s.",)) \
            if cfg.model.overlap == "learned" else None
        rep_hook = Hook("repulsion_fit", _repulsion_fit_hook, writes=("rep.",)) \
            if cfg.loss.fit_repulsion and cfg.model.energy_mode != "ks" else None  # ks: no E_rep
        return nnh_phases(cfg.loss, s_hook, rep_hook)

    def loss_module(self, cfg: TrainConfig, model: EnergyModel, train: TargetSet, device) -> LossModule:
        n_orb = model.h.layout.n_orbitals
        return LossModule(model, orbital_pair_scales(residual_targets(model, train), model.species, n_orb), device,
                          cfg.loss.spectral_H, cfg.loss.spectral_window_eV)

    def validate(self, lm: LossModule, samples: Sequence[Target], weights: dict[str, float]) -> dict:
        return validate(lm, samples, weights)

    def checkpoint_payload(self, model: EnergyModel) -> dict:
        return {"config": model.config.model_dump_json()}

    def save_model(self, model: EnergyModel, path: Path, state: dict | None = None) -> None:
        save_model(model, path, state)


def _s_pretrain_hook(cfg: TrainConfig, ctx: HookContext) -> dict:
    ls, n, ok = pretrain_overlap(ctx.model, ctx.train[:32], cfg.s_pretrain_steps, ctx.device, cfg.s_pretrain_lr,
                                 cfg.s_pretrain_tol)
    if not ok:
        warnings.warn(f"S pretraining ended after {n} steps with L_S = {ls:.2e} and a learned S that may not be "
                      "positive definite: raise s_pretrain_steps, model.radial_hidden or model.overlap_cutoff",
                      stacklevel=1)
    return {"L_S": ls, "steps": n, "metric_ok": ok}


def _repulsion_fit_hook(ctx: HookContext) -> dict:
    return fit_repulsion(ctx.model, ctx.train, ctx.device)


def config_json(cfg: TrainConfig) -> str:
    return _config_json(cfg)


def resumable(saved_json: str, cfg: TrainConfig, step: int) -> bool:
    """May a checkpoint of `saved_json` continue under `cfg` at `step`? (`fastqmd.training.loop.resumable`)"""
    return loop.resumable(NNHKind(), saved_json, cfg, step)


def train(cfg: TrainConfig, overwrite: bool = False, stop_after: int | None = None) -> dict:
    """Train (or resume) the NNH run of `cfg`; returns the summary dict (`fastqmd.training.loop.fit`)."""
    return loop.fit(NNHKind(), cfg, overwrite=overwrite, stop_after=stop_after)
