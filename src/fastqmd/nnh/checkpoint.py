"""Checkpoints and model files of NNH training: atomic writes, tensors and primitive containers only.

Files are written to a temporary sibling, fsynced and renamed (`os.replace`), so a kill -9 at any moment leaves
either the previous or the new file, never a torn one. Everything stored is a tensor, number, string, list or
dict (configs as JSON strings), so every load uses `torch.load(..., weights_only=True)`.

Model file (`model.pt`, what `fastqmd evaluate`, `NNHPotential` and `kind: nnh` MD read):
    {"format": "fastqmd-nnh-model", "version": 1, "config": EnergyModelConfig JSON, "state": state_dict}
A training checkpoint (`checkpoint.pt`) holds the same plus optimizer, schedule, EMA, RNG and progress state;
`load_energy_model` accepts either (from a checkpoint it takes the EMA weights when present).
"""

from __future__ import annotations

from pathlib import Path

import torch

from fastqmd.atomic import atomic_torch_save

from fastqmd.errors import InputError
from fastqmd.nnh.energy import EnergyModel, EnergyModelConfig

MODEL_FORMAT = "fastqmd-nnh-model"
CHECKPOINT_FORMAT = "fastqmd-nnh-checkpoint"


def atomic_save(obj: dict, path: Path) -> None:
    """torch.save to path.tmp, fsync, rename over path, fsync the directory."""
    atomic_torch_save(obj, path)


def load(path: Path, map_location="cpu") -> dict:
    """torch.load with weights_only=True; a missing or foreign file is an InputError (one line)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors, truncated files
        raise InputError(f"{path} is not a readable fastqmd NNH model/checkpoint ({type(exc).__name__})") from None
    if not isinstance(obj, dict) or obj.get("format") not in (MODEL_FORMAT, CHECKPOINT_FORMAT):
        raise InputError(f"{path} is not a fastqmd NNH model or checkpoint")
    return obj


def save_model(model: EnergyModel, path: Path, state: dict | None = None) -> None:
    """Write a model file with `state` (default: the model's own state_dict)."""
    atomic_save({"format": MODEL_FORMAT, "version": 1, "config": model.config.model_dump_json(),
                 "state": state if state is not None else model.state_dict()}, path)


def load_energy_model(path: Path, device: str | torch.device = "cpu", dtype: str | None = None,
                      use_ema: bool = True) -> EnergyModel:
    """Rebuild the `EnergyModel` of a model file or training checkpoint (EMA weights if stored and use_ema).
    `dtype` ("float32"/"float64") overrides the stored network dtype."""
    obj = load(path)
    cfg = EnergyModelConfig.model_validate_json(obj["config"])
    if dtype is not None and dtype != cfg.h.dtype:
        upd = {"h": cfg.h.model_copy(update={"dtype": dtype}),
               "repulsion": cfg.repulsion.model_copy(update={"dtype": dtype})}
        if cfg.overlap.kind == "learned":
            upd["overlap"] = cfg.overlap.model_copy(update={"s": cfg.overlap.s.model_copy(update={"dtype": dtype})})
        cfg = cfg.model_copy(update=upd)
    model = EnergyModel(cfg)
    state = obj.get("ema") if (use_ema and obj.get("ema")) else obj["state"]
    ref = model.state_dict()
    model.load_state_dict({k: v.to(ref[k].dtype) for k, v in state.items()})
    return model.to(device).eval()
