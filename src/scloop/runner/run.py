"""Turn one :class:`~scloop.core.config.ExperimentSpec` into a finished run directory.

:func:`run_experiment` resolves registry names (after loading the spec's plugins), picks the
engine (the vectorised Gaussian ensemble when every plugin declares the ``gaussian-ensemble``
capability, else the generic :func:`~scloop.loop.engine.run_loop` per seed and unit), checks a
reused run id against the stored run's identity, wires the store, checkpoints, callbacks and
provenance, and handles ``resume``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from scloop.core.config import ExperimentSpec, check_id
from scloop.core.registry import CORRECTIONS, METRICS, MODELS, POLICIES, TASKS, ConfigError
from scloop.core.types import CorrectionContext
from scloop.plugins import load_plugins, plugin_fingerprints, plugin_payload, resolve_ref
from scloop.runner.hooks import Dispatcher, Progress, RunInfo, call_all
from scloop.store import provenance
from scloop.store.run_store import RunStore, Unit

log = logging.getLogger("scloop")
MARKER = ".scloop-run"  # written into every run directory scloop creates; --force deletes only those


class RunExists(RuntimeError):
    """The run directory exists and is incomplete; resume it or start over."""


class RunConflict(ConfigError):
    """A run id is reused for a run whose numbers would differ from the stored ones."""


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    path: Path
    engine: str
    n_units: int
    seconds: float
    skipped: bool = False
    identity: dict[str, Any] = field(default_factory=dict)


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
    """Check every name and option against the registries (raises ConfigError); loads the
    spec's ``plugins`` first."""
    load_plugins(spec.plugins)
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


# ---------------------------------------------------------------------- identity
def _components(spec: ExperimentSpec) -> list[tuple[str, str]]:
    return ([("task", spec.task.name), ("model", spec.model.name), ("policy", spec.policy.name)]
            + [("correction", c.name) for c in spec.corrections] + [("metric", m) for m in spec.metrics])


def run_identity(spec: ExperimentSpec, engine: str | None = None) -> dict[str, Any]:
    """Everything that determines a run's numbers: the config digest, the engine ``auto``
    resolves to, and the code fingerprint of every plugin the run uses (scloop's own: its
    version).  Stored as ``identity.json`` in the run directory."""
    engine = engine or choose_engine(spec)
    ident = {"digest": spec.digest(), "engine": engine, "plugins": plugin_fingerprints(_components(spec))}
    if engine == "vectorized":
        ident["streams"] = _streams_layout()
    return ident


def _streams_layout() -> str:
    """How the vectorised engine lays out its random streams (numbers depend on it above one
    block of seeds)."""
    from scloop.tasks.gaussian_ensemble import SEED_BLOCK

    return f"seed-blocks-{SEED_BLOCK}"


def _stream_difference(spec: ExperimentSpec, old: dict[str, Any], identity: dict[str, Any]) -> list[str]:
    """Runs of more than one block of seeds made before seed blocks (no identity.json: one
    stream for all seeds) or with another block size hold other numbers; at most one block,
    every layout gives the same numbers."""
    from scloop.tasks.gaussian_ensemble import SEED_BLOCK

    new = identity.get("streams")
    if new is None:
        return []
    stored = old.get("streams") or ("seed-blocks-1000" if old else "one stream for all seeds")
    stored_block = int(stored.rsplit("-", 1)[1]) if stored.startswith("seed-blocks-") else float("inf")
    if stored == new or spec.seeds <= min(stored_block, SEED_BLOCK):
        return []
    return [f"random streams: stored {stored!r}, now {new!r} (with {spec.seeds:,} seeds the layouts give "
            "different numbers)"]


