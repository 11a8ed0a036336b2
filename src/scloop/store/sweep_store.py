"""Sweep directories: one results table for every run of a sweep.

Layout of ``<out>/<sweep name>/``::

    sweep.yaml        the sweep file as parsed (what was expanded)
    sweep.sqlite      runs (id, parameters, config, state, error, seconds) and results (tidy rows)
    runs/<run_id>/    one run directory per point (see :mod:`scloop.store.run_store`)
    runs/.cache/      generation-0 models, feature networks ... shared by the runs
    locks/            one advisory lock per run: a run is executed by one process at a time
    report/           written by ``scloop report``

A run's rows are copied from its own ``results.sqlite`` into ``results`` in one transaction
when it completes (delete + insert, so re-ingesting is idempotent).  SQLite in WAL mode with a
busy timeout serialises concurrent writers (processes on one machine, Ray workers on a shared
filesystem that supports locks); a writer that still finds the database locked retries.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from scloop.store.atomic import CorruptFile
from scloop.store.run_store import EXPORT_COLUMNS, EXTRA_COLUMNS, RunStore, sql_filters

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, position INTEGER, params TEXT, config TEXT, state TEXT, error TEXT,
    seconds REAL, attempts INTEGER DEFAULT 0, updated REAL);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT, task TEXT, arm TEXT, seed INTEGER, lambda REAL, gamma REAL, n_real INTEGER,
    policy TEXT, correction TEXT, generation INTEGER, metric TEXT, value REAL, status TEXT,
    n_synthetic INTEGER,
    PRIMARY KEY (run_id, arm, seed, lambda, gamma, correction, generation, metric));
"""
RUN_STATES = ("pending", "running", "complete", "failed")


def _g_db(g: float) -> float:
    return 1e308 if isinstance(g, float) and math.isinf(g) else g


def _g_py(g: float) -> float:
    return math.inf if g is not None and g >= 1e308 else g


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / "sweep.sqlite").exists()


