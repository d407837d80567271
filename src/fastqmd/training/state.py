"""The explicit training state: what one optimiser step reads and returns, and what a checkpoint stores.

`TrainState` is frozen: `take_step` returns a new one. The model parameters, optimiser moments and the EMA
weights are tensors referenced from it and updated in place (copying them every step would double the memory);
the counters are plain numbers, so `progress()` is a small dict of numbers that goes into checkpoint.pt.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class TrainState:
    model: torch.nn.Module  # the kind's model (parameters updated in place)
    optimizer: torch.optim.Optimizer
    ema: dict[str, torch.Tensor] | None  # EMA of the state_dict's float tensors (None: no EMA)
    step: int = 0  # completed optimiser steps
    lr_scale: float = 1.0  # plateau schedule: product of the reductions so far
    plateau_best: float = math.inf
    plateau_bad: int = 0
    best_val: float = math.inf  # best validation loss of the final phase (the model file's)
    bad_evals: int = 0  # validations since best_val improved (early stopping)
    stopped_early: bool = False
    wall_s_all_runs: float = 0.0  # training wall time of all runs up to the last checkpoint
    log_bytes: int = 0  # length of metrics.jsonl at the last checkpoint
    record: dict = field(default_factory=dict, compare=False)  # the last step's metrics (not checkpointed)

    def replace(self, **kw) -> "TrainState":
        return dataclasses.replace(self, **kw)

    def progress(self) -> dict:
        """The counters, as checkpointed (numbers only)."""
        names = ("step", "lr_scale", "plateau_best", "plateau_bad", "best_val", "bad_evals", "stopped_early",
                 "wall_s_all_runs", "log_bytes")
        return {n: getattr(self, n) for n in names}

    def with_progress(self, progress: dict) -> "TrainState":
        """This state with the counters of a checkpoint (also of the pre-`fastqmd.training` progress dict)."""
        legacy = {"plateau_scale": "lr_scale", "train_wall_s": "wall_s_all_runs"}
        fields = {f.name for f in dataclasses.fields(self)}
        kw = {legacy.get(k, k): v for k, v in progress.items() if legacy.get(k, k) in fields}
        return self.replace(**kw)


@torch.no_grad()
def ema_update(ema: dict[str, torch.Tensor], model: torch.nn.Module, decay: float, step: int) -> None:
    """θ_ema ← d θ_ema + (1 − d) θ with d = min(decay, (1 + step)/(10 + step)) (float tensors only), as
    θ_ema + (1 − d)(θ − θ_ema): a weight that does not change (frozen) keeps its EMA bit for bit."""
    d = min(decay, (1 + step) / (10 + step))
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            ema[k].lerp_(v, 1 - d)


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
