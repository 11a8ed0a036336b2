"""The generic engine: every unit (arm x lambda x correction x gamma x seed) runs
:func:`~scloop.loop.engine.run_loop` with the registered plugins, one generation at a time,
writing each record and checkpoint to the run store."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from scloop.core.config import ExperimentSpec
from scloop.core.registry import CORRECTIONS, METRICS, MODELS, POLICIES, TASKS
from scloop.core.rng import Streams
from scloop.core.types import CorrectionContext, Data, Evaluation, GenerationRecord
from scloop.runner.artifacts import (_device, _load_unit_checkpoint, _record_row, _save_grid_samples,
                                     _save_unit_checkpoint, cache_dir_for, grid_path)
from scloop.runner.gen0 import _generation0
from scloop.runner.hooks import Progress
from scloop.store.atomic import save_npz
from scloop.store.run_store import RunStore, Unit


class _Evaluator:
    """Evaluates a model at generation g on ``task.n_eval`` fresh samples (stream ``eval``),
    and keeps those samples so a hook can store an image grid of them."""

    def __init__(self, metrics: dict[str, Any], task: Any, reference: Data | None, streams: Streams) -> None:
        self.metrics, self.task, self.reference, self.streams = metrics, task, reference, streams
        self.needs_samples = any(m.needs_samples for m in metrics.values())
        self.last_samples: Data | None = None

    def __call__(self, model, generation: int) -> dict[str, float]:
        samples = None
        if self.needs_samples:
            samples = model.sample(self.task.n_eval, rng=self.streams(generation, "eval"))
        self.last_samples = samples
        ev = Evaluation(model, samples, self.reference, getattr(self.task, "target", None))
        return {name: m(ev) for name, m in self.metrics.items()}



class _StoreHook:
    """Writes each record to the store and checkpoints the unit's state."""

    def __init__(self, store: RunStore, unit: int, spec: ExperimentSpec, keeps_history: bool, on_step: Callable,
                 evaluator: _Evaluator | None = None) -> None:
        self.store, self.unit, self.spec, self.keeps_history, self.on_step = store, unit, spec, keeps_history, on_step
        self.evaluator = evaluator

    def on_generation_end(self, record: GenerationRecord, state) -> None:
        g = record.generation
        if self.evaluator is not None and record.status == "ok":
            _save_grid_samples(self.store, self.unit, g, self.evaluator.last_samples)
        self.store.write_records([_record_row(self.unit, record)])
        if record.status == "ok" and (g % self.spec.checkpoint_every == 0 or g == self.spec.n_generations):
            _save_unit_checkpoint(self.store, self.unit, state, self.keeps_history)
        self.on_step()




@dataclass
class _SeedContext:
    """Everything a seed's units share: the real data, the reference, prepared metrics."""

    streams: Streams
    task: Any
    real: Data
    reference: Data | None
    evaluator: _Evaluator
    n_real: int


def _seed_context(spec: ExperimentSpec, store_path: Path, seed: int) -> _SeedContext:
    from scloop.core.types import MetricContext

    streams = Streams(spec.seed, seed)
    task = TASKS.create(spec.task.name, **spec.task.kwargs)
    data_rng = streams(0, "data")
    real = task.real_data(spec.n_real, data_rng)
    reference = task.reference(data_rng) if hasattr(task, "reference") else None
    metrics = {m: METRICS.create(m) for m in spec.metrics}
    mctx = MetricContext(real=real, reference=reference, cache_dir=cache_dir_for(store_path), device=_device(spec),
                         meta=getattr(task, "meta", {}))
    for m in metrics.values():
        if hasattr(m, "prepare"):
            m.prepare(mctx)
    return _SeedContext(streams, task, real, reference, _Evaluator(metrics, task, reference, streams), len(real))



def _unit_finished(store: RunStore, spec: ExperimentSpec, unit: int) -> bool:
    last, status = store.last_generation(unit)
    return last >= spec.n_generations or status == "degenerate"


