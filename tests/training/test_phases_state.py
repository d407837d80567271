"""The phase schedule, the explicit training state and the early-stopping/plateau bookkeeping, as pure
functions (no model needed)."""

import math

import pytest

from fastqmd.training.config import TrainerSettings
from fastqmd.training.loop import after_validation, learning_rate
from fastqmd.training.phases import Hook, Phase, Ramp, hooks_at, phase_at, same_history, weights_at
from fastqmd.training.state import TrainState


def noop(ctx):
    return {}


HOOK = Hook("fit", noop, writes=("rep.",))
PHASES = [Phase("a", 2, {"x": 1.0, "y": 0.0}),
          Phase("b", 0, {"x": 9.0, "y": 9.0}),  # empty: skipped, its hooks never run
          Phase("c", None, {"x": 1.0, "y": 4.0}, frozen=("h",), ramps=(Ramp("y", 2, 4),), on_enter=(HOOK,))]


def test_phase_at_skips_empty_phases_and_the_last_runs_on():
    assert [phase_at(PHASES, s)[1].name for s in range(5)] == ["a", "a", "c", "c", "c"]
    assert phase_at(PHASES, 10_000) == (2, PHASES[2])


def test_ramp_weights_grow_linearly_from_the_ramp_start():
    # w_y(s) = 4 · min(1, (s − 2 + 1)/4)
    assert [weights_at(PHASES, s)["y"] for s in range(8)] == [0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 4.0, 4.0]
    assert all(weights_at(PHASES, s)["x"] == 1.0 for s in range(8))


def test_hooks_run_only_at_the_first_step_of_their_phase():
    assert [len(hooks_at(PHASES, s)) for s in range(5)] == [0, 0, 1, 0, 0]


def test_same_history_compares_completed_steps_only():
    longer_a = [Phase("a", 3, PHASES[0].weights), PHASES[2]]
    assert same_history(PHASES, longer_a, steps=2)  # step 2 not yet run: the boundary may move
    assert not same_history(PHASES, longer_a, steps=3)  # step 2 ran in "c" under the old schedule
    other_weights = [Phase("a", 2, {"x": 2.0, "y": 0.0}), PHASES[2]]
    assert not same_history(PHASES, other_weights, steps=1)


def test_nnh_phases_reproduce_the_documented_weights():
    from fastqmd.nnh.train import LossWeights, loss_weights, training_phase

    w = LossWeights(alpha_H=1.0, beta_F=2.0, gamma_E=0.5, delta_S=3.0, h_only_steps=2, rep_only_steps=2,
                    force_ramp_steps=4)
    assert [training_phase(w, s) for s in range(6)] == ["h", "h", "rep", "rep", "joint", "joint"]
    for s in range(8):
        ramp = min(1.0, (s - 2 + 1) / 4)
        expected = ([1.0, 0.0, 0.0, 3.0] if s < 2 else [0.0 if s < 4 else 1.0, 2.0 * ramp, 0.5, 3.0])
        assert loss_weights(w, s) == expected, s


def test_progress_round_trip_and_legacy_keys():
    st = TrainState(model=None, optimizer=None, ema=None, step=7, lr_scale=0.25, best_val=1.5, bad_evals=2,
                    wall_s_all_runs=3.0, log_bytes=99)
    assert TrainState(None, None, None).with_progress(st.progress()).progress() == st.progress()
    legacy = {"step": 4, "plateau_scale": 0.5, "plateau_best": 2.0, "plateau_bad": 1, "best_val": 2.0,
              "bad_evals": 0, "stopped_early": False, "log_bytes": 10, "rep_fitted": True, "train_wall_s": 12.5}
    old = TrainState(None, None, None).with_progress(legacy)  # a checkpoint from before fastqmd.training
    assert (old.step, old.lr_scale, old.wall_s_all_runs, old.log_bytes) == (4, 0.5, 12.5, 10)


def test_plateau_and_early_stopping():
    cfg = TrainerSettings(dataset="d.h5", output="o", schedule=dict(kind="plateau", plateau_patience=2,
                                                                    plateau_factor=0.5), early_stopping_patience=3)
    st = TrainState(None, None, None)
    seen = []
    for loss in [1.0, 0.5, 0.6, 0.7, 0.8]:
        st, improved = after_validation(st, loss, cfg)
        seen.append((improved, st.lr_scale, st.bad_evals, st.stopped_early))
    assert seen == [(True, 1.0, 0, False), (True, 1.0, 0, False), (False, 1.0, 1, False), (False, 0.5, 2, False),
                    (False, 0.5, 3, True)]
    assert st.best_val == 0.5
    assert learning_rate(10, cfg, st.lr_scale) == pytest.approx(cfg.lr * 0.5)


def test_cosine_schedule_endpoints():
    cfg = TrainerSettings(dataset="d.h5", output="o", lr=1.0, max_steps=101,
                          schedule=dict(kind="cosine", warmup_steps=1, min_lr_ratio=0.1))
    assert learning_rate(0, cfg, 1.0) == 1.0  # end of warm-up
    assert learning_rate(1, cfg, 1.0) == 1.0  # cos(0)
    assert learning_rate(101, cfg, 1.0) == pytest.approx(0.1, abs=1e-15)  # floor r
    assert learning_rate(51, cfg, 1.0) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))


def test_cosine_warm_restarts_start_each_segment_from_lr():
    base = dict(dataset="d.h5", output="o", lr=1.0, max_steps=101)
    plain = TrainerSettings(**base, schedule=dict(kind="cosine", warmup_steps=1, min_lr_ratio=0.1))
    cfg = TrainerSettings(**base, schedule=dict(kind="cosine", warmup_steps=1, min_lr_ratio=0.1, restart_steps=[61]))
    first = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - 1) / 60)) for s in range(1, 61)]  # [1, 61) to the floor
    assert [learning_rate(s, cfg, 1.0) for s in range(1, 61)] == pytest.approx(first, abs=1e-15)
    assert learning_rate(61, cfg, 1.0) == 1.0  # the restart
    assert learning_rate(81, cfg, 1.0) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through [61, 101)
    assert learning_rate(101, cfg, 1.0) == pytest.approx(0.1, abs=1e-15)
    beyond = TrainerSettings(**base, schedule=dict(kind="cosine", warmup_steps=1, min_lr_ratio=0.1,
                                                   restart_steps=[500]))
    assert [learning_rate(s, beyond, 1.0) for s in range(102)] == [learning_rate(s, plain, 1.0) for s in range(102)]


def test_n_train_takes_nested_subsets_and_keeps_val_test():
    """Learning curves: `split.n_train` trains on a prefix of the seeded order — the subsets are nested and the
    val/test lists do not move; more than the training set has is refused."""
    import pytest

    from fastqmd.errors import InputError
    from fastqmd.training.config import Split
    from fastqmd.training.loop import split_indices

    full = split_indices(100, Split(seed=3))
    parts = [split_indices(100, Split(seed=3, n_train=n)) for n in (10, 40, 80)]
    for (tr, va, te), n in zip(parts, (10, 40, 80)):
        assert len(tr) == n and va == full[1] and te == full[2] and set(tr) <= set(full[0])
    assert set(parts[0][0]) <= set(parts[1][0]) <= set(parts[2][0])
    with pytest.raises(InputError, match="n_train"):
        split_indices(100, Split(seed=3, n_train=81))
