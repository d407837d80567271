"""The training loop: `fit(kind, cfg)` = validate everything, then `take_step` until done, checkpointing.

Order of a run (nothing in the output folder changes until every check has passed — a refused run leaves an
existing run byte for byte as it was):
  1. `plan_run`: config checks, dataset, split, the checkpoint's compatibility (`resumable`) and split
     consistency, the model build (from the training-set statistics);
  2. `start_run`: only then the output folder, a fresh run's removal of the previous run's files (--overwrite),
     split.json, and the initial or restored `TrainState`;
  3. steps: phase hooks, `take_step`, metrics line, validation (EMA weights) every eval_every steps, checkpoint
     every checkpoint_every steps; model.pt (best validation loss of the final phase) and summary.json at the end.
Determinism: the split and each epoch's sample order are pure functions of (seed, epoch) (`split_indices`,
`global_batch`); under torchrun every rank takes batch[rank::P] of the same global batch and DDP averages the
gradients.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from fastqmd.errors import InputError
from fastqmd.training.checkpoint import Checkpointer, restore
from fastqmd.training.config import Split, TrainerSettings
from fastqmd.training.kind import HookContext, ModelKind, Samples
from fastqmd.training.phases import Phase, hooks_at, phase_at, same_history, weights_at
from fastqmd.training.state import TrainState, ema_update, swap_weights

RUN_FILES = ("checkpoint.pt", "model.pt", "metrics.jsonl", "summary.json", "split.json")

# ------------------------------------------------------------------ pure functions of (config, step)


def split_indices(n: int, split: Split) -> tuple[list[int], list[int], list[int]]:
    """Seeded (train, val, test) index lists; val/test get ⌈fraction·n⌉ when the fraction is > 0; with
    `n_train` the training list is the first n_train of the seeded rest (nested subsets, same val/test)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split.seed)).tolist()
    n_test = math.ceil(split.test_fraction * n) if split.test_fraction > 0 else 0
    n_val = math.ceil(split.val_fraction * n) if split.val_fraction > 0 else 0
    if n - n_test - n_val < 1:
        raise InputError(f"dataset has {n} samples: nothing left to train on after the val/test split")
    train = perm[n_test + n_val:]
    if split.n_train is not None:
        if split.n_train > len(train):
            raise InputError(f"split.n_train = {split.n_train}, but the dataset has {len(train)} training samples "
                             f"after the val/test split")
        train = train[:split.n_train]
    return sorted(train), sorted(perm[n_test:n_test + n_val]), sorted(perm[:n_test])


