"""The trainer's settings shared by every model kind (a kind's config subclasses `TrainerSettings` and adds
`model:`, `loss:` and whatever it needs). Units: learning rates per step; steps count optimiser updates."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from fastqmd.config import FrozenModel


class Split(FrozenModel):
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.1, ge=0, lt=1)
    seed: int = 0
    # learning curves: train on the first n_train of the seeded training order (val/test unchanged, and the
    # subsets nested: n_train = 50 ⊂ 100 ⊂ 300); None: all of it
    n_train: PositiveInt | None = None


class Schedule(FrozenModel):
    kind: Literal["cosine", "plateau", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.01, ge=0, le=1)  # cosine floor
    # cosine warm restarts: the decay starts again from lr at each of these steps (e.g. where a new training phase
    # with parameters fresh to learning begins: E_rep after a long H-only phase)
    restart_steps: tuple[PositiveInt, ...] = ()
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    plateau_patience: PositiveInt = 3  # validations without improvement


class TrainerSettings(FrozenModel):
    """Dataset, run folder, optimiser, schedule, EMA, early stopping, split and step counts."""

    dataset: Path
    output: Path
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
    dtype: Literal["float32", "float64"] = "float32"
    device: Literal["cpu", "cuda"] = "cpu"
    seed: int = 0
    progress: bool = True
