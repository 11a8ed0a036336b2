"""Units of the generic engine in spawned worker processes (one BLAS/torch thread each).

Numbers do not depend on the number of workers: every unit draws from its own (seed,
generation, role) random streams and a seed's generation-0 model is fitted once and shared
through the generation-0 cache.  Each worker imports the plugins of the process that started
the run (see :func:`scloop.plugins.plugin_payload`)."""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from scloop.core.config import ExperimentSpec
from scloop.core.registry import CORRECTIONS
from scloop.core.types import CorrectionContext
from scloop.plugins import load_plugins
from scloop.runner.artifacts import _device, cache_dir_for
from scloop.runner.generic import _run_unit, _seed_context, _SeedCache, _unit_finished
from scloop.runner.hooks import Progress
from scloop.store.run_store import RunStore, Unit

log = logging.getLogger("scloop")
MAX_POOL_RESTARTS = 2  # new worker pools after a worker died, before the run is recorded failed


def init_worker(payload: dict | None = None, parent: int | None = None) -> None:
    """One BLAS/OpenMP/torch thread per worker: two workers on two cores with two threads each
    oversubscribe the machine (measured up to 30x slower)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    import sys

    if "torch" in sys.modules:  # pragma: no cover - spawn workers start without torch
        sys.modules["torch"].set_num_threads(1)
    if payload is not None:
        # the parent's plugins: its --plugin files and modules, and __main__ plugins by value
        from scloop.plugins import install_plugin_payload

        install_plugin_payload(payload)
    if parent is not None:
        # A killed parent (kill -9, a closed terminal) must not leave workers computing.  A thread
        # rather than a check between generations: an idle pool worker blocks on its task queue
        # (whose write end the other workers also hold, so it never sees EOF) and one generation
        # can take long.  Exiting anywhere is as safe as a kill -9 of the worker: records are
        # committed per generation and checkpoints are atomic, so a re-run resumes.
        threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.1)  # short: a small run can finish (and a queued one start) within one poll
    os._exit(1)


def _worker_store(run_dir: str) -> tuple[ExperimentSpec, RunStore]:
    import yaml

    from scloop.core.config import spec_from_dict

    store = RunStore(Path(run_dir))
    spec = spec_from_dict(yaml.safe_load(store.config_text()))
    load_plugins(spec.plugins)
    return spec, store


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
    _run_unit(cache.spec, cache.store, u, cache.context(u.seed), lambda: cache.generation0(u.seed), resume,
              lambda k: None)


def _run_parallel(spec: ExperimentSpec, store: RunStore, todo: list[Unit], resume: bool, workers: int,
                  progress: Progress, payload: dict | None = None) -> None:
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

    remaining = todo
    for restart in range(MAX_POOL_RESTARTS + 1):
        seeds = sorted({u.seed for u in remaining})
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                     initializer=init_worker, initargs=(payload, os.getpid())) as ex:
                poll([ex.submit(_worker_gen0, run_dir, s) for s in seeds])
                # longest units first (corrected arms sample and correct; the baseline does neither)
                order = sorted(remaining, key=lambda u: (u.arm == "baseline", u.arm == "no-correction", u.unit))
                poll([ex.submit(_worker_unit, run_dir, u.unit, resume or restart > 0) for u in order])
            break
        except BrokenProcessPool as exc:
            # a worker was killed (SIGKILL, the OOM killer): the pool is gone with every unit in
            # flight; the unfinished units go on in a new pool from their last checkpoints
            remaining = [u for u in remaining if not _unit_finished(store, spec, u.unit)]
            if restart == MAX_POOL_RESTARTS or not remaining:
                raise RuntimeError(f"a worker process died {restart + 1} times ({exc}); {len(remaining)} units are "
                                   "unfinished -- `scloop run ... --resume` continues them") from None
            log.warning("a worker process died; continuing %d unfinished units in new worker processes from their "
                        "last checkpoints", len(remaining))
    finished = len(todo) * spec.n_generations - shown
    if finished > 0:
        progress.advance(finished)
    store.write_status(completed_generation=store.max_generation())
