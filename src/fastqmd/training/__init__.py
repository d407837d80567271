"""One trainer for every model kind: `TrainState`, a `Phase` schedule, `take_step`, a `Checkpointer`.

In:  a model kind (`ModelKind`: builds its torch model from config + training-set statistics, computes the loss
     terms of a batch and the validation metrics, saves its model file), its config (a `TrainerSettings`
     subclass: optimiser, schedule, EMA, early stopping, split, steps) and a lazy sequence of samples.
Out: in the run folder: checkpoint.pt (resumable, `torch.load(weights_only=True)`), model.pt (best-validation EMA
     weights, written by the kind), metrics.jsonl, split.json, summary.json.

    θ ← AdamW(θ, ∇_θ Σ_t w_t(step) · mean_batch L_t),  lr(step) = warmup → cosine | plateau | constant

w_t(step) and the frozen modules come from the `Phase` in force at `step` (`fastqmd.training.phases`); phases may
run a hook when entered (NNH: the least-squares fit of E_rep). Everything a resumed run needs is in the
checkpoint, and the split and batch order are pure functions of (seed, step), so a run killed with kill -9 and
restarted reproduces the uninterrupted run bit for bit on CPU. NNH is the first kind (`fastqmd.nnh.train`).
"""

from fastqmd.training.config import Schedule, Split, TrainerSettings
from fastqmd.training.kind import ModelKind
from fastqmd.training.loop import fit, take_step
from fastqmd.training.phases import Hook, Phase, Ramp
from fastqmd.training.state import TrainState

__all__ = ["Hook", "ModelKind", "Phase", "Ramp", "Schedule", "Split", "TrainState", "TrainerSettings", "fit",
           "take_step"]
