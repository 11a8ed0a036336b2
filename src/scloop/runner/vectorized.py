"""The vectorised Gaussian engine: all seeds x gammas of one (arm, lambda, correction) group as
batched computations on sufficient statistics (:mod:`scloop.tasks.gaussian_ensemble`).
Used when every plugin of the run declares the ``gaussian-ensemble`` capability.

A group is computed in *cells*: blocks of up to 1,000 seeds (each drawing from its own random
streams), and, when a block's trajectories would not fit in the ensemble's memory budget, a
few gammas at a time.  Cells run one after the other, so memory is bounded whatever the number
of seeds; the numbers do not depend on how a block is split (every computation is per
trajectory).

Checkpoints (``checkpoints/``), per cell, every ``checkpoint_every`` generations:

- ``<cell>.npz``: the sufficient statistics and fitted moments, float64 (the running sums are
  not recomputable from anything smaller, and resuming must continue bit for bit), the
  degenerate mask, and the list of point files; written atomically (fsync, rename) last;
- ``<cell>.p<j0>-<j1>.npy``: the synthetic points of generations j0 < j <= j1 that the policy
  still reads (``paper-toy``: only the points it will subtract before the last generation;
  ``accumulate-subsample``: all of them), float64 as sampled.  Each batch is written once, by
  the first checkpoint after it, and a file is deleted once none of its points is needed; at
  the last generation none is.  They are renamed into place but not fsynced: a killed process
  loses nothing (the kernel has the data), a power cut may truncate one, which loading reports
  as a :class:`~scloop.store.atomic.CorruptFile`.

The records of a cell are committed to the run store (one Parquet file) just before its
checkpoint: a killed run resumes from its last checkpoints and recomputes, identically, what
came after them.
"""

from __future__ import annotations

import functools
import queue
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from scloop.core.config import ExperimentSpec
from scloop.core.registry import TASKS
from scloop.core.types import Provenance
from scloop.runner.hooks import Progress
from scloop.store.atomic import CorruptFile, atomic_target, load_npz, save_npz
from scloop.store.columnar import Coded, RecordBatch
from scloop.store.run_store import RunStore, Unit

_STATUS = ["ok", "degenerate"]


@dataclass(frozen=True)
class _Cell:
    group: int
    seeds: tuple[int, int]  # [s0, s1): a block of seed_blocks(), or all of it
    block: int  # the random-stream block (seed index of its streams)
    gammas: tuple[int, int]  # [c0, c1) indices into the group's gammas
    table: np.ndarray  # (s1 - s0, c1 - c0) unit ids

    @property
    def name(self) -> str:
        return (f"cell-g{self.group:03d}-s{self.seeds[0]:06d}-{self.seeds[1]:06d}"
                f"-c{self.gammas[0]:03d}-{self.gammas[1]:03d}")


def _cells(spec: ExperimentSpec, units: list[Unit]):
    from scloop.tasks.gaussian_ensemble import Group, bytes_per_trajectory, gamma_chunk, seed_blocks

    by_combo: dict[tuple, dict[tuple[int, float], int]] = {}
    for u in units:
        by_combo.setdefault((u.arm, u.lam, u.correction), {})[(u.seed, u.gamma)] = u.unit
    corr_by_label = {c.label(): c for c in spec.corrections}
    d = int(spec.task.kwargs.get("dim", 2))
    out = []
    for gi, ((arm, lam, corr), ids) in enumerate(by_combo.items()):
        comp = corr_by_label.get(corr)
        gammas = tuple(spec.gammas) if arm == "correction" else (0.0,)
        grp = Group(arm, lam, comp.name if comp else "none", comp.kwargs if comp else {}, gammas)
        table = np.array([[ids[(s, g)] for g in gammas] for s in range(spec.seeds)])  # (S, G) unit ids
        m = 0 if arm == "baseline" else int(np.floor(lam * spec.n_real))
        per = bytes_per_trajectory(spec.policy.name, m, spec.n_generations, d)
        for bi, (s0, s1) in enumerate(seed_blocks(spec.seeds)):
            step = gamma_chunk(s1 - s0, len(gammas), per) if arm == "correction" else 1
            for c0 in range(0, len(gammas), step):
                c1 = min(len(gammas), c0 + step)
                sub = replace(grp, gammas=gammas[c0:c1]) if arm == "correction" else grp
                out.append((sub, _Cell(gi, (s0, s1), bi, (c0, c1), table[s0:s1, c0:c1])))
    return out


