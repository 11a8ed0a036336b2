"""Run directories.

Layout of ``<root>/<run_id>/``::

    config.yaml        the resolved experiment spec (exactly what ran)
    status.json        {"state": running|complete|failed, "completed_generation": g, ...}
    results.sqlite     units, per-generation records and metrics (one transaction per step)
    checkpoints/       latest resumable state (npz, no pickles), atomically replaced
    figures/           written by ``scloop plot``

SQLite (stdlib, embedded, no server) gives atomic per-generation commits: a killed run keeps
only whole generations.  On resume, rows after the checkpoint being resumed from are deleted
and recomputed, which reproduces them exactly (every generation has its own random streams).
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from scloop.store.atomic import CorruptFile, atomic_write_text

EXPORT_COLUMNS = (
    "run_id", "task", "arm", "seed", "lambda", "gamma", "n_real", "policy", "correction",
    "generation", "metric", "value",
)
EXTRA_COLUMNS = ("status", "n_synthetic")
STAGE_METRICS = ("sample_seconds", "correct_seconds", "train_seconds", "eval_seconds")

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
        """Insert records in one transaction.  Each row is
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

    def truncate_after(self, generation: int, units: Iterable[int] | None = None) -> None:
        """Delete rows after ``generation`` (for all units, or the given ones)."""
        with self.db:
            if units is None:
                self.db.execute("DELETE FROM records WHERE generation > ?", (generation,))
                self.db.execute("DELETE FROM metrics WHERE generation > ?", (generation,))
            else:
                for u in units:
                    self.db.execute("DELETE FROM records WHERE unit=? AND generation > ?", (u, generation))
                    self.db.execute("DELETE FROM metrics WHERE unit=? AND generation > ?", (u, generation))

    def last_generation(self, unit: int) -> tuple[int, str]:
        row = self.db.execute(
            "SELECT generation, status FROM records WHERE unit=? ORDER BY generation DESC LIMIT 1", (unit,)
        ).fetchone()
        return (row[0], row[1]) if row else (-1, "")

    # ------------------------------------------------------------------ queries
    def tidy_rows(self, *, include_timing: bool = True, metric: str | None = None,
                  generations: Iterable[int] | None = None) -> Iterator[tuple]:
        """Rows of :data:`EXPORT_COLUMNS` + :data:`EXTRA_COLUMNS`, deterministically ordered,
        optionally restricted to one metric and some generations."""
        task = self.db
        where, args = sql_filters("n.name", "m.generation", metric, generations)
        q = f"""SELECT u.task, u.arm, u.seed, u.lambda, u.gamma, u.n_real, u.policy, u.correction,
                      r.generation, n.name, m.value, r.status, r.n_synthetic
               FROM metrics m JOIN units u ON u.unit = m.unit
               JOIN records r ON r.unit = m.unit AND r.generation = m.generation
               JOIN metric_names n ON n.id = m.metric
               {'WHERE ' + ' AND '.join(where) if where else ''}
               ORDER BY m.unit, r.generation, n.name"""
        for row in task.execute(q, args):
            t, arm, seed, lam, gam, n_real, pol, corr, gen, name, val, status, nsyn = row
            yield (self.run_id, t, arm, seed, lam, _gamma_py(gam), n_real, pol, corr, gen, name, val, status, nsyn)
        if include_timing:
            q = """SELECT u.task, u.arm, u.seed, u.lambda, u.gamma, u.n_real, u.policy, u.correction,
                          r.generation, r.sample_seconds, r.correct_seconds, r.train_seconds, r.eval_seconds,
                          r.status, r.n_synthetic
                   FROM records r JOIN units u ON u.unit = r.unit ORDER BY r.unit, r.generation"""
            for row in task.execute(q):
                t, arm, seed, lam, gam, n_real, pol, corr, gen, s1, s2, s3, s4, status, nsyn = row
                for name, v in zip(STAGE_METRICS, (s1, s2, s3, s4)):
                    yield (self.run_id, t, arm, seed, lam, _gamma_py(gam), n_real, pol, corr, gen, name, v, status, nsyn)

    def table(self, *, include_timing: bool = True, metric: str | None = None,
              generations: Iterable[int] | None = None):
        """The tidy results as a pandas DataFrame (see :meth:`tidy_rows`)."""
        import pandas as pd

        rows = self.tidy_rows(include_timing=include_timing and metric is None, metric=metric, generations=generations)
        return pd.DataFrame(list(rows), columns=EXPORT_COLUMNS + EXTRA_COLUMNS)

    def max_generation(self) -> int:
        row = self.db.execute("SELECT MAX(generation) FROM records").fetchone()
        return -1 if row[0] is None else int(row[0])

    def records(self):
        """Per-(unit, generation) records with stage seconds and provenance: a JSON list of
        ``[source_generation, corrected, n_points]`` (generation -1 = real data)."""
        import pandas as pd

        q = """SELECT u.arm, u.seed, u.lambda, u.gamma, u.correction, r.unit, r.generation, r.status,
                      r.reason, r.n_real, r.n_synthetic, p.parts AS provenance, r.sample_seconds,
                      r.correct_seconds, r.train_seconds, r.eval_seconds
               FROM records r JOIN units u ON u.unit = r.unit JOIN provenance p ON p.id = r.provenance
               ORDER BY r.unit, r.generation"""
        cur = self.db.execute(q)
        return pd.DataFrame(cur.fetchall(), columns=[c[0] for c in cur.description])


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