class SweepStore:
    """One sweep directory (see the module docstring).  Safe to open from many processes."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def lock_path(self, run_id: str) -> Path:
        return self.path / "locks" / f"{run_id}.lock"

    # ------------------------------------------------------------------ db
    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path / "sweep.sqlite", timeout=120, isolation_level=None)
            try:
                self._retry(lambda: db.execute("PRAGMA journal_mode=WAL"))
                db.execute("PRAGMA synchronous=NORMAL")
                self._retry(lambda: db.executescript(_SCHEMA))
            except sqlite3.DatabaseError as exc:
                db.close()
                raise CorruptFile(f"{self.path / 'sweep.sqlite'}: not a readable sweep database ({exc}); the runs "
                                  f"under {self.runs_dir} are intact -- rerun with --force to start the sweep over") from None
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @staticmethod
    def _retry(fn, attempts: int = 50):
        # The busy timeout covers ordinary contention; "database is locked" can still surface
        # when a WAL checkpoint or schema creation races, so back off and try again.
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or i == attempts - 1:
                    raise
                time.sleep(0.05 + random.random() * 0.2)
        return None

    def _tx(self, fn) -> Any:
        def once():
            cur = self.db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                out = fn(cur)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
            return out

        return self._retry(once)

    # ------------------------------------------------------------------ runs
    def register(self, points: Iterable[tuple[str, dict[str, Any], str]]) -> None:
        """Add ``(run_id, params, config_yaml)`` rows for runs not yet known (existing rows,
        and their states, are kept)."""
        rows = [(rid, i, json.dumps(p, sort_keys=True, default=str), cfg) for i, (rid, p, cfg) in enumerate(points)]

        def fn(cur):
            for rid, pos, params, cfg in rows:
                cur.execute("INSERT OR IGNORE INTO runs(run_id, position, params, config, state, updated) "
                            "VALUES (?,?,?,?, 'pending', ?)", (rid, pos, params, cfg, time.time()))
                cur.execute("UPDATE runs SET position=? WHERE run_id=?", (pos, rid))

        self._tx(fn)

    def set_state(self, run_id: str, state: str, *, error: str | None = None, seconds: float | None = None) -> None:
        assert state in RUN_STATES

        def fn(cur):
            cur.execute("UPDATE runs SET state=?, error=?, seconds=COALESCE(?, seconds), updated=?, "
                        "attempts=attempts + (? = 'running') WHERE run_id=?",
                        (state, error, seconds, time.time(), state, run_id))

        self._tx(fn)

    def run_rows(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT run_id, params, config, state, error, seconds, attempts FROM runs "
                              "ORDER BY position")
        return [{"run_id": r[0], "params": json.loads(r[1]), "config": r[2], "state": r[3], "error": r[4],
                 "seconds": r[5], "attempts": r[6]} for r in cur.fetchall()]

    def run_config(self, run_id: str) -> str:
        row = self.db.execute("SELECT config FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(f"run {run_id!r} is not part of the sweep at {self.path}")
        return row[0]

    def state(self, run_id: str) -> str:
        row = self.db.execute("SELECT state FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return row[0] if row else "unknown"

    # ------------------------------------------------------------------ results
    def ingest(self, run_id: str, seconds: float | None = None) -> int:
        """Copy a finished run's tidy rows into ``results`` and mark it complete, atomically.
        Returns the number of rows."""
        store = RunStore(self.run_dir(run_id))
        try:
            rows = [(r[0], r[1], r[2], r[3], r[4], _g_db(r[5]), *r[6:]) for r in store.tidy_rows(include_timing=True)]
        finally:
            store.close()

        def fn(cur):
            cur.execute("DELETE FROM results WHERE run_id=?", (run_id,))
            cur.executemany("INSERT INTO results(run_id, task, arm, seed, lambda, gamma, n_real, policy, correction, "
                            "generation, metric, value, status, n_synthetic) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                            rows)
            cur.execute("UPDATE runs SET state='complete', error=NULL, seconds=COALESCE(?, seconds), updated=? "
                        "WHERE run_id=?", (seconds, time.time(), run_id))

        self._tx(fn)
        return len(rows)

    def table(self, *, metric: str | None = None, generations: Iterable[int] | None = None,
              include_timing: bool = True, params: bool = True):
        """All runs' results as one tidy pandas DataFrame: :data:`EXPORT_COLUMNS` +
        :data:`EXTRA_COLUMNS`, then one column per swept key that is not already a column
        (e.g. ``model.reg_covar``).  Ordered by run position, then as in the run tables."""
        import pandas as pd

        where, args = sql_filters("r.metric", "r.generation", metric, generations)
        if not include_timing:
            where.append("r.metric NOT LIKE '%\\_seconds' ESCAPE '\\'")
        cols = ", ".join(f"r.{c}" for c in EXPORT_COLUMNS + EXTRA_COLUMNS)
        q = (f"SELECT {cols} FROM results r JOIN runs s ON s.run_id = r.run_id "
             f"{'WHERE ' + ' AND '.join(where) if where else ''} "
             "ORDER BY s.position, r.arm, r.seed, r.lambda, r.gamma, r.correction, r.generation, r.metric")
        df = pd.DataFrame(self.db.execute(q, args).fetchall(), columns=list(EXPORT_COLUMNS + EXTRA_COLUMNS))
        df["gamma"] = df["gamma"].map(_g_py).astype(float)
        if params and not df.empty:
            extra: dict[str, dict[str, Any]] = {}
            for r in self.run_rows():
                for k, v in r["params"].items():
                    if k not in df.columns:
                        extra.setdefault(k, {})[r["run_id"]] = v if isinstance(v, (int, float, str)) else json.dumps(v)
            for k, m in extra.items():
                df[k] = df["run_id"].map(m)
        return df

    def export(self, path: Path | str, **kw: Any) -> Path:
        """Write :meth:`table` to ``.csv`` or ``.parquet`` (pyarrow) atomically."""
        return write_table(self.table(**kw), path)


def write_table(df, path: Path | str) -> Path:
    """Write a results DataFrame to ``.csv`` or ``.parquet`` (pyarrow), atomically."""
    import io

    from scloop.store.atomic import atomic_write_bytes

    path = Path(path)
    if path.suffix == ".csv":
        atomic_write_bytes(path, df.to_csv(index=False).encode())
    elif path.suffix in (".parquet", ".pq"):
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write_bytes(path, buf.getvalue())
    else:
        from scloop.core.registry import ConfigError

        raise ConfigError(f"--to: got {str(path)!r}; allowed: a path ending in .csv or .parquet")
    return path


def open_results(path: Path | str, **kw: Any):
    """The tidy results of a sweep directory or of a run directory, as a pandas DataFrame."""
    path = Path(path)
    if is_sweep_dir(path):
        s = SweepStore(path)
        try:
            return s.table(**kw)
        finally:
            s.close()
    if (path / "results.sqlite").exists():
        kw.pop("params", None)
        r = RunStore(path)
        try:
            return r.table(**kw)
        finally:
            r.close()
    raise FileNotFoundError(f"{path} is neither a sweep directory (sweep.sqlite) nor a run directory (results.sqlite)")
