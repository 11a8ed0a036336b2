"""Turn one :class:`~scloop.core.config.ExperimentSpec` into a finished run directory.

This is the single callable used by the CLI and the tests: it resolves registry names, picks
the engine (the vectorised Gaussian ensemble when every component has a batched kernel, else
the generic :func:`~scloop.loop.engine.run_loop` per seed and unit), wires the store and
checkpoint hooks, and handles ``resume``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from scloop.core.config import ExperimentSpec
from scloop.core.registry import CORRECTIONS, METRICS, MODELS, POLICIES, TASKS, ConfigError, load_plugins
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
    for c in spec.corrections:
        for gam in spec.gammas:
            corr = CORRECTIONS.create(c.name, key="correction", **{**c.kwargs, "gamma": gam})
        if "correction" in spec.arms:
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
                   resume: bool = False, force: bool = False, quiet: bool = True) -> RunSummary:
    """Run (or resume) ``spec`` into ``out/<run_id>``."""
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
            _run_generic(spec, store, units, resume, quiet)
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
    def __init__(self, metrics: dict[str, Any], task: Any, reference: Data | None, streams: Streams) -> None:
        self.metrics, self.task, self.reference, self.streams = metrics, task, reference, streams
        self.needs_samples = any(m.needs_samples for m in metrics.values())

    def __call__(self, model, generation: int) -> dict[str, float]:
        samples = None
        if self.needs_samples:
            samples = model.sample(self.task.n_eval, rng=self.streams(generation, "eval"))
        ev = Evaluation(model, samples, self.reference, getattr(self.task, "target", None))
        return {name: m(ev) for name, m in self.metrics.items()}


class _StoreHook:
    """Writes each record to the store and checkpoints the unit's state."""

    def __init__(self, store: RunStore, unit: int, spec: ExperimentSpec, keeps_history: bool, on_step: Callable) -> None:
        self.store, self.unit, self.spec, self.keeps_history, self.on_step = store, unit, spec, keeps_history, on_step

    def on_generation_end(self, record: GenerationRecord, state) -> None:
        self.store.write_records([_record_row(self.unit, record)])
        g = record.generation
        if record.status == "ok" and (g % self.spec.checkpoint_every == 0 or g == self.spec.n_generations):
            _save_unit_checkpoint(self.store, self.unit, state, self.keeps_history)
        self.on_step()


def _record_row(unit: int, r: GenerationRecord) -> tuple:
    vals = {**r.metrics, **r.diagnostics}
    return (unit, r.generation, r.status, r.reason, r.n_real, r.n_synthetic,
            r.provenance.to_json(), dict(r.seconds), vals)


def _save_unit_checkpoint(store: RunStore, unit: int, state, keeps_history: bool) -> None:
    arrays: dict[str, np.ndarray] = {"generation": np.array(state.generation)}
    for k, v in state.model.state_dict().items():
        arrays[f"model/{k}"] = np.asarray(v)
    hist = state.history if keeps_history else state.history[-1:]
    arrays["history_len"] = np.array(len(hist))
    for i, h in enumerate(hist):
        arrays[f"history/{i}/x"] = h.x
        if h.y is not None:
            arrays[f"history/{i}/y"] = h.y
    save_npz(store.checkpoints / f"unit{unit:06d}.npz", arrays)


def _load_unit_checkpoint(path: Path, make_model):
    from scloop.loop.engine import LoopState

    a = load_npz(path)
    model = make_model().load_state_dict({k[6:]: v for k, v in a.items() if k.startswith("model/")})
    hist = [Data(a[f"history/{i}/x"], a.get(f"history/{i}/y")) for i in range(int(a["history_len"]))]
    return LoopState(int(a["generation"]), model, hist)


def _run_generic(spec: ExperimentSpec, store: RunStore, units: list[Unit], resume: bool, quiet: bool) -> None:
    from scloop.loop.engine import LoopSpec, LoopState, run_loop

    corr_by_label = {c.label(): c for c in spec.corrections}
    progress = _Progress(len(units) * spec.n_generations, quiet, "unit-generations")
    try:
        for seed in range(spec.seeds):
            seed_units = [u for u in units if u.seed == seed]
            streams = Streams(spec.seed, seed)
            task = TASKS.create(spec.task.name, **spec.task.kwargs)
            data_rng = streams(0, "data")
            real = task.real_data(spec.n_real, data_rng)
            reference = task.reference(data_rng) if hasattr(task, "reference") else None
            metrics = {m: METRICS.create(m) for m in spec.metrics}
            evaluate = _Evaluator(metrics, task, reference, streams)

            def make_model():
                return MODELS.create(spec.model.name, **spec.model.kwargs)

            gen0_model, gen0_record = None, None
            for u in seed_units:
                last, last_status = store.last_generation(u.unit) if resume else (-1, "")
                if last >= spec.n_generations or last_status == "degenerate":
                    progress.advance(spec.n_generations)
                    continue
                ckpt = store.checkpoints / f"unit{u.unit:06d}.npz"
                state = None
                if resume and ckpt.exists():
                    state = _load_unit_checkpoint(ckpt, make_model)
                    store.truncate_after(state.generation, units=[u.unit])
                if state is None:
                    if resume:
                        store.truncate_after(-1, units=[u.unit])
                    if gen0_model is None:
                        gen0_model, gen0_record = _fit_generation0(spec, make_model, real, evaluate, streams)
                    store.write_records([_record_row(u.unit, gen0_record)])
                    if gen0_record.status != "ok":
                        progress.advance(spec.n_generations)
                        continue
                    state = LoopState(0, gen0_model, [])
                progress.advance(state.generation)
                comp = corr_by_label.get(u.correction)
                corr_name = comp.name if (comp and u.arm == "correction") else "none"
                correction = CORRECTIONS.create(corr_name, **{**(comp.kwargs if comp and u.arm == "correction" else {}),
                                                              "gamma": u.gamma})
                correction.prepare(CorrectionContext(real, getattr(task, "target", None)), rng=streams(0, "prepare"))
                policy = POLICIES.create(spec.policy.name, **spec.policy.kwargs)
                loop_spec = LoopSpec(
                    n_generations=spec.n_generations,
                    n_synthetic=int(math.floor(u.lam * spec.n_real)),
                    arm=u.arm, train=spec.train, corrected=corr_name != "none",
                )
                hook = _StoreHook(store, u.unit, spec, policy.keeps_history,
                                  lambda u=u: progress.advance(1, f"[seed {u.seed} {u.arm} {u.correction} γ={u.gamma:g}]"))
                final = run_loop(loop_spec, real=real, state=state, make_model=make_model, correction=correction,
                                 policy=policy, evaluate=evaluate, streams=streams, hooks=[hook])
                if final.generation < spec.n_generations:
                    progress.advance(spec.n_generations - final.generation)
                store.write_status(completed_generation=final.generation)
    finally:
        progress.close()


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