def _run_vectorized(spec: ExperimentSpec, store: RunStore, units: list[Unit], resume: bool, progress: Progress,
                    on_rows=None, threads: int = 1) -> None:
    """Compute every cell of the run, up to ``threads`` cells at a time.

    Cells are independent (their own random streams and checkpoints), so they can run
    concurrently in threads: the compiled kernels release the GIL, as do numpy's array loops.
    This thread (the caller's) stays the only one that touches the store, the progress bar and
    the callbacks: a cell's checkpoint is executed here while the cell waits for it, so rows
    are still committed before the checkpoint that covers them."""
    from scloop.tasks.gaussian_ensemble import GaussianEnsemble, run_ensemble

    task = TASKS.create(spec.task.name, **spec.task.kwargs)
    cells = _cells(spec, units)
    progress.total = len(cells) * spec.n_generations
    reg = float(spec.model.kwargs.get("reg_covar", 0.0))
    N = spec.n_generations

    def ensemble(grp, cell: _Cell) -> GaussianEnsemble:
        return GaussianEnsemble(task=task, group=grp, n_real=spec.n_real, n_seeds=cell.seeds[1] - cell.seeds[0],
                                base_seed=spec.seed, policy=spec.policy.name, policy_options=spec.policy.kwargs,
                                metrics=spec.metrics, init_offset=spec.init_offset, reg_covar=reg,
                                stream_seed=cell.block, horizon=N)

    store.checkpoints.mkdir(parents=True, exist_ok=True)
    starts: dict[str, dict | None] = {}
    if resume:
        # one pass over the stored records: each cell keeps what its checkpoint covers
        store.remove_unlisted_files()
        cutoff = np.full(len(units), -1, dtype=np.int64)
        for grp, cell in cells:
            small = _read_small(store.checkpoints / f"{cell.name}.npz")
            starts[cell.name] = small
            cutoff[cell.table.ravel()] = int(small["generation"]) if small is not None else -1
        store.truncate_each(cutoff)
    _remove_stale(store.checkpoints, {c.name for _, c in cells})

    def run_cell(grp, cell: _Cell, main) -> None:
        ens = ensemble(grp, cell)
        table = cell.table
        small = starts.get(cell.name)
        state = _load_cell(store.checkpoints, cell.name, ens, small) if small is not None else None
        files = [tuple(int(v) for v in r) for r in small["chunks"]] if small is not None else []
        through = [int(small["points_through"]) if small is not None else 0]
        start = int(state["generation"]) if state is not None else 0
        main.post(progress.advance, start)
        flat = table.ravel()
        n_units = len(flat)
        dead_so_far = np.zeros(table.shape, dtype=bool) if state is None else state["dead"].copy()
        # Rows are committed together with each checkpoint: a killed run resumes from its
        # last checkpoint and recomputes (identically) whatever came after it.
        pending = RecordBatch()

        def emit(gen, metrics, diag, bad, reason, secs, prov, n_real, n_syn):
            alive = np.nonzero(~dead_so_far.ravel())[0]
            bad_flat = bad.ravel()[alive]
            if not bad_flat.any():
                reason_col = ""
            elif isinstance(reason, str):
                reason_col = Coded(bad_flat.astype(np.intp), ["", reason])
            else:  # (S, G): each newly degenerate trajectory's own cause
                reason_col = Coded.encode(np.asarray(reason, dtype=object).ravel()[alive].tolist())
            vals = {k: np.asarray(v, dtype=float).ravel()[alive] for k, v in metrics.items()}
            vals.update({k: np.asarray(v, dtype=float).ravel()[alive] for k, v in diag.items()})
            pending.add(unit=flat[alive], generation=gen, status=Coded(bad_flat.astype(np.intp), _STATUS),
                        reason=reason_col, n_real=n_real, n_synthetic=n_syn,
                        provenance=_provenance_json(prov),
                        seconds={k: v / n_units for k, v in secs.items()}, metrics=vals)
            dead_so_far[...] |= bad

        def gen0(metrics):
            emit(0, metrics, {}, np.isnan(next(iter(metrics.values()))), "singular covariance at generation 0",
                 {}, ((-1, False, spec.n_real),), spec.n_real, 0)

        def on_step(res):
            emit(res.generation, res.metrics, res.diagnostics, res.status_bad, res.reason_of(), res.seconds,
                 res.provenance, res.n_real, res.n_synthetic)
            main.post(progress.advance, 1, f"[{grp.arm} λ={grp.lam:g} {grp.correction}]")

        def commit_rows():  # this and commit: on the calling thread (see the docstring)
            store.write_batch(pending)
            pending.clear()
            if on_rows is not None:
                on_rows()

        def commit(st):
            commit_rows()
            _save_cell(store.checkpoints, cell.name, st, files, through, N)
            store.write_status(completed_generation=int(st["generation"]))

        run_ensemble(ens, N, state=state, on_step=on_step, checkpoint=lambda st: main.call(commit, st),
                     checkpoint_every=spec.checkpoint_every, gen0=gen0)
        main.call(commit_rows)

    try:
        _for_each_cell(cells, run_cell, threads)
    finally:
        progress.close()


