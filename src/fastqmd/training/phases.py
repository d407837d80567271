"""The phase schedule: which loss weights, frozen modules and on-enter hooks hold at each step.

A schedule is a list of `Phase`s run in order; phase i covers steps [start_i, start_i + steps_i) and the last
phase (steps None) runs to the end. At step s inside a phase, the weight of loss term t is

    w_t(s) = weights_t · Π_{ramps r of t} min(1, (s − r.start + 1) / r.steps)

(a ramp counts global steps from r.start, so it may span phases). A phase's hooks run once, just before its
first step (start > 0 or not); they may rewrite parameters (`Hook.writes`, copied into the EMA afterwards).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Ramp:
    """Term `term` grows linearly from 1/steps at global step `start` to 1 at start + steps − 1."""

    term: str
    start: int
    steps: int

    def factor(self, step: int) -> float:
        return min(1.0, (step - self.start + 1) / self.steps) if self.steps else 1.0


@dataclass(frozen=True)
class Hook:
    """Run once when a phase is entered: run(context) -> report (logged to metrics.jsonl as {name: report})."""

    name: str
    run: Callable[[Any], dict] = field(compare=False)
    writes: tuple[str, ...] = ()  # state_dict key prefixes it sets (copied into the EMA after it runs)


@dataclass(frozen=True)
class Phase:
    name: str
    steps: int | None  # None: until the end of training
    weights: dict[str, float]  # loss term -> weight
    frozen: tuple[str, ...] = ()  # sub-module names that get no gradient in this phase
    ramps: tuple[Ramp, ...] = ()
    on_enter: tuple[Hook, ...] = ()


def active(phases: Sequence[Phase]) -> list[tuple[int, Phase]]:
    """(start step, phase) of the non-empty phases."""
    out, start = [], 0
    for p in phases:
        if p.steps is None or p.steps > 0:
            out.append((start, p))
        if p.steps is None:
            break
        start += p.steps
    return out


def phase_at(phases: Sequence[Phase], step: int) -> tuple[int, Phase]:
    """(start, phase) in force at `step` (the last phase continues past the schedule)."""
    sched = active(phases)
    for start, p in reversed(sched):
        if step >= start:
            return start, p
    return sched[0]


def weights_at(phases: Sequence[Phase], step: int) -> dict[str, float]:
    """w_t(step) of every term (module docstring)."""
    _, p = phase_at(phases, step)
    w = dict(p.weights)
    for r in p.ramps:
        w[r.term] = w[r.term] * r.factor(step)
    return w


def hooks_at(phases: Sequence[Phase], step: int) -> tuple[Hook, ...]:
    """The hooks to run before `step`: those of a phase that starts at `step`."""
    start, p = phase_at(phases, step)
    return p.on_enter if start == step else ()


def same_history(old: Sequence[Phase], new: Sequence[Phase], steps: int) -> bool:
    """Did every completed step s < steps run with the same phase, weights and frozen modules under both?"""
    for s in range(steps):
        (_, a), (_, b) = phase_at(old, s), phase_at(new, s)
        if (a.name, a.frozen) != (b.name, b.frozen) or weights_at(old, s) != weights_at(new, s):
            return False
    return True