def epoch_order(n_train: int, seed: int, epoch: int) -> list[int]:
    """The sample order of one epoch: a pure function of (seed, epoch)."""
    return torch.randperm(n_train, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


def global_batch(step: int, n_train: int, batch_size: int, seed: int) -> list[int]:
    """Training-set positions of the global batch of `step` (epochs of ⌊n/B⌋ full batches)."""
    per_epoch = max(1, n_train // batch_size)
    order = epoch_order(n_train, seed, step // per_epoch)
    b = step % per_epoch
    return [order[(b * batch_size + k) % n_train] for k in range(batch_size)]


def cosine_lr(step: int, cfg: TrainerSettings) -> float:
    """lr·min(1, (step+1)/warmup) · [r + (1 − r)(1 + cos(π·p))/2], r = min_lr_ratio, p = progress through the
    current segment [a, b): the segments run from the end of warmup to max_steps, cut at `restart_steps`."""
    s = cfg.schedule
    if s.warmup_steps and step < s.warmup_steps:
        return cfg.lr * (step + 1) / s.warmup_steps
    cuts = sorted({s.warmup_steps, *(r for r in s.restart_steps if s.warmup_steps < r < cfg.max_steps)})
    a = max(c for c in cuts if c <= step)
    b = min([c for c in cuts if c > step] + [cfg.max_steps])
    p = (step - a) / max(1, b - a)
    return cfg.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def learning_rate(step: int, cfg: TrainerSettings, lr_scale: float) -> float:
    """Cosine (`cosine_lr`), or lr · warmup · (the plateau reductions so far | 1)."""
    if cfg.schedule.kind == "cosine":
        return cosine_lr(step, cfg)
    warm = min(1.0, (step + 1) / cfg.schedule.warmup_steps) if cfg.schedule.warmup_steps else 1.0
    return cfg.lr * warm * (lr_scale if cfg.schedule.kind == "plateau" else 1.0)


def config_json(cfg: TrainerSettings) -> str:
    """The config as stored in checkpoints: without `progress` and `max_steps` (a run may be extended)."""
    d = json.loads(cfg.model_dump_json())
    d.pop("progress")
    d.pop("max_steps")
    return json.dumps(d, sort_keys=True)


def _drop(d: dict, dotted: str) -> None:
    *head, last = dotted.split(".")
    for k in head:
        d = d.get(k, {})
    d.pop(last, None)


def resumable(kind: ModelKind, saved_json: str, cfg: TrainerSettings, step: int) -> bool:
    """May the checkpoint of a run with config `saved_json` (`config_json`) continue under `cfg` at `step`?
    Yes if the configs are equal up to max_steps, checkpoint_every and the kind's `schedule_fields`, provided
    every completed step s < step had the same phase and loss weights under both: then the resumed run is the
    uninterrupted run of `cfg` (a phase may be shortened or lengthened before it ends)."""
    try:  # parsed and dumped again: fields added to the config since the checkpoint take their defaults
        old_cfg = type(cfg).model_validate({**json.loads(saved_json), "max_steps": cfg.max_steps})
    except Exception:
        return False
    old, new = json.loads(config_json(old_cfg)), json.loads(config_json(cfg))
    for d in (old, new):
        for f in ("checkpoint_every", *kind.schedule_fields):
            _drop(d, f)
    return old == new and same_history(kind.phases(old_cfg), kind.phases(cfg), step)


# ------------------------------------------------------------------ one step


@dataclass(frozen=True)
class Setup:
    """What every step reads and no step changes: the config, the kind, its phases, the (DDP-wrapped) loss."""

    cfg: TrainerSettings
    kind: ModelKind
    phases: list[Phase]
    net: torch.nn.Module  # kind.loss_module(...), wrapped in DistributedDataParallel under torchrun
    world: int = 1


def take_step(setup: Setup, state: TrainState, batch: list) -> TrainState:
    """One AdamW update on `batch` (this rank's share of the global batch) with the phase's loss weights and
    frozen modules, then the EMA update; the returned state carries the step's metrics in `record`."""
    cfg, model, opt, step = setup.cfg, state.model, state.optimizer, state.step
    lr = learning_rate(step, cfg, state.lr_scale)
    for g in opt.param_groups:
        g["lr"] = lr
    _, phase = phase_at(setup.phases, step)
    w = weights_at(setup.phases, step)
    wl = [w[t] for t in setup.kind.terms]
    frozen = [p for name in phase.frozen for p in model.get_submodule(name).parameters() if p.requires_grad]
    opt.zero_grad(set_to_none=True)
    for p in frozen:
        p.requires_grad_(False)
    loss, sums = setup.net(batch, wl)
    loss.backward()
    for p in frozen:
        p.requires_grad_(True)
    if setup.world > 1:
        torch.distributed.all_reduce(sums)
    gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or float("inf")))
    opt.step()
    if state.ema is not None:
        ema_update(state.ema, model, cfg.ema_decay, step)
    T = len(wl)
    m = (sums[:T] / sums[T]).tolist()
    record = {"step": step + 1, "lr": lr, "loss": sum(a * b for a, b in zip(m, wl)),
              **{f"L_{t}": v for t, v in zip(setup.kind.terms, m)}, "grad_norm": gnorm}
    return state.replace(step=step + 1, record=record)


def enter_phase(setup: Setup, state: TrainState, train: Samples, device) -> tuple[TrainState, dict]:
    """Run the hooks of a phase that starts at this step; their parameters are copied into the EMA."""
    reports = {}
    for hook in hooks_at(setup.phases, state.step):
        reports[hook.name] = hook.run(HookContext(state.model, train, device))
        if state.ema is not None:
            for k, v in state.model.state_dict().items():
                if k.startswith(hook.writes):
                    state.ema[k].copy_(v)
    return state, reports


def after_validation(state: TrainState, loss: float, cfg: TrainerSettings) -> tuple[TrainState, bool]:
    """Best loss, early stopping and the plateau schedule after a final-phase validation: (state, improved)."""
    improved = loss < state.best_val
    kw = dict(best_val=loss, bad_evals=0) if improved else dict(bad_evals=state.bad_evals + 1)
    if loss < state.plateau_best:
        kw.update(plateau_best=loss, plateau_bad=0)
    elif state.plateau_bad + 1 >= cfg.schedule.plateau_patience:
        kw.update(plateau_bad=0, lr_scale=state.lr_scale * cfg.schedule.plateau_factor)
    else:
        kw.update(plateau_bad=state.plateau_bad + 1)
    bad = kw["bad_evals"]
    kw["stopped_early"] = bool(cfg.early_stopping_patience and bad >= cfg.early_stopping_patience)
    return state.replace(**kw), improved


# ------------------------------------------------------------------ the run


def _dist(device: str) -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun (WORLD_SIZE > 1): gloo on CPU, nccl
    on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device == "cuda" else "gloo")
    if world > 1:
        return torch.distributed.get_rank(), world
    return 0, 1