class _MainThread:
    """Work that cell threads hand to the calling thread: ``call`` waits for the result (or
    the exception), ``post`` does not.  With one thread both run the function at once."""

    def __init__(self, inline: bool) -> None:
        self.inline = inline
        self.requests: queue.Queue = queue.Queue()
        self.stopped = False

    def call(self, fn, *args):
        if self.inline:
            return fn(*args)
        if self.stopped:
            raise _Stopped()
        done, box = threading.Event(), {}
        self.requests.put((fn, args, done, box))
        done.wait()
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def post(self, fn, *args) -> None:
        if self.inline:
            fn(*args)
        elif not self.stopped:
            self.requests.put((fn, args, None, None))

    def serve(self, futures) -> None:
        """Run requests until every future is done (on the calling thread)."""
        while True:
            try:
                fn, args, done, box = self.requests.get(timeout=0.05)
            except queue.Empty:
                for f in futures:  # a failed cell stops the run (the others are released)
                    if f.done() and not f.cancelled() and f.exception() is not None:
                        raise f.exception()
                if all(f.done() for f in futures):
                    return
                continue
            try:
                value = fn(*args)
            except BaseException as exc:  # handed to the waiting cell, which raises it
                if box is None:
                    raise
                box["error"] = exc
            else:
                if box is not None:
                    box["value"] = value
            if done is not None:
                done.set()

    def stop(self) -> None:
        """Refuse further requests and release every cell waiting for one."""
        self.stopped = True
        while True:
            try:
                _, _, done, box = self.requests.get_nowait()
            except queue.Empty:
                return
            if done is not None:
                box["error"] = _Stopped()
                done.set()


class _Stopped(Exception):
    """Raised in a cell thread when the run stops (another cell failed, or an interrupt)."""


def _for_each_cell(cells, run_cell, threads: int) -> None:
    """``run_cell(grp, cell, main)`` for every cell, ``threads`` at a time (in order when 1)."""
    threads = max(1, min(threads, len(cells)))
    if threads == 1:
        main = _MainThread(inline=True)
        for grp, cell in cells:
            run_cell(grp, cell, main)
        return
    from concurrent.futures import ThreadPoolExecutor

    main = _MainThread(inline=False)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="scloop-cell")
    futures = [pool.submit(run_cell, grp, cell, main) for grp, cell in cells]
    try:
        main.serve(futures)
    except BaseException:
        main.stop()
        for f in futures:
            f.cancel()
        raise
    finally:
        main.stop()
        pool.shutdown(wait=True)
    for f in futures:  # the first failure, in cell order (not a _Stopped of a cell it stopped)
        exc = f.exception()
        if exc is not None and not isinstance(exc, _Stopped):
            raise exc


