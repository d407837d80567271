"""Atomic, weights_only-loadable training checkpoints.

A checkpoint is one dict of tensors, numbers and strings (configs as JSON strings):
    {"format": the kind's checkpoint format, "version": 1, **kind payload (NNH: "config" = model config JSON),
     "train_config": the run's config JSON, "state": model state_dict, "optimizer": optimiser state_dict,
     "ema": EMA state (or {}), "progress": `TrainState.progress()`, "rng": torch CPU RNG state}
written to a temporary sibling, fsynced and renamed (`fastqmd.atomic`): a kill -9 at any moment leaves the
previous or the new file, never a torn one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from fastqmd.atomic import atomic_torch_save
from fastqmd.errors import InputError
from fastqmd.training.state import TrainState

VERSION = 1


@dataclass(frozen=True)
class Checkpointer:
    path: Path
    format: str
    payload: dict = field(default_factory=dict)  # fixed entries of every save (configs as JSON)
    enabled: bool = True  # False on torchrun ranks > 0

    def exists(self) -> bool:
        return Path(self.path).is_file()

    def save(self, state: TrainState) -> None:
        if not self.enabled:
            return
        atomic_torch_save({"format": self.format, "version": VERSION, **self.payload,
                           "state": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
                           "ema": state.ema or {}, "progress": state.progress(), "rng": torch.get_rng_state()},
                          self.path)

    def load(self) -> dict:
        """The stored dict (weights_only); a torn or foreign file is an InputError."""
        try:
            obj = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors, truncated files
            raise InputError(f"{self.path} is not a readable training checkpoint ({type(exc).__name__}); "
                             "use --overwrite to start afresh") from None
        if not isinstance(obj, dict) or obj.get("format") != self.format:
            raise InputError(f"{self.path} is not a {self.format} checkpoint; use --overwrite to start afresh")
        return obj


def restore(state: TrainState, saved: dict) -> TrainState:
    """`state` with the checkpoint's weights, optimiser moments, EMA, counters and RNG state."""
    state.model.load_state_dict(saved["state"])
    state.optimizer.load_state_dict(saved["optimizer"])
    ema = saved.get("ema") or state.ema
    torch.set_rng_state(saved["rng"])
    return state.replace(ema=ema).with_progress(saved["progress"])
