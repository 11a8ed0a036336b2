"""The vectorised Gaussian engine: all seeds x gammas of one (arm, lambda, correction) group as
one batched computation on sufficient statistics (:mod:`scloop.tasks.gaussian_ensemble`).
Used when every plugin of the run declares the ``gaussian-ensemble`` capability."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scloop.core.config import ExperimentSpec
from scloop.core.registry import TASKS
from scloop.core.types import Provenance
from scloop.runner.hooks import Progress
from scloop.store.atomic import load_npz, save_npz
from scloop.store.run_store import RunStore, Unit


def _run_vectorized(spec: ExperimentSpec, store: RunStore, units: list[Unit], resume: bool, progress: Progress,
                    on_rows=None) -> None:
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
    progress.total = len(groups) * spec.n_generations
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
                if on_rows is not None:
                    on_rows()
                pending.clear()
                _save_group_checkpoint(ckpt, st)
                store.write_status(completed_generation=int(st["generation"]))

            run_ensemble(ens, spec.n_generations, state=state, on_step=on_step, checkpoint=checkpoint,
                         checkpoint_every=spec.checkpoint_every, gen0=gen0)
            store.write_records(pending)
            pending.clear()
            if on_rows is not None:
                on_rows()
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