def _run_unit(spec: ExperimentSpec, store: RunStore, u: Unit, ctx: _SeedContext, gen0, resume: bool,
              on_step: Callable[[int], None]) -> None:
    """Run (or resume) one unit to ``spec.n_generations``.  ``gen0``: a callable returning the
    seed's (generation-0 model, record, grid samples)."""
    from scloop.loop.engine import LoopSpec, LoopState, run_loop

    def make_model():
        return MODELS.create(spec.model.name, **spec.model.kwargs)

    ckpt = store.checkpoints / f"unit{u.unit:06d}.npz"
    state = None
    if resume and ckpt.exists():
        state = _load_unit_checkpoint(ckpt, make_model)
        store.truncate_after(state.generation, units=[u.unit])
    if state is None:
        store.truncate_after(-1, units=[u.unit])
        model0, record0, grid0 = gen0()
        if grid0 is not None:
            save_npz(grid_path(store.path, u.unit, 0), grid0)
        store.write_records([_record_row(u.unit, record0)])
        if record0.status != "ok":
            on_step(spec.n_generations)
            return
        state = LoopState(0, model0, [])
    on_step(state.generation)
    corr_by_label = {c.label(): c for c in spec.corrections}
    comp = corr_by_label.get(u.correction)
    corrected = comp is not None and u.arm == "correction"
    corr_name = comp.name if corrected else "none"
    correction = CORRECTIONS.create(corr_name, **{**(comp.kwargs if corrected else {}), "gamma": u.gamma})
    correction.prepare(CorrectionContext(ctx.real, getattr(ctx.task, "target", None), cache_dir_for(store.path),
                                         _device(spec), getattr(ctx.task, "meta", {})), rng=ctx.streams(0, "prepare"))
    policy = POLICIES.create(spec.policy.name, **spec.policy.kwargs)
    loop_spec = LoopSpec(
        n_generations=spec.n_generations,
        n_synthetic=int(math.floor(u.lam * ctx.n_real)),
        arm=u.arm, train=spec.train, corrected=corr_name != "none",
    )
    hook = _StoreHook(store, u.unit, spec, policy.keeps_history, lambda: on_step(1), ctx.evaluator)
    final = run_loop(loop_spec, real=ctx.real, state=state, make_model=make_model, correction=correction,
                     policy=policy, evaluate=ctx.evaluator, streams=ctx.streams, hooks=[hook])
    if final.generation < spec.n_generations:
        on_step(spec.n_generations - final.generation)


class _SeedCache:
    """Per-process memo of seed contexts and generation-0 models."""

    def __init__(self, spec: ExperimentSpec, store: RunStore) -> None:
        self.spec, self.store = spec, store
        self.ctx: dict[int, _SeedContext] = {}
        self.gen0: dict[int, tuple] = {}

    def context(self, seed: int) -> _SeedContext:
        if seed not in self.ctx:
            self.ctx = {seed: _seed_context(self.spec, self.store.path, seed)}  # keep one seed's data at a time
        return self.ctx[seed]

    def generation0(self, seed: int) -> tuple:
        if seed not in self.gen0:
            spec = self.spec
            self.gen0 = {seed: _generation0(spec, self.store, seed, self.context(seed),
                                            lambda: MODELS.create(spec.model.name, **spec.model.kwargs))}
        return self.gen0[seed]


def _run_generic(spec: ExperimentSpec, store: RunStore, units: list[Unit], resume: bool, progress: Progress,
                 workers: int = 1, payload: dict | None = None) -> None:
    todo = [u for u in units if not (resume and _unit_finished(store, spec, u.unit))]
    progress.advance((len(units) - len(todo)) * spec.n_generations)
    try:
        if workers <= 1 or len(todo) <= 1:
            cache = _SeedCache(spec, store)
            for u in todo:
                ctx = cache.context(u.seed)
                note = f"[seed {u.seed} {u.arm} λ={u.lam:g} {u.correction} γ={u.gamma:g}]"
                _run_unit(spec, store, u, ctx, lambda s=u.seed: cache.generation0(s), resume,
                          lambda k, note=note: progress.advance(k, note))
                store.write_status(completed_generation=store.max_generation())
        else:
            from scloop.runner.parallel import _run_parallel

            _run_parallel(spec, store, todo, resume, workers, progress, payload)
    finally:
        progress.close()
