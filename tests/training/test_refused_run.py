"""Data-loss defect 3 (issue 10): a `fastqmd train` run that is refused changes nothing of the existing run —
not split.json (else `evaluate --subset test` scores on training data), not the checkpoint, model or summary.
The trainer validates the config, dataset, checkpoint compatibility, split and model build before it writes."""

import pytest
from training_helpers import TINY_MODEL, run_cli, snapshot, write_config


def base_config(water_h5, out, **kw):
    cfg = dict(dataset=str(water_h5), output=str(out), model=TINY_MODEL,
               split=dict(val_fraction=0.25, test_fraction=0.125), max_steps=3, batch_size=2, eval_every=3,
               checkpoint_every=3, ema_decay=0.9, dtype="float64", progress=False)
    cfg.update(kw)
    return cfg


@pytest.fixture
def finished_run(tmp_path, water_h5):
    """A finished 3-step run in tmp_path/run and its files' bytes."""
    from fastqmd.nnh.train import TrainConfig, train

    out = tmp_path / "run"
    train(TrainConfig(**base_config(water_h5, out)))
    files = snapshot(out)
    assert {"split.json", "checkpoint.pt", "model.pt", "summary.json", "metrics.jsonl"} <= set(files)
    return out, files


def assert_refused(r, match: str):
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert match in r.stderr, r.stderr


def test_bad_hidden_irreps_with_overwrite_leaves_the_run_untouched(tmp_path, water_h5, finished_run):
    out, before = finished_run
    bad = dict(TINY_MODEL, hidden_irreps="8x0e")  # cannot build the p-orbital blocks of O
    # a new split seed too: the refused run must not write its split.json (it would differ)
    cfg = write_config(tmp_path / "bad.yaml", **base_config(water_h5, out, model=bad, split=dict(
        val_fraction=0.25, test_fraction=0.125, seed=5)))
    assert_refused(run_cli("train", str(cfg), "--overwrite"), "hidden_irreps")
    assert snapshot(out) == before


def test_changed_val_fraction_on_resume_leaves_the_run_untouched(tmp_path, water_h5, finished_run):
    out, before = finished_run
    cfg = write_config(tmp_path / "changed.yaml", **base_config(water_h5, out, split=dict(val_fraction=0.5,
                                                                                          test_fraction=0.125)))
    assert_refused(run_cli("train", str(cfg)), "different training config")
    assert snapshot(out) == before


def test_changed_dataset_on_resume_is_refused(tmp_path, water_h5, finished_run):
    """Same config, but the dataset under the path now holds other samples: the stored split no longer matches."""
    from fastqmd.errors import InputError
    from fastqmd.nnh.train import TrainConfig, train
    from fastqmd.testing import make_water_dataset

    out, before = finished_run
    other = make_water_dataset(tmp_path / "other.h5", n=12)
    cfg = TrainConfig(**{**base_config(water_h5, out), "max_steps": 6})
    assert train(cfg)["resumed_from"] == 3  # extending the run is fine
    before = snapshot(out)
    water_h5.rename(water_h5.with_suffix(".bak"))
    try:
        other.rename(water_h5)
        with pytest.raises(InputError, match="split"):
            train(TrainConfig(**{**base_config(water_h5, out), "max_steps": 9}))
    finally:
        water_h5.rename(other)
        water_h5.with_suffix(".bak").rename(water_h5)
    assert snapshot(out) == before


def test_refused_new_run_leaves_no_folder(tmp_path, water_h5):
    out = tmp_path / "never"
    cfg = write_config(tmp_path / "bad.yaml", **base_config(water_h5, out, model=dict(TINY_MODEL,
                                                                                      hidden_irreps="8x0e")))
    assert_refused(run_cli("train", str(cfg)), "hidden_irreps")
    assert not out.exists()


def test_valid_overwrite_replaces_every_file_of_the_old_run(tmp_path, water_h5, finished_run):
    """--overwrite with a valid config starts afresh: no file of the old run survives (no stale model.pt)."""
    from fastqmd.nnh.train import TrainConfig, train

    out, before = finished_run
    train(TrainConfig(**base_config(water_h5, out, seed=1, max_steps=2)), overwrite=True, stop_after=1)
    after = snapshot(out)
    assert "summary.json" not in after and "model.pt" not in after  # the old run's, and the new run is unfinished
    assert after["checkpoint.pt"] != before["checkpoint.pt"]
