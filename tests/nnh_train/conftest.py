"""Fixtures for NNH training/potential tests: an 8-sample tblite GFN2 water dataset (made in the test,
~0.2 s) and a tiny overfit run. Everything float64 where physics is checked."""

import json
from pathlib import Path

import pytest
from nnh_train_helpers import TINY_MODEL, make_water_dataset


@pytest.fixture(scope="session")
def water_h5(tmp_path_factory) -> Path:
    return make_water_dataset(tmp_path_factory.mktemp("data") / "water.h5")


@pytest.fixture(scope="session")
def overfit_run(water_h5, tmp_path_factory):
    """Train the tiny model on all 8 samples (no val/test): (TrainConfig, summary, metrics lines)."""
    from fastqmd.nnh.train import TrainConfig, train

    out = tmp_path_factory.mktemp("overfit")
    cfg = TrainConfig(dataset=water_h5, output=out, model=TINY_MODEL, split=dict(val_fraction=0, test_fraction=0),
                      loss=dict(force_ramp_steps=80), schedule=dict(kind="cosine", warmup_steps=10), lr=1e-2,
                      max_steps=180, batch_size=4, ema_decay=0.0, dtype="float64", progress=False,
                      checkpoint_every=1000, s_pretrain_steps=300)
    summary = train(cfg, overwrite=True)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return cfg, summary, lines
