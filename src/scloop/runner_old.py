"""Turn one :class:`~scloop.core.config.ExperimentSpec` into a finished run directory.

This is the single callable used by the CLI and the tests: it resolves registry names, picks
the engine (the vectorised Gaussian ensemble when every component has a batched kernel, else
the generic :func:`~scloop.loop.engine.run_loop` per seed and unit), wires the store and
checkpoint hooks, and handles ``resume``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from scloop.core.config import ExperimentSpec
from scloop.core.registry import CORRECTIONS, METRICS, MODELS, POLICIES, TASKS, ConfigError
from scloop.plugins import load_plugins
from scloop.core.rng import Streams
from scloop.core.types import CorrectionContext, Data, Degenerate, Evaluation, GenerationRecord, Provenance
from scloop.store.atomic import load_npz, save_npz
from scloop.store.run_store import RunStore, Unit


class RunExists(RuntimeError):
    pass


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    path: Path
    engine: str
    n_units: int
    seconds: float
    skipped: bool = False


def build_units(spec: ExperimentSpec) -> list[Unit]:
    """Every (arm, lambda, correction, gamma, seed) of the experiment, in a fixed order.

    ``baseline`` trains on real data only, so it is one unit per seed (lambda recorded as 0);
    ``no-correction`` is one unit per lambda and seed; ``correction`` one per lambda,
    correction and gamma and seed."""
    units: list[Unit] = []
    combos: list[tuple[str, float, str, float]] = []
    if "baseline" in spec.arms:
        combos.append(("baseline", 0.0, "none", 0.0))
    for lam in spec.lambdas:
        if "no-correction" in spec.arms:
            combos.append(("no-correction", lam, "none", 0.0))
        if "correction" in spec.arms:
            for c in spec.corrections:
                for gam in spec.gammas:
                    combos.append(("correction", lam, c.label(), gam))
    for seed in range(spec.seeds):
        for arm, lam, corr, gam in combos:
            units.append(Unit(len(units), arm, seed, lam, gam, corr, spec.policy.label(), spec.n_real, spec.task.name))
    return units


def validate(spec: ExperimentSpec) -> None:
    """Check every name and option against the registries (raises ConfigError)."""
    load_plugins()
    task = TASKS.create(spec.task.name, key="task", **spec.task.kwargs)
    MODELS.create(spec.model.name, key="model", **spec.model.kwargs)
    POLICIES.create(spec.policy.name, key="policy", **spec.policy.kwargs)
    target = getattr(task, "target", None)
    domain = getattr(task, "domain", "vector")

    def same_domain(key: str, registry, name: str) -> None:
        if name != "none" and not registry.accepts(name, domain):
            ok = [n for n in registry.names(domain)]
            raise ConfigError(f"config key {key!r}: {registry.kind} {name!r} works on {registry.domain(name)} data but "
                              f"task {spec.task.name!r} has {domain} data; {registry.kind}s for {domain} data: "
                              f"{', '.join(ok) or '(none)'}")

    same_domain("model", MODELS, spec.model.name)
    for c in spec.corrections:
        same_domain("correction", CORRECTIONS, c.name)
    for m in spec.metrics:
        same_domain("metrics", METRICS, m)
    if domain != "vector":
        task.real_data(spec.n_real, np.random.default_rng(0))  # n_real larger than the data: a clear error now
    for c in spec.corrections:
        for gam in spec.gammas:
            corr = CORRECTIONS.create(c.name, key="correction", **{**c.kwargs, "gamma": gam})
        if "correction" in spec.arms and CORRECTIONS.domain(c.name) == "vector":
            # a dry prepare on a few real points checks what the correction needs (a known
            # target, a dimension it supports ...) before anything is written
            probe = task.real_data(min(spec.n_real, 16), np.random.default_rng(0))
            corr.prepare(CorrectionContext(probe, target), rng=np.random.default_rng(0))
    for m in spec.metrics:
        METRICS.create(m, key="metrics")
    if spec.policy.name == "replace" and min(spec.lambdas) * spec.n_real < 1 and (
        "correction" in spec.arms or "no-correction" in spec.arms
    ):
        raise ConfigError(
            f"config key 'lambda': got {min(spec.lambdas)!r}; policy 'replace' trains on synthetic data only, "
            f"so floor(lambda * n_real) must be >= 1 (n_real = {spec.n_real})"
        )
    if spec.engine == "vectorized":
        from scloop.tasks.gaussian_ensemble import supports

        ok, why = supports(spec)
        if not ok:
            raise ConfigError(f"config key 'engine': got 'vectorized' but {why}; use engine: auto or generic")


def choose_engine(spec: ExperimentSpec) -> str:
    if spec.engine != "auto":
        return spec.engine
    from scloop.tasks.gaussian_ensemble import supports

    return "vectorized" if supports(spec)[0] else "generic"


def default_run_id(spec: ExperimentSpec) -> str:
    return f"{spec.name}-{spec.digest()}"


# ---------------------------------------------------------------------- progress
_SILENT = False  # set by run_experiment(silent=True): a sweep prints its own per-run lines


class _Progress:
    def __init__(self, total: int, quiet: bool, label: str) -> None:
        self.quiet, self.total, self.done, self.label = quiet, total, 0, label
        self._bar = None
        self._last = 0.0
        if not quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), transient=False)
            self._task = self._bar.add_task(label, total=total)
            self._bar.start()

    def advance(self, k: int = 1, note: str = "") -> None:
        self.done += k
        if _SILENT:
            return
        if self._bar is not None:
            self._bar.update(self._task, advance=k, description=f"{self.label} {note}".strip())
        elif time.monotonic() - self._last > 5 or self.done >= self.total:
            self._last = time.monotonic()
            print(f"[scloop] {self.label}: {self.done}/{self.total} {note}", flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# ---------------------------------------------------------------------- main entry
def run_experiment(spec: ExperimentSpec, *, out: Path | str = "runs", run_id: str | None = None,
                   resume: bool = False, force: bool = False, quiet: bool = True,
                   workers: int = 1, silent: bool = False) -> RunSummary:
    """Run (or resume) ``spec`` into ``out/<run_id>``.  ``workers`` > 1 runs the units of the
    generic engine in that many processes (same numbers as ``workers=1``); 0 means one per CPU
    core.  The vectorised engine is one process.  ``silent``: no progress output at all."""
    global _SILENT
    _SILENT = silent
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"--workers: got {workers!r}; allowed: an integer >= 0 (0 = one per CPU core)")
    if workers == 0:
        workers = os.cpu_count() or 1
    validate(spec)
    engine = choose_engine(spec)
    run_id = run_id or default_run_id(spec)
    store = RunStore(Path(out) / run_id)
    status = store.status()
    if store.exists() and not resume and not force:
        if status.get("state") == "complete":
            store.close()
            return RunSummary(run_id, store.path, engine, status.get("n_units", 0), 0.0, skipped=True)
        raise RunExists(f"run {store.path} exists but is incomplete ({status.get('state')}); pass --resume to "
                        "continue it or --force to start over")
    if resume and store.exists():
        if store.config_text() != spec.to_yaml():
            raise ConfigError(f"--resume: the config differs from the one stored in {store.path / 'config.yaml'}")
    else:
        if force and store.path.exists():
            import shutil

            shutil.rmtree(store.path)
        store.create(spec.to_yaml(), build_units(spec))
    units = store.units()
    t0 = time.perf_counter()
    store.write_status(state="running", engine=engine)
    try:
        if engine == "vectorized":
            _run_vectorized(spec, store, units, resume, quiet)
        else:
            _run_generic(spec, store, units, resume, quiet, workers)
    except BaseException as exc:
        store.write_status(state="failed", error=f"{type(exc).__name__}: {exc}")
        store.close()
        raise
    store.write_status(state="complete", completed_generation=spec.n_generations, error=None)
    store.close()
    return RunSummary(run_id, store.path, engine, len(units), time.perf_counter() - t0)


# ---------------------------------------------------------------------- vectorised path
def _run_vectorized(spec: ExperimentSpec, store: RunStore, units: list[Unit], resume: bool, quiet: bool) -> None:
    from scloop.tasks.gaussian_ensemble import GaussianEnsemble, Group, run_ensemble

    task = TASKS.create(spec.task.name, **spec.task.kwargs)
    by_combo: dict[tuple, dict[tuple[int, float], int]] = {}
    for u in units:
        by_combo.setdefault((u.arm, u.lam, u.correction), {})[(u.seed, u.gamma)] = u.unit
    corr_by_label = {c.label(): c for c in spec.corrections}
    groups = []
    for (arm, lam, corr), ids in by_combo.items():
        comp = corr_by_label.get(corr)
        gammas = tuple(spec.gammas) if arm == "correction" else (0.0,)
        grp = Group(arm, lam, comp.name if comp else "none", comp.kwargs if comp else {}, gammas)
        table = np.array([[ids[(s, g)] for g in gammas] for s in range(spec.seeds)])  # (S, G) unit ids
        groups.append((grp, table))
    progress = _Progress(len(groups) * spec.n_generations, quiet, "generations")
    reg = float(spec.model.kwargs.get("reg_covar", 0.0))
    try:
        for gi, (grp, table) in enumerate(groups):
            ens = GaussianEnsemble(task=task, group=grp, n_real=spec.n_real, n_seeds=spec.seeds, base_seed=spec.seed,
                                   policy=spec.policy.name, policy_options=spec.policy.kwargs, metrics=spec.metrics,
                                   init_offset=spec.init_offset, reg_covar=reg)
            ckpt = store.checkpoints / f"group{gi:03d}.npz"
            state = None
            if resume and ckpt.exists():
                state = _load_group_checkpoint(ckpt)
            start = int(state["generation"]) if state is not None else 0
            if resume:
                store.truncate_after(start if state is not None else -1, units=table.ravel().tolist())
            progress.advance(start)
            flat = table.ravel()
            n_units = len(flat)
            dead_so_far = np.zeros(table.shape, dtype=bool)
            # Rows are committed together with each checkpoint: a killed run resumes from its
            # last checkpoint and recomputes (identically) whatever came after it.
            pending: list[tuple] = []

            def emit(gen, metrics, diag, bad, reason, secs, prov, n_real, n_syn):
                per = {k: v / n_units for k, v in secs.items()}
                prov_json = Provenance(prov).to_json()
                rows = []
                for idx in np.ndindex(table.shape):
                    if dead_so_far[idx]:
                        continue
                    status = "degenerate" if bad[idx] else "ok"
                    vals = {k: float(v[idx]) for k, v in metrics.items()}
                    vals.update({k: float(v[idx]) for k, v in diag.items()})
                    rows.append((int(table[idx]), gen, status, reason if bad[idx] else "", n_real, n_syn, prov_json, per, vals))
                dead_so_far[...] |= bad
                pending.extend(rows)

            def gen0(metrics):
                emit(0, metrics, {}, np.isnan(next(iter(metrics.values()))), "singular covariance at generation 0",
                     {}, ((-1, False, spec.n_real),), spec.n_real, 0)

            if state is not None:
                dead_so_far[...] = state["dead"]

            def on_step(res):
                emit(res.generation, res.metrics, res.diagnostics, res.status_bad, res.reason, res.seconds,
                     res.provenance, res.n_real, res.n_synthetic)
                progress.advance(1, f"[{grp.arm} λ={grp.lam:g} {grp.correction}]")

            def checkpoint(st):
                store.write_records(pending)
                pending.clear()
                _save_group_checkpoint(ckpt, st)
                store.write_status(completed_generation=int(st["generation"]))

            run_ensemble(ens, spec.n_generations, state=state, on_step=on_step, checkpoint=checkpoint,
                         checkpoint_every=spec.checkpoint_every, gen0=gen0)
            store.write_records(pending)
            pending.clear()
    finally:
        progress.close()


def _save_group_checkpoint(path: Path, st: dict[str, np.ndarray]) -> None:
    """Save an ensemble state.  The stored synthetic batches (``paper-toy``,
    ``accumulate-subsample``) only grow, so they go to append-only chunk files and each
    checkpoint writes just the batches added since the previous one; the small state file,
    replaced atomically last, says how many batches are valid."""
    n_b = min(st["batches"].shape[0], int(st["generation"]))
    batches = st["batches"][:n_b]
    small = {k: v for k, v in st.items() if k != "batches"}
    prev = load_npz(path)["chunk_ends"] if path.exists() else np.zeros(0, dtype=np.int64)
    prev = prev[prev <= n_b]
    start = int(prev[-1]) if len(prev) else 0
    ends = prev
    if n_b > start:
        save_npz(path.with_name(f"{path.stem}.b{start:06d}.npz"), {"batches": batches[start:n_b]})
        ends = np.append(prev, n_b)
    small["chunk_ends"] = ends.astype(np.int64)
    small["batch_shape"] = np.array(batches.shape)  # (n_batches, S, G, m, d)
    save_npz(path, small)


def _load_group_checkpoint(path: Path) -> dict[str, np.ndarray]:
    st = {k: np.array(v) for k, v in load_npz(path).items()}
    shape = tuple(int(x) for x in st.pop("batch_shape"))
    parts, start = [], 0
    for end in st.pop("chunk_ends"):
        parts.append(load_npz(path.with_name(f"{path.stem}.b{start:06d}.npz"))["batches"])
        start = int(end)
    st["batches"] = np.concatenate(parts, axis=0) if parts else np.zeros(shape)
    return st


# ---------------------------------------------------------------------- generic path
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


GRID_PER_CLASS = 10  # images per class kept for the per-generation grid
MOTION_PER_CLASS = 2  # motion windows per class kept for the stick-figure GIFs


def _grid_arrays(samples: Data | None) -> dict[str, np.ndarray] | None:
    """A few generated samples of a generation for the report: up to 10 images per class
    (uint8, a few kB; rows = classes of the image grid) or up to 2 motion windows per class
    (float16 (k, T, F), ~0.2 MB for 4 actions; the stick-figure GIFs of
    :mod:`scloop.report.motion`); None for other data."""
    if samples is None or samples.y is None or len(samples) == 0 or samples.x.ndim not in (3, 4):
        return None
    per = GRID_PER_CLASS if samples.x.ndim == 4 else MOTION_PER_CLASS
    keep = np.concatenate([np.flatnonzero(samples.y == c)[:per] for c in np.unique(samples.y)])
    if samples.x.ndim == 3:
        return {"x": samples.x[keep].astype(np.float16), "y": samples.y[keep]}
    x = np.clip(np.rint(samples.x[keep] * 255.0), 0, 255).astype(np.uint8)
    return {"x": x, "y": samples.y[keep]}


def grid_path(run_dir: Path, unit: int, generation: int) -> Path:
    return Path(run_dir) / "samples" / f"unit{unit:06d}" / f"gen{generation:04d}.npz"


def _save_grid_samples(store: RunStore, unit: int, generation: int, samples: Data | None) -> None:
    grid = _grid_arrays(samples)
    if grid is not None:
        save_npz(grid_path(store.path, unit, generation), grid)


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


def _record_row(unit: int, r: GenerationRecord) -> tuple:
    vals = {**r.metrics, **r.diagnostics}
    return (unit, r.generation, r.status, r.reason, r.n_real, r.n_synthetic,
            r.provenance.to_json(), dict(r.seconds), vals)


def _model_arrays(model) -> dict[str, np.ndarray]:
    return {f"model/{k}": np.asarray(v) for k, v in model.state_dict().items()}


def _save_unit_checkpoint(store: RunStore, unit: int, state, keeps_history: bool) -> None:
    arrays: dict[str, np.ndarray] = {"generation": np.array(state.generation), **_model_arrays(state.model)}
    hist = state.history if keeps_history else state.history[-1:]
    arrays["history_len"] = np.array(len(hist))
    for i, h in enumerate(hist):
        arrays[f"history/{i}/x"] = h.x
        if h.y is not None:
            arrays[f"history/{i}/y"] = h.y
    save_npz(store.checkpoints / f"unit{unit:06d}.npz", arrays)


def _load_model(arrays: dict[str, np.ndarray], make_model):
    return make_model().load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model/")})


def _load_unit_checkpoint(path: Path, make_model):
    from scloop.loop.engine import LoopState

    a = load_npz(path)
    hist = [Data(a[f"history/{i}/x"], a.get(f"history/{i}/y")) for i in range(int(a["history_len"]))]
    return LoopState(int(a["generation"]), _load_model(a, make_model), hist)


def cache_dir_for(store_path: Path) -> Path:
    """Trained feature networks and verifier classifiers are cached (by content digest) in
    ``<runs root>/.cache``, shared by every run under that root."""
    return Path(store_path).parent / ".cache"


def _device(spec: ExperimentSpec) -> str:
    return str(spec.model.kwargs.get("device", "auto"))


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


class _FileLock:
    """An exclusive advisory lock (``fcntl.flock``) on ``path``; released when the holder exits,
    even on kill -9.  Where fcntl does not exist (Windows) it does nothing: concurrent fits of the
    same generation 0 then both write the same file atomically, which is wasteful but correct."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh = None

    def __enter__(self) -> "_FileLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a")
        fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the flock
            self._fh = None


