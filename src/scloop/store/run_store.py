"""Run directories.

Layout of ``<root>/<run_id>/``::

    config.yaml        the resolved experiment spec (exactly what ran)
    status.json        {"state": running|complete|failed, "completed_generation": g, ...}
    results.sqlite     units, provenance, the list of record files; records written one
                       generation at a time (generic engine, its worker processes)
    records/           record files (Parquet, columnar, compressed) written in bulk by the
                       vectorised engine, one per checkpoint of a large cell (small batches
                       go to SQLite rows; see :mod:`scloop.store.columnar`)
    checkpoints/       latest resumable state (npz, no pickles), atomically replaced
    figures/           written by ``scloop plot``

SQLite (stdlib, embedded, no server, WAL mode) gives atomic commits to concurrent writers: a
killed run keeps only whole generations.  A record file is written under a temporary name and
renamed into place, then listed in the ``segments`` table in one transaction: a file that is
not listed does not exist for readers (and is deleted by the next writer).  On resume, rows
after the checkpoint being resumed from are deleted (a record file that holds some is
rewritten without them) and recomputed, which reproduces them exactly (every generation has
its own random streams).

Both kinds of records read as one table: :meth:`RunStore.table` and :meth:`RunStore.tidy_rows`
give one row per metric value, ordered by unit, generation and metric name, then the stage
timings (``*_seconds``) of every record, ordered by unit and generation.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from scloop.store.atomic import CorruptFile, atomic_write_text
from scloop.store.columnar import (  # noqa: F401  (STAGE_METRICS: re-exported)
    METRIC_PREFIX, STAGE_METRICS, STAGES, Coded, RecordBatch, Records, Tidy, new_segment_name, read_parquet,
    records_from_table, records_table, write_parquet,
)

EXPORT_COLUMNS = (
    "run_id", "task", "arm", "seed", "lambda", "gamma", "n_real", "policy", "correction",
    "generation", "metric", "value",
)
EXTRA_COLUMNS = ("status", "n_synthetic")
RECORDS_DIR = "records"
ROWWISE_BELOW = 2_000  # records per batch below which write_batch writes SQLite rows, not a file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS units (
    unit INTEGER PRIMARY KEY, arm TEXT, seed INTEGER, lambda REAL, gamma REAL,
    correction TEXT, policy TEXT, n_real INTEGER, task TEXT);
CREATE TABLE IF NOT EXISTS records (
    unit INTEGER, generation INTEGER, status TEXT, reason TEXT, n_real INTEGER,
    n_synthetic INTEGER, provenance INTEGER, sample_seconds REAL, correct_seconds REAL,
    train_seconds REAL, eval_seconds REAL, PRIMARY KEY (unit, generation));
CREATE TABLE IF NOT EXISTS provenance (id INTEGER PRIMARY KEY, digest TEXT UNIQUE, parts TEXT);
CREATE TABLE IF NOT EXISTS metric_names (id INTEGER PRIMARY KEY, name TEXT UNIQUE);
CREATE TABLE IF NOT EXISTS metrics (unit INTEGER, generation INTEGER, metric INTEGER, value REAL);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, file TEXT UNIQUE, n_rows INTEGER, bytes INTEGER,
    gen_lo INTEGER, gen_hi INTEGER, unit_lo INTEGER, unit_hi INTEGER);
"""


@dataclass(frozen=True)
class Unit:
    unit: int
    arm: str
    seed: int
    lam: float
    gamma: float
    correction: str
    policy: str
    n_real: int
    task: str


def _gamma_db(g: float) -> float:
    return 1e308 if math.isinf(g) else g


def _gamma_py(g: float) -> float:
    return math.inf if g >= 1e308 else g


def sql_filters(metric_col: str, generation_col: str, metric: str | None,
                generations: Iterable[int] | None) -> tuple[list[str], list[Any]]:
    """WHERE clauses and their parameters restricting a tidy query to one metric and/or some
    generations (shared by the run and sweep tables)."""
    where: list[str] = []
    args: list[Any] = []
    if metric is not None:
        where.append(f"{metric_col} = ?")
        args.append(metric)
    if generations is not None:
        gens = [int(g) for g in generations]
        where.append(f"{generation_col} IN ({','.join('?' * len(gens))})")
        args.extend(gens)
    return where, args


