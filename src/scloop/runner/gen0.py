"""The generation-0 cache: a seed's first model is fitted once and shared by every unit of a
run, by worker processes, and by every run under the same runs root whose
:func:`gen0_key` matches (content-addressed files in ``<runs root>/.cache/gen0``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from scloop.core.config import ExperimentSpec
from scloop.core.registry import MODELS, ConfigError
from scloop.core.types import Degenerate, GenerationRecord, Provenance
from scloop.runner.artifacts import _grid_arrays, _load_model, _model_arrays, cache_dir_for
from scloop.store.atomic import load_npz, save_npz
from scloop.store.locks import FileLock
from scloop.store.run_store import RunStore

if TYPE_CHECKING:  # pragma: no cover
    from scloop.runner.generic import _SeedContext



def gen0_key(spec: ExperimentSpec) -> str:
    """Content address of a generation-0 model: everything that determines its weights (task
    and its options, n_real, model and its options, base seed, initial offset), and nothing
    else -- so every arm, lambda, gamma and correction of a run, and every run of a sweep that
    differs only in those, share one fit (the official code copies generation-0 checkpoints
    between experiments by hand)."""
    import hashlib
    import json

    d = spec.to_dict()
    blob = {k: d[k] for k in ("task", "model", "n_real", "seed", "init")}
    # a model factory may declare a cache_version: bumped when its fit changes what it stores
    version = getattr(MODELS.get(spec.model.name), "cache_version", None) if spec.model.name in MODELS else None
    if version is not None:
        blob["model_cache_version"] = version
    # a user's model or task: its code fingerprint, so that editing its fit never reuses a stale
    # generation 0 (scloop's own plugins keep the keys above: their cache_version says it)
    from scloop.core.registry import TASKS

    for key, registry, name in (("model_code", MODELS, spec.model.name), ("task_code", TASKS, spec.task.name)):
        if name in registry and not registry.info(name).builtin:
            blob[key] = registry.info(name).fingerprint
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _gen0_paths(spec: ExperimentSpec, store: RunStore, seed: int,
                metrics: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """``(<cache>/gen0/<model key>-seedNNNN.npz, <...>-<eval key>.json)``.  The record (generation-0
    metrics) also depends on the metric list, the evaluation settings and what each prepared metric
    reports as its ``fingerprint()`` (e.g. the digest of a learned feature network, which changes
    with its architecture version), so it has its own key."""
    import hashlib

    key = gen0_key(spec)
    prints = tuple(str(m.fingerprint()) if hasattr(m, "fingerprint") else "" for m in (metrics or {}).values())
    ev = hashlib.sha256(repr((key, spec.metrics) + ((prints,) if any(prints) else ())).encode()).hexdigest()[:8]
    root = cache_dir_for(store.path) / "gen0"
    return root / f"{key}-seed{seed:04d}.npz", root / f"{key}-seed{seed:04d}-{ev}.json"



def _generation0(spec: ExperimentSpec, store: RunStore, seed: int, ctx: _SeedContext, make_model):
    """The generation-0 model of a seed, fitted once and shared by all units of the run, by
    worker processes and by every run under the same runs root with the same :func:`gen0_key`,
    through ``<root>/.cache/gen0/<key>-seedNNNN.npz`` (a lock makes concurrent runs wait for one
    fit instead of fitting side by side)."""
    npz, meta = _gen0_paths(spec, store, seed, ctx.evaluator.metrics)
    with FileLock(npz.with_suffix(".lock")):
        return _generation0_locked(spec, seed, ctx, make_model, npz, meta)


def _generation0_locked(spec: ExperimentSpec, seed: int, ctx: _SeedContext, make_model, npz: Path, meta: Path):
    import json

    from scloop.store.atomic import atomic_write_text

    grid_npz = meta.with_name(meta.stem + "-grid.npz")
    if meta.exists():
        rec = json.loads(meta.read_text())
        if rec["status"] != "ok" or npz.exists():
            record = GenerationRecord(0, rec["metrics"], rec["n_real"], 0, Provenance(((-1, False, rec["n_real"]),)),
                                      rec["seconds"], rec["status"], rec["reason"])
            model = _load_model(load_npz(npz), make_model) if rec["status"] == "ok" else None
            grid = load_npz(grid_npz) if grid_npz.exists() else None
            return model, record, grid
    if npz.exists():
        # the model was fitted for another metric list: evaluate it here (the evaluation draws
        # from the same (seed, generation 0, "eval") stream, so the numbers are those of a fit)
        t0 = time.perf_counter()
        model = _load_model(load_npz(npz), make_model)
        try:
            metrics, status, reason = ctx.evaluator(model, 0), "ok", ""
        except Degenerate as exc:
            model, metrics, status, reason = None, {}, "degenerate", str(exc)
        record = GenerationRecord(0, metrics, len(ctx.real), 0, Provenance(((-1, False, len(ctx.real)),)),
                                  {"sample": 0.0, "correct": 0.0, "train": 0.0, "eval": time.perf_counter() - t0},
                                  status, reason)
    else:
        model, record = _fit_generation0(spec, make_model, ctx.real, ctx.evaluator, ctx.streams)
        if model is not None:
            save_npz(npz, _model_arrays(model))
    grid = None
    if model is not None:
        grid = _grid_arrays(ctx.evaluator.last_samples)
        if grid is not None:
            save_npz(grid_npz, grid)
    atomic_write_text(meta, json.dumps({"metrics": dict(record.metrics), "n_real": record.n_real,
                                        "seconds": dict(record.seconds), "status": record.status,
                                        "reason": record.reason}))
    return model, record, grid



def _fit_generation0(spec, make_model, real, evaluate, streams):

    from scloop.core.types import Provenance

    prov = Provenance(((-1, False, len(real)),))
    t0 = time.perf_counter()
    try:
        model = make_model().fit(real, rng=streams(0, "init"))
        if spec.init_offset:
            if not hasattr(model, "shift"):
                raise ConfigError(f"config key 'init.offset': model {spec.model.name!r} does not support an offset")
            model.shift(spec.init_offset)
        t1 = time.perf_counter()
        metrics = evaluate(model, 0)
        status, reason = "ok", ""
    except Degenerate as exc:
        model, metrics, status, reason, t1 = None, {}, "degenerate", str(exc), time.perf_counter()
    rec = GenerationRecord(0, metrics, len(real), 0, prov,
                           {"sample": 0.0, "correct": 0.0, "train": t1 - t0, "eval": time.perf_counter() - t1},
                           status, reason)
    return model, rec
