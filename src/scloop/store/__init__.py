"""Embedded run store: run directories with a SQLite results table, checkpoints and status."""

from scloop.store.atomic import atomic_write_bytes, atomic_write_text, load_npz, save_npz
from scloop.store.run_store import EXPORT_COLUMNS, RunStore, list_runs

__all__ = [
    "EXPORT_COLUMNS",
    "RunStore",
    "atomic_write_bytes",
    "atomic_write_text",
    "list_runs",
    "load_npz",
    "save_npz",
]