def _generation0(spec: ExperimentSpec, store: RunStore, seed: int, ctx: _SeedContext, make_model):
    """The generation-0 model of a seed, fitted once and shared by all units of the run, by
    worker processes and by every run under the same runs root with the same :func:`gen0_key`,
    through ``<root>/.cache/gen0/<key>-seedNNNN.npz`` (a lock makes concurrent runs wait for one
    fit instead of fitting side by side)."""
    npz, meta = _gen0_paths(spec, store, seed, ctx.evaluator.metrics)
    with _FileLock(npz.with_suffix(".lock")):
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


def _run_generic(spec: ExperimentSpec, store: RunStore, units: list[Unit], resume: bool, quiet: bool,
                 workers: int = 1) -> None:
    todo = [u for u in units if not (resume and _unit_finished(store, spec, u.unit))]
    progress = _Progress(len(units) * spec.n_generations, quiet, "unit-generations")
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
            _run_parallel(spec, store, todo, resume, workers, progress)
    finally:
        progress.close()


# ---------------------------------------------------------------------- worker processes
def _init_worker() -> None:
    """One BLAS/OpenMP/torch thread per worker: two workers on two cores with two threads each
    oversubscribe the machine (measured up to 30x slower)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    import sys

    if "torch" in sys.modules:  # pragma: no cover - spawn workers start without torch
        sys.modules["torch"].set_num_threads(1)


def _worker_store(run_dir: str) -> tuple[ExperimentSpec, RunStore]:
    import yaml

    from scloop.core.config import spec_from_dict

    load_plugins()
    store = RunStore(Path(run_dir))
    return spec_from_dict(yaml.safe_load(store.config_text())), store


def _worker_gen0(run_dir: str, seed: int) -> None:
    spec, store = _worker_store(run_dir)
    try:
        _SeedCache(spec, store).generation0(seed)
    finally:
        store.close()


_WORKER_CACHE: dict[str, _SeedCache] = {}


def _worker_unit(run_dir: str, unit: int, resume: bool) -> None:
    if run_dir not in _WORKER_CACHE:
        spec, store = _worker_store(run_dir)
        _WORKER_CACHE.clear()
        _WORKER_CACHE[run_dir] = _SeedCache(spec, store)
    cache = _WORKER_CACHE[run_dir]
    u = next(x for x in cache.store.units() if x.unit == unit)
    parent = os.getppid()

    def on_step(k: int) -> None:
        # A killed parent (kill -9, a closed terminal) must not leave workers computing: stop at
        # the next generation boundary; --resume recomputes from the last checkpoint.
        if os.getppid() != parent:
            os._exit(1)

    _run_unit(cache.spec, cache.store, u, cache.context(u.seed), lambda: cache.generation0(u.seed), resume, on_step)


def _run_parallel(spec: ExperimentSpec, store: RunStore, todo: list[Unit], resume: bool, workers: int,
                  progress: _Progress) -> None:
    """Units in ``workers`` spawned processes (each with one thread).  Numbers do not depend
    on ``workers``: every unit draws from its own (seed, generation, role) streams and the
    seed's generation-0 model is fitted once and shared through a checkpoint file.  Workers
    write their records to the run's SQLite database (WAL mode, one transaction per
    generation); this process only watches the record count for the progress bar."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    # Train shared artefacts (feature networks, verifier classifiers) once, here, so that the
    # workers find them in the cache instead of training them side by side.
    ctx = _seed_context(spec, store.path, todo[0].seed)
    for c in spec.corrections:
        if "correction" in spec.arms:
            corr = CORRECTIONS.create(c.name, **{**c.kwargs, "gamma": spec.gammas[0]})
            corr.prepare(CorrectionContext(ctx.real, getattr(ctx.task, "target", None), cache_dir_for(store.path),
                                           _device(spec), getattr(ctx.task, "meta", {})), rng=ctx.streams(0, "prepare"))
    del ctx
    store.close()
    run_dir = str(store.path)

    def n_records() -> int:
        return int(store.db.execute("SELECT COUNT(*) FROM records WHERE generation > 0").fetchone()[0])

    base = n_records()
    shown = 0

    def poll(futures) -> None:
        nonlocal shown
        while True:
            done, pending = wait(futures, timeout=2.0, return_when=FIRST_EXCEPTION)
            for f in done:
                if f.exception() is not None:
                    for p in pending:
                        p.cancel()
                    raise f.exception()
            k = n_records() - base
            if k > shown:
                progress.advance(k - shown, f"[{workers} workers]")
                shown = k
            if not pending:
                return

    seeds = sorted({u.seed for u in todo})
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker) as ex:
        poll([ex.submit(_worker_gen0, run_dir, s) for s in seeds])
        # longest units first (corrected arms sample and correct; the baseline does neither)
        order = sorted(todo, key=lambda u: (u.arm == "baseline", u.arm == "no-correction", u.unit))
        poll([ex.submit(_worker_unit, run_dir, u.unit, resume) for u in order])
    finished = len(todo) * spec.n_generations - shown
    if finished > 0:
        progress.advance(finished)
    store.write_status(completed_generation=store.max_generation())


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
