"""The trained models under models/ (issue 13 part 4): each has a card with the keys a user needs, loads with
`torch.load(weights_only=True)`, stays small enough for the repository, and drives `fastqmd md`'s potential and the
ASE calculator by path — finite energy and forces, forces = −∇E on its own kind of structure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

MODELS = Path(__file__).resolve().parents[1] / "models"
CARDS = sorted(MODELS.glob("*/card.json"))
CARD_KEYS = {"name", "kind", "reference", "data", "metrics", "training_cost_s", "command", "structure"}


def test_models_folder_is_not_empty():
    assert CARDS, "models/ ships no model"


@pytest.mark.parametrize("card", CARDS, ids=[c.parent.name for c in CARDS])
def test_card_and_weights(card):
    c = json.loads(card.read_text())
    assert CARD_KEYS <= set(c), CARD_KEYS - set(c)
    path = card.parent / "model.pt"
    assert path.stat().st_size < 20e6
    obj = torch.load(path, weights_only=True, map_location="cpu")
    assert isinstance(obj, dict)
    for key in ("force_mae_meV_per_A",):
        assert np.isfinite(c["metrics"]["test_split"][key])


@pytest.mark.parametrize("card", CARDS, ids=[c.parent.name for c in CARDS])
def test_model_runs_by_path_in_md_and_ase(card):
    from fastqmd.md.config import MDConfig, build_potential
    from fastqmd.md.run import start_structure
    from fastqmd.potential import PotentialCalculator

    c = json.loads(card.read_text())
    cfg = MDConfig.model_validate({"structure": c["structure"], "potential": {"kind": c["kind"], **{
        # NNH in float64 for the finite difference (a float32 Cu32 energy is ~1e-3 eV noisy)
        "nnh": {"checkpoint": str(card.parent / "model.pt"), "dtype": "float64"},
        "mlip": {"model": str(card.parent / "model.pt")},
    }[c["kind"]]}, "ensemble": {"kind": "nve"}, "temperature_K": 300, "timestep_fs": 1.0, "steps": 1,
        "output": {"dir": "unused"}})
    atoms = start_structure(cfg, check_potential=True)
    atoms.calc = PotentialCalculator(build_potential(cfg.potential))
    e0, f = atoms.get_potential_energy(), atoms.get_forces()
    assert np.isfinite(e0) and np.isfinite(f).all()
    # forces = −∇E along the force direction (central difference, h = 1e-3 Å)
    d = f / np.linalg.norm(f)
    h, x0 = 1e-3, atoms.positions.copy()
    es = []
    for s in (1, -1):
        atoms.positions = x0 + s * h * d
        es.append(atoms.get_potential_energy())
    atoms.positions = x0
    assert abs(-(es[0] - es[1]) / (2 * h) - np.linalg.norm(f)) < 2e-2 * np.linalg.norm(f) + 1e-3
