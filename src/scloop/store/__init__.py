"""Embedded stores: run directories (SQLite results, checkpoints, status) and sweep directories
(one tidy results table over all runs of a sweep: :func:`open_results`)."""

from scloop.store.atomic import atomic_write_bytes, atomic_write_text, load_npz, save_npz
from scloop.store.run_store import EXPORT_COLUMNS, RunStore, list_runs
from scloop.store.sweep_store import SweepStore, is_sweep_dir, open_results

__all__ = [
    "EXPORT_COLUMNS",
    "RunStore",
    "SweepStore",
    "atomic_write_bytes",
    "atomic_write_text",
    "is_sweep_dir",
    "list_runs",
    "load_npz",
    "open_results",
    "save_npz",
]
