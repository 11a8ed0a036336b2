"""The self-consuming loop: the only place where the generation recursion lives.

Algorithm (docs/paper.md §1.4, Algorithm 1 of Gillman et al.), for g = 1..G:

1. sample floor(lambda n) synthetic points from the previous model (conditional models draw
   their conditions from the real data's conditions);
2. apply the correction (``correction`` arm only);
3. build the training set with the data policy;
4. train: ``scratch`` refits a fresh model, ``finetune`` continues from the previous one;
5. evaluate, and emit a :class:`~scloop.core.types.GenerationRecord` to the hooks.

The ``baseline`` arm skips 1-2 and trains on the real data only with the same per-generation
budget.  The engine imports no concrete model, correction, metric or policy: they are passed
in.  Numerical collapse (:class:`~scloop.core.types.Degenerate`, NaN metrics) ends the unit
with a ``status="degenerate"`` record, never with an exception.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from scloop.core.types import Correction, Data, Degenerate, GenerationRecord, GenerativeModel, Provenance


@dataclass(frozen=True)
class LoopSpec:
    """What one unit's loop does.  ``n_synthetic`` = floor(lambda * n_real)."""

    n_generations: int
    n_synthetic: int
    arm: str  # baseline | no-correction | correction
    train: str  # scratch | finetune
    corrected: bool  # whether the synthetic data pass through a real correction


@dataclass
class LoopState:
    """Everything needed to continue a unit after ``generation`` (resume)."""

    generation: int
    model: GenerativeModel
    history: list[Data] = field(default_factory=list)


class Hook(Protocol):
    def on_generation_end(self, record: GenerationRecord, state: LoopState) -> None: ...


@contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - t0


def _draw_conditions(real: Data, n: int, rng: np.random.Generator) -> np.ndarray | None:
    if real.y is None or n == 0:
        return None
    return real.y[rng.choice(len(real), size=n, replace=n > len(real))]


def run_loop(
    spec: LoopSpec,
    *,
    real: Data,
    state: LoopState,
    make_model: Callable[[], GenerativeModel],
    correction: Correction,
    policy: Any,
    evaluate: Callable[[GenerativeModel, int], Mapping[str, float]],
    streams: Callable[[int, str], np.random.Generator],
    hooks: Sequence[Hook] = (),
) -> LoopState:
    """Run generations ``state.generation + 1 .. spec.n_generations`` of one unit.

    ``state`` holds the model after ``state.generation`` (generation 0: the fitted initial
    model, shared by all arms -- it is deep-copied, never mutated).  ``streams(g, role)``
    returns the random generator of generation g for a role (see :mod:`scloop.core.rng`).
    Returns the final state.
    """
    model = copy.deepcopy(state.model)
    history = list(state.history)
    for g in range(state.generation + 1, spec.n_generations + 1):
        seconds: dict[str, float] = {}
        diagnostics: dict[str, float] = {}
        try:
            if spec.arm == "baseline":
                train_data, prov = real, Provenance(((-1, False, len(real)),))
            else:
                with _timed(seconds, "sample"):
                    rng = streams(g, "sample")
                    cond = _draw_conditions(real, spec.n_synthetic, rng)
                    synth = model.sample(spec.n_synthetic, rng=rng, conditions=cond)
                with _timed(seconds, "correct"):
                    if spec.arm == "correction":
                        out = correction(synth, model=model, rng=streams(g, "correct"))
                        synth = out.data
                        diagnostics = {f"correction_{k}": float(v) for k, v in out.diagnostics.items()}
                history = history + [synth] if policy.keeps_history else [synth]
                train_data, prov = policy.build(real, history, g, spec.corrected, rng=streams(g, "policy"))
            with _timed(seconds, "train"):
                rng = streams(g, "train")
                model = make_model().fit(train_data, rng=rng) if spec.train == "scratch" else model.update(train_data, rng=rng)
            with _timed(seconds, "eval"):
                metrics = dict(evaluate(model, g))
            bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
            status, reason = ("degenerate", f"non-finite metric(s): {', '.join(bad)}") if bad else ("ok", "")
        except Degenerate as exc:
            metrics, status, reason = {}, "degenerate", str(exc)
            prov = locals().get("prov", Provenance(()))
            train_data = locals().get("train_data", real)
        n_synth = sum(n for gen, _, n in prov.parts if gen >= 0)
        record = GenerationRecord(
            generation=g,
            metrics=metrics,
            n_real=sum(n for gen, _, n in prov.parts if gen < 0),
            n_synthetic=n_synth,
            provenance=prov,
            seconds={s: seconds.get(s, 0.0) for s in ("sample", "correct", "train", "eval")},
            status=status,
            reason=reason,
            diagnostics=diagnostics,
        )
        new_state = LoopState(g, model, history)
        for hook in hooks:
            hook.on_generation_end(record, new_state)
        if status != "ok":
            return new_state
    return LoopState(spec.n_generations, model, history)
