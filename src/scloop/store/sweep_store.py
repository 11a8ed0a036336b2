"""Sweep directories: one results table for every run of a sweep.

Layout of ``<out>/<sweep name>/``::

    sweep.yaml        the sweep file as parsed (what was expanded)
    sweep.sqlite      runs (id, parameters, config, state, error, seconds, results file)
    results/          one Parquet file per completed run: its records, columnar and compressed
    runs/<run_id>/    one run directory per point (see :mod:`scloop.store.run_store`)
    runs/.cache/      generation-0 models, feature networks ... shared by the runs
    locks/            one advisory lock per run: a run is executed by one process at a time
    report/           written by ``scloop report``

A run's records are copied from its run directory into one file under ``results/`` when it
completes: the file is written under a temporary name and renamed into place, then named in
the run's row, with the run marked complete, in one transaction (re-ingesting writes a new file
and deletes the old one, so it is idempotent).  The file holds one row per (unit, generation)
with one column per metric (:mod:`scloop.store.columnar`), sorted as the tidy table is, so
reading a sweep is reading its files in run order and expanding them.  SQLite in WAL mode with
a busy timeout serialises concurrent writers (processes on one machine, Ray workers on a shared
filesystem that supports locks); a writer that still finds the database locked retries.
Sweeps written before results files existed keep their rows in the ``results`` table, which is
still read.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from scloop.store.atomic import CorruptFile
from scloop.store.columnar import METRIC_PREFIX, STAGE_METRICS, STAGES, Coded, Tidy, read_arrow, write_arrow
from scloop.store.run_store import EXPORT_COLUMNS, EXTRA_COLUMNS, RunStore, sql_filters

RESULTS_DIR = "results"
_UNIT_COLUMNS = ("task", "arm", "seed", "lambda", "gamma", "n_real", "policy", "correction")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, position INTEGER, params TEXT, config TEXT, state TEXT, error TEXT,
    seconds REAL, attempts INTEGER DEFAULT 0, updated REAL, results_file TEXT);
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

    @property
    def results_dir(self) -> Path:
        return self.path / RESULTS_DIR

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
                self._retry(lambda: _add_results_file_column(db))
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
        self.remove_unlisted_files()

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
        """Copy a finished run's records into the sweep (one results file) and mark it
        complete, atomically.  Returns the number of tidy rows."""
        store = RunStore(self.run_dir(run_id))
        try:
            table, n_rows = _run_results(store)
        finally:
            store.close()
        name = f"r-{uuid.uuid4().hex[:16]}.arrow"
        write_arrow(self.results_dir / name, table)

        def fn(cur):
            row = cur.execute("SELECT results_file FROM runs WHERE run_id=?", (run_id,)).fetchone()
            cur.execute("DELETE FROM results WHERE run_id=?", (run_id,))
            cur.execute("UPDATE runs SET state='complete', error=NULL, seconds=COALESCE(?, seconds), updated=?, "
                        "results_file=? WHERE run_id=?", (seconds, time.time(), name, run_id))
            return row[0] if row else None

        try:
            old = self._tx(fn)
        except BaseException:
            (self.results_dir / name).unlink(missing_ok=True)
            raise
        if old and old != name:
            (self.results_dir / old).unlink(missing_ok=True)
        return n_rows

    def remove_unlisted_files(self, min_age_s: float = 3600.0) -> None:
        """Delete results files no run names (left by a process killed between writing one and
        committing it) that are older than ``min_age_s`` (younger ones may be about to be
        committed by another process)."""
        if not self.results_dir.is_dir():
            return
        listed = {r[0] for r in self.db.execute("SELECT results_file FROM runs WHERE results_file IS NOT NULL")}
        now = time.time()
        for p in self.results_dir.iterdir():
            try:
                if p.name not in listed and now - p.stat().st_mtime > min_age_s:
                    p.unlink(missing_ok=True)
            except FileNotFoundError:
                continue

    def table(self, *, metric: str | None = None, generations: Iterable[int] | None = None,
              include_timing: bool = True, params: bool = True):
        """All runs' results as one tidy pandas DataFrame: :data:`EXPORT_COLUMNS` +
        :data:`EXTRA_COLUMNS`, then one column per swept key that is not already a column
        (e.g. ``model.reg_covar``).  Ordered by run position, then arm, seed, lambda, gamma,
        correction, generation and metric."""
        import pandas as pd

        runs = self.db.execute("SELECT run_id, position, results_file FROM runs ORDER BY position").fetchall()
        gens = None if generations is None else [int(g) for g in generations]
        parts = []
        for run_id, pos, file in runs:
            if file is None:
                continue
            t = read_arrow(self.results_dir / file, _wanted(metric, include_timing))
            parts.append((run_id, t))
        df = _tidy_frame(parts, metric, gens, include_timing)
        legacy = self._legacy_table(metric, gens, include_timing)
        if legacy is not None:
            position = {r[0]: r[1] for r in runs}
            df = pd.concat([df, legacy], ignore_index=True) if len(df) else legacy
            order = np.argsort(df["run_id"].map(position).to_numpy(), kind="stable")
            df = df.iloc[order].reset_index(drop=True)
        if params and not df.empty:
            extra: dict[str, dict[str, Any]] = {}
            for r in self.run_rows():
                for k, v in r["params"].items():
                    if k not in df.columns:
                        extra.setdefault(k, {})[r["run_id"]] = v if isinstance(v, (int, float, str)) else json.dumps(v)
            if extra:
                # map each run id once, then spread by row (same values and dtype as mapping every row)
                runs_col = pd.Categorical(df["run_id"])
                ids = pd.Series(runs_col.categories.astype(object))
                codes = runs_col.codes
                for k, m in extra.items():
                    df[k] = ids.map(m).take(codes).reset_index(drop=True)
        return df

    def _legacy_table(self, metric, gens, include_timing: bool):
        """Rows of the ``results`` table (sweeps made before results files), or None."""
        import pandas as pd

        if not self.db.execute("SELECT EXISTS(SELECT 1 FROM results)").fetchone()[0]:
            return None
        where, args = sql_filters("r.metric", "r.generation", metric, gens)
        if not include_timing:
            where.append("r.metric NOT LIKE '%\\_seconds' ESCAPE '\\'")
        cols = ", ".join(f"r.{c}" for c in EXPORT_COLUMNS + EXTRA_COLUMNS)
        q = (f"SELECT {cols} FROM results r JOIN runs s ON s.run_id = r.run_id "
             f"{'WHERE ' + ' AND '.join(where) if where else ''} "
             "ORDER BY s.position, r.arm, r.seed, r.lambda, r.gamma, r.correction, r.generation, r.metric")
        rows = self.db.execute(q, args).fetchall()
        if not rows:
            return None
        df = pd.DataFrame(rows, columns=list(EXPORT_COLUMNS + EXTRA_COLUMNS))
        df["gamma"] = df["gamma"].map(_g_py).astype(float)
        return df

    def export(self, path: Path | str, **kw: Any) -> Path:
        """Write :meth:`table` to ``.csv`` or ``.parquet`` (pyarrow) atomically."""
        return write_table(self.table(**kw), path)


def _add_results_file_column(db: sqlite3.Connection) -> None:
    """Sweeps made before results files: add the column (another process may just have)."""
    cols = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    if "results_file" not in cols:
        try:
            db.execute("ALTER TABLE runs ADD COLUMN results_file TEXT")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):
                raise


def _run_results(store: RunStore):
    """A run's records as the Arrow table of a sweep results file (the unit's columns, then
    generation, status, n_synthetic, the stage seconds and one ``m:<metric>`` column per
    metric), rows sorted as the sweep table is; and its number of tidy rows."""
    import pyarrow as pa

    rec = store.load_records()
    u = store.unit_columns()
    pos = np.full(len(rec), -1, dtype=np.int64)
    ok = (rec.unit >= 0) & (rec.unit < len(u["lookup"]))
    pos[ok] = u["lookup"][rec.unit[ok]]
    rec = rec.take(np.nonzero(pos >= 0)[0])
    pos = pos[pos >= 0]

    def rank(c: Coded) -> np.ndarray:  # sort keys: the rank of each string (SQLite's BINARY order)
        order = sorted(range(len(c.values)), key=lambda i: c.values[i])
        r = np.empty(len(order) + 1, dtype=np.int64)
        r[order] = np.arange(len(order))
        return r[c.codes]

    keys = (rec.generation, rank(u["correction"].take(pos)), u["gamma"][pos], u["lambda"][pos], u["seed"][pos],
            rank(u["arm"].take(pos)))
    order = np.lexsort(keys) if len(rec) else np.zeros(0, np.intp)
    rec, pos = rec.take(order), pos[order]

    def dict_col(c: Coded):
        return pa.DictionaryArray.from_arrays(pa.array(c.codes.astype(np.int32)), pa.array(c.values or [""], pa.string()))

    cols: dict[str, Any] = {
        "task": dict_col(u["task"].take(pos)), "arm": dict_col(u["arm"].take(pos)),
        "seed": pa.array(u["seed"][pos]), "lambda": pa.array(u["lambda"][pos]), "gamma": pa.array(u["gamma"][pos]),
        "n_real": pa.array(u["n_real"][pos]), "policy": dict_col(u["policy"].take(pos)),
        "correction": dict_col(u["correction"].take(pos)), "generation": pa.array(rec.generation.astype(np.int32)),
        "status": dict_col(rec.status), "n_synthetic": pa.array(rec.n_synthetic),
    }
    for st in STAGES:
        cols[f"{st}_seconds"] = pa.array(rec.seconds[st])
    n_rows = 4 * len(rec)
    for k, (v, p) in rec.metrics.items():
        cols[METRIC_PREFIX + k] = pa.array(v, mask=~p)
        n_rows += int(p.sum())
    return pa.table(cols), n_rows


def _wanted(metric: str | None, include_timing: bool) -> list[str] | None:
    """The columns of a results file a query reads (None: all)."""
    if metric is None:
        return None
    base = list(_UNIT_COLUMNS) + ["generation", "status", "n_synthetic"]
    return base + [metric if metric in STAGE_METRICS else METRIC_PREFIX + metric]


def _tidy_frame(parts: list[tuple[str, Any]], metric: str | None, gens: list[int] | None, include_timing: bool):
    """Expand results files (run_id, Arrow table), in run order, into the tidy DataFrame."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = list(EXPORT_COLUMNS + EXTRA_COLUMNS)
    if not parts:
        return _empty(cols)
    names = sorted({c[len(METRIC_PREFIX):] for _, t in parts for c in t.column_names if c.startswith(METRIC_PREFIX)}
                   | {c for _, t in parts for c in t.column_names if c in STAGE_METRICS})
    if metric is not None:
        names = [n for n in names if n == metric]
    if not include_timing:
        names = [n for n in names if not n.endswith("_seconds")]
    tables = []
    for run_id, t in parts:
        if gens is not None:
            t = t.filter(pc.is_in(t.column("generation"), value_set=pa.array(gens, pa.int32())))
        tables.append(t.append_column("run_id", pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(t.num_rows, np.int32)), pa.array([run_id], pa.string()))))
    t = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    n = t.num_rows
    if n == 0 or not names:
        return _empty(cols)
    present, values = [], []
    for k in names:
        c = k if k in STAGE_METRICS else METRIC_PREFIX + k
        if c not in t.column_names:
            present.append(np.zeros(n, bool))
            values.append(np.full(n, np.nan))
            continue
        col = t.column(c)
        present.append(~np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool))
        values.append(np.asarray(col.to_numpy(zero_copy_only=False), dtype=float))
    ri, mi = np.nonzero(np.stack(present, axis=1))  # row-major: by row, then metric name
    vals = np.stack(values, axis=1)[ri, mi]

    def coded(name: str) -> Coded:
        col = t.column(name).combine_chunks()
        if not pa.types.is_dictionary(col.type):
            col = col.dictionary_encode()
        return Coded(np.asarray(col.indices.to_numpy(zero_copy_only=False), np.intp),
                     [str(v) for v in col.dictionary.to_pylist()]).take(ri)

    def num(name: str, dtype) -> np.ndarray:
        return np.asarray(t.column(name).to_numpy(), dtype=dtype)[ri]

    data = {
        "run_id": coded("run_id"), "task": coded("task"), "arm": coded("arm"), "seed": num("seed", np.int64),
        "lambda": num("lambda", float), "gamma": num("gamma", float), "n_real": num("n_real", np.int64),
        "policy": coded("policy"), "correction": coded("correction"), "generation": num("generation", np.int64),
        "metric": Coded(mi, names), "value": vals, "status": coded("status"),
        "n_synthetic": num("n_synthetic", np.int64),
    }
    if not len(ri):
        return _empty(cols)
    return Tidy(data, tuple(cols)).frame()


def _empty(cols: list[str]):
    import pandas as pd

    df = pd.DataFrame([], columns=cols)
    df["gamma"] = df["gamma"].astype(float)
    return df


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
