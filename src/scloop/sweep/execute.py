"""Run a sweep: every point is one :func:`scloop.runner.run_experiment` call, executed by a
local process pool or by Ray tasks, with the same function (:func:`run_point`) either way.

Guarantees
----------
* **Same numbers on every executor**: a run's numbers depend only on its config (every unit
  draws from its own (seed, generation, role) random streams), never on which process or node
  ran it, so ``--executor local`` and ``--executor ray`` fill identical tables.
* **Idempotent / resumable**: a complete run is skipped; a partial run (killed sweep) is resumed
  from its last checkpoint and recomputes the same numbers.
* **One process per run**: a run is executed under an exclusive file lock
  (``locks/<run_id>.lock``), so several sweep processes -- or a sweep started twice -- share the
  work instead of duplicating it.
* **Failure isolation**: a run that raises is recorded (state ``failed`` + the error) and the
  sweep goes on; :class:`SweepSummary` counts failures and the CLI exits non-zero.
* **Shared generation 0**: runs that differ only in arm / lambda / gamma / correction find the
  generation-0 model in ``runs/.cache/gen0`` (content-addressed, see
  :func:`scloop.runner.gen0_key`).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from scloop.core.config import check_id
from scloop.core.registry import ConfigError
from scloop.store import provenance
from scloop.store.atomic import atomic_write_text
from scloop.store.locks import FileLock
from scloop.store.sweep_store import SweepStore, is_sweep_dir
from scloop.sweep.spec import SweepSpec

log = logging.getLogger("scloop")

EXECUTORS = ("local", "ray")


@dataclass
class SweepSummary:
    name: str
    path: Path
    n_runs: int
    completed: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def line(self) -> str:
        return (f"sweep {self.name}: {self.n_runs} runs -- {self.completed} ran, {self.skipped} already complete, "
                f"{self.failed} failed; {self.seconds:.1f} s -> {self.path}")


# ---------------------------------------------------------------------- one run
def _stored_run_differs(sweep: SweepStore, run_id: str, spec) -> list[str]:
    """Why the stored run ``run_id`` is not the run ``spec`` would compute now (config, engine,
    plugin code); empty when it is, or when nothing is stored."""
    from scloop.runner.run import identity_differences, run_identity, validate
    from scloop.store.run_store import RunStore

    store = RunStore(sweep.run_dir(run_id))
    if not store.exists():
        return []
    try:
        validate(spec)
        return identity_differences(store, spec, run_identity(spec))
    finally:
        store.close()


def run_point(sweep_dir: str, run_id: str, wait: bool = True, payload: dict | None = None) -> dict[str, Any]:
    """Execute (or resume, or skip) one run of a sweep and copy its rows into the sweep table.

    A run is skipped only when its stored identity (config, engine, plugin code) matches what
    it would compute now; a stored run that differs is recomputed from scratch.  ``payload``:
    the plugins of the process that started the sweep (:func:`scloop.plugins.plugin_payload`).
    Returns ``{"run_id", "outcome": complete|skipped|failed|busy, "seconds", "error"}``.  With
    ``wait=False`` a run locked by another process is left to it (``busy``)."""
    import yaml

    from scloop.core.config import spec_from_dict
    from scloop.plugins import install_plugin_payload
    from scloop.runner import run_experiment

    install_plugin_payload(payload)
    sweep = SweepStore(sweep_dir)
    t0 = time.perf_counter()
    lock = FileLock(sweep.lock_path(run_id))
    try:
        if not wait and not lock.try_acquire():
            return {"run_id": run_id, "outcome": "busy", "seconds": 0.0, "error": None}
        if wait:
            lock.__enter__()
        try:
            try:
                spec = spec_from_dict(yaml.safe_load(sweep.run_config(run_id)))
                stale = _stored_run_differs(sweep, run_id, spec)
            except Exception as exc:
                err = f"{type(exc).__name__}: {exc}"
                sweep.set_state(run_id, "failed", error=err, seconds=time.perf_counter() - t0)
                return {"run_id": run_id, "outcome": "failed", "seconds": time.perf_counter() - t0, "error": err}
            if stale:
                log.warning("sweep run %s: the stored run differs (%s); recomputing it", run_id, stale[0])
            elif sweep.state(run_id) == "complete" and (sweep.run_dir(run_id) / "results.sqlite").exists():
                return {"run_id": run_id, "outcome": "skipped", "seconds": 0.0, "error": None}
            sweep.set_state(run_id, "running")
            try:
                summary = run_experiment(spec, out=sweep.runs_dir, run_id=run_id, resume=not stale, force=bool(stale),
                                         quiet=True, workers=1, silent=True)
                secs = time.perf_counter() - t0
                sweep.ingest(run_id, seconds=None if summary.skipped else secs)
                return {"run_id": run_id, "outcome": "complete", "seconds": secs, "error": None}
            except Exception as exc:  # failure isolation: record and go on
                err = f"{type(exc).__name__}: {exc}"
                tb = traceback.format_exc(limit=8)
                sweep.set_state(run_id, "failed", error=f"{err}\n{tb}", seconds=time.perf_counter() - t0)
                return {"run_id": run_id, "outcome": "failed", "seconds": time.perf_counter() - t0, "error": err}
        finally:
            lock.__exit__(None, None, None)
    finally:
        sweep.close()


def _init_worker(parent: int | None = None, payload: dict | None = None) -> None:
    """One BLAS/torch thread per worker, the parent's plugins, and exit when the parent dies
    (kill -9 of ``scloop sweep`` must not leave workers computing; a re-run resumes their runs)."""
    from scloop.runner import init_worker

    init_worker(payload, parent)


# ---------------------------------------------------------------------- the sweep
def prepare_sweep(sweep: SweepSpec, out: Path | str, *, force: bool = False, resume: bool = False,
                  plugins: tuple[str, ...] = ()):
    """Expand and validate the sweep, create (or reopen) ``<out>/<name>``, register the runs.
    ``plugins`` (resolved references) are added to every run's config.  Raises ConfigError
    before anything is written when the sweep is invalid."""
    from dataclasses import replace

    from scloop.runner import validate

    check_id(sweep.name, "sweep name")
    points = sweep.points()
    if plugins:
        points = [replace(p, spec=replace(p.spec, plugins=tuple(dict.fromkeys(p.spec.plugins + tuple(plugins)))))
                  for p in points]
    for p in points:
        try:
            validate(p.spec)
        except ConfigError as exc:
            raise ConfigError(f"sweep {sweep.name!r}, run {p.run_id}: {exc}") from None
    path = Path(out) / sweep.name
    if resume and not (path / "sweep.sqlite").exists():
        raise ConfigError(f"--resume: no sweep at {path} to resume (run it without --resume first)")
    if force and path.exists():
        if not is_sweep_dir(path) or path.is_symlink() or path.resolve().parent != Path(out).resolve():
            raise ConfigError(f"--force: {path} is not a sweep directory scloop created inside {out}; not deleting it")
        shutil.rmtree(path)
    stored = path / "sweep.yaml"
    text = sweep.to_yaml()
    if stored.exists() and stored.read_text() != text:
        raise ConfigError(f"{path} holds a different sweep named {sweep.name!r} (see {stored}); use another --out, "
                          "or --force to delete it and start over")
    path.mkdir(parents=True, exist_ok=True)
    if not stored.exists():
        atomic_write_text(stored, text)
    store = SweepStore(path)
    store.register([(p.run_id, p.params_dict, p.spec.to_yaml()) for p in points])
    store.close()
    return path, points


def run_sweep(sweep: SweepSpec, *, out: Path | str = "runs", executor: str = "local", jobs: int = 0,
              address: str | None = None, force: bool = False, resume: bool = False, quiet: bool = False,
              on_event: Callable[[dict[str, Any]], None] | None = None, plugins=(),
              callbacks=()) -> SweepSummary:
    """Run every point of ``sweep`` into ``<out>/<sweep.name>`` (see the module docstring).
    ``jobs``: parallel runs (0 = one per CPU core; for Ray, the CPUs of a cluster it starts).
    ``plugins``: plugin modules / ``.py`` files for every run (loaded here, in each worker
    process and in each Ray task).  ``callbacks``: per-generation hooks (see
    :mod:`scloop.runner.hooks`), fed here with each run's records when it completes."""
    from scloop.plugins import load_plugins, plugin_payload, resolve_ref

    refs = tuple(resolve_ref(r) for r in plugins)
    load_plugins(refs)
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor: got {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0:
        raise ConfigError(f"--workers: got {jobs!r}; allowed: an integer >= 0 (0 = one per CPU core)")
    if address is not None and executor != "ray":
        raise ConfigError(f"--address: got {address!r}, but it only applies to --executor ray")
    jobs = jobs or os.cpu_count() or 1
    t0 = time.perf_counter()
    path, points = prepare_sweep(sweep, out, force=force, resume=resume, plugins=refs)
    for p in points:
        load_plugins(p.spec.plugins)
    payload = plugin_payload()
    summary = SweepSummary(sweep.name, path, len(points))
    provenance.start(path)
    progress = _SweepProgress(len(points), quiet, sweep.name)

    def record(res: dict[str, Any]) -> None:
        outcome = res["outcome"]
        if outcome == "complete":
            summary.completed += 1
        elif outcome == "skipped":
            summary.skipped += 1
        elif outcome == "failed":
            summary.failed += 1
            summary.failures.append((res["run_id"], res["error"]))
        progress.done(res)
        if callbacks and outcome == "complete":
            _replay(path, res["run_id"], callbacks)
        if on_event is not None:
            on_event(res)

    ids = [p.run_id for p in points]
    try:
        if executor == "local":
            _run_local(str(path), ids, jobs, record, progress, payload)
        else:
            _run_ray(str(path), ids, jobs, address, record, progress, payload)
    except BaseException:
        provenance.finish(path, "failed")
        raise
    finally:
        progress.close()
    provenance.finish(path, "complete" if not summary.failed else "failed")
    summary.seconds = time.perf_counter() - t0
    return summary


def _replay(sweep_dir: Path, run_id: str, callbacks) -> None:
    """Hand a finished run's records to the callbacks (the run ran in another process)."""
    import yaml

    from scloop.core.config import spec_from_dict
    from scloop.runner.hooks import Dispatcher, RunInfo, call_all
    from scloop.store.run_store import RunStore

    store = RunStore(Path(sweep_dir) / "runs" / run_id)
    try:
        info = RunInfo(run_id, store.path, spec_from_dict(yaml.safe_load(store.config_text())), "running")
        call_all(callbacks, "on_run_start", info)
        Dispatcher(store, callbacks).flush()
        call_all(callbacks, "on_run_end", RunInfo(run_id, store.path, info.spec, "complete"))
    finally:
        store.close()


def _run_local(path: str, ids: list[str], jobs: int, record, progress, payload: dict | None = None) -> None:
    if jobs == 1 or len(ids) == 1:
        # in-process: no pool to start (the runner's own worker pool is not used either)
        def in_process(ids: list[str], blocking: bool) -> list[str]:
            busy: list[str] = []
            for rid in ids:
                progress.started(rid)
                _collect(path, rid, lambda rid=rid: run_point(path, rid, blocking), "run died", record, busy)
            return busy

        _two_passes(ids, in_process)
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    todo, serial = ids, False
    while todo:
        lost: list[str] = []  # runs in flight or queued when a worker died (the pool dies with it)
        rank = {rid: i for i, rid in enumerate(todo)}
        with ProcessPoolExecutor(max_workers=1 if serial else jobs, mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker, initargs=(os.getpid(), payload)) as ex:
            def one_pass(ids: list[str], blocking: bool) -> list[str]:
                if lost:
                    lost.extend(ids)
                    return []
                futures = {ex.submit(run_point, path, rid, blocking): rid for rid in ids}
                for rid in ids[:jobs]:
                    progress.started(rid)
                busy: list[str] = []
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                    for f in done:
                        if isinstance(f.exception(), BrokenProcessPool):
                            lost.append(futures[f])
                        else:
                            _collect(path, futures[f], f.result, "worker process died", record, busy)
                return busy

            _two_passes(todo, one_pass)
        if not lost:
            return
        lost.sort(key=lambda rid: rank.get(rid, len(rank)))
        if serial:
            # one run at a time: the first lost run was the one in flight, the one whose worker died
            _collect(path, lost[0], _raise_died, "worker process died", record, [])
            todo = lost[1:]
        else:
            # a killed worker takes the whole pool down, so which run killed it is not known: the
            # lost runs go on one at a time in a new pool (a partial run resumes from its
            # checkpoint), where a death names its run
            log.warning("a sweep worker process died; continuing %d runs one at a time in a new worker process",
                        len(lost))
            serial, todo = True, lost


def _raise_died() -> dict[str, Any]:
    raise RuntimeError("its worker process died, also when it ran alone (killed, or out of memory)")


def _two_passes(ids: list[str], one_pass: Callable[[list[str], bool], list[str]]) -> None:
    """Run every id without waiting for runs another process holds, then wait for those."""
    busy = one_pass(ids, False)
    if busy:
        one_pass(busy, True)


def _collect(path: str, rid: str, get: Callable[[], dict[str, Any]], died: str, record, busy: list[str]) -> None:
    """The result of one run (``get()``), or a failure record when its process died; ``busy``
    runs are kept for the waiting pass."""
    try:
        res = get()
    except Exception as exc:  # a worker / task process that died (killed, out of memory)
        res = {"run_id": rid, "outcome": "failed", "seconds": 0.0, "error": f"{died}: {type(exc).__name__}: {exc}"}
        _mark_failed(path, rid, res["error"])
    if res["outcome"] == "busy":
        busy.append(rid)
    else:
        record(res)


def _mark_failed(path: str, rid: str, error: str) -> None:
    s = SweepStore(path)
    try:
        if s.state(rid) != "complete":
            s.set_state(rid, "failed", error=error)
    finally:
        s.close()


def _ray_task(path: str, run_id: str, wait: bool, payload: dict | None = None) -> dict[str, Any]:  # pragma: no cover - runs in Ray workers
    _init_worker(None, payload)
    return run_point(path, run_id, wait)


def _run_ray(path: str, ids: list[str], jobs: int, address: str | None, record, progress,
             payload: dict | None = None) -> None:
    """The same runs as Ray tasks (1 CPU each) on the cluster at ``address``, or on a local
    cluster of ``jobs`` CPUs started here and shut down afterwards.  On a multi-node cluster
    the sweep directory must be on a filesystem every node mounts at the same path, and scloop
    must be installed on every node."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray: Ray is not installed; install the extra: pip install 'scloop[ray]'") from None
    started = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_ACCEPT_CONNECTIONS_FROM_ANY_HOST", "0")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                                               "OPENBLAS_NUM_THREADS": "1"}})
        started = True
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_ray_task)

        def one_pass(ids: list[str], blocking: bool) -> list[str]:
            refs = {task.remote(path, rid, blocking, payload): rid for rid in ids}
            busy: list[str] = []
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
                for ref in done:
                    _collect(path, refs.pop(ref), lambda ref=ref: ray.get(ref), "Ray task died", record, busy)
            return busy

        _two_passes(ids, one_pass)
    finally:
        if started:
            ray.shutdown()


# ---------------------------------------------------------------------- progress
class _SweepProgress:
    """One overall bar (runs finished / total) plus a status line per run as it ends."""

    def __init__(self, total: int, quiet: bool, label: str) -> None:
        self.total, self.n, self.quiet, self.label = total, 0, quiet, label
        self._bar = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True))
            self._task = self._bar.add_task(f"sweep {label}", total=total)
            self._bar.start()

    def started(self, run_id: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=f"sweep {self.label} (running {run_id})")

    def done(self, res: dict[str, Any]) -> None:
        self.n += 1
        o = res["outcome"]
        mark = {"complete": "ok     ", "skipped": "done   ", "failed": "FAILED "}.get(o, o)
        line = f"[{self.n:>4}/{self.total}] {mark} {res['run_id']}"
        if o == "complete":
            line += f"  {res['seconds']:.1f} s"
        elif o == "failed":
            line += f"  {res['error']}"
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
            self._bar.update(self._task, advance=1)
        else:
            (log.warning if o == "failed" else log.info)("%s", line)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