@functools.lru_cache(maxsize=8192)
def _provenance_json(prov: tuple) -> str:
    # shared by every block and piece of a group at a generation, and O(generation) long
    return Provenance(prov).to_json()


# ---------------------------------------------------------------------- checkpoints
_SMALL = ("generation", "real_s1", "real_s2", "mean", "cov", "dead", "acc_s1", "acc_s2")


def _chunk_path(ckdir: Path, name: str, j0: int, j1: int) -> Path:
    return ckdir / f"{name}.p{j0:06d}-{j1:06d}.npy"


def _save_cell(ckdir: Path, name: str, st: dict, files: list[tuple[int, int, int]], through: list[int],
               horizon: int) -> None:
    """Checkpoint one cell at generation c (see the module docstring).  ``files`` (j0, j1,
    written at) and ``through`` (the last generation whose points are on disk) are updated."""
    c = int(st["generation"])
    pts = st.get("points")
    if pts is not None and c > through[0]:
        arr = pts.chunk(through[0], c, st["mean"].shape)
        if arr.shape[2]:
            _write_npy(_chunk_path(ckdir, name, through[0], c), arr)
            files.append((through[0], c, c))
        through[0] = c
    keep = [f for f in files if pts is not None and c < horizon and pts.needed(f[0], f[1], c)]
    gone = [f for f in files if f not in keep]
    small = {k: st[k] for k in _SMALL}
    small["chunks"] = np.array(keep, dtype=np.int64).reshape(-1, 3)
    small["points_through"] = np.array(through[0])
    save_npz(ckdir / f"{name}.npz", small)
    files[:] = keep
    for j0, j1, _ in gone:  # only after the state that no longer lists them is in place
        _chunk_path(ckdir, name, j0, j1).unlink(missing_ok=True)


def _read_small(path: Path) -> dict | None:
    if not path.exists():
        return None
    return {k: np.array(v) for k, v in load_npz(path).items()}


def _load_cell(ckdir: Path, name: str, ens, small: dict) -> dict:
    st = ens.restore(small)
    g = int(small["generation"])
    for j0, j1, at in (tuple(int(v) for v in r) for r in small["chunks"]):
        path = _chunk_path(ckdir, name, j0, j1)
        try:
            arr = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise CorruptFile(f"{path}: a checkpoint file listed in {name}.npz is missing; delete {name}.npz to "
                              "recompute this part of the run, or rerun with --force") from None
        except Exception as exc:
            raise CorruptFile(f"{path}: unreadable checkpoint/array file ({type(exc).__name__}: {exc}); delete "
                              f"{name}.npz to recompute this part of the run, or rerun with --force") from None
        st["points"].restore(j0, j1, arr, at, g)
    return st


def _write_npy(path: Path, arr: np.ndarray) -> None:
    """Write an array as .npy under a temporary name and rename it into place (no fsync: see
    the module docstring)."""
    with atomic_target(path, sync=False) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)


def _remove_stale(ckdir: Path, names: set[str]) -> None:
    """Delete checkpoint files of cells this run does not have (another memory budget split
    the blocks differently, or a run made before cells existed), and point files no state
    lists (left by a process killed while checkpointing)."""
    if not ckdir.is_dir():
        return
    listed: set[str] = set()
    for p in ckdir.glob("cell-*.npz"):
        if p.stem in names:
            try:
                small = load_npz(p)
            except CorruptFile:
                continue  # reported when the cell is resumed
            listed.update(_chunk_path(ckdir, p.stem, int(r[0]), int(r[1])).name for r in small["chunks"])
    for p in ckdir.iterdir():
        if p.name.startswith(".cell-") and p.name.endswith(".tmp"):
            p.unlink(missing_ok=True)
        elif p.name.startswith("cell-"):
            stem = p.name.split(".")[0]
            if stem not in names or (p.suffix == ".npy" and p.name not in listed) or p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)
        elif p.name.startswith("group") and p.suffix == ".npz":
            p.unlink(missing_ok=True)  # the format before cells: its rows are recomputed