# the engine key is compared as what it resolves to (auto -> vectorized or generic), below
_NOT_NUMBERS = ("name", "checkpoint_every", "plugins", "description", "engine")


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def identity_differences(store: RunStore, spec: ExperimentSpec, identity: dict[str, Any]) -> list[str]:
    """What differs between the run stored in ``store`` and ``spec`` run with ``identity``, as
    ``"key: stored X, now Y"`` lines, in config order (empty when they are the same run)."""
    import yaml

    try:
        stored = yaml.safe_load(store.config_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        return [f"config.yaml: unreadable ({exc})"]
    new = spec.to_dict()
    diffs = []
    for key in list(new) + [k for k in stored if k not in new]:
        if key in _NOT_NUMBERS:
            continue
        a, b = stored.get(key), new.get(key)
        if _canon(a) != _canon(b):
            diffs.append(f"{key}: stored {a!r}, now {b!r}")
    old = store.identity()
    old_engine = old.get("engine") or store.status().get("engine")
    if old_engine and old_engine != identity["engine"]:
        diffs.append(f"engine: stored {old_engine!r}, now {identity['engine']!r}")
    diffs += _stream_difference(spec, old, identity)
    for k, fp in identity["plugins"].items():
        before = old.get("plugins", {}).get(k)
        if old and before != fp:
            diffs.append(f"plugin {k}: code changed (fingerprint stored {before}, now {fp})")
    return diffs


def conflict_message(store: RunStore, diffs: list[str]) -> str:
    first = diffs[0].split(":", 1)[0]
    more = "" if len(diffs) == 1 else f" (and {len(diffs) - 1} more: " + "; ".join(diffs[1:4]) + ")"
    return (f"run {store.run_id!r} in {store.path.parent} was computed with a different {first!r} -- "
            f"{diffs[0]}{more}; its numbers are not those of this config. Use another --run-id, or --force to "
            "delete the stored run and recompute")


# ---------------------------------------------------------------------- safety
def _is_scloop_run_dir(path: Path) -> bool:
    if (path / MARKER).is_file():
        return True
    # runs made before the marker existed
    return all((path / f).is_file() for f in ("results.sqlite", "config.yaml", "status.json"))


def remove_run_dir(path: Path, out: Path) -> None:
    """Delete ``path`` for ``--force``: only a directory directly inside ``out`` that scloop
    created (a marker file); anything else is a ConfigError and nothing is deleted."""
    path, root = Path(path), Path(out)
    if not path.exists():
        return
    if path.is_symlink() or not path.is_dir() or path.resolve().parent != root.resolve():
        raise ConfigError(f"--force: {path} is not a run directory inside {root}; not deleting it")
    if not _is_scloop_run_dir(path):
        raise ConfigError(f"--force: {path} was not created by scloop (no {MARKER} file); not deleting it")
    shutil.rmtree(path)


# ---------------------------------------------------------------------- main entry
def run_experiment(spec: ExperimentSpec, *, out: Path | str = "runs", run_id: str | None = None,
                   resume: bool = False, force: bool = False, quiet: bool = True,
                   workers: int = 1, silent: bool = False, callbacks: Iterable[Any] = (),
                   plugins: Iterable[str] = ()) -> RunSummary:
    """Run (or resume) ``spec`` into ``out/<run_id>``.

    ``workers`` > 1 runs the units of the generic engine in that many processes (same numbers
    as ``workers=1``); 0 means one per CPU core.  The vectorised engine is one process that
    computes up to ``workers`` cells (blocks of seeds x gammas) at once in threads (same numbers).
    ``plugins``: extra plugin modules / ``.py`` files (recorded in the run's config).
    ``callbacks``: objects with ``on_generation_end(event)`` (and optionally ``on_run_start`` /
    ``on_run_end``), called in this process.  ``silent``: no progress output at all.

    A run id that exists is reused only for the same run: the same numbers-determining config,
    engine and plugin code (else :class:`RunConflict`); a complete one is returned as
    ``skipped``, an incomplete one needs ``resume`` (else :class:`RunExists`)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"--workers: got {workers!r}; allowed: an integer >= 0 (0 = one per CPU core)")
    if workers == 0:
        workers = os.cpu_count() or 1
    if run_id is not None:
        check_id(run_id, "--run-id")
    refs = [resolve_ref(r) for r in plugins]
    if refs:
        spec = replace(spec, plugins=tuple(dict.fromkeys(list(spec.plugins) + refs)))
    validate(spec)
    engine = choose_engine(spec)
    identity = run_identity(spec, engine)
    run_id = run_id if run_id is not None else default_run_id(spec)
    out = Path(out)
    path = out / run_id
    store = RunStore(path)
    if path.exists() and not store.exists() and (path / MARKER).is_file():
        remove_run_dir(path, out)  # killed before its database existed
    if path.exists() and not store.exists() and any(path.iterdir()) and not force:
        raise ConfigError(f"--run-id {run_id!r}: {path} exists and is not a scloop run; choose another --run-id "
                          "or --out")
    if store.exists() and not store.status() and (path / MARKER).is_file():
        # killed while it was being created (no status yet, maybe no units): nothing to keep
        store.close()
        remove_run_dir(path, out)
    if store.exists() and not force:
        diffs = identity_differences(store, spec, identity)
        if diffs:
            raise RunConflict(conflict_message(store, diffs))
        status = store.status()
        if not resume:
            if status.get("state") == "complete":
                store.close()
                return RunSummary(run_id, store.path, engine, status.get("n_units", 0), 0.0, skipped=True,
                                  identity=identity)
            raise RunExists(f"run {store.path} exists but is incomplete ({status.get('state')}); pass --resume to "
                            "continue it or --force to start over")
    resuming = resume and store.exists() and not force
    if not resuming:
        if force:
            store.close()
            remove_run_dir(path, out)
        # the marker first: a directory killed half-way through its creation is still known as ours
        store.path.mkdir(parents=True, exist_ok=True)
        (store.path / MARKER).write_text("created by scloop; `scloop run --force` may delete this directory\n")
        store.create(spec.to_yaml(), build_units(spec))
    store.write_identity(identity)
    units = store.units()
    payload = plugin_payload() if workers > 1 else None
    info = RunInfo(run_id, store.path, spec, "running")
    dispatcher = Dispatcher(store, callbacks)
    dispatcher.start_from_now()
    t0 = time.perf_counter()
    provenance.start(store.path, _device(spec))
    store.write_status(state="running", engine=engine, started_at=provenance.now(), ended_at=None)
    call_all(callbacks, "on_run_start", info)
    progress = Progress(len(units) * spec.n_generations, quiet, "generations" if engine == "vectorized"
                        else "unit-generations", silent=silent, on_advance=dispatcher.flush)
    try:
        if engine == "vectorized":
            from scloop.runner.vectorized import _run_vectorized

            _run_vectorized(spec, store, units, resuming, progress, on_rows=dispatcher.flush, threads=workers)
        else:
            from scloop.runner.generic import _run_generic

            _run_generic(spec, store, units, resuming, progress, workers, payload)
        dispatcher.flush()
    except BaseException as exc:
        progress.close()
        store.write_status(state="failed", error=f"{type(exc).__name__}: {exc}", ended_at=provenance.now())
        provenance.finish(store.path, "failed")
        call_all(callbacks, "on_run_end", replace(info, state="failed"))
        store.close()
        raise
    progress.close()
    store.write_status(state="complete", completed_generation=spec.n_generations, error=None,
                       ended_at=provenance.now())
    provenance.finish(store.path, "complete")
    call_all(callbacks, "on_run_end", replace(info, state="complete"))
    store.close()
    return RunSummary(run_id, store.path, engine, len(units), time.perf_counter() - t0, identity=identity)


def _device(spec: ExperimentSpec) -> str:
    return str(spec.model.kwargs.get("device", "auto"))