def _write_json(path: Path, obj, indent=None) -> None:
    from fastqmd.atomic import write_atomically

    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=indent)))


class _Log:
    """metrics.jsonl of rank 0: one JSON object per line."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def __call__(self, rec: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(rec) + "\n")

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0


@dataclass(frozen=True)
class Plan:
    """A checked run: everything `fit` needs, established before anything is written."""

    rank: int
    world: int
    device: torch.device
    out: Path
    train: Samples
    val: Samples
    test: Samples
    saved: dict | None  # the checkpoint to resume from
    model: torch.nn.Module
    loss_module: torch.nn.Module
    phases: list[Phase]

    @property
    def split(self) -> dict[str, list[str]]:
        return {"train": self.train.keys, "val": self.val.keys, "test": self.test.keys}


def plan_run(kind: ModelKind, cfg: TrainerSettings, overwrite: bool = False) -> Plan:
    """Check the config, dataset, split, checkpoint compatibility (`resumable`) and split consistency, and build
    the model; InputError on the first problem. Writes nothing."""
    kind.check(cfg)
    rank, world = _dist(cfg.device)
    if cfg.batch_size % world:
        raise InputError(f"batch_size {cfg.batch_size} must be a multiple of the number of processes {world}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but CUDA is not available")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cfg.device == "cuda" else "cpu")
    out = Path(cfg.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a folder")
    samples = kind.samples(cfg)
    i_train, i_val, i_test = split_indices(len(samples), cfg.split)
    train, val, test = samples.subset(i_train), samples.subset(i_val), samples.subset(i_test)
    split = {"train": train.keys, "val": val.keys, "test": test.keys}
    ckpt = Checkpointer(out / "checkpoint.pt", kind.checkpoint_format)
    saved = ckpt.load() if ckpt.exists() and not overwrite else None
    if saved is not None:
        if saved.get("train_config") is None or not resumable(kind, saved["train_config"], cfg,
                                                              int(saved["progress"]["step"])):
            raise InputError(f"{ckpt.path} belongs to a different training config (only max_steps, "
                             "checkpoint_every and phase lengths not yet reached may change); use --overwrite to "
                             "start afresh")
        old_split = out / "split.json"
        if old_split.is_file() and json.loads(old_split.read_text()) != split:
            raise InputError(f"{old_split} does not match the split of {cfg.dataset} under this config (the "
                             "dataset changed since the checkpoint?); use --overwrite to start afresh")
    elif not overwrite and any((out / n).exists() for n in ("model.pt", "summary.json")):
        raise InputError(f"{out} holds a finished run without checkpoint.pt; use --overwrite to replace it")
    torch.manual_seed(cfg.seed)
    model = kind.build(cfg, train, device)
    lm = kind.loss_module(cfg, model, train, device)
    return Plan(rank, world, device, out, train, val, test, saved, model, lm, kind.phases(cfg))


def start_run(kind: ModelKind, cfg: TrainerSettings, plan: Plan) -> tuple[Setup, TrainState, Checkpointer, _Log]:
    """Write the start of a checked run (a fresh run first removes the previous run's files: --overwrite, or a
    run killed before its first checkpoint), and the initial or restored `TrainState`."""
    out, rank = plan.out, plan.rank
    log = _Log(out / "metrics.jsonl", rank == 0)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if plan.saved is None:
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
        _write_json(out / "split.json", plan.split)  # `fastqmd evaluate --subset test` reads it
    model, lm = plan.model, plan.loss_module
    net = torch.nn.parallel.DistributedDataParallel(lm, find_unused_parameters=True) if plan.world > 1 else lm
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()} if cfg.ema_decay > 0 else None
    state = TrainState(model, opt, ema)
    if plan.saved is not None:
        state = restore(state, plan.saved)
    if rank == 0:
        with open(log.path, "a+b") as fh:
            fh.truncate(state.log_bytes)
    ckpt = Checkpointer(out / "checkpoint.pt", kind.checkpoint_format,
                        {**kind.checkpoint_payload(model), "train_config": config_json(cfg)}, enabled=rank == 0)
    return Setup(cfg, kind, plan.phases, net, plan.world), state, ckpt, log


def validation(setup: Setup, plan: Plan, state: TrainState) -> tuple[TrainState, dict]:
    """Validate with the EMA weights; in the final phase also the best model file, plateau and early stopping
    (earlier phases do not optimise the full loss, so their validations are only logged)."""
    phases, cfg = setup.phases, setup.cfg
    with swap_weights(state.model, state.ema):
        v = setup.kind.validate(plan.loss_module, plan.val, dict(phases[-1].weights))
        if phase_at(phases, state.step - 1)[1].name == phase_at(phases, cfg.max_steps - 1)[1].name:
            state, improved = after_validation(state, v["loss"], cfg)
            if improved and plan.rank == 0:
                setup.kind.save_model(state.model, plan.out / "model.pt")
    return state, v


def fit(kind: ModelKind, cfg: TrainerSettings, overwrite: bool = False, stop_after: int | None = None) -> dict:
    """Train (or resume) the run of `cfg` with model kind `kind`; returns the summary dict (also written to
    output/summary.json when training ends). `stop_after`: return after this many total steps (tests)."""
    plan = plan_run(kind, cfg, overwrite)
    setup, state, ckpt, log = start_run(kind, cfg, plan)
    resumed = state.step if plan.saved is not None else None
    rank, world, train = plan.rank, plan.world, plan.train
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(TextColumn("train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TextColumn("{task.fields[info]}"), TimeRemainingColumn(), disable=not (cfg.progress and rank == 0))
    task = prog.add_task("train", total=cfg.max_steps, completed=state.step, info="")
    end = min(cfg.max_steps, stop_after) if stop_after else cfg.max_steps
    t0, wall_before = time.perf_counter(), state.wall_s_all_runs
    with prog:
        while state.step < end and not state.stopped_early:
            batch = [train[i] for i in global_batch(state.step, len(train), cfg.batch_size, cfg.seed)]
            if hasattr(kind, "mix_batch"):  # e.g. fine-tuning's replay memory
                batch = kind.mix_batch(cfg, state.step, batch)
            state, reports = enter_phase(setup, state, train, plan.device)
            for name, rep in reports.items():
                log({"step": state.step, name: rep})
            state = take_step(setup, state, batch[rank::world])
            log(state.record)
            if len(plan.val) and (state.step % cfg.eval_every == 0 or state.step == cfg.max_steps):
                state, v = validation(setup, plan, state)
                log({"step": state.step, "val": v})
            if state.step % cfg.checkpoint_every == 0 or state.step == end:
                state = state.replace(log_bytes=log.size(), wall_s_all_runs=wall_before + time.perf_counter() - t0)
                ckpt.save(state)
            prog.update(task, completed=state.step,
                        info=f"loss {state.record['loss']:.3e}  lr {state.record['lr']:.2e}")
    wall = time.perf_counter() - t0
    if world > 1:
        torch.distributed.barrier()
    summary = {"steps": state.step, "resumed_from": resumed, "stopped_early": state.stopped_early,
               "wall_time_s": wall, "wall_time_s_all_runs": wall_before + wall, "world_size": world,
               "split": {"train": len(train), "val": len(plan.val), "test": len(plan.test)}}
    if rank == 0 and (state.step >= cfg.max_steps or state.stopped_early):
        if not (plan.out / "model.pt").exists() or not len(plan.val):
            kind.save_model(state.model, plan.out / "model.pt", state.ema)
        with swap_weights(state.model, state.ema):
            summary["test"] = kind.validate(plan.loss_module, plan.test, dict(setup.phases[-1].weights)) \
                if len(plan.test) else {}
        _write_json(plan.out / "summary.json", summary, indent=1)
    return summary
