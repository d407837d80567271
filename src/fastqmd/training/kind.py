"""The model-kind seam: what the trainer needs from a model family (NNH today; BP, equivariant MLIPs and
fine-tuning plug in the same way). A kind is a small object; the trainer never looks inside its model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from fastqmd.training.phases import Phase


class Samples(Protocol):
    """A lazy, indexable set of training samples: `keys[i]` names sample i (split.json stores the keys)."""

    keys: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Any: ...

    def subset(self, indices: Sequence[int]) -> "Samples": ...


@dataclass(frozen=True)
class HookContext:
    """What an on-enter hook may use: the model, the training samples and the device."""

    model: torch.nn.Module
    train: Samples
    device: torch.device


class ModelKind(Protocol):
    """One model family on the trainer.

    `terms` names the loss terms L_t in the order the loss module returns them; `phases(cfg)` is a pure function
    of the config (its hooks get a `HookContext` when they run); `schedule_fields` are the dotted config fields
    that only shape the phase schedule (a resumed run may change them for phases it has not reached yet)."""

    name: str
    checkpoint_format: str
    terms: tuple[str, ...]
    schedule_fields: tuple[str, ...]

    def check(self, cfg) -> None:
        """Config-only checks (InputError) before anything is read."""

    def samples(self, cfg) -> Samples:
        """The dataset's samples, read lazily."""

    def build(self, cfg, train: Samples, device: torch.device) -> torch.nn.Module:
        """The model from config + training-set statistics; deterministic (the trainer seeds torch first);
        an impossible config is an InputError."""

    def phases(self, cfg) -> list[Phase]: ...

    def loss_module(self, cfg, model: torch.nn.Module, train: Samples, device: torch.device) -> torch.nn.Module:
        """forward(batch, weights [T]) → (batch-mean Σ_t w_t L_t, [Σ_batch L_t..., batch size]) — the DDP unit."""

    def validate(self, loss_module: torch.nn.Module, samples: Samples, weights: dict[str, float]) -> dict:
        """Metrics over `samples` with the current weights; "loss" = Σ_t weights_t · mean L_t."""

    def checkpoint_payload(self, model: torch.nn.Module) -> dict:
        """Entries stored in every checkpoint besides the trainer's (configs as JSON strings)."""

    def save_model(self, model: torch.nn.Module, path: Path, state: dict | None = None) -> None:
        """Write the model file (weights `state`, default the model's own)."""

    # optional: mix_batch(cfg, step, batch) -> batch — samples added to the global batch of `step` (a pure
    # function of (config, step), e.g. fine-tuning's replay memory; `fastqmd.mlip.finetune`)