class RunStore:
    """One run directory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.run_id = self.path.name
        self._db: sqlite3.Connection | None = None
        self._metric_ids: dict[str, int] = {}
        self._prov_ids: dict[str, int] = {}

    # ------------------------------------------------------------------ files
    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def records_dir(self) -> Path:
        return self.path / RECORDS_DIR

    def exists(self) -> bool:
        return (self.path / "results.sqlite").exists()

    def status(self) -> dict[str, Any]:
        return _read_json(self.path / "status.json")

    def identity(self) -> dict[str, Any]:
        """The stored run identity (config digest, engine, plugin fingerprints); {} for runs
        made before it was recorded."""
        return _read_json(self.path / "identity.json")

    def write_identity(self, identity: dict[str, Any]) -> None:
        atomic_write_text(self.path / "identity.json", json.dumps(identity, indent=2, sort_keys=True))

    def write_status(self, **fields: Any) -> None:
        st = {**self.status(), **fields}
        atomic_write_text(self.path / "status.json", json.dumps(st, indent=2, sort_keys=True))

    def config_text(self) -> str:
        return (self.path / "config.yaml").read_text()

    # ------------------------------------------------------------------ db
    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path / "results.sqlite", timeout=60)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
                self._metric_ids = dict((n, i) for i, n in db.execute("SELECT id, name FROM metric_names"))
            except sqlite3.DatabaseError as exc:
                db.close()
                raise CorruptFile(f"{self.path / 'results.sqlite'}: not a readable results database ({exc}); "
                                  "rerun with --force to recompute the run") from None
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def create(self, config_yaml: str, units: list[Unit]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "config.yaml", config_yaml)
        with self.db:
            self.db.execute("DELETE FROM units")
            self.db.executemany(
                "INSERT INTO units VALUES (?,?,?,?,?,?,?,?,?)",
                [(u.unit, u.arm, u.seed, u.lam, _gamma_db(u.gamma), u.correction, u.policy, u.n_real, u.task) for u in units],
            )
        self.write_status(state="running", completed_generation=-1, n_units=len(units))

    def units(self) -> list[Unit]:
        rows = self.db.execute("SELECT * FROM units ORDER BY unit").fetchall()
        return [Unit(r[0], r[1], r[2], r[3], _gamma_py(r[4]), r[5], r[6], r[7], r[8]) for r in rows]

    def _mid(self, name: str) -> int:
        if name not in self._metric_ids:
            cur = self.db.execute("INSERT OR IGNORE INTO metric_names(name) VALUES (?)", (name,))
            if cur.lastrowid and cur.rowcount:
                self._metric_ids[name] = cur.lastrowid
            else:
                self._metric_ids[name] = self.db.execute("SELECT id FROM metric_names WHERE name=?", (name,)).fetchone()[0]
        return self._metric_ids[name]

    def _pid(self, prov_json: str) -> int:
        """Provenance is stored once per distinct value (all units of a vectorised group share
        it, and a ``paper-toy`` provenance lists every past generation)."""
        pid = self._prov_ids.get(prov_json)
        if pid is None:
            import hashlib

            digest = hashlib.sha1(prov_json.encode()).hexdigest()
            self.db.execute("INSERT OR IGNORE INTO provenance(digest, parts) VALUES (?, ?)", (digest, prov_json))
            pid = self.db.execute("SELECT id FROM provenance WHERE digest=?", (digest,)).fetchone()[0]
            self._prov_ids[prov_json] = pid
        return pid

    def write_records(self, rows: Iterable[tuple]) -> None:
        """Insert records in one transaction (row-wise, into SQLite: for writers that commit a
        generation at a time, possibly from several processes).  Each row is
        ``(unit, generation, status, reason, n_real, n_synthetic, provenance_json,
        seconds: dict, metrics: dict[str, float])``."""
        rec, met = [], []
        with self.db:
            for unit, gen, status, reason, n_real, n_syn, prov, secs, metrics in rows:
                rec.append((unit, gen, status, reason, n_real, n_syn, self._pid(prov),
                            secs.get("sample", 0.0), secs.get("correct", 0.0), secs.get("train", 0.0), secs.get("eval", 0.0)))
                for k, v in metrics.items():
                    met.append((unit, gen, self._mid(k), float(v)))
            self.db.executemany("INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?)", rec)
            self.db.executemany("INSERT INTO metrics VALUES (?,?,?,?)", met)

    def write_batch(self, batch: RecordBatch, *, sync: bool = True) -> int:
        """Commit a :class:`~scloop.store.columnar.RecordBatch` (bulk writers: the vectorised
        engine, once per checkpoint) atomically: as one record file (renamed into place, then
        listed in one transaction), or, below :data:`ROWWISE_BELOW` records, as SQLite rows in
        one transaction (a few thousand rows cost less there than a file and its fsync).
        Returns the number of records."""
        if not len(batch):
            return 0
        with self.db:
            ids = {p: self._pid(p) for p in batch.provenances()}
        rec = batch.records(ids)
        if len(rec) < ROWWISE_BELOW:
            self._write_rows(rec)
            return len(rec)
        return self._write_segment(rec, sync=sync)

    def _write_rows(self, rec: Records) -> None:
        cols = [rec.unit.tolist(), rec.generation.tolist(), [rec.status.values[c] for c in rec.status.codes],
                [rec.reason.values[c] for c in rec.reason.codes], rec.n_real.tolist(), rec.n_synthetic.tolist(),
                rec.provenance.tolist()] + [rec.seconds[s].tolist() for s in STAGES]
        met = []
        with self.db:
            for name, (v, p) in rec.metrics.items():
                mid = self._mid(name)
                idx = np.nonzero(p)[0]
                met.extend(zip(rec.unit[idx].tolist(), rec.generation[idx].tolist(), [mid] * len(idx),
                               v[idx].tolist()))
            self.db.executemany("INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?)", zip(*cols))
            self.db.executemany("INSERT INTO metrics VALUES (?,?,?,?)", met)

    def _write_segment(self, rec: Records, *, sync: bool = True, replace: tuple[int, str] | None = None) -> int:
        name = new_segment_name()
        path = self.records_dir / name
        if len(rec):
            size = write_parquet(path, records_table(rec), float_columns=_float_columns(rec), sync=sync)
        with self.db:
            if replace is not None:
                self.db.execute("DELETE FROM segments WHERE id=?", (replace[0],))
            if len(rec):
                self.db.execute(
                    "INSERT INTO segments(file, n_rows, bytes, gen_lo, gen_hi, unit_lo, unit_hi) VALUES (?,?,?,?,?,?,?)",
                    (name, len(rec), size, int(rec.generation.min()), int(rec.generation.max()), int(rec.unit.min()),
                     int(rec.unit.max())))
        if replace is not None:
            (self.records_dir / replace[1]).unlink(missing_ok=True)
        return len(rec)

    def _segments(self, generations: Iterable[int] | None = None) -> list[tuple]:
        rows = self.db.execute("SELECT id, file, gen_lo, gen_hi, unit_lo, unit_hi FROM segments ORDER BY id").fetchall()
        if generations is not None:
            gens = sorted(int(g) for g in generations)
            rows = [r for r in rows if any(r[2] <= g <= r[3] for g in gens)]
        return rows

    def remove_unlisted_files(self) -> None:
        """Delete record files that no transaction listed (left by a writer killed between
        writing and listing them).  Call only from the one process writing record files."""
        if not self.records_dir.is_dir():
            return
        listed = {r[0] for r in self.db.execute("SELECT file FROM segments")}
        for p in self.records_dir.iterdir():
            if p.name not in listed:
                p.unlink(missing_ok=True)

    def truncate_after(self, generation: int, units: Iterable[int] | None = None) -> None:
        """Delete rows after ``generation`` (for all units, or the given ones)."""
        if units is None:
            with self.db:
                self.db.execute("DELETE FROM records WHERE generation > ?", (generation,))
                self.db.execute("DELETE FROM metrics WHERE generation > ?", (generation,))
            self._truncate_files(lambda unit, gen: gen > generation, lambda ulo, uhi, ghi: ghi > generation)
            return
        ids = sorted({int(u) for u in units})
        if not ids:
            return
        cutoff = np.full(ids[-1] + 1, np.iinfo(np.int64).max, dtype=np.int64)
        cutoff[ids] = generation
        self.truncate_each(cutoff)

    def truncate_each(self, cutoff: np.ndarray) -> None:
        """Delete the rows of each unit u after generation ``cutoff[u]`` (-1: all of them);
        units >= len(cutoff) keep theirs.  One pass over the stored records."""
        cutoff = np.asarray(cutoff, dtype=np.int64)
        big = np.iinfo(np.int64).max
        todo = [(int(u), int(c)) for u, c in enumerate(cutoff) if c != big]
        if self.db.execute("SELECT EXISTS(SELECT 1 FROM records)").fetchone()[0]:
            with self.db:
                self.db.execute("CREATE TEMP TABLE IF NOT EXISTS cut (unit INTEGER PRIMARY KEY, g INTEGER)")
                self.db.execute("DELETE FROM cut")
                self.db.executemany("INSERT INTO cut VALUES (?, ?)", todo)
                for t in ("records", "metrics"):
                    self.db.execute(f"DELETE FROM {t} WHERE generation > "
                                    f"COALESCE((SELECT g FROM cut WHERE cut.unit = {t}.unit), {big})")
                self.db.execute("DELETE FROM cut")

        def drop(unit: np.ndarray, gen: np.ndarray) -> np.ndarray:
            c = np.full(len(unit), big, dtype=np.int64)
            ok = unit < len(cutoff)
            c[ok] = cutoff[unit[ok]]
            return gen > c

        def may_drop(ulo: int, uhi: int, ghi: int) -> bool:
            part = cutoff[ulo:uhi + 1]
            return bool(len(part)) and ghi > int(part.min())

        self._truncate_files(drop, may_drop)

    def _truncate_files(self, drop, may_drop) -> None:
        """Rewrite the record files that hold rows ``drop(unit, generation)`` selects, without
        them (``may_drop(unit_lo, unit_hi, gen_hi)``: whether a file can hold any)."""
        for sid, file, glo, ghi, ulo, uhi in self._segments():
            if not may_drop(ulo, uhi, ghi):
                continue
            keys = read_parquet(self.records_dir / file, ["unit", "generation"])
            mask = drop(np.asarray(keys.column("unit").to_numpy(), np.int64),
                        np.asarray(keys.column("generation").to_numpy(), np.int64))
            if not mask.any():
                continue
            rec = records_from_table(read_parquet(self.records_dir / file))
            self._write_segment(rec.take(np.nonzero(~mask)[0]), replace=(sid, file))

    def last_generation(self, unit: int) -> tuple[int, str]:
        row = self.db.execute(
            "SELECT generation, status FROM records WHERE unit=? ORDER BY generation DESC LIMIT 1", (unit,)
        ).fetchone()
        best = (row[0], row[1]) if row else (-1, "")
        for sid, file, glo, ghi, ulo, uhi in self._segments():
            if not (ulo <= unit <= uhi) or ghi <= best[0]:
                continue
            rec = records_from_table(read_parquet(self.records_dir / file, ["unit", "generation", "status"]))
            idx = np.nonzero(rec.unit == unit)[0]
            if len(idx):
                i = idx[np.argmax(rec.generation[idx])]
                if rec.generation[i] > best[0]:
                    best = (int(rec.generation[i]), rec.status.values[rec.status.codes[i]])
        return best

    def max_generation(self) -> int:
        row = self.db.execute("SELECT MAX(generation) FROM records").fetchone()
        seg = self.db.execute("SELECT MAX(gen_hi) FROM segments").fetchone()
        vals = [int(v) for v in (row[0], seg[0]) if v is not None]
        return max(vals) if vals else -1

    # ------------------------------------------------------------------ reading
    def _sqlite_records(self, metrics: Iterable[str] | None, after_rowid: int = 0) -> tuple[Records, int]:
        """Records written row-wise (``write_records``) with rowid > ``after_rowid``, in rowid
        order, and the largest rowid read."""
        rows = self.db.execute(
            "SELECT rowid, unit, generation, status, reason, n_real, n_synthetic, provenance, sample_seconds, "
            "correct_seconds, train_seconds, eval_seconds FROM records WHERE rowid > ? ORDER BY rowid",
            (after_rowid,)).fetchall()
        if not rows:
            return Records.empty(), after_rowid
        cols = list(zip(*rows))
        unit = np.asarray(cols[1], dtype=np.int64)
        gen = np.asarray(cols[2], dtype=np.int64)
        where: list[str] = []
        args: list[Any] = []
        if metrics is not None:
            names = list(metrics)
            where.append(f"n.name IN ({','.join('?' * len(names))})")
            args.extend(names)
        if after_rowid:
            where.append("(m.unit, m.generation) IN (SELECT unit, generation FROM records WHERE rowid > ?)")
            args.append(after_rowid)
        met = self.db.execute(
            "SELECT m.unit, m.generation, n.name, m.value FROM metrics m JOIN metric_names n ON n.id = m.metric "
            + ("WHERE " + " AND ".join(where) if where else ""), args).fetchall()
        index = {(u, g): i for i, (u, g) in enumerate(zip(cols[1], cols[2]))}
        ms: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for u, g, name, v in met:
            i = index.get((u, g))
            if i is None:
                continue
            if name not in ms:
                ms[name] = (np.full(len(rows), np.nan), np.zeros(len(rows), bool))
            ms[name][0][i] = np.nan if v is None else v
            ms[name][1][i] = True
        rec = Records(unit, gen, Coded.encode(cols[3]), Coded.encode(r or "" for r in cols[4]),
                      np.asarray(cols[5], dtype=np.int64), np.asarray(cols[6], dtype=np.int64),
                      np.asarray(cols[7], dtype=np.int64),
                      {s: np.asarray([0.0 if v is None else v for v in cols[8 + i]], dtype=float)
                       for i, s in enumerate(STAGES)}, ms)
        return rec, int(cols[0][-1])

    def _segment_records(self, sid_file: tuple, metrics: Iterable[str] | None, generations=None) -> Records:
        columns = None
        if metrics is not None:
            columns = [c for c in ("unit", "generation", "status", "reason", "n_real", "n_synthetic", "provenance")]
            columns += [f"{s}_seconds" for s in STAGES] + [METRIC_PREFIX + m for m in metrics]
        t = read_parquet(self.records_dir / sid_file[1], columns)
        if generations is not None:
            import pyarrow.compute as pc

            t = t.filter(pc.is_in(t.column("generation"), value_set=_pa_int_array(generations)))
        return records_from_table(t)

    def load_records(self, *, metrics: Iterable[str] | None = None,
                     generations: Iterable[int] | None = None) -> Records:
        """Every record (row-wise and file ones), sorted by (unit, generation); ``metrics``:
        only these metric columns; ``generations``: only these generations."""
        gens = None if generations is None else [int(g) for g in generations]
        rec, _ = self._sqlite_records(metrics)
        if gens is not None and len(rec):
            rec = rec.take(np.nonzero(np.isin(rec.generation, gens))[0])
        parts = [rec] + [self._segment_records(s, metrics, gens) for s in self._segments(gens)]
        return Records.concat(parts).sorted()

    def new_records(self, cursor: tuple[int, int]) -> tuple[list[Records], tuple[int, int]]:
        """Records added since ``cursor`` = (last records rowid, last record-file id), in the
        order they were written (a record file: by generation, then unit), and the new cursor."""
        rowid, seg_id = cursor
        out = []
        rec, rowid = self._sqlite_records(None, rowid)
        if len(rec):
            out.append(rec)
        for sid, file, *_ in self.db.execute("SELECT id, file FROM segments WHERE id > ? ORDER BY id", (seg_id,)):
            r = records_from_table(read_parquet(self.records_dir / file))
            out.append(r.take(np.lexsort((r.unit, r.generation))))
            seg_id = sid
        return out, (rowid, seg_id)

    def cursor_now(self) -> tuple[int, int]:
        """The cursor of :meth:`new_records` that skips everything written so far."""
        a = self.db.execute("SELECT MAX(rowid) FROM records").fetchone()[0]
        b = self.db.execute("SELECT MAX(id) FROM segments").fetchone()[0]
        return int(a or 0), int(b or 0)

    def unit_columns(self) -> dict[str, Any]:
        """The units table in columns: ``lookup`` maps a unit id to its row (-1: unknown)."""
        rows = self.db.execute(
            "SELECT unit, task, arm, seed, lambda, gamma, n_real, policy, correction FROM units ORDER BY unit").fetchall()
        cols = list(zip(*rows)) if rows else [()] * 9
        ids = np.asarray(cols[0], dtype=np.int64)
        lookup = np.full(int(ids.max()) + 1 if len(ids) else 0, -1, dtype=np.int64)
        lookup[ids] = np.arange(len(ids))
        return {
            "unit": ids, "lookup": lookup, "task": Coded.encode(cols[1]), "arm": Coded.encode(cols[2]),
            "seed": np.asarray(cols[3], dtype=np.int64), "lambda": np.asarray(cols[4], dtype=float),
            "gamma_db": np.asarray(cols[5], dtype=float),
            "gamma": np.asarray([_gamma_py(g) for g in cols[5]], dtype=float),
            "n_real": np.asarray(cols[6], dtype=np.int64), "policy": Coded.encode(cols[7]),
            "correction": Coded.encode(cols[8]),
        }

    def _tidy(self, include_timing: bool, metric: str | None, generations: Iterable[int] | None) -> Tidy:
        stage_only = metric in STAGE_METRICS
        want = None if metric is None else ([] if stage_only else [metric])
        rec = self.load_records(metrics=want, generations=generations)
        u = self.unit_columns()
        pos = _unit_rows(u["lookup"], rec.unit)
        if not np.all(pos >= 0):  # records of units not in the units table are not shown (a join)
            keep = np.nonzero(pos >= 0)[0]
            rec, pos = rec.take(keep), pos[keep]
        names = sorted(rec.metrics) if not stage_only else []
        n_rec = len(rec)
        if names:
            present = np.stack([rec.metrics[k][1] for k in names], axis=1)  # (R, M)
            ri, mi = np.nonzero(present)
            vals = np.stack([rec.metrics[k][0] for k in names], axis=1)[ri, mi]
        else:
            ri, mi, vals = np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0)
        stages = list(range(len(STAGES))) if metric is None else ([STAGE_METRICS.index(metric)] if stage_only else [])
        if include_timing and stages:
            k = len(stages)
            ri_t = np.repeat(np.arange(n_rec), k)
            si = np.tile(np.asarray(stages, dtype=np.intp), n_rec)
            secs = np.stack([rec.seconds[s] for s in STAGES], axis=1)
            ri = np.concatenate([ri, ri_t])
            vals = np.concatenate([vals, secs[ri_t, si]])
            mi = np.concatenate([mi, len(names) + si])
        up = pos[ri]
        cols: dict[str, Any] = {
            "run_id": Coded(np.zeros(len(ri), np.intp), [self.run_id]),
            "task": u["task"].take(up), "arm": u["arm"].take(up), "seed": u["seed"][up],
            "lambda": u["lambda"][up], "gamma": u["gamma"][up], "n_real": u["n_real"][up],
            "policy": u["policy"].take(up), "correction": u["correction"].take(up),
            "generation": rec.generation[ri], "metric": Coded(mi, names + list(STAGE_METRICS)),
            "value": vals.astype(float), "status": rec.status.take(ri), "n_synthetic": rec.n_synthetic[ri],
        }
        return Tidy(cols, EXPORT_COLUMNS + EXTRA_COLUMNS)

    # ------------------------------------------------------------------ queries
    def tidy_rows(self, *, include_timing: bool = True, metric: str | None = None,
                  generations: Iterable[int] | None = None) -> Iterator[tuple]:
        """Rows of :data:`EXPORT_COLUMNS` + :data:`EXTRA_COLUMNS`, deterministically ordered,
        optionally restricted to one metric and some generations (a ``*_seconds`` metric
        selects that stage's timing rows)."""
        return self._tidy(include_timing, metric, generations).rows()

    def table(self, *, include_timing: bool = True, metric: str | None = None,
              generations: Iterable[int] | None = None):
        """The tidy results as a pandas DataFrame (see :meth:`tidy_rows`)."""
        import pandas as pd

        tidy = self._tidy(include_timing, metric, generations)
        if not len(tidy):
            return pd.DataFrame([], columns=EXPORT_COLUMNS + EXTRA_COLUMNS)
        return tidy.frame()

    def records(self):
        """Per-(unit, generation) records with stage seconds and provenance: a JSON list of
        ``[source_generation, corrected, n_points]`` (generation -1 = real data)."""
        import pandas as pd

        cols = ["arm", "seed", "lambda", "gamma", "correction", "unit", "generation", "status", "reason", "n_real",
                "n_synthetic", "provenance", "sample_seconds", "correct_seconds", "train_seconds", "eval_seconds"]
        rec = self.load_records(metrics=[])
        u = self.unit_columns()
        prov = dict(self.db.execute("SELECT id, parts FROM provenance").fetchall())
        ok = np.array([p in prov for p in rec.provenance.tolist()], dtype=bool)
        ok &= _unit_rows(u["lookup"], rec.unit) >= 0
        rec = rec.take(np.nonzero(ok)[0])
        if not len(rec):
            return pd.DataFrame([], columns=cols)
        up = u["lookup"][rec.unit]
        pcodes = Coded.encode(prov[p] for p in rec.provenance.tolist())
        data = {"arm": u["arm"].take(up), "seed": u["seed"][up], "lambda": u["lambda"][up],
                "gamma": u["gamma_db"][up], "correction": u["correction"].take(up), "unit": rec.unit,
                "generation": rec.generation, "status": rec.status, "reason": rec.reason, "n_real": rec.n_real,
                "n_synthetic": rec.n_synthetic, "provenance": pcodes}
        data.update({f"{s}_seconds": rec.seconds[s] for s in STAGES})
        return Tidy(data, tuple(cols)).frame()


def _unit_rows(lookup: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Row of each unit id in the units table, -1 for ids it does not have."""
    pos = np.full(len(unit), -1, dtype=np.int64)
    ok = (unit >= 0) & (unit < len(lookup))
    pos[ok] = lookup[unit[ok]]
    return pos


def _float_columns(rec: Records) -> list[str]:
    return [METRIC_PREFIX + k for k in rec.metrics]


def _pa_int_array(values: Iterable[int]):
    import pyarrow as pa

    return pa.array([int(v) for v in values], pa.int32())


def _read_json(p: Path) -> dict[str, Any]:
    if not p.exists():
        return {}
    try:
        value = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptFile(f"{p}: not valid JSON ({exc}); restore it or rerun with --force") from None
    if not isinstance(value, dict):
        raise CorruptFile(f"{p}: expected a JSON object, got {type(value).__name__}; rerun with --force")
    return value


def list_runs(root: Path) -> list[dict[str, Any]]:
    out = []
    root = Path(root)
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        if (d / "status.json").exists():
            try:
                st = _read_json(d / "status.json")
            except CorruptFile as exc:
                st = {"state": "corrupt", "error": str(exc)}
            out.append({"run_id": d.name, "path": str(d), **st})
    return out
